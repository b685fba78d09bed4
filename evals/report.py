"""The comparison report: per-arm metrics with bootstrap CIs, pairwise paired tests, per-question rows."""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np

from evals import metrics as m
from evals.dataset import EvalItem
from evals.stats import mean_ci, paired

METRICS = ("exact_match", "f1", "rouge_l", "hit_at_k", "mrr", "faithfulness", "abstained", "judge")


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


def build_report(items: list[EvalItem], arms: list[str], answers: dict[str, list[dict[str, Any]]]) -> dict:
    """`answers[arm][i]` = {"text", "sources", "latency_ms", "metrics", "completion_tokens"} for items[i]."""
    report: dict[str, Any] = {
        "arms": {},
        "pairwise": [],
        "rows": [],
        "retrieval_match_rule": m.SOURCE_MATCH_RULE,  # what hit@k and MRR count as the reference
    }
    for arm in arms:
        rows = answers[arm]
        latencies = [r["latency_ms"] for r in rows]
        report["arms"][arm] = {
            "n": len(rows),
            "metrics": {
                name: mean_ci(values)
                for name in METRICS
                if (values := [r["metrics"][name] for r in rows if name in r["metrics"]])
            },
            "latency_p50_ms": float(np.percentile(latencies, 50)) if latencies else None,
            "latency_p95_ms": float(np.percentile(latencies, 95)) if latencies else None,
            "tokens_per_answer": float(np.mean([r.get("completion_tokens", 0) for r in rows]))
            if rows
            else None,
        }
    for a, b in combinations(arms, 2):
        for name in METRICS:
            pairs = [
                (x["metrics"][name], y["metrics"][name])
                for x, y in zip(answers[a], answers[b], strict=True)
                if name in x["metrics"] and name in y["metrics"]
            ]
            if pairs:
                report["pairwise"].append(
                    {"a": a, "b": b, "metric": name, **paired([p[0] for p in pairs], [p[1] for p in pairs])}
                )
    for i, item in enumerate(items):
        report["rows"].append(
            {
                "question": item.question,
                "reference": item.references[0] if len(item.references) == 1 else item.references,
                "answers": {
                    arm: {key: answers[arm][i][key] for key in ("text", "sources", "latency_ms", "metrics")}
                    for arm in arms
                },
            }
        )
    return report
