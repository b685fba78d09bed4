"""The SQL of the vector-store family: stores, their files and file batches, and the chunks search reads.

Rows come back as sqlite3.Row (JSON columns still encoded); the service turns them into wire objects.
Ingestion (ingestion.py) and the index registry (indexes.py) keep their own few statements.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from server.storage.db import Database, dumps, new_id, now
from server.vector_stores.indexes import IndexRegistry

STATUSES = ("in_progress", "completed", "failed", "cancelled")
_USAGE = "SELECT COALESCE(SUM(LENGTH(CAST(text AS BLOB)) + LENGTH(embedding)), 0) AS n FROM chunks "


def chunking_key(chunking: dict[str, Any]) -> str:
    """ "max/overlap" (tokens) of a resolved static chunking strategy: with the content hash, the key of
    the chunks and parsed text derived from a file (identical bytes share them only under the same
    settings)."""
    static = chunking["static"]
    return f"{static['max_chunk_size_tokens']}/{static['chunk_overlap_tokens']}"


class VectorStoreTables:
    """Reads and writes of the `vector_stores`, `vector_store_files`, `file_batches` and `chunks` tables.
    Each write is one transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # ---- vector_stores ----------------------------------------------------------------------------

    def store(self, store_id: str) -> Any:
        """The store's row, or None."""
        return self.db.one("SELECT * FROM vector_stores WHERE id = ?", (store_id,))

    def stores(self) -> list[Any]:
        """Every store, oldest first."""
        return self.db.query("SELECT * FROM vector_stores ORDER BY created_at, rowid")

    def insert_store(
        self,
        store_id: str,
        name: str | None,
        metadata: dict[str, str],
        chunking: dict[str, Any] | None,
        embedder: tuple[str, str, int],
    ) -> None:
        """`embedder`: (name, version, dimension) of the embedder that will build its vectors."""
        with self.db.transaction() as tx:
            tx.execute(
                "INSERT INTO vector_stores (id, name, metadata, chunking, created_at, last_active_at, "
                "embedding_model, embedding_version, embedding_dimension) VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    store_id,
                    name,
                    dumps(metadata),
                    dumps(chunking) if chunking else None,
                    now(),
                    now(),
                    *embedder,
                ),
            )

    # ---- re-embedding -------------------------------------------------------------------------------

    def request_reindex(self, store_id: str, target: str | None) -> None:
        """Re-embed the store's chunks with `target` (None: cancel a re-embedding under way). Vectors
        already computed for another target are dropped; search keeps the current vectors meanwhile."""
        with self.db.transaction() as tx:
            tx.execute(
                "UPDATE vector_stores SET reindex_model = ?, reindex_error = NULL, last_active_at = ? "
                "WHERE id = ?",
                (target, now(), store_id),
            )
            tx.execute("UPDATE chunks SET next_embedding = NULL WHERE vector_store_id = ?", (store_id,))

    def reindex_progress(self, store_id: str) -> tuple[int, int]:
        """(chunks re-embedded, chunks in the store)."""
        row = self.db.one(
            "SELECT COUNT(*) AS total, COUNT(next_embedding) AS done FROM chunks WHERE vector_store_id = ?",
            (store_id,),
        )
        return int(row["done"]), int(row["total"])

    def reindex_pending(self) -> Any:
        """One store waiting to be re-embedded (oldest request first), or None."""
        return self.db.one(
            "SELECT * FROM vector_stores WHERE reindex_model IS NOT NULL "
            "ORDER BY last_active_at, rowid LIMIT 1"
        )

    def chunks_to_reembed(self, store_id: str, limit: int) -> list[Any]:
        return self.db.query(
            "SELECT id, text FROM chunks WHERE vector_store_id = ? AND next_embedding IS NULL "
            "ORDER BY id LIMIT ?",
            (store_id, limit),
        )

    def save_reembedded(self, store_id: str, target: str, ids: list[int], vectors: Any) -> bool:
        """Store re-embedded vectors if the store still waits for `target`; False if it no longer does."""
        with self.db.transaction() as tx:
            if (
                tx.execute(
                    "SELECT 1 FROM vector_stores WHERE id = ? AND reindex_model = ?", (store_id, target)
                ).fetchone()
                is None
            ):
                return False
            tx.executemany(
                "UPDATE chunks SET next_embedding = ? WHERE id = ? AND vector_store_id = ?",
                [(v.astype("<f4").tobytes(), i, store_id) for i, v in zip(ids, vectors, strict=True)],
            )
        return True

    def finish_reindex(self, store_id: str, embedder: tuple[str, str, int]) -> bool:
        """Swap in the re-embedded vectors and record the new embedder, in one transaction, if every chunk
        has one and the store still waits for this embedder. Returns whether it swapped."""
        with self.db.transaction() as tx:
            if (
                tx.execute(
                    "SELECT 1 FROM vector_stores WHERE id = ? AND reindex_model = ?", (store_id, embedder[0])
                ).fetchone()
                is None
            ):
                return False
            if tx.execute(
                "SELECT 1 FROM chunks WHERE vector_store_id = ? AND next_embedding IS NULL LIMIT 1",
                (store_id,),
            ).fetchone():
                return False  # a file was ingested meanwhile: its chunks are re-embedded first
            tx.execute(
                "UPDATE chunks SET embedding = next_embedding, next_embedding = NULL "
                "WHERE vector_store_id = ?",
                (store_id,),
            )
            tx.execute(
                "UPDATE vector_stores SET embedding_model = ?, embedding_version = ?, "
                "embedding_dimension = ?, reindex_model = NULL, reindex_error = NULL WHERE id = ?",
                (*embedder, store_id),
            )
        return True

    def fail_reindex(self, store_id: str, target: str, message: str) -> None:
        with self.db.transaction() as tx:
            tx.execute(
                "UPDATE vector_stores SET reindex_model = NULL, reindex_error = ? "
                "WHERE id = ? AND reindex_model = ?",
                (dumps({"embedding_model": target, "message": message}), store_id, target),
            )
            tx.execute("UPDATE chunks SET next_embedding = NULL WHERE vector_store_id = ?", (store_id,))

    def update_store(self, store_id: str, name: str | None, metadata: dict[str, str]) -> None:
        """Set the name and metadata; the store counts as active."""
        with self.db.transaction() as tx:
            tx.execute(
                "UPDATE vector_stores SET name = ?, metadata = ?, last_active_at = ? WHERE id = ?",
                (name, dumps(metadata), now(), store_id),
            )

    def delete_store(self, store_id: str) -> None:
        with self.db.transaction() as tx:
            tx.execute("DELETE FROM vector_stores WHERE id = ?", (store_id,))  # cascades to files and chunks

    def touch(self, store_id: str) -> None:
        """Mark the store active now."""
        self.db.execute("UPDATE vector_stores SET last_active_at = ? WHERE id = ?", (now(), store_id))

    def usage_bytes(self, store_id: str, sha256: str | None = None, key: str = "") -> int:
        """Bytes of chunk text and vectors in the store (of one document's chunks when `sha256` and its
        chunking `key` are given)."""
        if sha256 is None:
            return self.db.one(_USAGE + "WHERE vector_store_id = ?", (store_id,))["n"]
        return self.db.one(
            _USAGE + "WHERE vector_store_id = ? AND sha256 = ? AND chunking_key = ?", (store_id, sha256, key)
        )["n"]

    def file_counts(self, store_id: str, batch_id: str | None = None) -> dict[str, int]:
        """Attached files by status (every status present, plus `total`), of one batch if given."""
        sql = "SELECT status, COUNT(*) AS n FROM vector_store_files WHERE vector_store_id = ?"
        params: list[Any] = [store_id]
        if batch_id:
            sql += " AND batch_id = ?"
            params.append(batch_id)
        counts = dict.fromkeys(STATUSES, 0)
        for row in self.db.query(sql + " GROUP BY status", params):
            counts[row["status"]] = row["n"]
        return {**counts, "total": sum(counts.values())}

    # ---- vector_store_files -----------------------------------------------------------------------

    def file(self, store_id: str, file_id: str) -> Any:
        """The attachment's row, or None."""
        return self.db.one(
            "SELECT * FROM vector_store_files WHERE vector_store_id = ? AND file_id = ?", (store_id, file_id)
        )

    def files(self, store_id: str, status: str | None = None, batch_id: str | None = None) -> list[Any]:
        """The store's attachments, oldest first, optionally of one status and/or batch."""
        sql, params = "SELECT * FROM vector_store_files WHERE vector_store_id = ?", [store_id]
        if status:
            sql += " AND status = ?"
            params.append(status)
        if batch_id:
            sql += " AND batch_id = ?"
            params.append(batch_id)
        return self.db.query(sql + " ORDER BY created_at, rowid", params)

    def attach(
        self,
        store_id: str,
        file_id: str,
        sha256: str,
        attributes: dict[str, Any] | None,
        chunking: dict[str, Any],
        batch_id: str | None,
    ) -> None:
        """Queue the file for ingestion (status `in_progress`) under a new `run_id`. A file already queued
        or ingested in this store keeps its chunks and status: given `attributes` replace its own (None
        keeps them), and a batch that names it counts it (its `batch_id` becomes the batch's)."""
        with self.db.transaction() as tx:
            existing = tx.execute(
                "SELECT status, attributes, batch_id FROM vector_store_files "
                "WHERE vector_store_id = ? AND file_id = ?",
                (store_id, file_id),
            ).fetchone()
            if existing is not None and existing["status"] in ("in_progress", "completed"):
                tx.execute(
                    "UPDATE vector_store_files SET attributes = ?, batch_id = ? "
                    "WHERE vector_store_id = ? AND file_id = ?",
                    (
                        existing["attributes"] if attributes is None else dumps(attributes),
                        batch_id or existing["batch_id"],
                        store_id,
                        file_id,
                    ),
                )
            else:
                tx.execute(
                    "INSERT OR REPLACE INTO vector_store_files (vector_store_id, file_id, sha256, status, "
                    "attributes, chunking, chunking_key, run_id, batch_id, created_at) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (
                        store_id,
                        file_id,
                        sha256,
                        "in_progress",
                        dumps(attributes or {}),
                        dumps(chunking),
                        chunking_key(chunking),
                        new_id("run_"),
                        batch_id,
                        now(),
                    ),
                )
            tx.execute("UPDATE vector_stores SET last_active_at = ? WHERE id = ?", (now(), store_id))

    def set_attributes(self, store_id: str, file_id: str, attributes: dict[str, Any]) -> None:
        with self.db.transaction() as tx:
            tx.execute(
                "UPDATE vector_store_files SET attributes = ? WHERE vector_store_id = ? AND file_id = ?",
                (dumps(attributes), store_id, file_id),
            )

    def completed_files(self, store_id: str) -> list[Any]:
        """The store's completed attachments with their file names (`file_id`, `sha256`, `chunking_key`,
        `attributes` as JSON, `filename`), oldest first."""
        return self.db.query(
            "SELECT v.file_id, v.sha256, v.chunking_key, v.attributes, f.filename FROM vector_store_files v "
            "JOIN files f "
            "ON f.id = v.file_id WHERE v.vector_store_id = ? AND v.status = 'completed' "
            "ORDER BY v.created_at, v.rowid",
            (store_id,),
        )

    # ---- file_batches -----------------------------------------------------------------------------

    def batch(self, store_id: str, batch_id: str) -> Any:
        """The batch's row, or None (also when it belongs to another store)."""
        return self.db.one(
            "SELECT * FROM file_batches WHERE id = ? AND vector_store_id = ?", (batch_id, store_id)
        )

    def insert_batch(self, store_id: str, batch_id: str) -> None:
        with self.db.transaction() as tx:
            tx.execute(
                "INSERT INTO file_batches (id, vector_store_id, created_at) VALUES (?,?,?)",
                (batch_id, store_id, now()),
            )

    def cancel_batch(self, batch_id: str) -> None:
        """Mark the batch cancelled and its files not yet ingested `cancelled` (ingestion skips them)."""
        with self.db.transaction() as tx:
            tx.execute("UPDATE file_batches SET cancelled = 1 WHERE id = ?", (batch_id,))
            tx.execute(
                "UPDATE vector_store_files SET status = 'cancelled' "
                "WHERE batch_id = ? AND status = 'in_progress'",
                (batch_id,),
            )

    # ---- chunks -----------------------------------------------------------------------------------

    def chunk_texts(self, store_id: str, sha256: str, key: str) -> list[str]:
        """One document's chunk texts in document order."""
        rows = self.db.query(
            "SELECT text FROM chunks WHERE vector_store_id = ? AND sha256 = ? AND chunking_key = ? "
            "ORDER BY seq",
            (store_id, sha256, key),
        )
        return [r["text"] for r in rows]

    def parsed_document(self, store_id: str, sha256: str, key: str) -> Any:
        """The document's parsed text and parse report (`text`, `report` as JSON), or None (documents
        ingested before ragtune kept them, or not ingested yet)."""
        return self.db.one(
            "SELECT text, report FROM parsed_documents WHERE vector_store_id = ? AND sha256 = ? "
            "AND chunking_key = ?",
            (store_id, sha256, key),
        )

    def chunk_ids(self, store_id: str, documents: Sequence[tuple[str, str]]) -> list[int]:
        """Ids of the chunks of these documents, each `(sha256, chunking_key)`, in the store."""
        if not documents:
            return []
        pairs = ",".join(["(?,?)"] * len(documents))
        return [
            r["id"]
            for r in self.db.query(
                "SELECT id FROM chunks WHERE vector_store_id = ? "
                f"AND (sha256, chunking_key) IN (VALUES {pairs})",
                [store_id, *(value for document in documents for value in document)],
            )
        ]

    def chunks(self, store_id: str, ids: Sequence[int]) -> dict[int, Any]:
        """id → row (`vector_store_id`, `sha256`, `chunking_key`, `text`, `page`) of those of `ids` still in
        the store."""
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        # By primary key only: with the store id in the WHERE clause SQLite picks the (store, sha256)
        # index and scans the whole store (6 ms at 100k chunks).
        rows = self.db.query(
            f"SELECT id, vector_store_id, sha256, chunking_key, text, page FROM chunks WHERE id IN ({marks})",
            list(ids),
        )
        return {r["id"]: r for r in rows if r["vector_store_id"] == store_id}


