"""Comparison runs through the API on a FakeEngine whose answer depends on the prompt (RAG sees the code)."""

from __future__ import annotations

import json
import re
import time

import pytest

from server.engines.fake import FakeEngine
from tests.helpers import MODEL, assert_error
from tests.helpers import WAREHOUSE_CODES as CODES


def answer_from_prompt(prompt: str) -> str:
    """Reads the code from the sources when RAG put them in the prompt; otherwise does not know."""
    asked = re.search(r"code of the (\w+) warehouse", prompt)
    found = re.search(rf"The {asked.group(1)} warehouse access code is (\d+)", prompt) if asked else None
    return found.group(1) if found else "I don't know."


def upload(client, path, purpose):
    with open(path, "rb") as f:
        return client.post("/v1/files", data={"purpose": purpose}, files={"file": (path.name, f)}).json()[
            "id"
        ]


@pytest.fixture
def client(make_client):
    return make_client(FakeEngine(respond=answer_from_prompt, max_model_len=4096))


@pytest.fixture
def setup(client):
    return _setup(client)


def _setup(client):
    import tempfile
    from pathlib import Path

    tmp_path = Path(tempfile.mkdtemp())
    docs = tmp_path / "codes.md"
    docs.write_text(
        "\n\n".join(
            f"## {name}\n\nThe {name} warehouse access code is {code}." for name, code in CODES.items()
        )
    )
    doc_id = upload(client, docs, "assistants")
    store = client.post("/v1/vector_stores", json={"file_ids": [doc_id]}).json()["id"]
    for _ in range(200):
        if client.get(f"/v1/vector_stores/{store}").json()["file_counts"]["completed"]:
            break
        time.sleep(0.05)
    evals = tmp_path / "eval.jsonl"
    evals.write_text(
        "\n".join(
            json.dumps(
                {
                    "question": f"What is the access code of the {name} warehouse?",
                    "reference": code,
                    "reference_file_id": doc_id,
                }
            )
            for name, code in CODES.items()
        )
        + "\n"
    )
    return store, upload(client, evals, "evals")


def base_and_rag(store: str) -> list[dict]:
    return [
        {"name": "base", "model": MODEL},
        {"name": "rag", "model": MODEL, "file_search": {"vector_store_ids": [store], "max_num_results": 4}},
    ]


def wait(client, comparison_id):
    for _ in range(600):
        body = client.get(f"/v1/comparisons/{comparison_id}").json()
        if body["status"] in ("completed", "failed"):
            return body
        time.sleep(0.05)
    raise AssertionError(body)


def test_rag_beats_base_with_a_ci_that_excludes_zero(client, setup):
    store, eval_id = setup
    created = client.post(
        "/v1/comparisons",
        json={
            "eval_file_id": eval_id,
            "arms": base_and_rag(store),
        },
    ).json()
    assert created["object"] == "comparison" and created["id"].startswith("cmp_")
    assert created["progress"]["total"] == 16
    body = wait(client, created["id"])
    assert body["status"] == "completed" and body["progress"] == {"done": 16, "total": 16}
    report = body["report"]
    rag, base = report["arms"]["rag"], report["arms"]["base"]
    assert rag["n"] == base["n"] == 8
    assert rag["metrics"]["exact_match"]["mean"] == 1.0 and base["metrics"]["f1"]["mean"] == 0.0
    assert rag["metrics"]["hit_at_k"]["mean"] == 1.0 and rag["metrics"]["mrr"]["mean"] > 0
    assert "hit_at_k" not in base["metrics"]  # base retrieves nothing
    assert base["metrics"]["abstained"]["mean"] == 1.0 and rag["metrics"]["faithfulness"]["mean"] == 1.0
    assert set(rag["metrics"]["f1"]) == {"mean", "ci_low", "ci_high"} and rag["latency_p95_ms"] >= 0
    [f1] = [p for p in report["pairwise"] if p["metric"] == "f1"]
    assert (f1["a"], f1["b"]) == ("base", "rag") and f1["mean_diff"] == -1.0
    assert f1["ci_high"] < 0 and f1["losses"] == 8 and f1["p_value"] < 0.05
    row = report["rows"][0]
    assert row["reference"] == "7431" and row["answers"]["rag"]["text"] == "7431"
    assert row["answers"]["rag"]["sources"][0]["filename"] == "codes.md"
    assert set(row["answers"]["base"]) == {"text", "sources", "latency_ms", "metrics"}
    listed = client.get("/v1/comparisons").json()["data"]
    assert listed[0]["id"] == created["id"] and listed[0]["report"] is None


