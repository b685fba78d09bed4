"""Background ingestion: parse → split → embed → one SQLite transaction → index.

The queue is the `vector_store_files` rows in status `in_progress`, so it survives a crash: after a
restart the rows still in progress are simply taken again (a file that took the server down three times
is marked failed instead). Chunks and the `completed` status are written in one transaction, so a file
is never half-ingested; the FAISS index is derived and reconciled from SQLite when opened.

Derived data is keyed by what produced it: every attachment run has its own `run_id`, and the worker
touches the row (attempts, status, chunks) only while it still holds that run id, so a file detached
and re-attached while being ingested gets the new run's chunks, never the old run's. Chunks and the
parsed text belong to (store, content hash, chunking key): identical bytes share them only under the
same chunking settings.

Each store's chunks are embedded by the store's own embedder. When a store changes embedder, the same
worker re-embeds its chunks, one batch per turn (files waiting to be ingested go first), into
`next_embedding`; when every chunk has one they replace the old vectors in one transaction and the
index is rebuilt. Until then search uses the old vectors with the old embedder, never a mix.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import numpy as np

from ingest import Document, IngestError, ingest_file
from ingest.split import ChunkingStrategy
from retrieval.embedder import EmbedderRegistry
from retrieval.lexical import terms
from server.storage.db import Database, dumps, now
from server.vector_stores.indexes import IndexRegistry
from server.vector_stores.store import VectorStoreTables

log = logging.getLogger("ragtune.ingest")

MAX_ATTEMPTS = 3
EMBED_BATCH = 64
# OpenAI's last_error codes; our more precise reason goes in the message.
_ERROR_CODES = {"unsupported_file": "unsupported_file"}


class IngestionWorker:
    def __init__(self, db: Database, files: Any, indexes: IndexRegistry, embedders: EmbedderRegistry) -> None:
        self.db = db
        self.files = files
        self.indexes = indexes
        self.embedders = embedders
        self.tables = VectorStoreTables(db)
        self._event = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name="ragtune-ingestion")

    def wake(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._event.set)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await asyncio.to_thread(self.indexes.flush)

    async def _run(self) -> None:
        while True:
            # Cleared before looking for work, never after: a wake that comes while the queue is read or
            # the indexes flushed stays set, so new work is never left waiting for an unrelated wake.
            self._event.clear()
            row = self.db.one(
                "SELECT v.*, f.filename, s.embedding_model FROM vector_store_files v "
                "JOIN files f ON f.id = v.file_id JOIN vector_stores s ON s.id = v.vector_store_id "
                "WHERE v.status = 'in_progress' ORDER BY v.created_at, v.rowid LIMIT 1"
            )
            if row is None:
                store = self.tables.reindex_pending()
                if store is not None:
                    try:
                        await asyncio.to_thread(self.reembed_step, store)
                    except Exception as exc:  # a bug must not stop the queue: fail this re-embedding
                        log.exception("re-embedding %s failed", store["id"])
                        self.tables.fail_reindex(store["id"], store["reindex_model"], f"unexpected: {exc}")
                    continue
                await asyncio.to_thread(self.indexes.flush)
                await self._event.wait()
                continue
            try:
                await asyncio.to_thread(self.ingest, row)
            except Exception as exc:  # a bug must not stop the queue: fail this file, go on
                log.exception("ingestion of %s failed", row["file_id"])
                self._finish_failed(row, "server_error", f"Ingestion failed unexpectedly: {exc}")

    def ingest(self, row: Any) -> None:
        """Ingest one attachment run (a `vector_store_files` row in progress): parse, split, embed and
        commit, or fail it with `last_error`; nothing is written once the run is no longer current."""
        store_id, file_id, sha256 = row["vector_store_id"], row["file_id"], row["sha256"]
        with self.db.transaction() as tx:
            attempts = tx.execute(
                "UPDATE vector_store_files SET attempts = attempts + 1 WHERE "
                "vector_store_id = ? AND file_id = ? AND run_id = ? "
                "AND status = 'in_progress' RETURNING attempts",
                (store_id, file_id, row["run_id"]),
            ).fetchone()
        if attempts is None:
            return
        if attempts["attempts"] > MAX_ATTEMPTS:
            self._finish_failed(
                row, "server_error", f"Ingestion was interrupted {MAX_ATTEMPTS} times; giving up."
            )
            return
        if self.db.one(
            "SELECT 1 FROM parsed_documents WHERE vector_store_id = ? AND sha256 = ? AND chunking_key = ? "
            "UNION ALL SELECT 1 FROM chunks WHERE vector_store_id = ? AND sha256 = ? AND chunking_key = ? "
            "LIMIT 1",
            (store_id, sha256, row["chunking_key"]) * 2,
        ):
            # Identical bytes under the same chunking are already in this store: share their chunks.
            self._commit(row, None, [], None)
            return
        static = json.loads(row["chunking"])["static"]
        strategy = ChunkingStrategy(static["max_chunk_size_tokens"], static["chunk_overlap_tokens"])
        try:
            embedder = self.embedders.get(row["embedding_model"])
        except (KeyError, OSError, RuntimeError) as exc:
            self._finish_failed(
                row,
                "server_error",
                f"The store's embedder '{row['embedding_model']}' is not available on this server: {exc}",
            )
            return
        try:
            _, document, chunks = ingest_file(
                self.files.path(file_id), row["filename"], strategy, embedder.tokenizer
            )
        except IngestError as exc:
            self._finish_failed(row, _ERROR_CODES.get(exc.code, "invalid_file"), str(exc))
            return
        except FileNotFoundError:
            return  # the file was deleted meanwhile; its row went with it
        vectors = []
        for start in range(0, len(chunks), EMBED_BATCH):
            if not self._still_wanted(row):
                return  # cancelled, or detached (and perhaps re-attached: another run) while embedding
            batch = [c.text for c in chunks[start : start + EMBED_BATCH]]
            vectors.append(embedder.embed(batch, input_type="passage"))
        self._commit(row, document, chunks, np.concatenate(vectors) if vectors else None)

    def reembed_step(self, store: Any) -> None:
        """One batch of a store's re-embedding, or, when none is left, the swap to the new vectors."""
        store_id, target = store["id"], store["reindex_model"]
        try:
            embedder = self.embedders.get(target)
        except (KeyError, OSError, RuntimeError) as exc:
            self.tables.fail_reindex(store_id, target, f"The embedder '{target}' cannot be loaded: {exc}")
            return
        rows = self.tables.chunks_to_reembed(store_id, EMBED_BATCH)
        if rows:
            vectors = embedder.embed([r["text"] for r in rows], input_type="passage")
            self.tables.save_reembedded(store_id, target, [r["id"] for r in rows], vectors)
            return
        if self.tables.finish_reindex(store_id, (embedder.name, embedder.version, embedder.dimension)):
            self.indexes.drop(store_id)  # rebuilt from SQLite, with the new vectors, when next opened
            log.info("re-embedded %s with %s", store_id, target)

    def _still_wanted(self, row: Any) -> bool:
        """Whether the run `row` started is still the file's current run, and not cancelled."""
        return (
            self.db.one(
                "SELECT 1 FROM vector_store_files WHERE vector_store_id = ? AND file_id = ? AND run_id = ? "
                "AND status = 'in_progress'",
                (row["vector_store_id"], row["file_id"], row["run_id"]),
            )
            is not None
        )

    def _commit(self, row: Any, document: Document | None, chunks: list, vectors: np.ndarray | None) -> None:
        """Chunks, parsed text and `completed` in one transaction, if the run is still current.
        `document` None: the chunks of identical bytes under the same chunking are shared."""
        store_id, file_id, sha256 = row["vector_store_id"], row["file_id"], row["sha256"]
        key = row["chunking_key"]
        chunk_terms = [terms(c.text) for c in chunks]  # before the lock: jieba is slow-ish
        # Open the index before the commit: opened after it, it would already hold the new chunks
        # (it is rebuilt from SQLite) and adding them again would duplicate them.
        self.indexes.get(store_id)
        with self.db.transaction() as tx:
            done = tx.execute(
                "UPDATE vector_store_files SET status = 'completed', last_error = NULL "
                "WHERE vector_store_id = ? AND file_id = ? AND run_id = ? AND status = 'in_progress'",
                (store_id, file_id, row["run_id"]),
            ).rowcount
            if not done:
                return
            ids = insert_chunks(tx, store_id, sha256, chunks, chunk_terms, vectors, key)
            if document is not None:
                tx.execute(
                    "INSERT OR REPLACE INTO parsed_documents (vector_store_id, sha256, chunking_key, text, "
                    "report, created_at) VALUES (?,?,?,?,?,?)",
                    (store_id, sha256, key, document.text, dumps(document.report.as_dict()), now()),
                )
        if ids:
            self.indexes.add(store_id, ids, vectors)
        log.info("ingested %s into %s: %d chunks", file_id, store_id, len(ids))

    def _finish_failed(self, row: Any, code: str, message: str) -> None:
        with self.db.transaction() as tx:
            tx.execute(
                "UPDATE vector_store_files SET status = 'failed', last_error = ? WHERE vector_store_id = ? "
                "AND file_id = ? AND run_id = ? AND status = 'in_progress'",
                (
                    dumps({"code": code, "message": message}),
                    row["vector_store_id"],
                    row["file_id"],
                    row["run_id"],
                ),
            )
        log.info("ingestion of %s failed: %s", row["file_id"], message)


def insert_chunks(
    tx: Any,
    store_id: str,
    sha256: str,
    chunks: list,
    chunk_terms: list[list[str]],
    vectors: np.ndarray | None,
    chunking_key: str = "",
) -> list[int]:
    """Insert one document's chunks (text, BM25 terms, vector) inside the caller's transaction; the
    document is `(sha256, chunking_key)` (see server.vector_stores.store.chunking_key)."""
    ids = []
    for chunk, chunk_terms_, vector in zip(
        chunks, chunk_terms, vectors if vectors is not None else [], strict=True
    ):
        cursor = tx.execute(
            "INSERT INTO chunks (vector_store_id, sha256, chunking_key, seq, text, page, tokens, metadata, "
            "terms, embedding) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                store_id,
                sha256,
                chunking_key,
                chunk.index,
                chunk.text,
                chunk.page,
                chunk.tokens,
                dumps(chunk.metadata),
                dumps(chunk_terms_),
                np.asarray(vector, dtype=np.float32).tobytes(),
            ),
        )
        ids.append(cursor.lastrowid)
    return ids
