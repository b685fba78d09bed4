"""Reciprocal rank fusion (Cormack et al., 2009): score = sum over rankings of w / (k + rank), with a
weight `w` per ranking (1 in the paper; OpenAI's `ranking_options.hybrid_search` weighs the dense and
text rankings)."""

from __future__ import annotations

from collections.abc import Sequence

RRF_K = 60


def reciprocal_rank_fusion(
    rankings: list[list[int]], k: int = RRF_K, weights: Sequence[float] | None = None
) -> list[tuple[int, float]]:
    """(item, fused score) best first, ties by item. `rankings`: item ids, best first (rank 1-based);
    `weights`: one per ranking (>= 0; `None`: all 1). A ranking of weight 0 is left out: its items are
    candidates only through the other rankings, so weights (1, 0) give the first ranking's order."""
    weights = [1.0] * len(rankings) if weights is None else list(weights)
    if len(weights) != len(rankings):
        raise ValueError(f"{len(weights)} weights for {len(rankings)} rankings")
    scores: dict[int, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        if weight == 0:
            continue
        for rank, item in enumerate(dict.fromkeys(ranking), start=1):  # an item counts once per ranking
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
