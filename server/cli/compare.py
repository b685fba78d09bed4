"""`ragtune compare`: run an A/B comparison on a running server and save its report (JSON, HTML)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.progress import Progress
from rich.table import Table

from server.cli.client import DEFAULT_BASE_URL, PROGRESS_COLUMNS, ApiKey, BaseUrl, connect, err, out


def compare(
    eval_file: Annotated[
        Path, typer.Option("--eval", exists=True, dir_okay=False, help="JSONL of questions.")
    ],
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
    base_url: BaseUrl = DEFAULT_BASE_URL,
    api_key: ApiKey = None,
) -> None:
    """Compare arms (default: base, rag, ft, rag+ft) on your questions, with confidence intervals."""
    client = connect(base_url, api_key)
    with open(eval_file, "rb") as f:
        eval_id = client.files.create(file=(eval_file.name, f), purpose="evals").id
    body: dict = {"eval_file_id": eval_id, "max_tokens": max_tokens}
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
        if created.status_code != 200:
            err.print(f"[red]error:[/red] {created.json()['error']['message']}")
            raise typer.Exit(1)
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
    report = comparison["report"]
    table = Table("arm", "f1", "exact match", "rouge-L", "hit@k", "faithfulness", "p50 ms")
    for arm, data in report["arms"].items():
        cells = [
            _cell(data["metrics"], m) for m in ("f1", "exact_match", "rouge_l", "hit_at_k", "faithfulness")
        ]
        table.add_row(arm, *cells, f"{data['latency_p50_ms']:.0f}")
    out.print(table)
    out.print(f"report: {output}" + (f", {html}" if html else ""))


def _cell(metrics: dict, name: str) -> str:
    if name not in metrics:
        return "–"
    m = metrics[name]
    return f"{m['mean']:.3f} [{m['ci_low']:.2f}, {m['ci_high']:.2f}]"
