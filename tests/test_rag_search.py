"""One knowledge-base search serves `/v1/vector_stores/{id}/search`, chat RAG and comparisons: the same
hits, the same filters, errors naming the client's own field; and the real `openai` client parses every
knowledge-base response (over the in-process app, no server)."""

from __future__ import annotations

import json
import time

import openai
import pytest

from server.engines.fake import FakeEngine
from tests.helpers import MODEL, assert_error, chat

HR = "## Leave\n\nEmployees get twenty-eight days of paid holiday a year; holiday requests go to HR."
IT = "## Holiday cover\n\nDuring the holiday season the IT desk is staffed on weekdays; call extension 4455."
HOLIDAY = "How many days of paid holiday do employees get?"


def upload(client, tmp_path, name: str, text: str, purpose: str = "assistants") -> str:
    path = tmp_path / name
    path.write_text(text)
    with open(path, "rb") as f:
        response = client.post("/v1/files", data={"purpose": purpose}, files={"file": (name, f)})
    assert response.status_code == 200, response.text
    return response.json()["id"]


def wait_for_store(client, store_id: str) -> None:
    for _ in range(600):
        if client.get(f"/v1/vector_stores/{store_id}").json()["file_counts"]["in_progress"] == 0:
            return
        time.sleep(0.05)
    raise AssertionError("ingestion did not finish")


@pytest.fixture
def engine() -> FakeEngine:
    # Room for every source: a small context would drop sources from the prompt, not from the search.
    return FakeEngine(max_model_len=16_384)


@pytest.fixture
def depts(make_client, engine, tmp_path):
    """A store with an HR file and an IT file (attribute `dept`), both about holidays."""
    client = make_client(engine)
    hr = upload(client, tmp_path, "leave.md", HR)
    it = upload(client, tmp_path, "it-desk.md", IT)
    store_id = client.post("/v1/vector_stores", json={"name": "depts"}).json()["id"]
    for file_id, dept in ((hr, "hr"), (it, "it")):
        client.post(
            f"/v1/vector_stores/{store_id}/files", json={"file_id": file_id, "attributes": {"dept": dept}}
        )
    wait_for_store(client, store_id)
    return client, store_id, hr, it


def cited(body: dict) -> list[tuple[str, str, float]]:
    return [(a["file_id"], a["chunk_id"], a["score"]) for a in body["choices"][0]["message"]["annotations"]]


def test_search_and_chat_rag_return_the_same_hits(depts):
    client, store_id, hr, it = depts
    query = {"max_num_results": 2, "ranking_options": {"ranker": "dense", "score_threshold": 0.0}}
    found = client.post(f"/v1/vector_stores/{store_id}/search", json={"query": HOLIDAY, **query}).json()
    body = chat(
        client,
        messages=[{"role": "user", "content": HOLIDAY}],
        file_search={"vector_store_ids": [store_id], **query},
    ).json()
    hits = [(h["file_id"], h["chunk_id"], h["score"]) for h in found["data"]]
    assert {h[0] for h in hits} == {hr, it}
    assert cited(body) == hits


def test_chat_file_search_filters_narrow_the_sources(depts, engine):
    client, store_id, hr, it = depts
    search = {"vector_store_ids": [store_id], "ranking_options": {"score_threshold": 0.0}}
    both = chat(client, messages=[{"role": "user", "content": HOLIDAY}], file_search=search).json()
    assert {c[0] for c in cited(both)} == {hr, it}
    only_it = chat(
        client,
        messages=[{"role": "user", "content": HOLIDAY}],
        file_search={**search, "filters": {"type": "eq", "key": "dept", "value": "it"}},
    ).json()
    assert {c[0] for c in cited(only_it)} == {it}
    assert "extension 4455" in engine.calls[-1].prompt and "twenty-eight" not in engine.calls[-1].prompt
    assert only_it["file_search"]["results"] == 1


