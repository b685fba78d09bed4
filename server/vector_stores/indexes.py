"""One Retriever per vector store, opened lazily and reconciled with SQLite (the source of truth).

Each opened retriever carries `embedding_model`, the embedder of the vectors it was built from, read
in the same step: a search embeds its query with that embedder, so a store re-embedded meanwhile
never has a query of one embedder compared with vectors of another."""

from __future__ import annotations

import json
import logging
import re
import threading
from pathlib import Path

import numpy as np

from retrieval.retriever import Retriever, remove_index
from server.storage.db import Database

log = logging.getLogger("ragtune.indexes")


class IndexRegistry:
    def __init__(self, db: Database, directory: Path) -> None:
        self.db = db
        self.directory = directory
        self._open: dict[str, Retriever] = {}
        self._dirty: set[str] = set()
        self._lock = threading.Lock()

    def get(self, store_id: str) -> Retriever:
        with self._lock:
            retriever = self._open.get(store_id)
            if retriever is None:
                store = self.db.one(
                    "SELECT embedding_model, embedding_dimension FROM vector_stores WHERE id = ?", (store_id,)
                )
                model, dimension = (store[0], store[1]) if store is not None else ("", 0)
                retriever, rebuilt = Retriever.load_or_rebuild(
                    self._path(store_id, model),
                    dimension,
                    lambda: self._terms(store_id),
                    lambda: self._vectors(store_id, dimension),
                    model,
                )
                if rebuilt:
                    log.info("rebuilt the index of %s from %d stored chunks", store_id, len(retriever.dense))
                self._open[store_id] = retriever
            return retriever

    def add(self, store_id: str, ids: list[int], vectors: np.ndarray) -> None:
        self.get(store_id).add(np.asarray(ids, dtype=np.int64), vectors)
        self._dirty.add(store_id)

    def remove(self, store_id: str, ids: list[int]) -> None:
        if ids:
            self.get(store_id).remove(np.asarray(ids, dtype=np.int64))
            self.save(store_id)

    def drop(self, store_id: str) -> None:
        """Forget the store's index and delete its files (it is rebuilt from SQLite if opened again)."""
        with self._lock:
            self._open.pop(store_id, None)
            self._dirty.discard(store_id)
            remove_index(self.directory / store_id)

    def _path(self, store_id: str, model: str) -> Path:
        """Index files live per embedder: a crash between a re-embedding's commit and the removal of the
        old index cannot leave the old embedder's vectors to be loaded as the new one's."""
        return self.directory / store_id / re.sub(r"[^A-Za-z0-9._-]", "_", model or "default")

    def save(self, store_id: str) -> None:
        retriever = self.get(store_id)
        path = self._path(store_id, retriever.embedding_model)
        path.mkdir(parents=True, exist_ok=True)
        retriever.save(path)
        self._dirty.discard(store_id)

    def flush(self) -> None:
        """Persist changed dense indexes and warm their BM25 (when ingestion goes idle)."""
        for store_id in list(self._dirty):
            self.save(store_id)
            self.get(store_id).lexical()

    def _terms(self, store_id: str) -> tuple[list[int], list[list[str]]]:
        rows = self.db.query(
            "SELECT id, terms FROM chunks WHERE vector_store_id = ? ORDER BY id", (store_id,)
        )
        return [r["id"] for r in rows], [json.loads(r["terms"]) for r in rows]

    def _vectors(self, store_id: str, dimension: int) -> tuple[np.ndarray, np.ndarray]:
        rows = self.db.query(
            "SELECT id, embedding FROM chunks WHERE vector_store_id = ? ORDER BY id", (store_id,)
        )
        ids = np.array([r["id"] for r in rows], dtype=np.int64)
        vectors = np.frombuffer(b"".join(r["embedding"] for r in rows), dtype=np.float32)
        return ids, vectors.reshape(len(rows), dimension)
