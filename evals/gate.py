"""Regression gate for CI: a comparison report against a baseline report, paired question by question."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from evals.report import METRICS
from evals.stats import paired

LOWER_IS_BETTER = frozenset({"abstained"})


def parse_metrics(specs: Iterable[str], also: Iterable[str] = ()) -> list[str]:
    """Metric names from repeated and/or comma-separated values (`["f1,exact_match", "rouge_l"]`), in
    order, without duplicates.

    Raises:
        ValueError: a name is not a per-question metric of evals/report.py `METRICS` or of `also` (an
            eval's graders; the message lists the known ones), or no name is given.
    """
    names = list(dict.fromkeys(n.strip() for spec in specs for n in spec.split(",") if n.strip()))
    if not names:
        raise ValueError(f"no metric given; known metrics: {', '.join(METRICS)}")
    check_metrics(names, also)
    return names


def check_metrics(metrics: Sequence[str], also: Iterable[str] = ()) -> None:
    """Raise ValueError naming the unknown metrics and listing the known ones (`METRICS`, then `also`:
    metrics of an eval's own graders), if any is unknown."""
    known = [*METRICS, *(m for m in dict.fromkeys(also) if m not in METRICS)]
    unknown = [m for m in metrics if m not in known]
    if unknown:
        raise ValueError(f"unknown metric {', '.join(map(repr, unknown))}; known metrics: {', '.join(known)}")


def match_rows(report: dict, baseline: dict) -> tuple[list[tuple[dict, dict]], int]:
    """Pair the per-question rows of two reports on question text plus reference, whatever their order.

    A question asked twice is paired occurrence by occurrence. Returns `(pairs, unmatched)`: `pairs` is
    a list of `(current_row, baseline_row)`; `unmatched` counts the rows of either report left without a
    counterpart.
    """
    waiting: dict[str, list[dict]] = defaultdict(list)
    for row in baseline["rows"]:
        waiting[_row_key(row)].append(row)
    pairs, unmatched = [], 0
    for row in report["rows"]:
        candidates = waiting.get(_row_key(row))
        if candidates:
            pairs.append((row, candidates.pop(0)))
        else:
            unmatched += 1
    return pairs, unmatched + sum(len(rows) for rows in waiting.values())


def regressions(
    report: dict,
    baseline: dict,
    metrics: Sequence[str],
    level: float = 0.95,
    arm_map: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Each shared arm of `report` (the current run) against `baseline`, per metric, on paired questions.

    Rows are matched on question text plus reference (see `match_rows`); for each (arm, metric) the
    per-question values of both runs, taken where both scored that metric, feed `evals.stats.paired`
    (current − baseline: bootstrap CI at `level`, sign-flip permutation p-value).

    Every metric is higher-is-better except `abstained`, which is lower-is-better: it regressed when it
    rose with the interval above 0 (`ci_low > 0`); the others regressed when they fell with the interval
    below 0 (`ci_high < 0`); either way the paired permutation test must also give p < 1 - `level` (the
    percentile bootstrap alone is anti-conservative on a few questions). `missing` is True when the
    baseline scored the metric for the arm and this run did not (retrieval lost, say). `mean_diff`,
    `ci_low` and `ci_high` are always current − baseline, in the metric's unit (a fraction in [0, 1]);
    `wins` counts questions where the current run is better (for
    `abstained`: lower), `losses` where it is worse.

    Args:
        report, baseline: reports as `evals.report.build_report` makes them (`arms`, `rows`).
        metrics: per-question metric names from evals/report.py `METRICS`, or of the eval's graders
            (any metric either report's arms scored).
        level: confidence level of the intervals, in (0, 1).
        arm_map: current arm name -> baseline arm name, for arms renamed between the runs; arms not in it
            are paired by equal name.

    Returns:
        One record per (arm, metric), arms in the current report's order: `{"arm", "baseline_arm",
        "metric", "n_paired", "unmatched", "mean_diff", "ci_low", "ci_high", "wins", "ties", "losses",
        "p_value", "regressed", "missing"}`. `n_paired` is the number of questions where both runs scored
        the metric
        (0 gives NaN statistics and `regressed` False); `unmatched` the rows found in one report only.

    Raises:
        ValueError: an unknown metric, `level` outside (0, 1), an `arm_map` entry naming an arm missing
            from its report, no arm shared by both reports, or no question found in both.
    """
    scored = (name for r in (report, baseline) for arm in r["arms"].values() for name in arm["metrics"])
    check_metrics(metrics, scored)  # the built-in metrics, and those of the eval's graders
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), not {level}")
    arms = _shared_arms(report, baseline, arm_map or {})
    pairs, unmatched = match_rows(report, baseline)
    if not pairs:
        raise ValueError(
            "no question of the report is in the baseline (rows are matched on question text and reference)"
        )
    records = []
    for arm, base_arm in arms:
        for metric in metrics:
            values = [
                (now[metric], then[metric])
                for current, old in pairs
                if metric in (now := current["answers"][arm]["metrics"])
                and metric in (then := old["answers"][base_arm]["metrics"])
            ]
            stats = _compare([v[0] for v in values], [v[1] for v in values], metric, level)
            before = any(metric in old["answers"][base_arm]["metrics"] for _, old in pairs)
            scored = any(metric in current["answers"][arm]["metrics"] for current, _ in pairs)
            stats["missing"] = before and not scored  # the baseline had it; this run lost it
            records.append(
                {
                    "arm": arm,
                    "baseline_arm": base_arm,
                    "metric": metric,
                    "n_paired": len(values),
                    "unmatched": unmatched,
                    **stats,
                }
            )
    return records


def is_improvement(record: dict) -> bool:
    """Whether a record of `regressions` shows the current run better, with the interval excluding 0."""
    if record["metric"] in LOWER_IS_BETTER:
        return record["ci_high"] < 0
    return record["ci_low"] > 0


def _compare(current: list[float], old: list[float], metric: str, level: float) -> dict[str, Any]:
    if not current:
        nan = float("nan")
        return {
            "mean_diff": nan,
            "ci_low": nan,
            "ci_high": nan,
            "wins": 0,
            "ties": 0,
            "losses": 0,
            "p_value": nan,
            "regressed": False,
        }
    stats = paired(current, old, level)
    # The percentile bootstrap is anti-conservative on a few questions (4 questions gave an interval
    # below 0 with p = 0.25), so a regression also needs the permutation test at the same level.
    significant = stats["p_value"] < 1 - level
    if metric in LOWER_IS_BETTER:  # a rise is worse: a question where it rose is a loss
        stats["wins"], stats["losses"] = stats["losses"], stats["wins"]
        return {**stats, "regressed": stats["ci_low"] > 0 and significant}
    return {**stats, "regressed": stats["ci_high"] < 0 and significant}


def _shared_arms(report: dict, baseline: dict, arm_map: dict[str, str]) -> list[tuple[str, str]]:
    for arm, base_arm in arm_map.items():
        if arm not in report["arms"]:
            raise ValueError(
                f"arm_map names arm {arm!r}, which the report lacks (it has {list(report['arms'])})"
            )
        if base_arm not in baseline["arms"]:
            raise ValueError(
                f"arm_map names baseline arm {base_arm!r}, which the baseline lacks "
                f"(it has {list(baseline['arms'])})"
            )
    arms = [(arm, arm_map.get(arm, arm)) for arm in report["arms"]]
    shared = [(arm, base_arm) for arm, base_arm in arms if base_arm in baseline["arms"]]
    if not shared:
        raise ValueError(
            f"no arm is in both reports (report: {list(report['arms'])}, baseline: {list(baseline['arms'])})"
        )
    return shared


def _row_key(row: dict) -> str:
    return json.dumps([row["question"], row["reference"]], ensure_ascii=False)
