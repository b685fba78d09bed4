"""RAG prompt formats measured with the project's own comparisons, on the default model.

A live server (the default model and embedder) gets a knowledge base of passages of the US Constitution
(public domain; tests/data/constitution.py) and 40 questions whose short answers are spans of them. One
comparison runs the base model and RAG arms that differ only in how sources are put into the prompt
(`file_search.prompt_format`: `plain`, Context / Question / Answer; `cited`, numbered sources with an
instruction to cite them, ragtune's format before this benchmark) and in how many sources
(`max_num_results`). Every arm is greedy, so the answers are reproducible. The peer is the `cited` format
at 4 sources (the old default): the figure is each arm's token F1 and its paired difference with the
base model and with the peer, with 95% bootstrap intervals.

    .venv/bin/python bench/rag_prompt.py [--max-tokens 48] [--out bench/results/bench_rag_prompt.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import openai
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import RESULTS, run_comparison, write_report  # noqa: E402
from tests.conftest import start_server, stop_server  # noqa: E402
from tests.data import constitution  # noqa: E402

MODEL = "smollm2-135m-instruct"
PEER = "cited-4"
VARIANTS = [("cited", 4), ("cited", 1), ("plain", 4), ("plain", 2), ("plain", 1)]


def knowledge_base(client: openai.OpenAI, workdir: Path) -> tuple[str, dict[str, str]]:
    """The Constitution passages as one knowledge base: (vector store id, {document: file id})."""
    paths = constitution.write(workdir / "docs")
    ids = {name: client.files.create(file=p.open("rb"), purpose="assistants").id for name, p in paths.items()}
    store = client.vector_stores.create(name="constitution")
    batch = client.vector_stores.file_batches.create_and_poll(
        vector_store_id=store.id, file_ids=list(ids.values()), poll_interval_ms=200
    )
    if batch.file_counts.completed != len(ids):
        raise RuntimeError(f"indexing failed: {batch.file_counts}")
    return store.id, ids


def arms(store: str) -> list[dict]:
    out = [{"name": "base", "model": MODEL}]
    for fmt, k in VARIANTS:
        search = {"vector_store_ids": [store], "max_num_results": k, "prompt_format": fmt}
        out.append({"name": f"{fmt}-{k}", "model": MODEL, "file_search": search})
    return out


def paired(report: dict, a: str, b: str, metric: str = "f1") -> dict | None:
    """The report's paired difference a − b (it lists each pair once, in arm order)."""
    for p in report["pairwise"]:
        if p["metric"] == metric and (p["a"], p["b"]) in ((a, b), (b, a)):
            sign = 1 if p["a"] == a else -1
            low, high = sorted((sign * p["ci_low"], sign * p["ci_high"]))
            wins, losses = (p["wins"], p["losses"]) if sign == 1 else (p["losses"], p["wins"])
            return {
                "mean_diff": sign * p["mean_diff"],
                "ci_low": low,
                "ci_high": high,
                "wins": wins,
                "losses": losses,
                "ties": p["ties"],
                "p_value": p["p_value"],
            }
    return None


