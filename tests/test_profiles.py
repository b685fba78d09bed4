"""Profiles: named arms listed as models and usable as `model` by clients that send no extensions."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from server.app import build_app
from server.engines.fake import FakeEngine
from server.settings import Settings
from tests.helpers import MODEL, assert_error, chat


@pytest.fixture
def store_id(client, tmp_path):
    return make_store(client, tmp_path)


def make_store(client, tmp_path) -> str:
    """A knowledge base holding one policy file, ingested."""
    path = tmp_path / "policy.md"
    path.write_text("# Policy\n\nThe Zorblax warehouse access code is 7431.\n")
    with open(path, "rb") as f:
        file_id = client.post(
            "/v1/files", data={"purpose": "assistants"}, files={"file": ("policy.md", f)}
        ).json()["id"]
    store = client.post("/v1/vector_stores", json={"file_ids": [file_id]}).json()["id"]
    for _ in range(200):
        if client.get(f"/v1/vector_stores/{store}").json()["file_counts"]["completed"]:
            return store
        __import__("time").sleep(0.05)
    raise AssertionError("not ingested")


def test_profile_is_a_model_with_its_defaults(client, fake_engine, store_id):
    client.portal.call(
        client.app.state.services.catalog.add_adapter, "ft:smollm2-135m-instruct:x:12345678", "/a"
    )
    created = client.post(
        "/v1/profiles",
        json={
            "name": "rag+ft",
            "model": "ft:smollm2-135m-instruct:x:12345678",
            "system": "Answer briefly.",
            "file_search": {"vector_store_ids": [store_id], "max_num_results": 2},
            "temperature": 0.2,
            "max_tokens": 30,
        },
    ).json()
    assert created["object"] == "profile" and created["name"] == "rag+ft"
    card = {m["id"]: m for m in client.get("/v1/models").json()["data"]}["rag+ft"]
    assert card["kind"] == "profile" and card["parent"] == "ft:smollm2-135m-instruct:x:12345678"
    body = chat(
        client, model="rag+ft", messages=[{"role": "user", "content": "What is the Zorblax code?"}]
    ).json()
    call = fake_engine.calls[-1]
    assert body["model"] == "rag+ft"
    assert call.adapter == "ft:smollm2-135m-instruct:x:12345678"
    assert call.params.temperature == 0.2 and call.params.max_tokens == 30
    assert call.prompt.startswith("<system>Answer briefly.") and "7431" in call.prompt
    assert body["choices"][0]["message"]["annotations"][0]["filename"] == "policy.md"
    chat(
        client,
        model="rag+ft",
        temperature=0.9,
        messages=[
            {"role": "system", "content": "Be long."},
            {"role": "user", "content": "What is the Zorblax code?"},
        ],
    )
    call = fake_engine.calls[-1]
    assert len(fake_engine.calls) == 2  # both found the code: both generated
    assert call.params.temperature == 0.9 and "Answer briefly." not in call.prompt  # the request wins


def test_profiles_survive_a_restart_and_can_be_deleted(tmp_path, embedder):
    settings = Settings(data_dir=tmp_path / "data")
    with TestClient(build_app(settings, engine=FakeEngine(), embedder=embedder)) as client:
        client.post("/v1/profiles", json={"name": "terse", "model": MODEL, "system": "One word."})
    with TestClient(build_app(settings, engine=FakeEngine(), embedder=embedder)) as client:
        assert client.get("/v1/profiles/terse").json()["system"] == "One word."
        assert [p["name"] for p in client.get("/v1/profiles").json()["data"]] == ["terse"]
        assert client.delete("/v1/profiles/terse").json()["deleted"] is True
        assert_error(client.get("/v1/profiles/terse"), 404, "name", "profile_not_found")
        assert_error(chat(client, model="terse"), 404, "model", "model_not_found")


def test_profile_errors(client):
    assert_error(client.post("/v1/profiles", json={"name": "x", "model": "nope"}), 404, "model")
    assert_error(client.post("/v1/profiles", json={"name": MODEL, "model": MODEL}), 409, "name", "name_taken")
    assert_error(client.post("/v1/profiles", json={"name": "bad name", "model": MODEL}), 400, "name")
    assert_error(
        client.post(
            "/v1/profiles",
            json={"name": "kb", "model": MODEL, "file_search": {"vector_store_ids": ["vs_nope"]}},
        ),
        404,
        "file_search.vector_store_ids",
    )
    client.post("/v1/profiles", json={"name": "p1", "model": MODEL})
    assert_error(client.post("/v1/profiles", json={"name": "p2", "model": "p1"}), 400, "model")
    assert_error(
        client.post("/v1/profiles", json={"name": "p3", "model": MODEL, "colour": "red"}), 400, "colour"
    )


def test_a_profile_with_knowledge_and_an_adapter_answers_with_tools_and_schemas(make_client, tmp_path):
    """Retrieval, then a tool call or a schema answer, through a profile on an `ft:` model."""
    from common.chat_format import format_tool_call

    engine = FakeEngine(max_model_len=8192)  # one token per character: sources and tools are long
    client = make_client(engine)
    store = make_store(client, tmp_path)
    adapter = "ft:smollm2-135m-instruct:x:12345678"
    client.portal.call(client.app.state.services.catalog.add_adapter, adapter, "/a")
    profile = {"name": "kb-ft", "model": adapter, "file_search": {"vector_store_ids": [store]}}
    assert client.post("/v1/profiles", json=profile).status_code == 200
    tool = {
        "type": "function",
        "function": {
            "name": "open_door",
            "parameters": {"type": "object", "properties": {"code": {"type": "string"}}},
        },
    }
    engine.enqueue(format_tool_call("open_door", {"code": "7431"}), '{"code": "7431"}')
    question = [{"role": "user", "content": "Open the Zorblax warehouse door."}]
    body = chat(client, model="kb-ft", messages=question, tools=[tool], tool_choice="required").json()
    call = engine.calls[-1]
    assert call.adapter == adapter and "7431" in call.prompt and "<tools>" in call.prompt
    assert call.params.structured.kind == "structural_tag"
    [choice] = body["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"][0]["function"]["arguments"] == '{"code": "7431"}'
    assert choice["message"]["annotations"][0]["filename"] == "policy.md"
    schema = {"type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "code", "schema": schema}}
    body = chat(client, model="kb-ft", messages=question, response_format=fmt).json()
    assert engine.calls[-1].params.structured.kind == "json_schema" and "7431" in engine.calls[-1].prompt
    assert body["choices"][0]["message"]["content"] == '{"code": "7431"}'
