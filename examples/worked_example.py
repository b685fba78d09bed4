"""End to end: documents → knowledge base, example conversations → fine-tune, then compare the four arms.

Run against a server started with `make run` (or pass --base-url):

    .venv/bin/python examples/worked_example.py

Documents: eight one-line warehouse notes (answerable by retrieval). Conversations: twenty facts about
a made-up product, two phrasings each (answerable by the fine-tune). The eval asks about both, so each
arm's strengths show: `rag` on the warehouses, `ft` on the product, `rag+ft` on both.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx
import openai

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.data.make_facts import FACTS, write  # noqa: E402

WAREHOUSES = {"Zorblax": "7431", "Quindle": "2958", "Marrow": "6604", "Tessel": "1187"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--out", type=Path, default=Path("worked_example_report.json"))
    args = parser.parse_args()
    client = openai.OpenAI(base_url=args.base_url, api_key="unused", max_retries=0, timeout=600)
    model = client.models.list().data[0].id
    tmp = Path(tempfile.mkdtemp())

    # 1. Documents into a knowledge base
    store = client.vector_stores.create(name="warehouses")
    ids = []
    for name, code in WAREHOUSES.items():
        path = tmp / f"{name}.md"
        path.write_text(f"# {name} warehouse\n\nThe {name} warehouse access code is {code}.\n")
        ids.append(client.files.create(file=path.open("rb"), purpose="assistants").id)
    client.vector_stores.file_batches.create_and_poll(vector_store_id=store.id, file_ids=ids)
    print(f"knowledge base {store.id}: {len(ids)} documents")

    # 2. Example conversations into a fine-tune
    training = client.files.create(
        file=write(tmp / "zephyr.jsonl", phrasings=2).open("rb"), purpose="fine-tune"
    )
    job = client.fine_tuning.jobs.create(model=model, training_file=training.id, suffix="zephyr", seed=11)
    while (job := client.fine_tuning.jobs.retrieve(job.id)).status not in (
        "succeeded",
        "failed",
        "cancelled",
    ):
        time.sleep(5)
    if job.status != "succeeded":
        sys.exit(f"fine-tuning {job.status}: {job.error}")
    print(f"fine-tuned {job.fine_tuned_model} (retention {job.model_extra['metrics']['retention']:.2f})")

    # 3. Questions about both, compared on the four default arms
    rows = [
        {"question": f"What is the access code of the {n} warehouse?", "reference": c}
        for n, c in WAREHOUSES.items()
    ]
    rows += [{"question": q, "reference": k} for q, _, k in FACTS[:8]]
    evals = tmp / "eval.jsonl"
    evals.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    eval_id = client.files.create(file=evals.open("rb"), purpose="evals").id
    with httpx.Client(base_url=args.base_url, timeout=60) as http:
        comparison = http.post(
            "/comparisons",
            json={
                "eval_file_id": eval_id,
                "vector_store_id": store.id,
                "fine_tuned_model": job.fine_tuned_model,
                "max_num_results": 1,
                "max_tokens": 40,
            },
        ).json()
        while comparison["status"] not in ("completed", "failed"):
            time.sleep(2)
            comparison = http.get(f"/comparisons/{comparison['id']}").json()
    report = comparison["report"]
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    print(f"\nreport: {args.base_url}/comparisons/{comparison['id']}/report.html\n")
    print("| arm | F1 [95% CI] | ROUGE-L | p50 latency ms |")
    print("| --- | --- | --- | --- |")
    for arm, data in report["arms"].items():
        f1, rouge = data["metrics"]["f1"], data["metrics"]["rouge_l"]
        print(
            f"| {arm} | {f1['mean']:.3f} [{f1['ci_low']:.3f}, {f1['ci_high']:.3f}] | {rouge['mean']:.3f} | "
            f"{data['latency_p50_ms']:.0f} |"
        )


if __name__ == "__main__":
    main()
