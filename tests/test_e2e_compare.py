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
