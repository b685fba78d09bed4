"""Answer metrics shared by comparisons (evals/metrics.py) and fine-tuning's per-epoch task score:
SQuAD-style exact match and token F1 with CJK characters as tokens of their own (as CMRC and DuReader
score; SQuAD's normalisation would score a Chinese answer as one token)."""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Sequence

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af]")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation) | set("，。！？；：、“”‘’（）《》【】—…·「」『』")


def normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(" " if ch in _PUNCT else ch for ch in text)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def tokens(text: str) -> list[str]:
    """Words for Latin text, single characters for CJK."""
    out: list[str] = []
    for word in normalize(text).split():
        buffer = ""
        for ch in word:
            if _CJK.match(ch):
                if buffer:
                    out.append(buffer)
                    buffer = ""
                out.append(ch)
            else:
                buffer += ch
        if buffer:
            out.append(buffer)
    return out


def exact_match(prediction: str, references: Sequence[str]) -> float:
    answer = tokens(prediction)
    return float(any(answer == tokens(ref) for ref in references))


def _f1(pred: list[str], ref: list[str]) -> float:
    common = Counter(pred) & Counter(ref)
    same = sum(common.values())
    if not pred or not ref:
        return float(pred == ref)
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def f1(prediction: str, references: Sequence[str]) -> float:
    return max((_f1(tokens(prediction), tokens(ref)) for ref in references), default=0.0)
