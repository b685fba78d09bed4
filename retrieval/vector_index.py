"""Exact dense index over normalised vectors: FAISS IndexIDMap2(IndexFlatIP), saved atomically."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

from common.atomic import atomic_path


class VectorIndex:
    def __init__(self, dimension: int, index: faiss.Index | None = None) -> None:
        self.dimension = dimension
        self.index = index or faiss.IndexIDMap2(faiss.IndexFlatIP(dimension))

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self.index.add_with_ids(
                np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64)
            )

    def remove(self, ids: np.ndarray) -> int:
        if not len(ids):
            return 0
        return int(self.index.remove_ids(np.asarray(ids, dtype=np.int64)))

    def ids(self) -> np.ndarray:
        return faiss.vector_to_array(self.index.id_map).astype(np.int64)

    def search(self, query: np.ndarray, k: int, allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        """Top-k (id, inner product); `allowed` restricts the search to those ids."""
        if len(self) == 0 or k <= 0:
            return []
        params = None
        if allowed is not None:
            if not len(allowed):
                return []
            params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(np.asarray(allowed, dtype=np.int64)))
        scores, ids = self.index.search(
            np.asarray(query, dtype=np.float32).reshape(1, -1), min(k, len(self)), params=params
        )
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i != -1]

    def vectors(self, ids: list[int]) -> np.ndarray:
        return (
            np.stack([self.index.reconstruct(int(i)) for i in ids]) if ids else np.zeros((0, self.dimension))
        )

    def save(self, path: Path) -> None:
        """Write to a temporary name and rename, so a crash leaves the old file or the new one."""
        with atomic_path(path) as tmp:
            faiss.write_index(self.index, str(tmp))

    @classmethod
    def load(cls, path: Path) -> VectorIndex:
        index = faiss.read_index(str(path))
        return cls(index.d, index)
