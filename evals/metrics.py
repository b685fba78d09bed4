"""Answer metrics for comparisons: SQuAD-style exact match and token F1, ROUGE-L, retrieval hit@k and
MRR, faithfulness to the retrieved context, abstention. CJK text is scored per character.

SQuAD's normalisation drops every non-ASCII-alphanumeric character's neighbours by whitespace only,
which scores a Chinese answer as one token; here CJK characters are tokens of their own (as CMRC and
DuReader score), Latin text is split into words. ROUGE-L is computed on the same tokens (the
`rouge-score` package drops CJK characters, so it is not used).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

# Moved to common/ so fine-tuning scores epochs with the very metrics comparisons report.
from common.answer_metrics import exact_match, f1, normalize, tokens  # noqa: F401

_STOP = frozenset(
    "a an and are as at be by for from has have in is it its of on or that the this to was were will with "
    "的 了 是 在 和 与 及 或".split()
)
ABSTAIN = re.compile(
    r"(i (do not|don't|cannot|can't) (know|find|answer)|not (mentioned|stated|found|provided|specified|"
    r"available|given|in the (documents?|sources?|context|knowledge base))|"
    r"(documents?|sources?|context) do(es)? not (say|contain|mention)|"
    r"no (relevant )?(information|source)|unable to (answer|find)|"
    r"不知道|无法回答|没有(提到|相关|找到)|未提及)",
    re.IGNORECASE,
)


def _lcs(a: list[str], b: list[str]) -> int:
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[-1]))
        previous = current
    return previous[-1]


def rouge_l(prediction: str, references: Sequence[str]) -> float:
    """ROUGE-L F-measure (beta = 1) on the same tokens as F1, best over the references."""
    best = 0.0
    pred = tokens(prediction)
    for ref in references:
        target = tokens(ref)
        lcs = _lcs(pred, target)
        if lcs:
            precision, recall = lcs / len(pred), lcs / len(target)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


SOURCE_MATCH_RULE = (
    "A retrieved chunk matches the reference when it is from the reference file (reference_file_id), or "
    "when its full text shares a contiguous run of tokens with the reference passage's answer-bearing part "
    "(reference_quote's sentences that contain a reference answer; the whole passage when none does) at "
    "least half as long as the shorter of the two (and at least 5 tokens, or the whole part if shorter). "
    "Tokens are the F1 tokens (CJK characters one by one), so whitespace, punctuation and chunk "
    "boundaries do not matter: a passage longer than a chunk matches the chunks inside it, and one split "
    "across two chunks matches the one holding the larger part."
)
"""Which retrieved chunk counts as the reference, in words; comparison reports carry it."""
MATCH_SHARE = 0.5  # of the shorter of chunk and answer-bearing part, in one run
MIN_RUN = 5  # tokens: a few common words in a row are no match
_SENTENCE = re.compile(r"(?<=[.!?])\s+|(?<=[。！？])")


def answer_span(reference_quote: str, references: Sequence[str] = ()) -> list[str]:
    """Tokens of the answer-bearing part of `reference_quote`: its sentences holding a reference answer
    (normalised containment), else the whole passage. [] for an empty passage."""
    sentences = [t for t in _SENTENCE.split(reference_quote) if t.strip()]
    answers = [normalize(r) for r in references if normalize(r)]
    bearing = [t for t in sentences if any(a in normalize(t) for a in answers)]
    return tokens(" ".join(bearing or sentences))


def longest_common_run(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest run of tokens appearing contiguously in both `a` and `b` (O(len a × len b))."""
    best, previous = 0, [0] * (len(b) + 1)
    for x in a:
        current = [0] * (len(b) + 1)
        for j, y in enumerate(b, start=1):
            if x == y:
                current[j] = previous[j - 1] + 1
                best = max(best, current[j])
        previous = current
    return best


def source_rank(
    sources: Sequence[dict],
    reference_file_id: str | None,
    reference_quote: str | None,
    references: Sequence[str] = (),
) -> int | None:
    """1-based rank of the first retrieved source matching the reference (SOURCE_MATCH_RULE), or None.

    `sources`: dicts with `file_id` and the chunk's full `text` (a citation's `quote` is read only when
    no `text` is given: it is cut at 400 characters). `references`: the item's reference answers, which
    pick the answer-bearing sentences of `reference_quote`."""
    span = answer_span(reference_quote, references) if reference_quote else []
    for rank, source in enumerate(sources, start=1):
        if reference_file_id and source.get("file_id") == reference_file_id:
            return rank
        chunk = tokens(source.get("text") or source.get("quote") or "")
        if span and chunk:
            need = max(math.ceil(MATCH_SHARE * min(len(span), len(chunk))), min(len(span), MIN_RUN))
            if longest_common_run(chunk, span) >= need:
                return rank
    return None


def hit_at_k(rank: int | None, k: int) -> float:
    return float(rank is not None and rank <= k)


def mrr(rank: int | None) -> float:
    return 0.0 if rank is None else 1.0 / rank


def faithfulness(answer: str, contexts: Sequence[str]) -> float | None:
    """Share of the answer's content tokens found in the retrieved context (None: nothing retrieved)."""
    if not contexts:
        return None
    content = [t for t in tokens(answer) if t not in _STOP]
    if not content:
        return 1.0
    available = set(tokens(" ".join(contexts)))
    return sum(t in available for t in content) / len(content)


def abstained(answer: str) -> float:
    return float(bool(ABSTAIN.search(answer)))
