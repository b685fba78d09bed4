"""Hybrid retrieval over one knowledge base: dense (FAISS) and BM25, fused by reciprocal rank fusion.

Hybrid search takes the top max(k, RERANK_POOL) by fusion, orders them by `score` (relevance; fusion
rank breaks ties) and keeps k, so a one-source chat gets the chunk holding every rare term of the
question rather than the one fusion liked for middling ranks in both lists; `dense` and `bm25` return
their own top k in their own order.

The indexes are derived data: SQLite holds every chunk's text, terms and vector, so a missing or stale
index is rebuilt from there. `score` on a hit is its relevance whatever ranker ordered the hits, so one
threshold means the same for every ranker: the better of the chunk's cosine similarity to the query
(clipped to [0, 1]) and its lexical coverage (the idf-weighted share of the query's terms it holds,
`LexicalIndex.coverage`). A chunk an English-only embedder misjudges but that holds the query's rare
terms (a part number, an identifier, Chinese words) is not gated away by a cosine threshold.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retrieval.fusion import reciprocal_rank_fusion
from retrieval.lexical import LexicalIndex
from retrieval.vector_index import VectorIndex

RANKERS = ("auto", "default-2024-11-15", "hybrid", "dense", "bm25")
RERANK_POOL = 10
"""Fused candidates that relevance re-orders before k are kept (hybrid); 10 = the default result count,
so results at k ≥ 10 hold the same chunks as plain fusion, only ordered by score."""
TermsLoader = Callable[[], tuple[list[int], list[list[str]]]]


@dataclass
class Hit:
    id: int
    score: float  # relevance in [0, 1]: max(cosine similarity, lexical coverage of the query's terms)
    rank_score: float  # what ordered the hits (RRF, cosine or BM25)


def normalise_ranker(ranker: str | None) -> str:
    if ranker in (None, "auto", "default-2024-11-15", "hybrid"):
        return "hybrid"
    if ranker in ("dense", "bm25"):
        return ranker
    raise ValueError(f"ranker must be one of {', '.join(RANKERS)}")


class Retriever:
    def __init__(self, dense: VectorIndex, load_terms: TermsLoader, embedding_model: str = "") -> None:
        """`embedding_model`: the embedder whose vectors `dense` holds (queries must use the same one)."""
        self.dense = dense
        self.embedding_model = embedding_model
        self._load_terms = load_terms
        self._lexical: LexicalIndex | None = None
        self._lock = threading.RLock()

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        with self._lock:
            self.dense.add(ids, vectors)
            self._lexical = None

    def remove(self, ids: np.ndarray) -> None:
        with self._lock:
            self.dense.remove(ids)
            self._lexical = None

    def lexical(self) -> LexicalIndex:
        with self._lock:
            if self._lexical is None:
                ids, corpus = self._load_terms()
                self._lexical = LexicalIndex(ids, corpus)
            return self._lexical

    def search(
        self,
        query_vector: np.ndarray,
        query_terms: list[str],
        k: int,
        ranker: str = "hybrid",
        allowed: np.ndarray | None = None,
    ) -> list[Hit]:
        depth = max(4 * k, 50)
        with self._lock:
            dense = self.dense.search(query_vector, depth, allowed) if ranker in ("hybrid", "dense") else []
            lexical = (
                self.lexical().search(query_terms, depth, allowed) if ranker in ("hybrid", "bm25") else []
            )
            if ranker == "hybrid":
                ordered = reciprocal_rank_fusion([[i for i, _ in dense], [i for i, _ in lexical]])
            else:
                ordered = dense or lexical
            # Hybrid: fusion picks a pool of at least RERANK_POOL, relevance orders it, k are kept.
            ordered = ordered[: max(k, RERANK_POOL) if ranker == "hybrid" else k]
            cosine = dict(dense)
            missing = [i for i, _ in ordered if i not in cosine]
            if missing:
                vectors = self.dense.vectors(missing)
                cosine.update(
                    zip(missing, (vectors @ np.asarray(query_vector).ravel()).tolist(), strict=True)
                )
            covered = self.lexical().coverage(query_terms, [i for i, _ in ordered])
        hits = [Hit(i, max(min(max(cosine[i], 0.0), 1.0), covered[i]), s) for i, s in ordered]
        if ranker == "hybrid":
            # By relevance, fusion rank breaking ties: a chunk holding every rare term of the query
            # (score 1.0) is not listed below one that fusion liked for its middling rank in both lists
            # (chat keeps the first sources).
            hits.sort(key=lambda hit: -hit.score)  # stable: ties keep the fusion order
        return hits[:k]

    # ---- persistence ------------------------------------------------------------------------------

    def save(self, directory: Path) -> None:
        with self._lock:
            self.dense.save(directory / "dense.faiss")

    @classmethod
    def load_or_rebuild(
        cls,
        directory: Path,
        dimension: int,
        load_terms: TermsLoader,
        load_vectors: Callable[[], tuple[np.ndarray, np.ndarray]],
    ) -> tuple[Retriever, bool]:
        """Open the saved index if it holds exactly the chunks SQLite has; else rebuild it from SQLite.

        Returns the retriever and whether it was rebuilt.
        """
        path = directory / "dense.faiss"
        ids, vectors = load_vectors()
        if path.is_file():
            try:
                dense = VectorIndex.load(path)
                if dense.dimension == dimension and np.array_equal(np.sort(dense.ids()), np.sort(ids)):
                    return cls(dense, load_terms), False
            except RuntimeError:  # unreadable index file: rebuilt below
                pass
        dense = VectorIndex(dimension)
        dense.add(ids, vectors)
        retriever = cls(dense, load_terms)
        retriever.save(directory)
        return retriever, True


def remove_index(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)