def detach(db: Database, indexes: IndexRegistry, store_id: str, file_id: str) -> None:
    """Remove a file from a store; its chunks and parsed text go too unless another attached file has the
    same bytes under the same chunking settings. A run still ingesting it will not commit (its run id is
    gone with the row)."""
    with db.transaction() as tx:
        row = tx.execute(
            "DELETE FROM vector_store_files WHERE vector_store_id = ? AND file_id = ? "
            "RETURNING sha256, chunking_key",
            (store_id, file_id),
        ).fetchone()
        if row is None:
            return
        owner = (store_id, row["sha256"], row["chunking_key"])
        twin = tx.execute(
            "SELECT 1 FROM vector_store_files WHERE vector_store_id = ? AND sha256 = ? AND chunking_key = ? "
            "LIMIT 1",
            owner,
        ).fetchone()
        ids = []
        if not twin:
            where = "WHERE vector_store_id = ? AND sha256 = ? AND chunking_key = ?"
            ids = [r["id"] for r in tx.execute("SELECT id FROM chunks " + where, owner)]
            tx.execute("DELETE FROM chunks " + where, owner)
            tx.execute("DELETE FROM parsed_documents " + where, owner)
    indexes.remove(store_id, ids)


def detach_everywhere(db: Database, indexes: IndexRegistry, file_id: str) -> None:
    """Remove a file from every store it is attached to (a hook of FileService.delete)."""
    for row in db.query("SELECT vector_store_id FROM vector_store_files WHERE file_id = ?", (file_id,)):
        detach(db, indexes, row["vector_store_id"], file_id)