def test_four_default_arms(client, setup):
    store, eval_id = setup
    client.portal.call(
        client.app.state.services.catalog.add_adapter, "ft:smollm2-135m-instruct:t:00000000", "/a"
    )
    created = client.post(
        "/v1/comparisons",
        json={
            "eval_file_id": eval_id,
            "vector_store_id": store,
            "fine_tuned_model": "ft:smollm2-135m-instruct:t:00000000",
        },
    )
    body = wait(client, created.json()["id"])
    assert list(body["report"]["arms"]) == ["base", "rag", "ft", "rag+ft"]
    assert body["report"]["arms"]["rag+ft"]["metrics"]["exact_match"]["mean"] == 1.0


def test_comparison_errors(client, setup, tmp_path):
    store, eval_id = setup
    cmp = "/v1/comparisons"
    assert_error(client.post(cmp, json={"eval_file_id": "file-nope", "arms": [MODEL]}), 404, "eval_file_id")
    assert_error(client.post(cmp, json={"eval_file_id": eval_id}), 400, "arms")
    assert_error(client.post(cmp, json={"eval_file_id": eval_id, "arms": ["nope"]}), 404, "arms[0].model")
    assert_error(client.post(cmp, json={"eval_file_id": eval_id, "arms": [MODEL, MODEL]}), 400, "arms")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "reference": "r"}\n{"question": ""}\n')
    error = assert_error(
        client.post(cmp, json={"eval_file_id": upload(client, bad, "evals"), "arms": [MODEL]}),
        400,
        "eval_file_id",
    )
    assert "line 2" in error["message"]
    assert_error(client.get(f"{cmp}/cmp_nope"), 404, "comparison_id")


def test_html_report(client, setup):
    store, eval_id = setup
    created = client.post(
        "/v1/comparisons",
        json={
            "eval_file_id": eval_id,
            "arms": [
                {"name": "base", "model": MODEL},
                {"name": "rag", "model": MODEL, "file_search": {"vector_store_ids": [store]}},
            ],
        },
    ).json()
    wait(client, created["id"])
    page = client.get(f"/v1/comparisons/{created['id']}/report.html")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert html.count('<figure class="chart"') >= 3 and html.count('class="errorbar"') >= 6
    assert "real difference" in html and "What is the access code of the Zorblax warehouse?" in html
    assert "<script" not in html  # self-contained, nothing to load or run


def test_llm_as_judge_is_optional(make_client):
    def respond(prompt: str) -> str:
        if "Reply with only yes or no" in prompt:
            return "yes" if re.search(r"Candidate answer: \d+", prompt) else "no"
        return answer_from_prompt(prompt)

    client = make_client(FakeEngine(respond=respond, max_model_len=4096))
    store, eval_id = _setup(client)
    created = client.post(
        "/v1/comparisons",
        json={
            "eval_file_id": eval_id,
            "judge_model": MODEL,
            "arms": [
                {"name": "base", "model": MODEL},
                {"name": "rag", "model": MODEL, "file_search": {"vector_store_ids": [store]}},
            ],
        },
    ).json()
    report = wait(client, created["id"])["report"]
    assert report["arms"]["rag"]["metrics"]["judge"]["mean"] == 1.0
    assert report["arms"]["base"]["metrics"]["judge"]["mean"] == 0.0
    assert_error(
        client.post(
            "/v1/comparisons", json={"eval_file_id": eval_id, "arms": [MODEL], "judge_model": "nope"}
        ),
        404,
        "judge_model",
    )
