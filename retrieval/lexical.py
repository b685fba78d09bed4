"""BM25 (bm25s) over CJK-aware terms: jieba segments Chinese, Latin words are lower-cased."""

from __future__ import annotations

import logging
import re
import unicodedata

import numpy as np

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_WORD = re.compile(r"\w+", re.UNICODE)
_STOP_WORDS = (
    "a an and are as at be but by for from has have how i in is it its of on or that the this to was what "
    "when where which who why will with you your 的 了 是 在 和 与 及 或 也 就 都 而 之 吗 呢 吧 啊"
)
_STOP = frozenset(_STOP_WORDS.split())  # noqa: SIM905 - one readable line per language


def terms(text: str) -> list[str]:
    """Index terms of `text`: jieba's search-mode segmentation for CJK, lower-cased words otherwise."""
    text = unicodedata.normalize("NFKC", text).lower()
    if _CJK.search(text):
        import jieba

        jieba.setLogLevel(logging.WARNING)
        words = jieba.lcut_for_search(text)
    else:
        words = _WORD.findall(text)
    return [w for w in (w.strip() for w in words) if w and w not in _STOP and _WORD.match(w)]


class LexicalIndex:
    """BM25 over a fixed corpus; rebuilt (cheaply, from stored terms) when the corpus changes."""

    def __init__(self, ids: list[int], corpus_terms: list[list[str]]) -> None:
        import bm25s

        self.ids = np.asarray(ids, dtype=np.int64)
        self.position = {int(i): n for n, i in enumerate(self.ids)}
        self.bm25 = bm25s.BM25()
        if ids:
            # bm25s needs at least one term per document; an empty one gets a placeholder.
            self.bm25.index([t or ["\u2400"] for t in corpus_terms], show_progress=False)

    def __len__(self) -> int:
        return len(self.ids)

    def search(
        self, query_terms: list[str], k: int, allowed: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        known = [t for t in query_terms if t in self.bm25.vocab_dict] if len(self) else []
        if not known:
            return []
        scores = self.bm25.get_scores(known)
        if allowed is not None:
            mask = np.zeros(len(scores), dtype=bool)
            rows = [self.position[int(i)] for i in allowed if int(i) in self.position]
            mask[rows] = True
            scores = np.where(mask, scores, 0.0)
        k = min(k, int((scores > 0).sum()))
        if k <= 0:
            return []
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(int(self.ids[n]), float(scores[n])) for n in top]
