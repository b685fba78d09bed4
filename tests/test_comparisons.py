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


def sampled_answer(prompt: str, params) -> str:
    """Greedy: reads the code from the sources (as answer_from_prompt). Sampled: right or wrong by the
    request's seed (even seeds right), so the answer depends on the seed and on nothing else."""
    right = answer_from_prompt(prompt)
    if not params.temperature:
        return right
    return right if params.seed % 2 == 0 else "0000"


def test_sampled_arm_repeats_each_question_and_reports_the_spread(make_client):
    client = make_client(FakeEngine(respond=sampled_answer, max_model_len=4096))
    store, eval_id = _setup(client)
    search = {"vector_store_ids": [store], "max_num_results": 4}
    arms = [
        {"name": "greedy", "model": MODEL, "file_search": search},
        {"name": "sampled", "model": MODEL, "file_search": search, "temperature": 0.8, "n": 4},
    ]
    created = client.post("/v1/comparisons", json={"eval_file_id": eval_id, "arms": arms}).json()
    assert created["arms"][1]["seed"] == 0  # a sampled arm without a seed is seeded, and says so
    assert "seed" not in created["arms"][0]  # a greedy one needs none
    report = wait(client, created["id"])["report"]
    sampled, greedy = report["arms"]["sampled"], report["arms"]["greedy"]
    assert (sampled["samples_per_question"], greedy["samples_per_question"]) == (4, 1)
    assert greedy["metrics"]["exact_match"]["mean"] == 1.0
    assert "within_question_sd" not in greedy["metrics"]["exact_match"]
    rows = [r["answers"]["sampled"] for r in report["rows"]]
    assert all(len(r["samples"]) == 4 for r in rows)
    # Samples j = 0..3 of a question are seeded seed_q + j: two even, two odd, so two right of four.
    for r in rows:
        assert [s["metrics"]["exact_match"] for s in r["samples"]] in (
            [1.0, 0.0, 1.0, 0.0],
            [0.0, 1.0, 0.0, 1.0],
        )
        assert r["metrics"]["exact_match"] == 0.5 and r["text"] == r["samples"][0]["text"]
    assert sampled["metrics"]["exact_match"]["mean"] == 0.5
    assert sampled["metrics"]["exact_match"]["within_question_sd"] == 0.5
    # The same comparison again samples the same answers (seeds from the arm's seed and the question).
    again = wait(
        client, client.post("/v1/comparisons", json={"eval_file_id": eval_id, "arms": arms}).json()["id"]
    )
    assert [r["answers"]["sampled"]["samples"] for r in again["report"]["rows"]] == [
        r["samples"] for r in rows
    ]
    assert_error(
        client.post(
            "/v1/comparisons", json={"eval_file_id": eval_id, "arms": [{"name": "g", "model": MODEL, "n": 3}]}
        ),
        400,
        "arms[0].n",
    )


def test_question_seeds_do_not_depend_on_order_or_neighbours():
    from evals.runner import question_seed

    assert question_seed(0, "What is the code?") == question_seed(0, "What is the code?")
    assert question_seed(0, "What is the code?") != question_seed(1, "What is the code?")
    assert question_seed(0, "What is the code?") != question_seed(0, "What is the other code?")
    assert 0 <= question_seed(2**63 - 1, "q") < 2**63


