"""Statistics for comparisons: bootstrap confidence intervals and paired tests between arms."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BOOTSTRAP = 2000
SEED = 1234


def mean_ci(values: Sequence[float], level: float = 0.95, seed: int = SEED) -> dict[str, float]:
    """Mean with a percentile-bootstrap confidence interval."""
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        return {"mean": float("nan"), "ci_low": float("nan"), "ci_high": float("nan")}
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(BOOTSTRAP, len(x)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return {"mean": float(x.mean()), "ci_low": float(low), "ci_high": float(high)}


def paired(a: Sequence[float], b: Sequence[float], level: float = 0.95, seed: int = SEED) -> dict[str, float]:
    """Arm a minus arm b on the same questions: mean difference with a bootstrap CI, win/tie/loss counts,
    and a two-sided paired sign-flip permutation test p-value."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape:
        raise ValueError("paired samples must have the same length")
    diff = x - y
    ci = mean_ci(diff, level, seed)
    rng = np.random.default_rng(seed)
    observed = abs(diff.mean()) if len(diff) else 0.0
    signs = rng.choice([-1.0, 1.0], size=(10_000, len(diff)))
    flipped = np.abs((signs * diff).mean(axis=1)) if len(diff) else np.zeros(1)
    p = float((np.sum(flipped >= observed - 1e-12) + 1) / (len(flipped) + 1))
    return {
        "mean_diff": ci["mean"],
        "ci_low": ci["ci_low"],
        "ci_high": ci["ci_high"],
        "wins": int((diff > 0).sum()),
        "ties": int((diff == 0).sum()),
        "losses": int((diff < 0).sum()),
        "p_value": min(p, 1.0),
    }
