"""Contract tests on the FakeEngine: what a request becomes, the exact wire shapes, error bodies."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from server.app import build_app
from server.engines.fake import FakeEngine
from server.settings import Settings
from tests.helpers import assert_error, chat, sse_events, stream_chat


def test_non_stream_wire_shape(client, fake_engine):
    fake_engine.enqueue("Paris is the capital.")
    body = chat(client).json()
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert body["model"] == "smollm2-135m-instruct"
    assert isinstance(body["created"], int)
    [choice] = body["choices"]
    assert choice == {
        "index": 0,
        "message": {
            "role": "assistant",
            "content": "Paris is the capital.",
            "refusal": None,
            "annotations": [],
        },
        "finish_reason": "stop",
        "logprobs": None,
    }
    prompt_len = len(fake_engine.calls[0].prompt_ids)
    assert body["usage"] == {
        "prompt_tokens": prompt_len,
        "completion_tokens": len("Paris is the capital."),
        "total_tokens": prompt_len + len("Paris is the capital."),
    }


def test_request_becomes_sampling_params(client, fake_engine):
    chat(
        client,
        temperature=0.3,
        top_p=0.9,
        max_tokens=7,
        stop=["\n", "END"],
        seed=42,
        n=2,
        presence_penalty=0.5,
        frequency_penalty=0.25,
        ignore_eos=True,
    )
    first, second = fake_engine.calls
    assert first.params.temperature == 0.3 and first.params.top_p == 0.9
    assert first.params.max_tokens == 7
    assert first.params.stop == ("\n", "END")
    assert first.params.presence_penalty == 0.5 and first.params.frequency_penalty == 0.25
    assert first.params.ignore_eos is True
    assert (first.params.seed, second.params.seed) == (42, 43)
    assert first.adapter is None


def test_defaults_and_max_completion_tokens(client, fake_engine):
    chat(client, max_completion_tokens=5)
    chat(client)
    limited, default = fake_engine.calls
    assert limited.params.max_tokens == 5
    assert default.params.temperature == 1.0 and default.params.top_p == 1.0 and default.params.seed is None
    # With no limit, the answer may use the rest of the context.
    assert default.params.max_tokens == 512 - len(default.prompt_ids)


def test_chat_template_renders_all_messages(client, fake_engine):
    chat(
        client,
        messages=[
            {"role": "developer", "content": "Be brief."},
            {
                "role": "user",
                "content": [{"type": "text", "text": "Hello "}, {"type": "text", "text": "there"}],
            },
        ],
    )
    assert fake_engine.calls[0].prompt == "<system>Be brief.\n<user>Hello there\n<assistant>"


def test_length_finish_reason(client, fake_engine):
    fake_engine.enqueue("one two three four")
    body = chat(client, max_tokens=3).json()
    assert body["choices"][0]["message"]["content"] == "one"
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 3


def test_stop_string_is_cut(client, fake_engine):
    fake_engine.enqueue("Paris.\nBerlin.")
    body = chat(client, stop="\n").json()
    assert body["choices"][0]["message"]["content"] == "Paris."
    assert body["choices"][0]["finish_reason"] == "stop"


def test_n_choices(client, fake_engine):
    fake_engine.enqueue("a", "bb")
    body = chat(client, n=2).json()
    assert [c["message"]["content"] for c in body["choices"]] == ["a", "bb"]
    assert [c["index"] for c in body["choices"]] == [0, 1]
    assert body["usage"]["completion_tokens"] == 3


def test_stream_wire_shape(client, fake_engine):
    fake_engine.enqueue("Paris")
    with client.stream(
        "POST",
        "/v1/chat/completions",
        json={
            "model": "smollm2-135m-instruct",
            "messages": [{"role": "user", "content": "Hi"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Paris"
    finals = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert [f["choices"][0]["finish_reason"] for f in finals] == ["stop"]
    usage_chunk = chunks[-1]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == 5
    assert usage_chunk["usage"]["total_tokens"] == usage_chunk["usage"]["prompt_tokens"] + 5


def test_stream_without_usage_has_no_usage_chunk(client, fake_engine):
    status, events = stream_chat(client)
    assert status == 200
    assert all(e == "[DONE]" or e["choices"] for e in events)


def test_unknown_fields_are_ignored(client):
    response = chat(client, some_future_field={"x": 1}, user="u1", metadata={"a": "b"}, store=False)
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "param", "code"),
    [
        ({"model": "nope"}, 404, "model", "model_not_found"),
        ({"messages": []}, 400, "messages", None),
        ({"messages": [{"role": "wizard", "content": "x"}]}, 400, "messages[0].role", None),
        ({"max_tokens": -1}, 400, "max_tokens", None),
        ({"max_tokens": 0}, 400, "max_tokens", None),
        ({"temperature": 3}, 400, "temperature", None),
        ({"top_p": 0}, 400, "top_p", None),
        ({"n": 0}, 400, "n", None),
        ({"stop": ["a", "b", "c", "d", "e"]}, 400, "stop", None),
        ({"messages": [{"role": "user", "content": "x" * 600}]}, 400, "messages", "context_length_exceeded"),
        ({"max_tokens": 10_000}, 400, "max_tokens", "context_length_exceeded"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, 400, "tools", None),
        ({"response_format": {"type": "json_object"}}, 400, "response_format", None),
        ({"model": "all-minilm-l6-v2"}, 400, "model", "model_not_supported"),
    ],
)
def test_bad_requests(client, body, status, param, code):
    assert_error(chat(client, **body), status, param, code)


def test_missing_field_and_bad_json(client):
    assert_error(
        client.post("/v1/chat/completions", json={"model": "smollm2-135m-instruct"}),
        400,
        "messages",
        "missing_required_parameter",
    )
    response = client.post(
        "/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_error(response, 400)
    assert_error(client.post("/v1/chat/completions", json=[1, 2]), 400)


def test_unknown_route_and_method(client):
    assert_error(client.get("/v1/nothing-here"), 404)
    assert_error(client.get("/v1/chat/completions"), 405)


def test_overload_is_503_with_retry_after(make_client):
    client = make_client(FakeEngine(max_queue=0))
    response = chat(client)
    assert_error(response, 503, code="overloaded")
    assert response.headers["retry-after"] == "1"
    assert stream_chat(client)[0] == 503


def test_models_list_and_retrieve(client):
    body = client.get("/v1/models").json()
    assert body["object"] == "list"
    ids = {m["id"]: m for m in body["data"]}
    assert set(ids) == {"smollm2-135m-instruct", "all-minilm-l6-v2"}
    assert ids["smollm2-135m-instruct"]["object"] == "model"
    assert ids["smollm2-135m-instruct"]["owned_by"] == "ragtune"
    assert client.get("/v1/models/smollm2-135m-instruct").json()["id"] == "smollm2-135m-instruct"
    assert_error(client.get("/v1/models/nope"), 404, "model", "model_not_found")


def test_served_model_name_setting(make_client):
    client = make_client(model_name="my-bot")
    assert chat(client, model="my-bot").status_code == 200
    assert_error(chat(client), 404, "model", "model_not_found")


def test_auth(make_client):
    client = make_client(api_key="k1, k2")
    assert client.get("/health").status_code == 200
    assert_error(client.get("/v1/models"), 401, code="invalid_api_key")
    assert_error(client.get("/v1/models", headers={"Authorization": "Bearer wrong"}), 401)
    assert_error(client.get("/v1/models", headers={"Authorization": "Basic k1"}), 401)
    assert_error(client.get("/metrics"), 401)
    assert_error(client.get("/v1/unknown"), 401)  # unknown routes do not reveal themselves
    for key in ("k1", "k2"):
        assert client.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code == 200


def test_health_and_metrics(client, fake_engine):
    assert client.get("/health").json()["status"] == "ok"
    fake_engine.enqueue("abc")
    chat(client)
    text = client.get("/metrics").text
    assert 'ragtune_completion_tokens_total{model="smollm2-135m-instruct"} 3.0' in text
    assert "ragtune_prompt_tokens_total" in text
    assert "ragtune_time_to_first_token_seconds_count" in text
    assert 'http_requests_total{handler="/v1/chat/completions"' in text
    assert "ragtune_engine_running_sequences" in text


def test_stream_n_choices_interleave_and_finish(client, fake_engine):
    fake_engine.enqueue("ab", "xyz")
    status, events = stream_chat(client, n=2, stream_options={"include_usage": True})
    assert status == 200
    assert events[-1] == "[DONE]"
    texts = {0: "", 1: ""}
    finished = {}
    for chunk in events[:-1]:
        for choice in chunk["choices"]:
            texts[choice["index"]] += choice["delta"].get("content") or ""
            if choice["finish_reason"]:
                finished[choice["index"]] = choice["finish_reason"]
    assert texts == {0: "ab", 1: "xyz"}
    assert finished == {0: "stop", 1: "stop"}
    assert events[-2]["usage"]["completion_tokens"] == 5


class BrokenEngine(FakeEngine):
    async def generate(self, prompt_ids, params, adapter=None):
        raise RuntimeError("CUDA exploded: /secret/path/model.py line 12")
        yield  # pragma: no cover


def test_engine_failure_is_a_clean_500(tmp_path, embedder):
    app = build_app(Settings(data_dir=tmp_path), engine=BrokenEngine(), embedder=embedder)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = chat(client)
    error = assert_error(response, 500)
    assert error["type"] == "server_error"
    assert "secret" not in response.text and "Traceback" not in response.text


def test_adapters_are_models_and_reach_the_engine(client, fake_engine):
    catalog = client.app.state.services.catalog
    client.portal.call(catalog.add_adapter, "ft:smollm2-135m-instruct:zephyr:abc12345", "/adapters/x")
    models = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
    ft = models["ft:smollm2-135m-instruct:zephyr:abc12345"]
    assert ft["parent"] == ft["root"] == "smollm2-135m-instruct" and ft["kind"] == "chat"
    assert fake_engine.adapters == {"ft:smollm2-135m-instruct:zephyr:abc12345": "/adapters/x"}
    chat(client, model="ft:smollm2-135m-instruct:zephyr:abc12345")
    chat(client)
    assert [c.adapter for c in fake_engine.calls] == ["ft:smollm2-135m-instruct:zephyr:abc12345", None]