def test_pairwise_judge_asks_both_orders_and_reports_position_bias(make_client):
    """A judge that always prefers the answer shown first: every question's two verdicts disagree, so no
    arm wins, every question is inconsistent and the first-position rate is 1. A fair judge (prefers the
    right answer wherever it is shown) gives rag every win and a first-position rate of 0.5."""
    asked: list[str] = []
    judge = {"biased": True}

    def respond(prompt: str) -> str:
        if "Reply with only A or B" in prompt:
            asked.append(prompt)
            if judge["biased"]:
                return "A"
            a = re.search(r"Answer A: (.*)\n", prompt).group(1)
            return "A" if a.isdigit() else "B"
        return answer_from_prompt(prompt)

    client = make_client(FakeEngine(respond=respond, max_model_len=4096))
    store, eval_id = _setup(client)
    body = {
        "eval_file_id": eval_id,
        "judge_model": MODEL,
        "judge_mode": "pairwise",
        "arms": [
            {"name": "base", "model": MODEL},
            {"name": "rag", "model": MODEL, "file_search": {"vector_store_ids": [store]}},
        ],
    }
    for biased, expected in [(True, None), (False, "rag")]:
        asked.clear()
        judge["biased"] = biased
        created = client.post("/v1/comparisons", json=body).json()
        assert created["progress"]["total"] == 8 * 2 + 8  # answers, then one judged pair per question
        done = wait(client, created["id"])
        assert done["progress"]["done"] == done["progress"]["total"]
        report = done["report"]
        [summary] = report["judge_pairwise"]
        assert len(asked) == 16  # each question twice, in both orders
        assert (summary["a"], summary["b"], summary["n"]) == ("base", "rag", 8)
        assert "judge" not in report["arms"]["rag"]["metrics"]  # pairwise, not pointwise
        if expected is None:
            assert summary["ties"] == summary["inconsistent"] == 8 and summary["first_position_rate"] == 1.0
            assert summary["a_score"]["mean"] == 0.5
        else:
            assert summary["wins_b"] == 8 and summary["inconsistent"] == 0
            assert summary["first_position_rate"] == 0.5 and summary["a_score"]["mean"] == 0.0
        row = report["rows"][0]["judge_pairwise"][0]
        assert set(row) == {"a", "b", "a_first", "b_first"}


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        ("A", "A"),
        ("b.", "B"),
        ("Answer A", "A"),
        ("**B**", "B"),
        ("tie", "tie"),
        ("", "tie"),
        ("Both", "tie"),
    ],
)
def test_pair_verdicts_are_parsed_strictly(reply, verdict):
    from server.comparisons.service import parse_pair_verdict

    assert parse_pair_verdict(reply) == verdict


def test_openai_evals_file_and_graders(client, setup, tmp_path):
    """An eval in OpenAI's shape: {"item": {...}} rows and its testing_criteria (string_check,
    text_similarity) run as a comparison; each grader is a metric with intervals and paired differences.
    An item without a reference field takes the graders' reference ({{item.correct_code}})."""
    store, _ = setup
    evals = tmp_path / "openai.jsonl"
    evals.write_text(
        "\n".join(
            json.dumps(
                {"item": {"input": f"What is the access code of the {name} warehouse?", "correct_code": code}}
            )
            for name, code in CODES.items()
        )
        + "\n"
    )
    eval_id = upload(client, evals, "evals")
    criteria = [
        {
            "type": "string_check",
            "name": "code_given",
            "input": "{{ sample.output_text }}",
            "reference": "{{ item.correct_code }}",
            "operation": "ilike",
        },
        {
            "type": "text_similarity",
            "name": "close",
            "input": "{{sample.output_text}}",
            "reference": "{{item.correct_code}}",
            "evaluation_metric": "fuzzy_match",
            "pass_threshold": 0.8,
        },
    ]
    body = {"eval_file_id": eval_id, "arms": base_and_rag(store), "testing_criteria": criteria}
    report = wait(client, client.post("/v1/comparisons", json=body).json()["id"])["report"]
    rag, base = report["arms"]["rag"]["metrics"], report["arms"]["base"]["metrics"]
    assert rag["code_given"]["mean"] == 1.0 and base["code_given"]["mean"] == 0.0
    assert (
        rag["close"]["mean"] == 1.0
        and rag["close_score"]["mean"] == 1.0
        and base["close_score"]["mean"] < 0.5
    )
    assert rag["exact_match"]["mean"] == 1.0  # the reference came from {{item.correct_code}}
    assert any(p["metric"] == "code_given" and p["ci_high"] < 0 for p in report["pairwise"])

    refused = {**body, "testing_criteria": [{"type": "label_model", "name": "tone", "model": "x"}]}
    error = assert_error(client.post("/v1/comparisons", json=refused), 400, "testing_criteria")
    assert "label_model" in error["message"] and "string_check" in error["message"]
    missing = {**body, "testing_criteria": [criteria[0], {**criteria[1], "input": "{{item.nope}}"}]}
    error = assert_error(client.post("/v1/comparisons", json=missing), 400, "eval_file_id")
    assert "nope" in error["message"] and "line 1" in error["message"]


