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
        messages=[{"role": "system", "content": "Be long."}, {"role": "user", "content": "Hi"}],
    )
    call = fake_engine.calls[-1]
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
