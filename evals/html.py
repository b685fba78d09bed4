"""The comparison report as one self-contained HTML page: SVG bar charts with error bars, tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

COLORS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f")
CHARTED = ("f1", "exact_match", "rouge_l", "hit_at_k", "mrr", "faithfulness", "abstained")
_ENV = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=select_autoescape(["html", "j2"])
)


def _metric_names(report: dict[str, Any], arms: list[str]) -> list[str]:
    """The metrics any arm has: CHARTED's in its order, then the rest (an eval's graders) as they come."""
    seen = dict.fromkeys(m for a in arms for m in report["arms"][a]["metrics"])
    return [m for m in CHARTED if m in seen] + [m for m in seen if m not in CHARTED]


def _charts(report: dict[str, Any], arms: list[str]) -> list[dict[str, Any]]:
    charts = []
    for metric in _metric_names(report, arms):
        values = {
            arm: report["arms"][arm]["metrics"][metric]
            for arm in arms
            if metric in report["arms"][arm]["metrics"]
        }
        if not values:
            continue
        top = max(1.0, max(v["ci_high"] for v in values.values()))
        scale = 130 / top

        def y(v: float, scale: float = scale) -> float:
            return 150 - max(v, 0.0) * scale

        bars = [
            {
                "arm": arm,
                "mean": v["mean"],
                "low": v["ci_low"],
                "high": v["ci_high"],
                "x": 40 + i * 50,
                "y": y(v["mean"]),
                "h": 150 - y(v["mean"]),
                "y_low": y(v["ci_low"]),
                "y_high": y(v["ci_high"]),
                "color": COLORS[i % len(COLORS)],
            }
            for i, (arm, v) in enumerate(values.items())
        ]
        charts.append({"metric": metric, "bars": bars, "width": 60 + 50 * len(bars), "top": f"{top:g}"})
    return charts


def render_report(comparison_id: str, report: dict[str, Any]) -> str:
    arms = list(report["arms"])
    names = _metric_names(report, arms)
    return _ENV.get_template("report.html.j2").render(
        id=comparison_id,
        report=report,
        arms=arms,
        rows=report["rows"],
        charts=_charts(report, arms),
        metric_names=names,
    )