def test_a_bad_search_is_reported_at_the_clients_own_field(depts, tmp_path):
    client, store_id, _, _ = depts
    magic = {"vector_store_ids": [store_id], "ranking_options": {"ranker": "magic"}}
    # /search's own field (`ranking_options.ranker`) is checked in test_knowledge_bases.
    assert_error(chat(client, file_search=magic), 400, "file_search.ranking_options.ranker")
    assert_error(
        chat(client, file_search={"vector_store_ids": [store_id], "filters": {"type": "like"}}),
        400,
        "file_search.filters",
    )
    assert_error(
        client.post("/v1/profiles", json={"name": "kb", "model": MODEL, "file_search": magic}),
        400,
        "file_search.ranking_options.ranker",
    )
    evals = upload(client, tmp_path, "eval.jsonl", json.dumps({"question": "q", "reference": "a"}), "evals")
    arms = [{"name": "base", "model": MODEL}, {"name": "rag", "model": MODEL, "file_search": magic}]
    assert_error(
        client.post("/v1/comparisons", json={"eval_file_id": evals, "arms": arms}),
        400,
        "arms[1].file_search.ranking_options.ranker",
    )
    missing = {"name": "rag", "model": MODEL, "file_search": {"vector_store_ids": [store_id, "vs_nope"]}}
    assert_error(
        client.post("/v1/comparisons", json={"eval_file_id": evals, "arms": [missing]}),
        404,
        "arms[0].file_search.vector_store_ids",
        "vector_store_not_found",
    )
    assert_error(
        client.post("/v1/comparisons", json={"eval_file_id": store_id, "arms": [MODEL]}),
        404,
        "eval_file_id",
        "file_not_found",
    )


def test_the_openai_client_parses_every_knowledge_base_response(depts, tmp_path):
    client, store_id, hr, it = depts
    api = openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=client, max_retries=0)
    uploaded = api.files.create(
        file=("notes.md", b"# Notes\n\nThe Quindle code is 2958."), purpose="assistants"
    )
    assert uploaded.object == "file" and uploaded.status == "processed"
    assert api.files.retrieve(uploaded.id).filename == "notes.md"
    assert uploaded.id in {f.id for f in api.files.list()}
    store = api.vector_stores.retrieve(store_id)
    assert store.file_counts.completed == 2 and store.status == "completed"
    assert store_id in {s.id for s in api.vector_stores.list(limit=5)}
    vs_file = api.vector_stores.files.retrieve(file_id=hr, vector_store_id=store_id)
    assert vs_file.status == "completed" and vs_file.attributes == {"dept": "hr"}
    assert {f.id for f in api.vector_stores.files.list(vector_store_id=store_id)} == {hr, it}
    batch = api.vector_stores.file_batches.create(vector_store_id=store_id, file_ids=[uploaded.id])
    assert batch.object == "vector_store.files_batch"
    wait_for_store(client, store_id)
    assert api.vector_stores.file_batches.retrieve(batch.id, vector_store_id=store_id).status == "completed"
    [hit] = api.vector_stores.search(store_id, query="Quindle code", max_num_results=1)
    assert hit.file_id == uploaded.id and "2958" in hit.content[0].text
    assert hit.model_extra["chunk_id"] and hit.model_extra["vector_store_id"] == store_id
    parts = list(api.vector_stores.files.content(uploaded.id, vector_store_id=store_id))
    assert "2958" in parts[0].text
    assert api.vector_stores.files.delete(uploaded.id, vector_store_id=store_id).deleted
    assert api.files.delete(uploaded.id).deleted
    assert api.vector_stores.delete(store_id).deleted


def test_an_error_inside_a_union_member_names_the_field_not_the_type(client):
    body = {"eval_file_id": "file-x", "arms": ["a", {"name": "b", "model": "m", "file_search": {"x": 1}}]}
    error = client.post("/v1/comparisons", json=body).json()["error"]
    assert error["param"].startswith("arms[1].file_search"), error
