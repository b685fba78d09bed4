"""Knowledge bases: vector store CRUD, attaching files (ingested in the background), hybrid search."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ingest.split import resolve_chunking
from retrieval import filters as filter_grammar
from retrieval.lexical import terms
from retrieval.retriever import normalise_ranker
from server.errors import APIError, bad_request, not_found
from server.files.service import DOCUMENT_PURPOSES, FileService, paginate
from server.storage.db import Database, dumps, new_id, now
from server.vector_stores.indexes import IndexRegistry
from server.vector_stores.protocol import (
    AttachFile,
    CreateFileBatch,
    CreateVectorStore,
    SearchRequest,
    UpdateFileAttributes,
    UpdateVectorStore,
)

STATUSES = ("in_progress", "completed", "failed", "cancelled")


@dataclass
class SearchHit:
    """One retrieved chunk, with the file it is attributed to."""

    chunk_id: int
    file_id: str
    filename: str
    score: float
    text: str
    page: int | None
    attributes: dict[str, Any]
    vector_store_id: str

    def wire(self) -> dict[str, Any]:
        return {
            "file_id": self.file_id,
            "filename": self.filename,
            "score": round(self.score, 6),
            "attributes": self.attributes,
            "content": [{"type": "text", "text": self.text}],
            # extensions: where the text is
            "chunk_id": str(self.chunk_id),
            "page": self.page,
            "vector_store_id": self.vector_store_id,
        }


class VectorStoreService:
    def __init__(
        self,
        db: Database,
        files: FileService,
        indexes: IndexRegistry,
        embedder: Any,
        wake: Callable[[], None] | None = None,
    ) -> None:
        """`wake` is called when there is new ingestion work (the ingestion worker's `wake`)."""
        self.db = db
        self.files = files
        self.indexes = indexes
        self.embedder = embedder
        self.window = max(16, int(embedder.max_seq_length) - 2)  # [CLS] and [SEP]
        self.wake = wake
        self._touched: dict[str, int] = {}

    # ---- vector stores ----------------------------------------------------------------------------

    def _store_row(self, store_id: str) -> Any:
        row = self.db.one("SELECT * FROM vector_stores WHERE id = ?", (store_id,))
        if row is None:
            raise not_found(
                f"No vector store found with id '{store_id}'.", "vector_store_id", "vector_store_not_found"
            )
        return row

    def _chunking(self, strategy: dict[str, Any] | None, param: str = "chunking_strategy") -> dict[str, Any]:
        try:
            resolved = resolve_chunking(strategy, self.window)
        except ValueError as exc:
            raise bad_request(str(exc), param) from exc
        return {
            "type": "static",
            "static": {
                "max_chunk_size_tokens": resolved.max_chunk_size_tokens,
                "chunk_overlap_tokens": resolved.chunk_overlap_tokens,
            },
        }

    def store_object(self, row: Any) -> dict[str, Any]:
        counts = self.file_counts(row["id"])
        usage = self.db.one(
            "SELECT COALESCE(SUM(LENGTH(CAST(text AS BLOB)) + LENGTH(embedding)), 0) AS n FROM chunks "
            "WHERE vector_store_id = ?",
            (row["id"],),
        )["n"]
        return {
            "id": row["id"],
            "object": "vector_store",
            "created_at": row["created_at"],
            "name": row["name"],
            "usage_bytes": usage,
            "file_counts": counts,
            "status": "in_progress" if counts["in_progress"] else "completed",
            "expires_after": None,
            "expires_at": None,
            "last_active_at": row["last_active_at"],
            "metadata": json.loads(row["metadata"]),
        }

    def file_counts(self, store_id: str, batch_id: str | None = None) -> dict[str, int]:
        sql = "SELECT status, COUNT(*) AS n FROM vector_store_files WHERE vector_store_id = ?"
        params: list[Any] = [store_id]
        if batch_id:
            sql += " AND batch_id = ?"
            params.append(batch_id)
        counts = dict.fromkeys(STATUSES, 0)
        for row in self.db.query(sql + " GROUP BY status", params):
            counts[row["status"]] = row["n"]
        return {**counts, "total": sum(counts.values())}

    def create(self, body: CreateVectorStore) -> dict[str, Any]:
        chunking = self._chunking(body.chunking_strategy) if body.chunking_strategy else None
        for file_id in body.file_ids:
            self._document_file(file_id, "file_ids")
        store_id = new_id("vs_")
        with self.db.transaction() as tx:
            tx.execute(
                "INSERT INTO vector_stores (id, name, metadata, chunking, created_at, last_active_at) "
                "VALUES (?,?,?,?,?,?)",
                (
                    store_id,
                    body.name,
                    dumps(body.metadata or {}),
                    dumps(chunking) if chunking else None,
                    now(),
                    now(),
                ),
            )
        for file_id in body.file_ids:
            self.attach(store_id, AttachFile(file_id=file_id))
        return self.get(store_id)

    def get(self, store_id: str) -> dict[str, Any]:
        return self.store_object(self._store_row(store_id))

    def list(self, limit: int, order: str, after: str | None, before: str | None) -> dict[str, Any]:
        rows = [
            self.store_object(r)
            for r in self.db.query("SELECT * FROM vector_stores ORDER BY created_at, rowid")
        ]
        return paginate(rows, limit, order, after, before)

    def update(self, store_id: str, body: UpdateVectorStore) -> dict[str, Any]:
        row = self._store_row(store_id)
        name = body.name if "name" in body.model_fields_set else row["name"]
        metadata = dumps(body.metadata) if body.metadata is not None else row["metadata"]
        with self.db.transaction() as tx:
            tx.execute(
                "UPDATE vector_stores SET name = ?, metadata = ?, last_active_at = ? WHERE id = ?",
                (name, metadata, now(), store_id),
            )
        return self.get(store_id)

    def delete(self, store_id: str) -> dict[str, Any]:
        self._store_row(store_id)
        with self.db.transaction() as tx:
            tx.execute("DELETE FROM vector_stores WHERE id = ?", (store_id,))  # cascades to files and chunks
        self.indexes.drop(store_id)
        return {"id": store_id, "object": "vector_store.deleted", "deleted": True}

    # ---- files in a store ---------------------------------------------------------------------------

    def _document_file(self, file_id: str, param: str = "file_id") -> Any:
        row = self.db.one("SELECT * FROM files WHERE id = ?", (file_id,))
        if row is None:
            raise not_found(f"No such file: '{file_id}'.", param, "file_not_found")
        if row["purpose"] not in DOCUMENT_PURPOSES:
            raise bad_request(
                f"File '{file_id}' was uploaded with purpose '{row['purpose']}'; knowledge bases take files "
                f"uploaded with purpose 'assistants' or 'user_data'.",
                param,
                "invalid_file",
            )
        return row

    def _vs_file_row(self, store_id: str, file_id: str) -> Any:
        row = self.db.one(
            "SELECT * FROM vector_store_files WHERE vector_store_id = ? AND file_id = ?", (store_id, file_id)
        )
        if row is None:
            raise not_found(f"No file '{file_id}' in vector store '{store_id}'.", "file_id", "file_not_found")
        return row

    def vs_file_object(self, row: Any) -> dict[str, Any]:
        usage = 0
        if row["status"] == "completed":
            usage = self.db.one(
                "SELECT COALESCE(SUM(LENGTH(CAST(text AS BLOB)) + LENGTH(embedding)), 0) AS n FROM chunks "
                "WHERE vector_store_id = ? AND sha256 = ?",
                (row["vector_store_id"], row["sha256"]),
            )["n"]
        return {
            "id": row["file_id"],
            "object": "vector_store.file",
            "usage_bytes": usage,
            "created_at": row["created_at"],
            "vector_store_id": row["vector_store_id"],
            "status": row["status"],
            "last_error": json.loads(row["last_error"]) if row["last_error"] else None,
            "chunking_strategy": json.loads(row["chunking"]),
            "attributes": json.loads(row["attributes"]),
        }

    def attach(self, store_id: str, body: AttachFile, batch_id: str | None = None) -> dict[str, Any]:
        store = self._store_row(store_id)
        file = self._document_file(body.file_id)
        if body.chunking_strategy:
            chunking = self._chunking(body.chunking_strategy)
        else:
            chunking = json.loads(store["chunking"]) if store["chunking"] else self._chunking(None)
        attributes = dumps(body.attributes or {})
        with self.db.transaction() as tx:
            existing = tx.execute(
                "SELECT status FROM vector_store_files WHERE vector_store_id = ? AND file_id = ?",
                (store_id, body.file_id),
            ).fetchone()
            if existing is not None and existing["status"] in ("in_progress", "completed"):
                # Attaching the same file again is idempotent; only its attributes change.
                tx.execute(
                    "UPDATE vector_store_files SET attributes = ? WHERE vector_store_id = ? AND file_id = ?",
                    (attributes, store_id, body.file_id),
                )
            else:
                tx.execute(
                    "INSERT OR REPLACE INTO vector_store_files (vector_store_id, "
                    "file_id, sha256, status, attributes, "
                    "chunking, batch_id, created_at) VALUES (?,?,?,?,?,?,?,?)",
                    (
                        store_id,
                        body.file_id,
                        file["sha256"],
                        "in_progress",
                        attributes,
                        dumps(chunking),
                        batch_id,
                        now(),
                    ),
                )
            tx.execute("UPDATE vector_stores SET last_active_at = ? WHERE id = ?", (now(), store_id))
        if self.wake:
            self.wake()
        return self.get_file(store_id, body.file_id)

    def get_file(self, store_id: str, file_id: str) -> dict[str, Any]:
        self._store_row(store_id)
        return self.vs_file_object(self._vs_file_row(store_id, file_id))

    def list_files(
        self,
        store_id: str,
        status: str | None,
        limit: int,
        order: str,
        after: str | None,
        before: str | None,
        batch_id: str | None = None,
    ) -> dict[str, Any]:
        self._store_row(store_id)
        sql, params = "SELECT * FROM vector_store_files WHERE vector_store_id = ?", [store_id]
        if status:
            if status not in STATUSES:
                raise bad_request(f"filter must be one of {', '.join(STATUSES)}", "filter")
            sql += " AND status = ?"
            params.append(status)
        if batch_id:
            sql += " AND batch_id = ?"
            params.append(batch_id)
        rows = [self.vs_file_object(r) for r in self.db.query(sql + " ORDER BY created_at, rowid", params)]
        return paginate(rows, limit, order, after, before)

    def update_file(self, store_id: str, file_id: str, body: UpdateFileAttributes) -> dict[str, Any]:
        self._vs_file_row(store_id, file_id)
        with self.db.transaction() as tx:
            tx.execute(
                "UPDATE vector_store_files SET attributes = ? WHERE vector_store_id = ? AND file_id = ?",
                (dumps(body.attributes or {}), store_id, file_id),
            )
        return self.get_file(store_id, file_id)

    def detach(self, store_id: str, file_id: str) -> dict[str, Any]:
        self._store_row(store_id)
        row = self._vs_file_row(store_id, file_id)
        detach(self.db, self.indexes, store_id, file_id, row["sha256"])
        return {"id": file_id, "object": "vector_store.file.deleted", "deleted": True}

    def file_content(self, store_id: str, file_id: str) -> dict[str, Any]:
        row = self._vs_file_row(store_id, file_id)
        chunks = self.db.query(
            "SELECT text FROM chunks WHERE vector_store_id = ? AND sha256 = ? ORDER BY seq",
            (store_id, row["sha256"]),
        )
        return {
            "object": "vector_store.file_content.page",
            "data": [{"type": "text", "text": c["text"]} for c in chunks],
            "has_more": False,
            "next_page": None,
        }

    # ---- batches ----------------------------------------------------------------------------------

    def batch_object(self, row: Any) -> dict[str, Any]:
        counts = self.file_counts(row["vector_store_id"], row["id"])
        if counts["in_progress"]:
            status = "in_progress"
        elif row["cancelled"]:
            status = "cancelled"
        elif counts["failed"] and not counts["completed"]:
            status = "failed"
        else:
            status = "completed"
        return {
            "id": row["id"],
            "object": "vector_store.files_batch",
            "created_at": row["created_at"],
            "vector_store_id": row["vector_store_id"],
            "status": status,
            "file_counts": counts,
        }

    def _batch_row(self, store_id: str, batch_id: str) -> Any:
        row = self.db.one(
            "SELECT * FROM file_batches WHERE id = ? AND vector_store_id = ?", (batch_id, store_id)
        )
        if row is None:
            raise not_found(f"No file batch '{batch_id}' in vector store '{store_id}'.", "batch_id")
        return row

    def create_batch(self, store_id: str, body: CreateFileBatch) -> dict[str, Any]:
        self._store_row(store_id)
        if bool(body.file_ids) == bool(body.files):
            raise bad_request("Give exactly one of 'file_ids' or 'files'.", "file_ids")
        items = body.files or [
            AttachFile(file_id=f, attributes=body.attributes, chunking_strategy=body.chunking_strategy)
            for f in body.file_ids or []
        ]
        for item in items:  # check all before attaching any
            self._document_file(item.file_id, "file_ids")
        if body.chunking_strategy:
            self._chunking(body.chunking_strategy)
        batch_id = new_id("vsfb_")
        with self.db.transaction() as tx:
            tx.execute(
                "INSERT INTO file_batches (id, vector_store_id, created_at) VALUES (?,?,?)",
                (batch_id, store_id, now()),
            )
        for item in items:
            attach = AttachFile(
                file_id=item.file_id,
                attributes=item.attributes or body.attributes,
                chunking_strategy=item.chunking_strategy or body.chunking_strategy,
            )
            self.attach(store_id, attach, batch_id)
        return self.get_batch(store_id, batch_id)

    def get_batch(self, store_id: str, batch_id: str) -> dict[str, Any]:
        return self.batch_object(self._batch_row(store_id, batch_id))

    def cancel_batch(self, store_id: str, batch_id: str) -> dict[str, Any]:
        self._batch_row(store_id, batch_id)
        with self.db.transaction() as tx:
            tx.execute("UPDATE file_batches SET cancelled = 1 WHERE id = ?", (batch_id,))
            tx.execute(
                "UPDATE vector_store_files SET status = 'cancelled' WHERE batch_id = "
                "? AND status = 'in_progress'",
                (batch_id,),
            )
        return self.get_batch(store_id, batch_id)

    # ---- search -----------------------------------------------------------------------------------

    def search_hits(
        self,
        store_id: str,
        query: str,
        k: int,
        filters: dict[str, Any] | None = None,
        ranker: str | None = None,
        score_threshold: float = 0.0,
    ) -> list[SearchHit]:
        """Top-k chunks of one store (blocking: call it from a thread)."""
        self._store_row(store_id)
        try:
            ranker = normalise_ranker(ranker)
        except ValueError as exc:
            raise bad_request(str(exc), "ranking_options.ranker") from exc
        files = self._searchable_files(store_id, filters)
        if not files:
            return []
        allowed = None
        if filters is not None:
            shas = list(files)
            marks = ",".join("?" * len(shas))
            allowed = np.array(
                [
                    r["id"]
                    for r in self.db.query(
                        f"SELECT id FROM chunks WHERE vector_store_id = ? AND sha256 IN ({marks})",
                        [store_id, *shas],
                    )
                ],
                dtype=np.int64,
            )
        vector = self.embedder.embed([query])[0]
        hits = self.indexes.get(store_id).search(vector, terms(query), k, ranker, allowed)
        hits = [h for h in hits if h.score >= score_threshold]
        if not hits:
            return []
        marks = ",".join("?" * len(hits))
        # By primary key only: with the store id in the WHERE clause SQLite picks the (store, sha256)
        # index and scans the whole store (6 ms at 100k chunks).
        rows = {
            r["id"]: r
            for r in self.db.query(
                f"SELECT id, vector_store_id, sha256, text, page FROM chunks WHERE id IN ({marks})",
                [h.id for h in hits],
            )
            if r["vector_store_id"] == store_id
        }
        results = []
        for hit in hits:
            row = rows.get(hit.id)  # a chunk deleted since the index was read is never returned
            if row is None or row["sha256"] not in files:
                continue
            file = files[row["sha256"]]
            results.append(
                SearchHit(
                    hit.id,
                    file["file_id"],
                    file["filename"],
                    hit.score,
                    row["text"],
                    row["page"],
                    file["attributes"],
                    store_id,
                )
            )
        self._touch(store_id)
        return results

    def _touch(self, store_id: str) -> None:
        """Record activity, at most once a minute per store: a write per search would cost more than it."""
        if now() - self._touched.get(store_id, 0) >= 60:
            self._touched[store_id] = now()
            self.db.execute("UPDATE vector_stores SET last_active_at = ? WHERE id = ?", (now(), store_id))

    def _searchable_files(self, store_id: str, filters: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
        """sha256 → the first completed file with those bytes whose attributes pass the filters."""
        rows = self.db.query(
            "SELECT v.file_id, v.sha256, v.attributes, f.filename FROM vector_store_files v JOIN files f "
            "ON f.id = v.file_id WHERE v.vector_store_id = ? AND v.status = "
            "'completed' ORDER BY v.created_at, v.rowid",
            (store_id,),
        )
        found: dict[str, dict[str, Any]] = {}
        for row in rows:
            attributes = json.loads(row["attributes"])
            if row["sha256"] in found or (
                filters is not None and not filter_grammar.matches(filters, attributes)
            ):
                continue
            found[row["sha256"]] = {
                "file_id": row["file_id"],
                "filename": row["filename"],
                "attributes": attributes,
            }
        return found

    def search(self, store_id: str, body: SearchRequest) -> dict[str, Any]:
        options = body.ranking_options
        hits = self.search_hits(
            store_id,
            body.text,
            body.max_num_results,
            body.filters,
            options.ranker if options else None,
            options.score_threshold if options else 0.0,
        )
        return {
            "object": "vector_store.search_results.page",
            "search_query": body.text,
            "data": [h.wire() for h in hits],
            "has_more": False,
            "next_page": None,
        }

    def search_many(
        self, store_ids: list[str], query: str, k: int, score_threshold: float, ranker: str | None = None
    ) -> list[SearchHit]:
        """Top-k over several stores (for RAG in chat): the stores' rankings interleaved rank by rank."""
        rankings = [self.search_hits(s, query, k, None, ranker, score_threshold) for s in store_ids]
        merged = [(rank, n, hit) for n, hits in enumerate(rankings) for rank, hit in enumerate(hits)]
        return [hit for _, _, hit in sorted(merged, key=lambda t: (t[0], t[1]))][:k]

    def ensure_stores(self, store_ids: list[str], param: str) -> None:
        for store_id in store_ids:
            if self.db.one("SELECT 1 FROM vector_stores WHERE id = ?", (store_id,)) is None:
                raise APIError(
                    404,
                    f"No vector store found with id '{store_id}'.",
                    param=param,
                    code="vector_store_not_found",
                )


def detach(db: Database, indexes: IndexRegistry, store_id: str, file_id: str, sha256: str) -> None:
    """Remove a file from a store; its chunks go too unless another attached file has the same bytes."""
    with db.transaction() as tx:
        tx.execute(
            "DELETE FROM vector_store_files WHERE vector_store_id = ? AND file_id = ?",
            (store_id, file_id),
        )
        twin = tx.execute(
            "SELECT 1 FROM vector_store_files WHERE vector_store_id = ? AND sha256 = ? LIMIT 1",
            (store_id, sha256),
        ).fetchone()
        ids = (
            []
            if twin
            else [
                r["id"]
                for r in tx.execute(
                    "SELECT id FROM chunks WHERE vector_store_id = ? AND sha256 = ?", (store_id, sha256)
                )
            ]
        )
        if ids:
            tx.execute("DELETE FROM chunks WHERE vector_store_id = ? AND sha256 = ?", (store_id, sha256))
    indexes.remove(store_id, ids)


def detach_everywhere(db: Database, indexes: IndexRegistry, file_id: str) -> None:
    """Remove a file from every store it is attached to (a hook of FileService.delete)."""
    for row in db.query(
        "SELECT vector_store_id, sha256 FROM vector_store_files WHERE file_id = ?", (file_id,)
    ):
        detach(db, indexes, row["vector_store_id"], file_id, row["sha256"])
