"""BM25 (bm25s) over script-aware terms: jieba segments Han, kana runs and identifiers stay whole."""

from __future__ import annotations

import logging
import re
import unicodedata

import numpy as np

_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_HIRAGANA = "\u3040-\u309f"
_KATAKANA = "\u30a0-\u30ff\u31f0-\u31ff\uff66-\uff9f"
_LETTER = rf"[^\W_{_HAN}{_HIRAGANA}{_KATAKANA}]"
# One pass over the text, script by script: a run of Han (segmented by jieba), a run of kana (a word:
# katakana loanwords such as サーバー), or a Latin/digit token that keeps what makes it an identifier:
# inner `_ . - /` (max_retry_count, 2.4.1, utf-8) and a trailing `+`/`#` (C++, C#); anything else in \w.
_RUN = re.compile(
    rf"(?P<han>[{_HAN}]+)"
    rf"|(?P<kana>[{_KATAKANA}]+|[{_HIRAGANA}]+)"
    rf"|(?P<word>_*{_LETTER}+(?:[_.\-/]{_LETTER}+)*[+#]*)",
    re.UNICODE,
)
_PARTS = re.compile(rf"{_LETTER}+", re.UNICODE)
_STOP_WORDS = (
    "a an and are as at be but by for from has have how i in is it its of on or that the this to was what "
    "when where which who why will with you your 的 了 是 在 和 与 及 或 也 就 都 而 之 吗 呢 吧 啊"
)
_STOP = frozenset(_STOP_WORDS.split())


def terms(text: str) -> list[str]:
    """Index terms of `text`, the same function for a chunk and for a query, whatever the script mix.

    NFKC and lower case, then one pass over the text by script: a Han run is segmented by jieba (search
    mode: words and their sub-words); a katakana or hiragana run is one term (サーバー, バックアップ);
    a Latin/digit token keeps what makes it an identifier (max_retry_count, 2.4.1, utf-8, C++, C#) and
    also gives its parts (max, retry, count), so prose that says "retry count" finds it too. Stop words
    are dropped. Terms are stored with each chunk: changing what this returns needs a migration step that
    recomputes them (server/storage/migrations.py, step 3)."""
    text = unicodedata.normalize("NFKC", text).lower()
    out = []
    for match in _RUN.finditer(text):
        if match.lastgroup == "han":
            import jieba

            jieba.setLogLevel(logging.WARNING)
            out.extend(jieba.lcut_for_search(match.group()))
        elif match.lastgroup == "kana":
            out.append(match.group())
        else:
            word = match.group()
            out.append(word)
            parts = _PARTS.findall(word)
            if len(parts) > 1:
                out.extend(parts)
    return [w for w in out if w and w not in _STOP]


_CJK = re.compile(f"[{_HAN}{_HIRAGANA}{_KATAKANA}]")


def script_group(chunk_terms: list[str]) -> str:
    """`"cjk"` when Han or kana characters are at least 15% of the characters of a chunk's terms, else
    `"other"`: the language groups whose cosine offsets `Retriever` corrects (see its docstring). 15%:
    Chinese prose full of identifiers (a CUDA error code, `lora_alpha`) still has about 30% (the terms
    repeat an identifier's parts); English prose quoting a Chinese word has a few percent."""
    text = "".join(chunk_terms)
    cjk = len(_CJK.findall(text))
    return "cjk" if text and cjk >= 0.15 * len(text) else "other"


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

    def coverage(self, query_terms: list[str], ids: list[int]) -> dict[int, float]:
        """For each chunk id, the idf-weighted share of the query's distinct terms it holds, in [0, 1]:
        1.0 when it holds them all. A term no chunk holds weighs the most (idf with df = 0), so a query
        naming something absent scores low everywhere. idf is BM25's, log(1 + (N - df + 0.5) / (df + 0.5))."""
        unique = list(dict.fromkeys(query_terms))
        if not unique or not len(self):
            return dict.fromkeys(ids, 0.0)
        rows = [self.position.get(int(i)) for i in ids]
        n = len(self)
        total, held = 0.0, np.zeros(len(ids))
        for term in unique:
            present = self.bm25.get_scores([term]) > 0 if term in self.bm25.vocab_dict else np.zeros(n, bool)
            df = int(present.sum())
            idf = float(np.log(1.0 + (n - df + 0.5) / (df + 0.5)))
            total += idf
            held += idf * np.array([bool(present[r]) if r is not None else False for r in rows])
        return {int(i): float(h / total) for i, h in zip(ids, held, strict=True)}

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
