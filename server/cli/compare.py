"""`ragtune compare`: run an A/B comparison on a running server and save its report (JSON, HTML); with
`--baseline`, gate it against an earlier report for CI."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, NoReturn

import httpx
import typer
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from evals.gate import is_improvement, match_rows, parse_metrics, regressions
from server.cli.client import DEFAULT_BASE_URL, PROGRESS_COLUMNS, ApiKey, BaseUrl, connect, err, out


def compare(
    eval_file: Annotated[
        Path | None,
        typer.Option("--eval", exists=True, dir_okay=False, help="JSONL of questions (or --report)."),
    ] = None,
    vector_store: Annotated[str | None, typer.Option(help="Knowledge base id or name (rag arms).")] = None,
    model: Annotated[str | None, typer.Option(help="Fine-tuned model (ft arms).")] = None,
    arms: Annotated[
        str | None, typer.Option(help='JSON list of arms, e.g. \'[{"name": "rag", ...}]\'.')
    ] = None,
    output: Annotated[Path, typer.Option("--out", help="Where to write the JSON report.")] = Path(
        "report.json"
    ),
    html: Annotated[Path | None, typer.Option(help="Also write the HTML report here.")] = None,
    max_tokens: Annotated[int, typer.Option(help="Longest answer per question.")] = 128,
    report_file: Annotated[
        Path | None,
        typer.Option("--report", exists=True, dir_okay=False, help="Gate this saved report; run nothing."),
    ] = None,
    baseline: Annotated[
        str | None, typer.Option(help="Comparison id or saved report JSON to compare against.")
    ] = None,
    fail_on: Annotated[
        list[str] | None,
        typer.Option(
            "--fail-on-regression",
            metavar="METRIC",
            help="Exit 1 if this metric regressed vs --baseline (repeatable, or f1,exact_match).",
        ),
    ] = None,
    testing_criteria: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="JSON of OpenAI Evals graders (a list, or an eval with testing_criteria) to score too.",
        ),
    ] = None,
    judge_model: Annotated[
        str | None, typer.Option(help="Also score answers with this model as a judge.")
    ] = None,
    judge_mode: Annotated[
        str, typer.Option(help="pointwise (each answer right or not) or pairwise (both orders).")
    ] = "pointwise",
    base_url: BaseUrl = DEFAULT_BASE_URL,
    api_key: ApiKey = None,
) -> None:
    """Compare arms (default: base, rag, ft, rag+ft) on your questions, with confidence intervals.

    Exit codes: 0 done, 1 a run failed or a --fail-on-regression metric regressed (or was scored by the
    baseline and not by this run), 2 a usage error (including a request the server refused).
    """
    if arms is not None:
        try:
            parsed = json.loads(arms)
        except json.JSONDecodeError as exc:
            _usage(f"--arms is not JSON ({exc})")
        if not isinstance(parsed, list):
            _usage("--arms must be a JSON list of arms (or model names)")
    criteria = _read_criteria(testing_criteria) if testing_criteria else None
    saved = _read_report(report_file, "--report") if report_file else None
    also = [name for arm in (saved or {}).get("arms", {}).values() for name in arm["metrics"]]
    for i, grader in enumerate(criteria or []):  # the metric names the server gives each grader
        name = grader.get("name") or f"{grader.get('type')}_{i}"
        also += [name, f"{name}_score"] if grader.get("type") == "text_similarity" else [name]
    gate_metrics = _check_usage(eval_file, report_file, baseline, fail_on, also)
    old = _load_baseline(baseline, base_url, api_key) if baseline else None
    if saved is not None:
        report = saved
    else:
        extra = {"testing_criteria": criteria, "judge_model": judge_model, "judge_mode": judge_mode}
        report = _run(
            eval_file, vector_store, model, arms, output, html, max_tokens, base_url, api_key, extra
        )
    _print_arms(report)
    if not report_file:
        out.print(f"report: {output}" + (f", {html}" if html else ""))
    if old is not None:
        _gate(report, old, gate_metrics, fail=bool(fail_on))


def _read_criteria(path: Path) -> list[dict]:
    """OpenAI Evals graders from a JSON file: a list of graders, or an eval object (what OpenAI's
    `evals.retrieve` returned) holding `testing_criteria`; exit 2 otherwise. The server checks each."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        _usage(f"--testing-criteria: cannot read {path} as JSON ({exc})")
    if isinstance(data, dict):
        data = data.get("testing_criteria")
    if not (isinstance(data, list) and data and all(isinstance(c, dict) for c in data)):
        _usage(f"--testing-criteria: {path} holds no list of graders (or an eval with 'testing_criteria')")
    return data


