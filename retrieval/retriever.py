"""Hybrid retrieval over one knowledge base: dense (FAISS) and BM25, fused by reciprocal rank fusion.

Hybrid search takes the top max(k, RERANK_POOL) by fusion, orders them by `score` (relevance; fusion
rank breaks ties) and keeps k, so a one-source chat gets the chunk holding every rare term of the
question rather than the one fusion liked for middling ranks in both lists; `dense` and `bm25` return
their own top k in their own order. With `weights` (OpenAI's `ranking_options.hybrid_search`), hybrid
returns the top k of the weighted fusion in fusion order instead: the caller chose the balance, so
relevance does not re-order it (weights (1, 0) give dense's order, (0, 1) BM25's).

The indexes are derived data: SQLite holds every chunk's text, terms and vector, so a missing or stale
index is rebuilt from there. `score` on a hit is its relevance whatever ranker ordered the hits, so one
threshold means the same for every ranker: the better of the chunk's cosine similarity to the query
as the embedder's relevance (`Embedder.relevance`: rescaled from the cosine unrelated text gets, 0.7
for e5, to 1; clipped to [0, 1]) and its lexical coverage (the idf-weighted share of the query's
terms it holds, `LexicalIndex.coverage`). A chunk an English-only embedder misjudges but that holds
the query's rare terms (a part number, an identifier, Chinese words) is not gated away by a cosine
threshold.

Mixed-language stores: a multilingual embedder scores passages in the question's language higher
across the board (multilingual-e5-small gave an English answer 0.84 and unrelated Chinese passages 0.89
for a Chinese question), so in a store of Chinese and English chunks the answer in the other language
was almost never found (tests/test_multilingual_retrieval.py: Chinese questions over English answers,
hit@5 0.06). When a store holds at least `LANGUAGE_GROUP_MIN` chunks of each of two script groups
(`lexical.script_group`: CJK or other), the dense cosines of each group are shifted by that group's
offset: the query's mean cosine to the group with the highest mean, less its mean cosine to this
group (a mean cosine is the query's dot product with the group's centroid, so this costs one dot
product per group). Dense search runs per group and the shifted cosines rank the hits and stand in
for the cosine in `score`: the query's own language is unchanged, the other one is put on its scale.
Measured on the same set with e5: Chinese over English hit@1/hit@5 0.00/0.06 → 0.44/0.88, English over
Chinese 0.29/0.58 → 0.67/0.92, Chinese paraphrases 0.70/0.90 → 0.70/0.85.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retrieval.fusion import reciprocal_rank_fusion
from retrieval.lexical import LexicalIndex, script_group
from retrieval.vector_index import VectorIndex

RANKERS = ("auto", "default-2024-11-15", "hybrid", "dense", "bm25")
LANGUAGE_GROUP_MIN = 5
"""Chunks each of two script groups needs before their cosine offsets are corrected: a group's mean
over fewer is more the chunks' topics than the language's offset."""
RERANK_POOL = 10
"""Fused candidates that relevance re-orders before k are kept (hybrid); 10 = the default result count,
so results at k ≥ 10 hold the same chunks as plain fusion, only ordered by score."""
TermsLoader = Callable[[], tuple[list[int], list[list[str]]]]


@dataclass
class Hit:
    id: int
    score: float  # relevance in [0, 1]: max(the embedder's relevance of the cosine, lexical coverage)
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
        self._members: list[np.ndarray] = []  # chunk ids per script group, read with the BM25 terms
        self._groups: list[tuple[np.ndarray, np.ndarray]] | None = None  # (ids, centroid) per script group
        self._group_of: dict[int, int] = {}  # chunk id -> index into _groups
        self._lock = threading.RLock()

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        with self._lock:
            self.dense.add(ids, vectors)
            self._lexical = None
            self._groups = None

    def remove(self, ids: np.ndarray) -> None:
        with self._lock:
            self.dense.remove(ids)
            self._lexical = None
            self._groups = None

    def lexical(self) -> LexicalIndex:
        with self._lock:
            if self._lexical is None:
                ids, corpus = self._load_terms()
                self._lexical = LexicalIndex(ids, corpus)
                # The script groups come from the same terms (one read of them per change).
                members: dict[str, list[int]] = {}
                for chunk_id, chunk_terms in zip(ids, corpus, strict=True):
                    members.setdefault(script_group(chunk_terms), []).append(chunk_id)
                self._members = [np.asarray(m, dtype=np.int64) for m in members.values()]
            return self._lexical

    def language_groups(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(chunk ids, centroid of their vectors) per script group, when two groups each hold at least
        LANGUAGE_GROUP_MIN chunks; else []."""
        with self._lock:
            if self._groups is None:
                self.lexical()  # reads the terms, and the script groups with them
                groups = self._members
                self._groups, self._group_of = [], {}
                if len(groups) > 1 and all(len(g) >= LANGUAGE_GROUP_MIN for g in groups):
                    self._groups = [(g, self.dense.vectors(g.tolist()).mean(axis=0)) for g in groups]
                    self._group_of = {i: n for n, (g, _) in enumerate(self._groups) for i in g.tolist()}
            return self._groups

    def _dense(
        self, query: np.ndarray, depth: int, allowed: np.ndarray | None
    ) -> tuple[list[tuple[int, float]], Callable[[int], float]]:
        """Dense hits (id, cosine shifted by its group's offset), best first, and the offset of any chunk
        id (0 everywhere when the store is not mixed)."""
        groups = self.language_groups()
        if not groups:
            return self.dense.search(query, depth, allowed), lambda _id: 0.0
        query = np.asarray(query, dtype=np.float32).ravel()
        means = [float(centroid @ query) for _, centroid in groups]
        offsets = [max(means) - mean for mean in means]
        hits: list[tuple[int, float]] = []
        for (members, _), offset in zip(groups, offsets, strict=True):
            subset = members if allowed is None else np.intersect1d(members, allowed)
            hits += [(i, s + offset) for i, s in self.dense.search(query, depth, subset)]
        hits.sort(key=lambda hit: -hit[1])
        group_of = self._group_of
        return hits[:depth], lambda chunk_id: offsets[group_of[chunk_id]] if chunk_id in group_of else 0.0

    def search(
        self,
        query_vector: np.ndarray,
        query_terms: list[str],
        k: int,
        ranker: str = "hybrid",
        allowed: np.ndarray | None = None,
        relevance: Callable[[float], float] | None = None,
        weights: tuple[float, float] | None = None,
    ) -> list[Hit]:
        """The top k hits, best first. `relevance` maps a cosine to relevance in [0, 1] (the embedder's
        `Embedder.relevance`; default: the cosine clipped to [0, 1]). `weights` (dense, BM25; each >= 0,
        not both 0): hybrid's weighted fusion, whose order is kept (see the module docstring); `None`:
        unweighted fusion re-ordered by relevance. Other rankers ignore them."""
        depth = max(4 * k, 50)
        with self._lock:
            dense, offset = (
                self._dense(query_vector, depth, allowed) if ranker in ("hybrid", "dense") else ([], None)
            )
            lexical = (
                self.lexical().search(query_terms, depth, allowed) if ranker in ("hybrid", "bm25") else []
            )
            rerank = ranker == "hybrid" and weights is None
            if ranker == "hybrid":
                ordered = reciprocal_rank_fusion(
                    [[i for i, _ in dense], [i for i, _ in lexical]], weights=weights
                )
            else:
                ordered = dense or lexical
            # Unweighted hybrid: fusion picks a pool of at least RERANK_POOL, relevance orders it, k are kept.
            ordered = ordered[: max(k, RERANK_POOL) if rerank else k]
            cosine = dict(dense)
            missing = [i for i, _ in ordered if i not in cosine]
            if missing:
                vectors = self.dense.vectors(missing)
                raw = (vectors @ np.asarray(query_vector).ravel()).tolist()
                cosine.update(
                    (i, s + (offset(i) if offset else 0.0)) for i, s in zip(missing, raw, strict=True)
                )
            covered = self.lexical().coverage(query_terms, [i for i, _ in ordered])
        relevance = relevance or (lambda c: min(max(c, 0.0), 1.0))
        hits = [Hit(i, max(relevance(cosine[i]), covered[i]), s) for i, s in ordered]
        if rerank:
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
        embedding_model: str = "",
    ) -> tuple[Retriever, bool]:
        """Open the saved index if it holds exactly the chunks SQLite has; else rebuild it from SQLite.

        `embedding_model`: the embedder of the stored vectors. Returns the retriever and whether it was
        rebuilt.
        """
        path = directory / "dense.faiss"
        ids, vectors = load_vectors()
        if path.is_file():
            try:
                dense = VectorIndex.load(path)
                if dense.dimension == dimension and np.array_equal(np.sort(dense.ids()), np.sort(ids)):
                    return cls(dense, load_terms, embedding_model), False
            except RuntimeError:  # unreadable index file: rebuilt below
                pass
        dense = VectorIndex(dimension)
        dense.add(ids, vectors)
        retriever = cls(dense, load_terms, embedding_model)
        retriever.save(directory)
        return retriever, True


def remove_index(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)
