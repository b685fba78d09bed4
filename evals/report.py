"""The comparison report: per-arm metrics with bootstrap CIs, pairwise paired tests, per-question rows."""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np

from evals import metrics as m
from evals.dataset import EvalItem
from evals.stats import mean_ci, paired

METRICS = ("exact_match", "f1", "rouge_l", "hit_at_k", "mrr", "faithfulness", "abstained", "judge")
"""The built-in per-question metrics, in report order; an eval's own graders add theirs after them."""


def mean_metrics(samples: list[dict[str, float]]) -> dict[str, float]:
    """Per metric, the mean over the samples that have it (one answer per sample of a question)."""
    names = list(dict.fromkeys(name for sample in samples for name in sample))
    return {name: float(np.mean([s[name] for s in samples if name in s])) for name in names}


def metric_names(answers: dict[str, list[dict[str, Any]]]) -> list[str]:
    """METRICS, then any other metric an answer has (an eval's graders), in order of first appearance."""
    seen = dict.fromkeys(name for rows in answers.values() for row in rows for name in row.get("metrics", {}))
    return [m for m in METRICS if m in seen] + [m for m in seen if m not in METRICS]


def within_question_sd(rows: list[dict[str, Any]], name: str) -> float | None:
    """Mean over questions of the standard deviation of `name` across a question's samples (None when
    the answers were not sampled more than once): how much a single answer's score is luck."""
    spreads = [
        float(np.std([s["metrics"][name] for s in row["samples"] if name in s["metrics"]]))
        for row in rows
        if len(row.get("samples", ())) > 1
    ]
    return float(np.mean(spreads)) if spreads else None


def judge_pairs(verdicts: list[dict[str, str]]) -> dict[str, Any]:
    """Summary of a pairwise judge on arms a and b, each question judged twice with the answers' order
    swapped (`a_first`: the verdict when a was shown as "A"; `b_first`: when b was): "A", "B" or "tie".

    A question is won by the arm both orders prefer; it is a tie when a verdict was a tie or the two
    disagree. `inconsistent` counts disagreements (the judge picked the same position both times, so it
    judged the position, not the answer); `first_position_rate` is the share of non-tie verdicts that
    picked the answer shown first (0.5 for a judge without position bias); `a_score` is a's mean score
    (win 1, tie 0.5, loss 0) with its bootstrap interval (the MT-Bench convention, Zheng et al. 2023,
    which also introduced asking in both orders)."""
    wins_a = wins_b = ties = inconsistent = first = decided = 0
    scores = []
    for v in verdicts:
        ab, ba = v["a_first"], v["b_first"]
        for verdict in (ab, ba):
            if verdict in ("A", "B"):
                decided += 1
                first += verdict == "A"
        if ab == "A" and ba == "B":
            wins_a, score_a = wins_a + 1, 1.0
        elif ab == "B" and ba == "A":
            wins_b, score_a = wins_b + 1, 0.0
        else:
            ties, score_a = ties + 1, 0.5
            inconsistent += ab == ba and ab in ("A", "B")
        scores.append(score_a)
    return {
        "n": len(verdicts),
        "wins_a": wins_a,
        "wins_b": wins_b,
        "ties": ties,
        "inconsistent": inconsistent,
        "first_position_rate": first / decided if decided else None,
        "a_score": mean_ci(scores),
    }


def score(item: EvalItem, text: str, sources: list[dict], k: int) -> dict[str, float]:
    """Metrics of one answer; retrieval metrics only where the arm retrieved and a reference source exists."""
    out = {
        "exact_match": m.exact_match(text, item.references),
        "f1": m.f1(text, item.references),
        "rouge_l": m.rouge_l(text, item.references),
        "abstained": m.abstained(text),
    }
    if sources is not None and (item.reference_file_id or item.reference_quote):
        rank = m.source_rank(sources, item.reference_file_id, item.reference_quote, item.references)
        out["hit_at_k"], out["mrr"] = m.hit_at_k(rank, k), m.mrr(rank)
    if sources:
        faithful = m.faithfulness(text, [s.get("text") or s.get("quote", "") for s in sources])
        if faithful is not None:
            out["faithfulness"] = faithful
    return out


def build_report(
    items: list[EvalItem],
    arms: list[str],
    answers: dict[str, list[dict[str, Any]]],
    verdicts: dict[tuple[str, str], list[dict[str, str]]] | None = None,
) -> dict:
    """`answers[arm][i]` = {"text", "sources", "latency_ms", "metrics", "completion_tokens"} for items[i]
    (with "samples": [{"text", "metrics"}] when the arm answered more than once; "metrics" is then their
    mean); `verdicts[(a, b)][i]` = a pairwise judge's {"a_first", "b_first"} verdicts (see judge_pairs)."""
    verdicts = verdicts or {}
    names = metric_names(answers)
    report: dict[str, Any] = {
        "arms": {},
        "pairwise": [],
        "rows": [],
        "retrieval_match_rule": m.SOURCE_MATCH_RULE,  # what hit@k and MRR count as the reference
    }
    for arm in arms:
        rows = answers[arm]
        latencies = [r["latency_ms"] for r in rows]
        samples = max((len(r.get("samples", ())) for r in rows), default=0) or 1
        metrics = {
            name: mean_ci(values)
            for name in names
            if (values := [r["metrics"][name] for r in rows if name in r["metrics"]])
        }
        if samples > 1:
            for name, summary in metrics.items():
                summary["within_question_sd"] = within_question_sd(rows, name)
        report["arms"][arm] = {
            "n": len(rows),
            "samples_per_question": samples,
            "metrics": metrics,
            "latency_p50_ms": float(np.percentile(latencies, 50)) if latencies else None,
            "latency_p95_ms": float(np.percentile(latencies, 95)) if latencies else None,
            "tokens_per_answer": float(np.mean([r.get("completion_tokens", 0) for r in rows]))
            if rows
            else None,
        }
    for a, b in combinations(arms, 2):
        for name in names:
            pairs = [
                (x["metrics"][name], y["metrics"][name])
                for x, y in zip(answers[a], answers[b], strict=True)
                if name in x["metrics"] and name in y["metrics"]
            ]
            if pairs:
                report["pairwise"].append(
                    {"a": a, "b": b, "metric": name, **paired([p[0] for p in pairs], [p[1] for p in pairs])}
                )
    if verdicts:
        report["judge_pairwise"] = [
            {"a": a, "b": b, **judge_pairs(rows)} for (a, b), rows in verdicts.items()
        ]
    keys = ("text", "sources", "latency_ms", "metrics", "samples")
    for i, item in enumerate(items):
        row = {
            "question": item.question,
            "reference": item.references[0] if len(item.references) == 1 else item.references,
            "answers": {arm: {k: answers[arm][i][k] for k in keys if k in answers[arm][i]} for arm in arms},
        }
        if verdicts:
            row["judge_pairwise"] = [{"a": a, "b": b, **rows[i]} for (a, b), rows in verdicts.items()]
        report["rows"].append(row)
    return report