def _check_usage(
    eval_file: Path | None,
    report_file: Path | None,
    baseline: str | None,
    fail_on: list[str] | None,
    also: list[str] = (),
) -> list[str]:
    """The metrics to gate on (f1 when only --baseline is given); exit 2 on a bad combination."""
    if fail_on and not baseline:
        _usage("--fail-on-regression needs --baseline (a comparison id or a saved report JSON)")
    if eval_file and report_file:
        _usage("give --eval to run a comparison or --report to gate a saved one, not both")
    if not (eval_file or report_file):
        _usage("give --eval (questions to run) or --report (a saved report to gate)")
    try:
        return parse_metrics(fail_on, also) if fail_on else ["f1"]
    except ValueError as exc:
        _usage(f"--fail-on-regression: {exc}")


def _usage(message: str) -> NoReturn:
    err.print(f"[red]usage:[/red] {escape(message)}", soft_wrap=True)
    raise typer.Exit(2)


def _load_baseline(spec: str, base_url: str, api_key: str | None) -> dict:
    """A saved report when `spec` is a file; else the report of the completed comparison of that id."""
    path = Path(spec)
    if path.is_file():
        return _read_report(path, "--baseline")
    if path.suffix == ".json" or len(path.parts) > 1:
        _usage(f"--baseline: no such file {spec}")
    client = connect(base_url, api_key)
    headers = {"Authorization": f"Bearer {client.api_key}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=60) as http:
        response = http.get(f"/comparisons/{spec}")
    if response.status_code != 200:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = f"HTTP {response.status_code} for comparison {spec}"
        _usage(f"--baseline: {message}")
    comparison = response.json()
    if comparison["status"] != "completed":
        _usage(f"--baseline: comparison {spec} is {comparison['status']}, not completed")
    return comparison["report"]


def _read_report(path: Path, option: str) -> dict:
    """A report as `--out` writes it (a saved `GET /comparisons/{id}` body works too); exit 2 if not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        _usage(f"{option}: cannot read {path} as JSON ({exc})")
    if isinstance(data, dict) and isinstance(data.get("report"), dict):
        data = data["report"]
    if not (
        isinstance(data, dict) and isinstance(data.get("arms"), dict) and isinstance(data.get("rows"), list)
    ):
        _usage(f"{option}: {path} is not a comparison report (no 'arms' and 'rows')")
    return data


def _run(
    eval_file: Path,
    vector_store: str | None,
    model: str | None,
    arms: str | None,
    output: Path,
    html: Path | None,
    max_tokens: int,
    base_url: str,
    api_key: str | None,
    extra: dict | None = None,
) -> dict:
    """Run the comparison on the server, follow it with a progress bar, save and return its report.
    `extra`: more fields of the request (graders, judge); None values are left out."""
    client = connect(base_url, api_key)
    with open(eval_file, "rb") as f:
        eval_id = client.files.create(file=(eval_file.name, f), purpose="evals").id
    body: dict = {"eval_file_id": eval_id, "max_tokens": max_tokens}
    body.update({k: v for k, v in (extra or {}).items() if v is not None})
    if arms:
        body["arms"] = json.loads(arms)
    else:
        if not (vector_store and model):
            err.print("[red]give --vector-store and --model for the four default arms, or --arms[/red]")
            raise typer.Exit(2)
        stores = {s.name: s.id for s in client.vector_stores.list(limit=100)}
        body.update(vector_store_id=stores.get(vector_store, vector_store), fine_tuned_model=model)
    headers = {"Authorization": f"Bearer {client.api_key}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=60) as http:
        created = http.post("/comparisons", json=body)
        if created.status_code != 200:  # the server refused the request: a usage error
            err.print(f"[red]error:[/red] {escape(created.json()['error']['message'])}")
            raise typer.Exit(2)
        comparison = created.json()
        with Progress(*PROGRESS_COLUMNS, console=err) as progress:
            task = progress.add_task("answering", total=comparison["progress"]["total"])
            while comparison["status"] not in ("completed", "failed"):
                time.sleep(1)
                comparison = http.get(f"/comparisons/{comparison['id']}").json()
                progress.update(task, completed=comparison["progress"]["done"])
        if comparison["status"] == "failed":
            err.print(f"[red]failed:[/red] {comparison['error']['message']}")
            raise typer.Exit(1)
        output.write_text(json.dumps(comparison["report"], indent=2, ensure_ascii=False))
        if html:
            html.write_text(http.get(f"/comparisons/{comparison['id']}/report.html").text)
    return comparison["report"]


def _print_arms(report: dict) -> None:
    table = Table("arm", "f1", "exact match", "rouge-L", "hit@k", "faithfulness", "p50 ms")
    for arm, data in report["arms"].items():
        cells = [
            _cell(data["metrics"], m) for m in ("f1", "exact_match", "rouge_l", "hit_at_k", "faithfulness")
        ]
        p50 = data.get("latency_p50_ms")
        table.add_row(arm, *cells, "–" if p50 is None else f"{p50:.0f}")
    out.print(table)


def _gate(report: dict, baseline: dict, metrics: list[str], fail: bool) -> None:
    """Print current − baseline per arm and metric; exit 1 if `fail` and any regressed, 2 if none pair."""
    try:
        records = regressions(report, baseline, metrics)
    except ValueError as exc:
        _usage(f"--baseline: {exc}")
    table = Table("arm", "metric", "Δ mean [95% CI]", "wins/ties/losses", "p", "verdict", title="vs baseline")
    for r in records:
        arm = r["arm"] if r["arm"] == r["baseline_arm"] else f"{r['arm']} (baseline {r['baseline_arm']})"
        arm = escape(arm)
        if r.get("missing"):
            table.add_row(arm, r["metric"], "–", "–", "–", "[red]missing: the baseline scored it[/red]")
            continue
        if r["n_paired"] == 0:
            table.add_row(arm, r["metric"], "–", "–", "–", "[dim]not scored[/dim]")
            continue
        table.add_row(
            arm,
            r["metric"],
            f"{r['mean_diff']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]",
            f"{r['wins']}/{r['ties']}/{r['losses']}",
            f"{r['p_value']:.3f}",
            _verdict(r),
        )
    out.print(table)
    pairs, unmatched = match_rows(report, baseline)
    left_out = f", {unmatched} in one report only (left out)" if unmatched else ""
    out.print(f"{len(pairs)} questions paired with the baseline{left_out}")
    regressed = [r for r in records if r["regressed"] or r.get("missing")]
    if fail and regressed:
        names = ", ".join(f"{r['arm']} {r['metric']}" for r in regressed)
        err.print(f"[red]regression:[/red] {escape(names)}")
        raise typer.Exit(1)


def _verdict(record: dict) -> str:
    if record["regressed"]:
        return "[red]regressed[/red]"
    if is_improvement(record):
        return "[green]improved[/green]"
    return "within noise"


def _cell(metrics: dict, name: str) -> str:
    if name not in metrics:
        return "–"
    m = metrics[name]
    return f"{m['mean']:.3f} [{m['ci_low']:.2f}, {m['ci_high']:.2f}]"
