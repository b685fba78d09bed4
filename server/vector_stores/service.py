"""Knowledge bases: vector store CRUD, attaching files (ingested in the background), hybrid search.

The SQL lives in store.py; this file holds the checks, the wire shapes and the search.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ingest.split import resolve_chunking
from retrieval import filters as filter_grammar
from retrieval.embedder import Embedder, EmbedderRegistry
from retrieval.lexical import terms
from retrieval.retriever import normalise_ranker
from server.errors import bad_request, not_found
from server.files.service import DOCUMENT_PURPOSES, FileService
from server.protocol import DeletedObject, ListPage, Page, paginate
from server.storage.db import Database, new_id, now
from server.vector_stores.indexes import IndexRegistry
from server.vector_stores.protocol import (
    AttachFile,
    CreateFileBatch,
    CreateVectorStore,
    Reindex,
    SearchHit,
    SearchQuery,
    TextContent,
    UpdateFileAttributes,
    UpdateVectorStore,
    VectorStore,
    VectorStoreFile,
    VectorStoreFileBatch,
    VectorStoreFileContentPage,
)
from server.vector_stores.store import STATUSES, VectorStoreTables, detach


class VectorStoreService:
    def __init__(
        self,
        db: Database,
        files: FileService,
        indexes: IndexRegistry,
        embedders: EmbedderRegistry,
        wake: Callable[[], None] | None = None,
    ) -> None:
        """`embedders`: the embedders stores may use. `wake` is called when there is new background work
        (ingestion or re-embedding: the ingestion worker's `wake`)."""
        self.tables = VectorStoreTables(db)
        self.files = files
        self.indexes = indexes
        self.embedders = embedders
        self.wake = wake
        self._touched: dict[str, int] = {}

    # ---- vector stores ----------------------------------------------------------------------------

    def _store_row(self, store_id: str, param: str = "vector_store_id") -> Any:
        row = self.tables.store(store_id)
        if row is None:
            raise not_found(f"No vector store found with id '{store_id}'.", param, "vector_store_not_found")
        return row

    def embedder(self, name: str | None = None, param: str = "embedding_model") -> Embedder:
        """The loaded embedder `name` (default: the server's). Raises 400 `param` for an unknown name,
        500-free 400 `embedder_unavailable` when its package or files are missing."""
        if name is not None and not name.strip():
            raise bad_request("embedding_model must not be empty; leave it out for the default.", param)
        name = name or self.embedders.default
        if name not in self.embedders.names:
            raise bad_request(
                f"Unknown embedding model '{name}'; this server offers {', '.join(self.embedders.names)}.",
                param,
                "model_not_found",
            )
        try:
            return self.embedders.get(name)
        except (OSError, RuntimeError) as exc:  # ProvisionError is a RuntimeError
            raise bad_request(
                f"The embedder '{name}' cannot be loaded: {exc}", param, "embedder_unavailable"
            ) from exc

    def _chunking(
        self, strategy: dict[str, Any] | None, window: int, param: str = "chunking_strategy"
    ) -> dict[str, Any]:
        """`window`: text tokens the store's embedder reads at once (`auto` chunks fit it)."""
        try:
            resolved = resolve_chunking(strategy, window)
        except ValueError as exc:
            raise bad_request(str(exc), param) from exc
        return {
            "type": "static",
            "static": {
                "max_chunk_size_tokens": resolved.max_chunk_size_tokens,
                "chunk_overlap_tokens": resolved.chunk_overlap_tokens,
            },
        }

    def store_object(self, row: Any) -> VectorStore:
        counts = self.tables.file_counts(row["id"])
        reindex = None
        if row["reindex_model"]:
            done, total = self.tables.reindex_progress(row["id"])
            reindex = Reindex(
                embedding_model=row["reindex_model"],
                status="in_progress",
                chunks_done=done,
                chunks_total=total,
            )
        elif row["reindex_error"]:
            error = json.loads(row["reindex_error"])
            reindex = Reindex(
                embedding_model=error["embedding_model"], status="failed", last_error=error["message"]
            )
        return VectorStore(
            id=row["id"],
            created_at=row["created_at"],
            name=row["name"],
            usage_bytes=self.tables.usage_bytes(row["id"]),
            file_counts=counts,
            status="in_progress" if counts["in_progress"] or row["reindex_model"] else "completed",
            last_active_at=row["last_active_at"],
            metadata=json.loads(row["metadata"]),
            embedding_model=row["embedding_model"],
            embedding_dimension=row["embedding_dimension"],
            reindex=reindex,
        )

    def create(self, body: CreateVectorStore) -> VectorStore:
        """A new store; its `file_ids` are attached (and queued for ingestion) at once.

        Raises 400 `chunking_strategy` (bad sizes), 404/400 `file_ids` (unknown file, or not a document),
        400 `embedding_model` (unknown embedder, or one that cannot be loaded)."""
        embedder = self.embedder(body.embedding_model)
        chunking = self._chunking(body.chunking_strategy, embedder.window) if body.chunking_strategy else None
        for file_id in body.file_ids:
            self._document_file(file_id, "file_ids")
        store_id = new_id("vs_")
        self.tables.insert_store(
            store_id,
            body.name,
            body.metadata or {},
            chunking,
            (embedder.name, embedder.version, embedder.dimension),
        )
        for file_id in body.file_ids:
            self.attach(store_id, AttachFile(file_id=file_id))
        return self.get(store_id)

    def get(self, store_id: str) -> VectorStore:
        """Raises 404 `vector_store_id` for an unknown id."""
        return self.store_object(self._store_row(store_id))

    def list(self, page: Page) -> ListPage[VectorStore]:
        return paginate([self.store_object(r) for r in self.tables.stores()], page)

    def update(self, store_id: str, body: UpdateVectorStore) -> VectorStore:
        """Rename (a `name` given as null clears it), replace the metadata, and/or change the embedder:
        another one re-embeds the chunks in the background, the current one cancels a re-embedding under way.
        Raises 404 `vector_store_id`, 400 `embedding_model`."""
        row = self._store_row(store_id)
        name = body.name if "name" in body.model_fields_set else row["name"]
        metadata = body.metadata if body.metadata is not None else json.loads(row["metadata"])
        if body.embedding_model is not None:
            embedder = self.embedder(body.embedding_model)
            if embedder.name == row["embedding_model"]:
                if row["reindex_model"]:
                    self.tables.request_reindex(store_id, None)
            elif embedder.name != row["reindex_model"]:
                self.tables.request_reindex(store_id, embedder.name)
                if self.wake:
                    self.wake()
        self.tables.update_store(store_id, name, metadata)
        return self.get(store_id)

    def delete(self, store_id: str) -> DeletedObject:
        """The store, its attachments, chunks and index files go; the uploaded files stay."""
        self._store_row(store_id)
        self.tables.delete_store(store_id)
        self.indexes.drop(store_id)
        return DeletedObject(id=store_id, object="vector_store.deleted")

    # ---- files in a store ---------------------------------------------------------------------------

    def _window(self, store: Any) -> int:
        """The text tokens the store's embedder reads at once (its model's, even when not loaded here:
        then 254, MiniLM's)."""
        try:
            return self.embedders.get(store["embedding_model"]).window
        except (KeyError, OSError, RuntimeError):
            return 254

    def _document_file(self, file_id: str, param: str = "file_id") -> Any:
        return self.files.require(file_id, DOCUMENT_PURPOSES, param)

    def _vs_file_row(self, store_id: str, file_id: str) -> Any:
        row = self.tables.file(store_id, file_id)
        if row is None:
            raise not_found(f"No file '{file_id}' in vector store '{store_id}'.", "file_id", "file_not_found")
        return row

    def vs_file_object(self, row: Any) -> VectorStoreFile:
        completed = row["status"] == "completed"
        return VectorStoreFile(
            id=row["file_id"],
            usage_bytes=(
                self.tables.usage_bytes(row["vector_store_id"], row["sha256"], row["chunking_key"])
                if completed
                else 0
            ),
            created_at=row["created_at"],
            vector_store_id=row["vector_store_id"],
            status=row["status"],
            last_error=json.loads(row["last_error"]) if row["last_error"] else None,
            chunking_strategy=json.loads(row["chunking"]),
            attributes=json.loads(row["attributes"]),
            parse=self._parse_summary(row) if completed else None,
        )

    def _parse_summary(self, row: Any) -> dict[str, Any] | None:
        parsed = self.tables.parsed_document(row["vector_store_id"], row["sha256"], row["chunking_key"])
        return json.loads(parsed["report"]) if parsed is not None else None

    def attach(self, store_id: str, body: AttachFile, batch_id: str | None = None) -> VectorStoreFile:
        """Queue a file for ingestion into the store (attaching it again only changes the attributes given).

        Chunking: the body's, else the store's, else the embedder's default. Raises 404
        `vector_store_id`, 404/400 `file_id` (unknown, or not uploaded for assistants/user_data)."""
        store = self._store_row(store_id)
        file = self._document_file(body.file_id)
        if body.chunking_strategy or not store["chunking"]:
            chunking = self._chunking(body.chunking_strategy, self._window(store))
        else:
            chunking = json.loads(store["chunking"])
        self.tables.attach(store_id, body.file_id, file["sha256"], body.attributes, chunking, batch_id)
        if self.wake:
            self.wake()
        return self.get_file(store_id, body.file_id)

    def get_file(self, store_id: str, file_id: str) -> VectorStoreFile:
        self._store_row(store_id)
        return self.vs_file_object(self._vs_file_row(store_id, file_id))

    def list_files(
        self, store_id: str, status: str | None, page: Page, batch_id: str | None = None
    ) -> ListPage[VectorStoreFile]:
        """The store's files (of one batch if given), optionally of one status (400 `filter` if unknown)."""
        self._store_row(store_id)
        if status and status not in STATUSES:
            raise bad_request(f"filter must be one of {', '.join(STATUSES)}", "filter")
        rows = self.tables.files(store_id, status, batch_id)
        return paginate([self.vs_file_object(r) for r in rows], page)

    def update_file(self, store_id: str, file_id: str, body: UpdateFileAttributes) -> VectorStoreFile:
        self._vs_file_row(store_id, file_id)
        self.tables.set_attributes(store_id, file_id, body.attributes or {})
        return self.get_file(store_id, file_id)

    def detach(self, store_id: str, file_id: str) -> DeletedObject:
        """Remove the file from the store (its chunks too, unless a twin file shares them)."""
        self._store_row(store_id)
        self._vs_file_row(store_id, file_id)
        detach(self.tables.db, self.indexes, store_id, file_id)
        return DeletedObject(id=file_id, object="vector_store.file.deleted")

    def file_content(self, store_id: str, file_id: str) -> VectorStoreFileContentPage:
        """The file's parsed text, as read before chunking (no parts until it is ingested); for files
        ingested before ragtune kept the parsed text, its chunks in order."""
        row = self._vs_file_row(store_id, file_id)
        if row["status"] != "completed":
            return VectorStoreFileContentPage(data=[])
        parsed = self.tables.parsed_document(store_id, row["sha256"], row["chunking_key"])
        if parsed is not None:
            return VectorStoreFileContentPage(data=[TextContent(text=parsed["text"])])
        texts = self.tables.chunk_texts(store_id, row["sha256"], row["chunking_key"])
        return VectorStoreFileContentPage(data=[TextContent(text=t) for t in texts])

    # ---- batches ----------------------------------------------------------------------------------

    def batch_object(self, row: Any) -> VectorStoreFileBatch:
        counts = self.tables.file_counts(row["vector_store_id"], row["id"])
        if counts["in_progress"]:
            status = "in_progress"
        elif row["cancelled"]:
            status = "cancelled"
        elif counts["failed"] and not counts["completed"]:
            status = "failed"
        else:
            status = "completed"
        return VectorStoreFileBatch(
            id=row["id"],
            created_at=row["created_at"],
            vector_store_id=row["vector_store_id"],
            status=status,
            file_counts=counts,
        )

    def _batch_row(self, store_id: str, batch_id: str) -> Any:
        row = self.tables.batch(store_id, batch_id)
        if row is None:
            raise not_found(f"No file batch '{batch_id}' in vector store '{store_id}'.", "batch_id")
        return row

    def create_batch(self, store_id: str, body: CreateFileBatch) -> VectorStoreFileBatch:
        """Attach many files at once; every file is checked before any is attached (400/404 `file_ids`)."""
        self._store_row(store_id)
        if bool(body.file_ids) == bool(body.files):
            raise bad_request("Give exactly one of 'file_ids' or 'files'.", "file_ids")
        items = body.files or [
            AttachFile(file_id=f, attributes=body.attributes, chunking_strategy=body.chunking_strategy)
            for f in body.file_ids or []
        ]
        for item in items:
            self._document_file(item.file_id, "file_ids")
        if body.chunking_strategy:
            self._chunking(body.chunking_strategy, self._window(self._store_row(store_id)))
        batch_id = new_id("vsfb_")
        self.tables.insert_batch(store_id, batch_id)
        for item in items:
            attach = AttachFile(
                file_id=item.file_id,
                attributes=item.attributes or body.attributes,
                chunking_strategy=item.chunking_strategy or body.chunking_strategy,
            )
            self.attach(store_id, attach, batch_id)
        return self.get_batch(store_id, batch_id)

    def get_batch(self, store_id: str, batch_id: str) -> VectorStoreFileBatch:
        return self.batch_object(self._batch_row(store_id, batch_id))

    def cancel_batch(self, store_id: str, batch_id: str) -> VectorStoreFileBatch:
        """Files of the batch not yet ingested become `cancelled`; those done stay."""
        self._batch_row(store_id, batch_id)
        self.tables.cancel_batch(batch_id)
        return self.get_batch(store_id, batch_id)

    # ---- search -----------------------------------------------------------------------------------

    def check(self, store_ids: Sequence[str], ranker: str | None = None, param: str = "") -> str:
        """Check a search before running it: every store exists (each looked up once) and the ranker is
        known. Returns the ranker's canonical name (`hybrid`, `dense` or `bm25`).

        `param` is the request field that holds the search (`file_search` in chat and profiles,
        `arms[2].file_search` in comparisons; "" for the body of `/v1/vector_stores/{id}/search`), so the
        errors name the client's own field: 404 `vector_store_not_found` with `<param>.vector_store_ids`
        (`vector_store_id` for the store in the path) and 400 `<param>.ranking_options.ranker`."""
        for store_id in store_ids:
            self._store_row(store_id, f"{param}.vector_store_ids" if param else "vector_store_id")
        try:
            return normalise_ranker(ranker)
        except ValueError as exc:
            field = f"{param}.ranking_options.ranker" if param else "ranking_options.ranker"
            raise bad_request(str(exc), field) from exc

    def search(self, store_ids: Sequence[str], query: SearchQuery, param: str = "") -> list[SearchHit]:
        """The top `query.max_num_results` chunks over the stores, best first (blocking: call it from a
        thread). The stores' rankings are interleaved rank by rank (scores of different stores' indexes
        are not comparable). The one search of `/search`, chat RAG and comparisons; errors as in `check`."""
        ranker = self.check(store_ids, query.ranker, param)
        vectors: dict[str, np.ndarray] = {}  # the query embedded once per embedder, whatever the stores
        rankings = [self._search_store(s, query, ranker, vectors, param) for s in store_ids]
        merged = [(rank, n, hit) for n, hits in enumerate(rankings) for rank, hit in enumerate(hits)]
        return [hit for _, _, hit in sorted(merged, key=lambda t: (t[0], t[1]))][: query.max_num_results]

    def _search_store(
        self, store_id: str, query: SearchQuery, ranker: str, vectors: dict[str, np.ndarray], param: str
    ) -> list[SearchHit]:
        files = self._searchable_files(store_id, query.filters)
        if not files:
            return []
        allowed = None
        if query.filters is not None:
            allowed = np.array(self.tables.chunk_ids(store_id, list(files)), dtype=np.int64)
        retriever = self.indexes.get(store_id)
        model = retriever.embedding_model  # the embedder of the vectors this index holds
        vector = vectors.get(model)
        relevance = self.embedder(model).relevance if model in self.embedders.names else None
        if vector is None:
            if model in self.embedders.names:
                vector = vectors[model] = self.embedder(model).embed([query.text], input_type="query")[0]
            elif ranker == "bm25":
                vector = np.zeros(retriever.dense.dimension, dtype=np.float32)  # relevance from BM25 alone
            else:
                raise bad_request(
                    f"Vector store '{store_id}' was embedded with '{model}', which this server does not "
                    f"offer ({', '.join(self.embedders.names)}): search it with ranker 'bm25', start the "
                    f"server with that embedder, or re-embed it (POST /v1/vector_stores/{store_id} with "
                    "embedding_model).",
                    f"{param}.vector_store_ids" if param else "vector_store_id",
                    "embedder_unavailable",
                )
        found = retriever.search(
            vector, terms(query.text), query.max_num_results, ranker, allowed, relevance, query.weights
        )
        found = [h for h in found if h.score >= query.score_threshold]
        rows = self.tables.chunks(store_id, [h.id for h in found])
        hits = []
        for hit in found:
            row = rows.get(hit.id)  # a chunk deleted since the index was read is never returned
            file = files.get((row["sha256"], row["chunking_key"])) if row is not None else None
            if file is None:
                continue
            hits.append(
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
        if found:
            self._touch(store_id)
        return hits

    def _touch(self, store_id: str) -> None:
        """Record activity, at most once a minute per store: a write per search would cost more than it."""
        if now() - self._touched.get(store_id, 0) >= 60:
            self._touched[store_id] = now()
            self.tables.touch(store_id)

    def _searchable_files(
        self, store_id: str, filters: dict[str, Any] | None
    ) -> dict[tuple[str, str], dict[str, Any]]:
        """(sha256, chunking key) → the first completed file with those bytes and chunking whose
        attributes pass the filters."""
        found: dict[tuple[str, str], dict[str, Any]] = {}
        for row in self.tables.completed_files(store_id):
            attributes = json.loads(row["attributes"])
            document = (row["sha256"], row["chunking_key"])
            if document in found or (filters is not None and not filter_grammar.matches(filters, attributes)):
                continue
            found[document] = {
                "file_id": row["file_id"],
                "filename": row["filename"],
                "attributes": attributes,
            }
        return found
