"""Comparison benchmark: questions/s of a comparison run per arm, vs a plain script asking one by one.

The server gets a knowledge base of one-fact documents and an eval file of questions about them. For
each arm (`base`, `rag`) a comparison runs with that arm alone (the runner sends 4 questions at a time;
the engine batches them), timed until `completed`. The peer is what a user's own script would do: the
`openai` client asking the same questions one after another with the same settings. The ratio
runner/script is the figure. Then what credibility costs: the same comparison with the rag arm sampled
4 times per question, with a pointwise judge, and with a pairwise judge asked in both orders, each as a
multiple of the greedy run's time.

    .venv/bin/python bench/bench_compare.py [--questions 32]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import openai
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import RESULTS, run_comparison, write_report  # noqa: E402
from tests.conftest import start_server, stop_server  # noqa: E402

NAMES = ["Zorblax", "Quindle", "Marrow", "Tessel", "Brinley", "Ostrava", "Pellam", "Vexford"]
MODEL = "smollm2-135m-instruct"
MAX_TOKENS = 40


def setup(client: openai.OpenAI, workdir: Path, n_questions: int) -> tuple[str, Path, list[str]]:
    store = client.vector_stores.create(name="bench-compare")
    ids = []
    for i, name in enumerate(NAMES):
        path = workdir / f"{name}.md"
        path.write_text(f"# {name} warehouse\n\nThe {name} warehouse access code is {1000 + 37 * i}.\n")
        ids.append(client.files.create(file=path.open("rb"), purpose="assistants").id)
    client.vector_stores.file_batches.create_and_poll(
        vector_store_id=store.id, file_ids=ids, poll_interval_ms=200
    )
    questions = [
        f"What is the access code of the {NAMES[i % len(NAMES)]} warehouse?" for i in range(n_questions)
    ]
    evals = workdir / "eval.jsonl"
    evals.write_text(
        "\n".join(
            json.dumps({"question": q, "reference": str(1000 + 37 * (i % len(NAMES)))})
            for i, q in enumerate(questions)
        )
        + "\n"
    )
    return store.id, evals, questions


def runner_rate(api: str, eval_id: str, arm: dict, n: int) -> float:
    """Questions/s of a comparison run with `arm` alone on the `n` questions of `eval_id`."""
    _, seconds = run_comparison(api, {"eval_file_id": eval_id, "arms": [arm], "max_tokens": MAX_TOKENS})
    return n / seconds


def costs(api: str, eval_id: str, arms: list[dict]) -> list[dict]:
    """What repeats and a judge add: the same base-vs-rag comparison plain, with the rag arm sampled 4
    times per question, with a pointwise judge, and with a pairwise judge (both orders), each timed; the
    ratio is its time over the plain run's."""
    plain = {"eval_file_id": eval_id, "arms": arms, "max_tokens": MAX_TOKENS}
    sampled = [arms[0], {**arms[1], "name": "rag-n4", "temperature": 0.7, "n": 4, "seed": 1}]
    variants = [
        ("base + rag (greedy)", plain),
        ("rag sampled n=4", {**plain, "arms": sampled}),
        ("pointwise judge", {**plain, "judge_model": MODEL}),
        ("pairwise judge, both orders", {**plain, "judge_model": MODEL, "judge_mode": "pairwise"}),
    ]
    rows = []
    for name, body in variants:
        rows.append({"variant": name, "seconds": run_comparison(api, body)[1]})
    for row in rows:
        row["ratio_to_plain"] = row["seconds"] / rows[0]["seconds"]
    return rows


def script_rate(client: openai.OpenAI, arm: dict, questions: list[str]) -> float:
    extra = {"file_search": arm["file_search"]} if "file_search" in arm else None
    start = time.perf_counter()
    for question in questions:
        client.chat.completions.create(
            model=arm["model"],
            temperature=0,
            max_tokens=MAX_TOKENS,
            extra_body=extra,
            messages=[{"role": "user", "content": question}],
        )
    return len(questions) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--questions", type=int, default=32)
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_compare.json")
    args = parser.parse_args()
    workdir = ROOT / "data" / "bench-compare"
    workdir.mkdir(parents=True, exist_ok=True)
    server = start_server(workdir, {"RAGTUNE_MODELS_DIR": str(ROOT / "data" / "models")})
    rows = []
    try:
        client = openai.OpenAI(base_url=server.api, api_key="unused", max_retries=0, timeout=300)
        store, evals, questions = setup(client, workdir, args.questions)
        eval_id = client.files.create(file=evals.open("rb"), purpose="evals").id
        arms = [
            {"name": "base", "model": MODEL},
            {
                "name": "rag",
                "model": MODEL,
                "file_search": {"vector_store_ids": [store], "max_num_results": 1},
            },
        ]
        script_rate(client, arms[0], questions[:2])  # warm-up
        for arm in arms:
            runner = runner_rate(server.api, eval_id, arm, len(questions))
            script = script_rate(client, arm, questions)
            rows.append(
                {
                    "arm": arm["name"],
                    "runner_questions_per_s": runner,
                    "script_questions_per_s": script,
                    "ratio": runner / script,
                }
            )
        extra = costs(server.api, eval_id, arms)
    finally:
        stop_server(server)
    table = Table(title=f"comparison runs: {args.questions} questions per arm, {MAX_TOKENS}-token answers")
    for col in ("arm", "comparison run q/s", "one-by-one script q/s", "ratio"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            r["arm"],
            f"{r['runner_questions_per_s']:.2f}",
            f"{r['script_questions_per_s']:.2f}",
            f"{r['ratio']:.2f}",
        )
    Console(width=120).print(table)
    cost_table = Table(title="what repeats and a judge cost (same questions, base + rag arms)")
    for col in ("variant", "seconds", "× the greedy run"):
        cost_table.add_column(col, justify="right")
    for r in extra:
        cost_table.add_row(r["variant"], f"{r['seconds']:.1f}", f"{r['ratio_to_plain']:.2f}")
    Console(width=120).print(cost_table)
    write_report(
        args.out,
        {
            "benchmark": "compare",
            "peer": "openai client, questions asked one after another",
            "questions": args.questions,
            "max_tokens": MAX_TOKENS,
            "results": rows,
            "costs": extra,
            "machine": {"platform": platform.platform()},
        },
    )


if __name__ == "__main__":
    main()
