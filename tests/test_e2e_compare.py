"""A comparison on the real model through the real server: RAG beats the base model on F1, for real."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.helpers import MODEL
from tests.helpers import WAREHOUSE_CODES as CODES

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def warehouses(live_server, tmp_path_factory):
    """One short document per warehouse in a knowledge base, and an eval file asking for each code."""
    tmp = tmp_path_factory.mktemp("compare")
    client = openai.OpenAI(base_url=live_server.api, api_key="unused", max_retries=0, timeout=300)
    store = client.vector_stores.create(name="warehouses")
    file_ids = {}
    for name, code in CODES.items():
        path = tmp / f"{name}.md"
        path.write_text(
            f"# {name} warehouse\n\nThe {name} warehouse access code is {code}. Keep it private.\n"
        )
        file_ids[name] = client.files.create(file=path.open("rb"), purpose="assistants").id
    batch = client.vector_stores.file_batches.create_and_poll(
        vector_store_id=store.id, file_ids=list(file_ids.values()), poll_interval_ms=200
    )
    assert batch.file_counts.completed == len(CODES)
    evals = tmp / "eval.jsonl"
    evals.write_text(
        "\n".join(
            json.dumps(
                {
                    "question": f"What is the access code of the {name} warehouse?",
                    "reference": code,
                    "reference_file_id": file_ids[name],
                }
            )
            for name, code in CODES.items()
        )
        + "\n"
    )
    arms = [
        {"name": "base", "model": MODEL},
        {
            "name": "rag",
            "model": MODEL,
            "file_search": {"vector_store_ids": [store.id], "max_num_results": 1},
        },
    ]
    return client, evals, arms


def test_rag_beats_base_on_the_real_model(live_server, warehouses):
    client, evals, arms = warehouses
    eval_file = client.files.create(file=evals.open("rb"), purpose="evals")
    with httpx.Client(base_url=live_server.api, timeout=60) as http:
        created = http.post(
            "/comparisons", json={"eval_file_id": eval_file.id, "max_tokens": 40, "arms": arms}
        )
        comparison_id = created.json()["id"]
        deadline = time.monotonic() + 600
        while (body := http.get(f"/comparisons/{comparison_id}").json())["status"] not in (
            "completed",
            "failed",
        ):
            assert time.monotonic() < deadline
            time.sleep(1)
        assert body["status"] == "completed", body["error"]
        page = http.get(f"/comparisons/{comparison_id}/report.html")
    report = body["report"]
    [f1] = [p for p in report["pairwise"] if p["metric"] == "f1"]
    assert (f1["a"], f1["b"]) == ("base", "rag")
    answers = [r["answers"]["rag"]["text"] for r in report["rows"]]
    assert f1["ci_high"] < 0, answers  # rag - base > 0, with a CI that excludes zero
    assert report["arms"]["rag"]["metrics"]["hit_at_k"]["mean"] >= 0.75
    assert page.status_code == 200 and "errorbar" in page.text


def test_compare_cli_writes_json_and_html(live_server, warehouses, tmp_path):
    _, evals, arms = warehouses
    ragtune = str(Path(sys.executable).parent / "ragtune")
    result = subprocess.run(
        [
            ragtune,
            "compare",
            "--eval",
            str(evals),
            "--arms",
            json.dumps(arms),
            "--out",
            str(tmp_path / "r.json"),
            "--html",
            str(tmp_path / "r.html"),
            "--max-tokens",
            "40",
            "--base-url",
            live_server.api,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert set(report["arms"]) == {"base", "rag"} and len(report["rows"]) == len(CODES)
    assert "errorbar" in (tmp_path / "r.html").read_text()
    assert "rag" in result.stdout and "base" in result.stdout


def run(http: httpx.Client, body: dict, timeout: float = 1500) -> dict:
    """POST /comparisons and wait for it; the completed report."""
    comparison = http.post("/comparisons", json=body).json()
    deadline = time.monotonic() + timeout
    while comparison["status"] not in ("completed", "failed"):
        assert time.monotonic() < deadline, comparison["progress"]
        time.sleep(1)
        comparison = http.get(f"/comparisons/{comparison['id']}").json()
    assert comparison["status"] == "completed", comparison["error"]
    return comparison["report"]


@pytest.fixture(scope="module")
def constitution_kb(live_server, tmp_path_factory):
    """Passages of the US Constitution (public domain) in a knowledge base, and 40 questions on them."""
    from tests.data import constitution

    constitution.check()
    tmp = tmp_path_factory.mktemp("constitution")
    client = openai.OpenAI(base_url=live_server.api, api_key="unused", max_retries=0, timeout=300)
    paths = constitution.write(tmp / "docs")
    ids = [client.files.create(file=p.open("rb"), purpose="assistants").id for p in paths.values()]
    store = client.vector_stores.create(name="constitution")
    batch = client.vector_stores.file_batches.create_and_poll(
        vector_store_id=store.id, file_ids=ids, poll_interval_ms=200
    )
    assert batch.file_counts.completed == len(ids)
    evals = tmp / "eval.jsonl"
    evals.write_text(constitution.eval_lines())
    return store.id, client.files.create(file=evals.open("rb"), purpose="evals").id


# About 3 minutes on 2 cores: 40 questions x 2 arms, greedy, the RAG prompts a few hundred tokens each.
@pytest.mark.timeout(1800)
def test_rag_beats_base_on_real_questions_over_real_documents(live_server, constitution_kb):
    """The server's default RAG prompt (auto: plain for this model) over a real knowledge base: the
    answer-bearing passage is retrieved for at least 0.8 of the questions, and RAG beats the base model on
    token F1 with a paired 95% interval that excludes 0."""
    store, eval_id = constitution_kb
    arms = [
        {"name": "base", "model": MODEL},
        {"name": "rag", "model": MODEL, "file_search": {"vector_store_ids": [store], "max_num_results": 4}},
    ]
    with httpx.Client(base_url=live_server.api, timeout=60) as http:
        report = run(http, {"eval_file_id": eval_id, "arms": arms, "max_tokens": 48, "concurrency": 8})
    rag, base = report["arms"]["rag"]["metrics"], report["arms"]["base"]["metrics"]
    [f1] = [p for p in report["pairwise"] if p["metric"] == "f1"]
    print(
        f"\nbase F1 {base['f1']['mean']:.3f}, rag F1 {rag['f1']['mean']:.3f}, rag - base "
        f"{-f1['mean_diff']:+.3f} [{-f1['ci_high']:+.3f}, {-f1['ci_low']:+.3f}] (better on {f1['losses']}, "
        f"worse on {f1['wins']}), hit@4 {rag['hit_at_k']['mean']:.3f}, MRR {rag['mrr']['mean']:.3f}"
    )
    assert rag["hit_at_k"]["mean"] >= 0.8, [r["answers"]["rag"]["sources"] for r in report["rows"]]
    assert f1["ci_high"] < 0, [(r["reference"], r["answers"]["rag"]["text"]) for r in report["rows"]]
    assert report["retrieval_match_rule"]


# About 2 minutes: 4 questions, a greedy and a sampled arm (n=2), twice, one request at a time.
@pytest.mark.timeout(1200)
def test_the_same_comparison_gives_the_same_answers(live_server, constitution_kb):
    """Greedy and seeded sampled arms, run twice one request at a time (so the batched engine sees the
    same batches), give the same answers; the sampled arm's two samples per question differ somewhere."""
    store, _ = constitution_kb
    from tests.data import constitution

    client = openai.OpenAI(base_url=live_server.api, api_key="unused", max_retries=0, timeout=300)
    lines = constitution.eval_lines().splitlines()[:4]
    eval_id = client.files.create(file=("four.jsonl", ("\n".join(lines) + "\n").encode()), purpose="evals").id
    search = {"vector_store_ids": [store], "max_num_results": 2}
    arms = [
        {"name": "greedy", "model": MODEL, "file_search": search},
        {"name": "sampled", "model": MODEL, "file_search": search, "temperature": 1.0, "n": 2, "seed": 7},
    ]
    body = {"eval_file_id": eval_id, "arms": arms, "max_tokens": 24, "concurrency": 1}
    with httpx.Client(base_url=live_server.api, timeout=60) as http:
        first, second = run(http, body), run(http, body)

    def texts(report: dict) -> list:
        return [
            (r["answers"]["greedy"]["text"], [s["text"] for s in r["answers"]["sampled"]["samples"]])
            for r in report["rows"]
        ]

    assert texts(first) == texts(second)
    assert any(len(set(samples)) > 1 for _, samples in texts(first))  # the samples are samples
    assert first["engine"]["name"] == "transformers"