def fine_tune(client: openai.OpenAI, workdir: Path, train: list[tuple], epochs: int) -> str:
    """A job on `train` (constitution.QUESTIONS rows) in the `plain` RAG format: the user message holds
    the question's whole document as context, the answer is the short reference. Returns the `ft:` model
    once the job succeeded (the server's defaults otherwise; epochs not scored, to save minutes)."""
    path = workdir / "rag-train.jsonl"
    rows = []
    for question, reference, document, _ in train:
        context = constitution.DOCUMENTS[document].strip()
        prompt = f"Context:\n{context}\n\nQuestion: {question}\nAnswer:"
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": reference}]
        rows.append(json.dumps({"messages": messages}))
    path.write_text("\n".join(rows) + "\n")
    training = client.files.create(file=path.open("rb"), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(
        model=MODEL,
        training_file=training.id,
        suffix="rag",
        seed=3,
        hyperparameters={"n_epochs": epochs},
        extra_body={"training": {"eval_strategy": "no"}},
    )
    while (job := client.fine_tuning.jobs.retrieve(job.id)).status not in (
        "succeeded",
        "failed",
        "cancelled",
    ):
        time.sleep(5)
    if job.status != "succeeded":
        raise RuntimeError(f"fine-tune {job.status}: {job.error}")
    return job.fine_tuned_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_rag_prompt.json")
    parser.add_argument(
        "--fine-tune",
        type=int,
        default=0,
        metavar="EPOCHS",
        help="also fine-tune on the first half of the questions (plain RAG format) and compare base, rag, "
        "ft and rag+ft on the other half",
    )
    args = parser.parse_args()
    constitution.check()
    console = Console()
    workdir = Path(tempfile.mkdtemp(prefix="bench-rag-prompt-"))
    server = start_server(workdir / "server")
    try:
        client = openai.OpenAI(base_url=server.api, api_key="unused", max_retries=0, timeout=600)
        store, _ = knowledge_base(client, workdir)
        evals = workdir / "eval.jsonl"
        evals.write_text(constitution.eval_lines())
        eval_id = client.files.create(file=evals.open("rb"), purpose="evals").id
        body = {"eval_file_id": eval_id, "arms": arms(store), "max_tokens": args.max_tokens, "concurrency": 8}
        report, seconds = run_comparison(server.api, body)
        split = None
        if args.fine_tune:
            half = len(constitution.QUESTIONS) // 2
            tuned = fine_tune(client, workdir, constitution.QUESTIONS[:half], args.fine_tune)
            held = workdir / "held-out.jsonl"
            held.write_text("\n".join(constitution.eval_lines().splitlines()[half:]) + "\n")
            held_id = client.files.create(file=held.open("rb"), purpose="evals").id
            search = {"vector_store_ids": [store], "max_num_results": 2, "prompt_format": "plain"}
            four = [
                {"name": "base", "model": MODEL},
                {"name": "rag", "model": MODEL, "file_search": search},
                {"name": "ft", "model": tuned},
                {"name": "rag+ft", "model": tuned, "file_search": search},
            ]
            split, _ = run_comparison(
                server.api,
                {"eval_file_id": held_id, "arms": four, "max_tokens": args.max_tokens, "concurrency": 8},
            )
    finally:
        stop_server(server)

    table = Table(title=f"RAG prompt formats, {MODEL}, {len(constitution.QUESTIONS)} questions (token F1)")
    for column in ("arm", "F1 [95% CI]", "exact match", "hit@k", "vs base", "vs " + PEER):
        table.add_column(column)
    rows = []
    for name, data in report["arms"].items():
        m = data["metrics"]
        f1 = m["f1"]
        vs_base = paired(report, name, "base") if name != "base" else None
        vs_peer = paired(report, name, PEER) if name not in ("base", PEER) else None
        rows.append(
            {
                "arm": name,
                "f1": f1,
                "exact_match": m["exact_match"]["mean"],
                "hit_at_k": m.get("hit_at_k", {}).get("mean"),
                "vs_base": vs_base,
                "vs_peer": vs_peer,
            }
        )

        def diff(d: dict | None) -> str:
            return "–" if d is None else f"{d['mean_diff']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]"

        hit = m.get("hit_at_k", {}).get("mean")
        table.add_row(
            name,
            f"{f1['mean']:.3f} [{f1['ci_low']:.3f}, {f1['ci_high']:.3f}]",
            f"{m['exact_match']['mean']:.3f}",
            "–" if hit is None else f"{hit:.3f}",
            diff(vs_base),
            diff(vs_peer),
        )
    console.print(table)
    examples = [
        {
            "question": r["question"],
            "reference": r["reference"],
            **{arm: r["answers"][arm]["text"] for arm in ("base", PEER, "plain-4", "plain-2")},
        }
        for r in report["rows"][:6]
    ]
    for e in examples:
        console.print(e)
    four_arms = None
    if split is not None:
        four = Table(title=f"held-out half ({len(split['rows'])} questions), fine-tune on the other half")
        for column in ("arm", "F1 [95% CI]", "vs rag"):
            four.add_column(column)
        four_arms = []
        for name, data in split["arms"].items():
            f1 = data["metrics"]["f1"]
            vs_rag = paired(split, name, "rag") if name != "rag" else None
            four_arms.append({"arm": name, "f1": f1, "vs_rag": vs_rag})
            four.add_row(
                name,
                f"{f1['mean']:.3f} [{f1['ci_low']:.3f}, {f1['ci_high']:.3f}]",
                "–"
                if vs_rag is None
                else f"{vs_rag['mean_diff']:+.3f} [{vs_rag['ci_low']:+.3f}, {vs_rag['ci_high']:+.3f}]",
            )
        console.print(four)
    write_report(
        args.out,
        {
            "benchmark": "rag_prompt",
            "model": MODEL,
            "questions": len(constitution.QUESTIONS),
            "max_tokens": args.max_tokens,
            "peer": PEER,
            "seconds": round(seconds, 1),
            "machine": {"platform": platform.platform(), "python": platform.python_version()},
            "arms": rows,
            "retrieval_match_rule": report["retrieval_match_rule"],
            "examples": examples,
            "fine_tune_split": four_arms,
        },
    )


if __name__ == "__main__":
    main()