def test_arms_that_differ_only_in_retrieval_settings(client, setup):
    """Knowledge-base configurations compared as arms: the same model, with the ranker, the number of
    sources and the prompt format changed; each arm's retrieval is its own (one source vs four)."""
    store, eval_id = setup
    arms = [
        {"name": f"{ranker}-{k}", "model": MODEL, "file_search": search}
        for ranker, k in [("bm25", 1), ("dense", 4), ("hybrid", 2)]
        for search in [
            {
                "vector_store_ids": [store],
                "max_num_results": k,
                "ranking_options": {"ranker": ranker},
                "prompt_format": "plain" if k == 1 else "cited",
            }
        ]
    ]
    report = wait(
        client, client.post("/v1/comparisons", json={"eval_file_id": eval_id, "arms": arms}).json()["id"]
    )["report"]
    assert set(report["arms"]) == {"bm25-1", "dense-4", "hybrid-2"}
    for row in report["rows"]:
        assert len(row["answers"]["bm25-1"]["sources"]) == 1
        assert 1 <= len(row["answers"]["hybrid-2"]["sources"]) <= 2
    assert all(report["arms"][a]["metrics"]["hit_at_k"]["mean"] == 1.0 for a in report["arms"])
    assert report["arms"]["bm25-1"]["metrics"]["exact_match"]["mean"] == 1.0
    bad = [
        {
            "name": "x",
            "model": MODEL,
            "file_search": {"vector_store_ids": [store], "ranking_options": {"ranker": "magic"}},
        }
    ]
    assert_error(client.post("/v1/comparisons", json={"eval_file_id": eval_id, "arms": bad}), 400)


def test_an_arm_can_answer_through_the_responses_api(client, setup):
    """The same RAG arm through /v1/chat/completions and through /v1/responses (the file_search tool)
    gives the same answers, sources and metrics: what an application on the Responses API would see."""
    store, eval_id = setup
    search = {"vector_store_ids": [store], "max_num_results": 4}
    arms = [
        {"name": "chat", "model": MODEL, "file_search": search},
        {"name": "responses", "model": MODEL, "file_search": search, "api": "responses"},
        {"name": "responses-base", "model": MODEL, "api": "responses"},
    ]
    created = client.post("/v1/comparisons", json={"eval_file_id": eval_id, "arms": arms})
    body = wait(client, created.json()["id"])
    assert body["status"] == "completed", body
    report = body["report"]
    chat, responses = report["arms"]["chat"], report["arms"]["responses"]
    assert responses["metrics"]["exact_match"]["mean"] == chat["metrics"]["exact_match"]["mean"] == 1.0
    assert responses["metrics"]["hit_at_k"] == chat["metrics"]["hit_at_k"]
    assert report["arms"]["responses-base"]["metrics"]["abstained"]["mean"] == 1.0
    for row in report["rows"]:
        via_chat, via_responses = row["answers"]["chat"], row["answers"]["responses"]
        assert via_responses["text"] == via_chat["text"]
        assert [s["file_id"] for s in via_responses["sources"]] == [s["file_id"] for s in via_chat["sources"]]
        assert [s["score"] for s in via_responses["sources"]] == [s["score"] for s in via_chat["sources"]]
    # Nothing of a comparison is stored as a response.
    assert client.app.state.services.db.one("SELECT COUNT(*) AS n FROM responses")["n"] == 0


def test_responses_arm_limits(client, setup):
    store, eval_id = setup
    arm = {"name": "r", "model": MODEL, "api": "responses", "temperature": 0.7, "n": 2}
    response = client.post("/v1/comparisons", json={"eval_file_id": eval_id, "arms": [arm]})
    assert_error(response, 400, "arms[0].n")
    arm = {"name": "r", "model": MODEL, "api": "responses"}
    response = client.post("/v1/comparisons", json={"eval_file_id": eval_id, "arms": [arm], "max_tokens": 8})
    assert_error(response, 400, "max_tokens")
