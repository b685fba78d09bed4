"""The regression gate (evals/gate.py) and `ragtune compare --baseline/--fail-on-regression/--report`."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from typer.testing import CliRunner

import server.cli.compare as compare_cli
from evals.dataset import EvalItem
from evals.gate import is_improvement, match_rows, parse_metrics, regressions
from evals.report import build_report
from server.cli.main import app

N = 30
QUESTIONS = [f"question {i}?" for i in range(N)]


def make_report(questions: list[str], arms: dict[str, dict[str, list[float]]]) -> dict:
    """A real report from `build_report`: `arms[arm][metric][i]` is the metric of the answer to question i."""
    items = [EvalItem(q, [f"answer to {q}"]) for q in questions]
    answers = {
        arm: [
            {
                "text": f"{arm} says {i}",
                "sources": None,
                "latency_ms": 100.0 + i,
                "metrics": {name: values[i] for name, values in metrics.items()},
                "completion_tokens": 5,
            }
            for i in range(len(questions))
        ]
        for arm, metrics in arms.items()
    }
    return build_report(items, list(arms), answers)


def spread(center: float, n: int = N) -> list[float]:
    """n values around `center` (±0.05), so a bootstrap interval has some width."""
    return [center + (0.05 if i % 2 else -0.05) for i in range(n)]


def record(records: list[dict], arm: str, metric: str) -> dict:
    return next(r for r in records if r["arm"] == arm and r["metric"] == metric)


# ---- regressions() ----------------------------------------------------------------------------------


def test_a_clear_drop_is_a_regression():
    baseline = make_report(QUESTIONS, {"rag": {"f1": spread(0.8)}})
    current = make_report(QUESTIONS, {"rag": {"f1": spread(0.3)}})
    [r] = regressions(current, baseline, ["f1"])
    assert r["regressed"] is True
    assert r["mean_diff"] == pytest.approx(-0.5)
    assert r["ci_high"] < 0
    assert (r["wins"], r["ties"], r["losses"]) == (0, 0, N)
    assert (r["n_paired"], r["unmatched"]) == (N, 0)
    assert r["p_value"] < 0.01
    assert set(r) == {
        "arm",
        "baseline_arm",
        "metric",
        "n_paired",
        "unmatched",
        "mean_diff",
        "ci_low",
        "ci_high",
        "wins",
        "ties",
        "losses",
        "p_value",
        "regressed",
        "missing",
    }


def test_a_clear_rise_is_an_improvement_not_a_regression():
    baseline = make_report(QUESTIONS, {"rag": {"f1": spread(0.3)}})
    current = make_report(QUESTIONS, {"rag": {"f1": spread(0.8)}})
    [r] = regressions(current, baseline, ["f1"])
    assert r["regressed"] is False
    assert r["ci_low"] > 0 and is_improvement(r)
    assert (r["wins"], r["losses"]) == (N, 0)


def test_noise_is_not_a_regression():
    base = spread(0.5)
    # ups and downs of 0.3 that nearly cancel: the mean falls a little, the interval spans 0
    noisy = [b + (0.3 if i % 2 else -0.3) - 0.01 for i, b in enumerate(base)]
    r = record(
        regressions(
            make_report(QUESTIONS, {"ft": {"f1": noisy}}),
            make_report(QUESTIONS, {"ft": {"f1": base}}),
            ["f1"],
        ),
        "ft",
        "f1",
    )
    assert r["mean_diff"] < 0
    assert r["ci_low"] < 0 < r["ci_high"]
    assert r["regressed"] is False and not is_improvement(r)
    assert r["p_value"] > 0.05


def test_questions_pair_by_text_whatever_their_order():
    values = [i / N for i in range(N)]
    baseline = make_report(QUESTIONS[::-1], {"base": {"f1": values[::-1]}})
    current = make_report(QUESTIONS, {"base": {"f1": values}})
    [r] = regressions(current, baseline, ["f1"])
    # by position the values would differ on every question; by question they are equal
    assert (r["n_paired"], r["ties"], r["mean_diff"]) == (N, N, 0)


def test_rows_in_one_report_only_are_left_out_and_counted():
    current = make_report(QUESTIONS[:10], {"base": {"f1": [0.5] * 10}})
    baseline = make_report(QUESTIONS[2:10] + ["other 1?", "other 2?"], {"base": {"f1": [0.5] * 10}})
    [r] = regressions(current, baseline, ["f1"])
    assert (r["n_paired"], r["unmatched"]) == (8, 4)


def test_a_question_with_another_reference_does_not_pair():
    current = make_report(QUESTIONS[:4], {"base": {"f1": [0.5] * 4}})
    baseline = make_report(QUESTIONS[:4], {"base": {"f1": [0.5] * 4}})
    baseline["rows"][0]["reference"] = "a different answer"
    pairs, unmatched = match_rows(current, baseline)
    assert (len(pairs), unmatched) == (3, 2)


def test_abstained_is_lower_is_better():
    never, mostly = [0.0] * N, [1.0] * (N - 2) + [0.0] * 2
    rose = regressions(
        make_report(QUESTIONS, {"ft": {"abstained": mostly}}),
        make_report(QUESTIONS, {"ft": {"abstained": never}}),
        ["abstained"],
    )[0]
    assert rose["mean_diff"] > 0 and rose["ci_low"] > 0
    assert rose["regressed"] is True
    assert (rose["wins"], rose["ties"], rose["losses"]) == (0, 2, N - 2)  # a rise is a loss
    fell = regressions(
        make_report(QUESTIONS, {"ft": {"abstained": never}}),
        make_report(QUESTIONS, {"ft": {"abstained": mostly}}),
        ["abstained"],
    )[0]
    assert fell["regressed"] is False and is_improvement(fell)
    assert fell["wins"] == N - 2


def test_each_shared_arm_and_metric_gets_a_record():
    metrics = {"f1": spread(0.5), "exact_match": [1.0] * N}
    baseline = make_report(QUESTIONS, {"base": metrics, "rag": metrics, "old": metrics})
    current = make_report(QUESTIONS, {"base": metrics, "rag": {**metrics, "f1": spread(0.1)}, "new": metrics})
    records = regressions(current, baseline, ["f1", "exact_match"])
    assert [(r["arm"], r["metric"]) for r in records] == [
        ("base", "f1"),
        ("base", "exact_match"),
        ("rag", "f1"),
        ("rag", "exact_match"),
    ]
    assert [r["regressed"] for r in records] == [False, False, True, False]


def test_arm_map_pairs_renamed_arms():
    baseline = make_report(QUESTIONS, {"ft": {"f1": spread(0.8)}})
    current = make_report(QUESTIONS, {"ft-v2": {"f1": spread(0.2)}})
    with pytest.raises(ValueError, match="no arm is in both"):
        regressions(current, baseline, ["f1"])
    [r] = regressions(current, baseline, ["f1"], arm_map={"ft-v2": "ft"})
    assert (r["arm"], r["baseline_arm"], r["regressed"]) == ("ft-v2", "ft", True)
    with pytest.raises(ValueError, match="baseline lacks"):
        regressions(current, baseline, ["f1"], arm_map={"ft-v2": "nope"})


def test_a_metric_neither_run_scored_is_not_a_regression():
    report = make_report(QUESTIONS, {"base": {"f1": spread(0.5)}})
    [r] = regressions(report, report, ["hit_at_k"])
    assert (r["n_paired"], r["regressed"]) == (0, False)
    assert math.isnan(r["mean_diff"])


def test_unknown_metric_and_mismatched_reports_are_errors():
    report = make_report(QUESTIONS, {"base": {"f1": spread(0.5)}})
    with pytest.raises(ValueError, match=r"unknown metric 'latency'.*known metrics: .*f1"):
        regressions(report, report, ["latency"])
    with pytest.raises(ValueError, match="no question"):
        regressions(report, make_report(["something else?"], {"base": {"f1": [0.5]}}), ["f1"])
    with pytest.raises(ValueError, match="level"):
        regressions(report, report, ["f1"], level=95)


def test_parse_metrics_takes_repeats_and_commas():
    assert parse_metrics(["f1, exact_match", "f1", "abstained"]) == ["f1", "exact_match", "abstained"]
    with pytest.raises(ValueError, match="known metrics"):
        parse_metrics(["f1,bogus"])


# ---- ragtune compare --report / --baseline / --fail-on-regression -----------------------------------


@pytest.fixture
def reports(tmp_path: Path) -> dict[str, Path]:
    """Saved reports, as `--out` writes them: a baseline, one that regressed on f1 only, one that held."""
    good = {"f1": spread(0.8), "exact_match": [1.0] * N}
    saved = {
        "baseline": make_report(QUESTIONS, {"base": good, "rag": good}),
        "regressed": make_report(QUESTIONS, {"base": good, "rag": {**good, "f1": spread(0.3)}}),
        "held": make_report(QUESTIONS[::-1], {"base": good, "rag": good}),
        "unrelated": make_report(["something else?"], {"base": {"f1": [0.5]}}),
    }
    paths = {}
    for name, report in saved.items():
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_text(json.dumps(report, indent=2, ensure_ascii=False))
    return paths


def run_cli(*args: str | Path):
    return CliRunner().invoke(app, ["compare", *map(str, args)])


def test_cli_exits_1_on_a_regression(reports):
    result = run_cli(
        "--report", reports["regressed"], "--baseline", reports["baseline"], "--fail-on-regression", "f1"
    )
    assert result.exit_code == 1, result.output
    assert "regressed" in result.output and "regression:" in result.output and "rag f1" in result.output
    assert f"{N} questions paired" in result.output


def test_cli_exits_0_without_a_regression(reports):
    result = run_cli(
        "--report",
        reports["held"],
        "--baseline",
        reports["baseline"],
        "--fail-on-regression",
        "f1,exact_match",
    )
    assert result.exit_code == 0, result.output
    assert "within noise" in result.output and "regressed" not in result.output


def test_cli_gates_every_metric_given(reports):
    unchanged = run_cli(
        "--report",
        reports["regressed"],
        "--baseline",
        reports["baseline"],
        "--fail-on-regression",
        "exact_match",
    )
    assert unchanged.exit_code == 0, unchanged.output
    both = ("--fail-on-regression", "exact_match", "--fail-on-regression", "f1")
    assert run_cli("--report", reports["regressed"], "--baseline", reports["baseline"], *both).exit_code == 1


def test_cli_baseline_alone_shows_f1_and_never_fails(reports):
    result = run_cli("--report", reports["regressed"], "--baseline", reports["baseline"])
    assert result.exit_code == 0, result.output
    assert "regressed" in result.output and "f1" in result.output and "exact_match" not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fail-on-regression", "f1"], "needs --baseline"),
        (["--baseline", "BASELINE", "--fail-on-regression", "latency"], "unknown metric"),
        (["--baseline", "BASELINE", "--fail-on-regression", "f1,bogus"], "known metrics"),
        (["--baseline", "no/such/report.json"], "no such file"),
        (["--baseline", "UNRELATED"], "no question"),
        (["--baseline", "EVAL"], "not a comparison report"),
    ],
)
def test_cli_usage_errors_exit_2(reports, tmp_path, args, message):
    eval_file = tmp_path / "q.jsonl"
    eval_file.write_text('{"question": "q?", "reference": "a"}\n')
    names = {"BASELINE": reports["baseline"], "UNRELATED": reports["unrelated"], "EVAL": eval_file}
    args = [str(names.get(a, a)) for a in args]
    result = run_cli("--report", reports["held"], *args)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_cli_checks_usage_before_anything_runs(reports, tmp_path):
    eval_file = tmp_path / "q.jsonl"
    eval_file.write_text('{"question": "q?", "reference": "a"}\n')
    nowhere = ("--base-url", "http://127.0.0.1:9/v1")  # a run would exit 1: no server answers
    bad_metric = run_cli(
        "--eval", eval_file, "--baseline", reports["baseline"], "--fail-on-regression", "nope", *nowhere
    )
    assert bad_metric.exit_code == 2, bad_metric.output
    assert run_cli("--eval", eval_file, "--fail-on-regression", "f1", *nowhere).exit_code == 2
    assert run_cli("--eval", eval_file, "--report", reports["held"]).exit_code == 2
    neither = run_cli("--baseline", reports["baseline"])
    assert neither.exit_code == 2 and "--eval" in neither.output


@pytest.fixture
def server(monkeypatch):
    """A fake server for `--baseline <id>`: `comparisons[id]` is what `GET /comparisons/{id}` returns."""
    comparisons: dict[str, dict] = {}

    def handle(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == "Bearer test-key"
        found = comparisons.get(request.url.path.rsplit("/", 1)[-1])
        if found is None:
            return httpx.Response(
                404, json={"error": {"message": "No comparison.", "code": "comparison_not_found"}}
            )
        return httpx.Response(200, json=found)

    real_client = httpx.Client
    monkeypatch.setattr(compare_cli, "connect", lambda base_url, api_key: SimpleNamespace(api_key="test-key"))
    monkeypatch.setattr(
        httpx, "Client", lambda **kw: real_client(transport=httpx.MockTransport(handle), **kw)
    )
    return comparisons


def test_cli_baseline_by_comparison_id(reports, server):
    baseline = json.loads(reports["baseline"].read_text())
    server["cmp_done"] = {"id": "cmp_done", "status": "completed", "report": baseline}
    server["cmp_busy"] = {"id": "cmp_busy", "status": "running", "report": None}
    gate = ("--fail-on-regression", "f1")
    assert run_cli("--report", reports["regressed"], "--baseline", "cmp_done", *gate).exit_code == 1
    assert run_cli("--report", reports["held"], "--baseline", "cmp_done", *gate).exit_code == 0
    busy = run_cli("--report", reports["held"], "--baseline", "cmp_busy", *gate)
    assert busy.exit_code == 2 and "not completed" in busy.output
    missing = run_cli("--report", reports["held"], "--baseline", "cmp_nope", *gate)
    assert missing.exit_code == 2 and "No comparison" in missing.output


def test_a_metric_the_baseline_scored_and_this_run_lost_is_missing():
    baseline = make_report(QUESTIONS, {"rag": {"f1": spread(0.5), "hit_at_k": spread(1.0)}})
    current = make_report(QUESTIONS, {"rag": {"f1": spread(0.5)}})
    [r] = regressions(current, baseline, ["hit_at_k"])
    assert r["missing"] is True and r["n_paired"] == 0 and r["regressed"] is False


def test_a_bootstrap_interval_below_zero_on_four_questions_is_not_enough():
    """With 4 questions the sign-flip test cannot reach p < 0.05 (its smallest p is 2/16): no regression."""
    few = QUESTIONS[:4]
    baseline = make_report(few, {"rag": {"f1": [0.9, 0.8, 0.7, 0.6]}})
    current = make_report(few, {"rag": {"f1": [0.5, 0.5, 0.6, 0.6]}})
    [r] = regressions(current, baseline, ["f1"])
    assert r["p_value"] > 0.05 and r["regressed"] is False
