"""Contract tests on the FakeEngine: what a request becomes, the exact wire shapes, error bodies."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from server.app import build_app
from server.engines.base import Delta
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
    assert finals[0]["choices"][0]["delta"] == {}  # OpenAI's last delta is empty
    assert all(set(c["choices"][0]["delta"]) <= {"role", "content"} for c in chunks if c["choices"])
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
        ({"top_p": 1.5}, 400, "top_p", None),
        ({"n": 0}, 400, "n", None),
        ({"stop": ["a", "b", "c", "d", "e"]}, 400, "stop", None),
        ({"messages": [{"role": "user", "content": "x" * 600}]}, 400, "messages", "context_length_exceeded"),
        ({"max_tokens": 10_000}, 400, "max_tokens", "context_length_exceeded"),
        (
            {"tools": [{"type": "function", "function": {"name": "bad name"}}]},
            400,
            "tools[0].function.name",
            None,
        ),
        ({"tools": [{"type": "retrieval"}]}, 400, "tools[0].type", None),
        (
            {
                "tools": [{"type": "function", "function": {"name": "f"}}],
                "tool_choice": {"type": "function", "function": {"name": "g"}},
            },
            400,
            "tool_choice",
            None,
        ),
        ({"functions": [{"name": "f"}], "function_call": {"name": "g"}}, 400, "function_call", None),
        ({"function_call": {"name": "f"}}, 400, "function_call", "invalid_value"),
        ({"response_format": {"type": "json_schema"}}, 400, "response_format", None),
        ({"response_format": {"type": "yaml"}}, 400, "response_format.type", None),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {"type": "objx"}},
                }
            },
            400,
            "response_format.json_schema.schema",
            None,
        ),
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
    assert set(ids) == {"smollm2-135m-instruct", "all-minilm-l6-v2", "multilingual-e5-small"}
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


# ---- issue 11: every numeric field bounded, nullable fields, extensions, wire shapes ---------------------

INT64_MAX = 2**63 - 1


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"seed": INT64_MAX + 1}, "seed"),
        ({"seed": -(2**63) - 1}, "seed"),
        ({"seed": 2**64}, "seed"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": 2.01}, "temperature"),
        ({"top_p": -0.1}, "top_p"),
        ({"n": 17}, "n"),
        ({"presence_penalty": 2.5}, "presence_penalty"),
        ({"frequency_penalty": -2.5}, "frequency_penalty"),
        ({"logit_bias": {"65": 101}}, "logit_bias"),
        ({"logit_bias": {"65": -100.5}}, "logit_bias"),
        ({"logit_bias": {"hello": 1}}, "logit_bias"),
        ({"logit_bias": {"-1": 1}}, "logit_bias"),
        ({"logit_bias": {str(0x110000): 1}}, "logit_bias"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": -1}, "top_logprobs"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"logprobs": False, "top_logprobs": 2}, "top_logprobs"),
        ({"top_k": -2}, "top_k"),
        ({"min_p": 1.5}, "min_p"),
        ({"min_p": -0.5}, "min_p"),
        ({"repetition_penalty": 0}, "repetition_penalty"),
        ({"repetition_penalty": 2.5}, "repetition_penalty"),
        ({"max_completion_tokens": 0}, "max_completion_tokens"),
    ],
)
def test_out_of_range_values_are_400_naming_the_field(client, fake_engine, body, param):
    assert_error(chat(client, **body), 400, param)
    assert fake_engine.calls == []


def post_raw(client, raw: str):
    """POST a body as written: Python's JSON reader accepts NaN, Infinity and lone surrogates."""
    return client.post("/v1/chat/completions", content=raw, headers={"content-type": "application/json"})


RAW_HEAD = '{"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "Hi"}]'


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_400(client, literal):
    for field in ("temperature", "top_p", "presence_penalty", "min_p", "repetition_penalty"):
        assert_error(post_raw(client, f'{RAW_HEAD}, "{field}": {literal}}}'), 400, field)
    assert_error(post_raw(client, f'{RAW_HEAD}, "logit_bias": {{"65": {literal}}}}}'), 400)


def test_seed_extremes_wrap_per_choice(client, fake_engine):
    assert chat(client, seed=INT64_MAX, n=3).status_code == 200
    assert [c.params.seed for c in fake_engine.calls] == [INT64_MAX, 0, 1]
    assert chat(client, seed=-(2**63), n=2).status_code == 200
    assert [c.params.seed for c in fake_engine.calls[3:]] == [0, 1]
    assert chat(client, seed=-1).status_code == 200
    assert fake_engine.calls[-1].params.seed == INT64_MAX


def test_tiny_temperature_and_top_p_zero_are_greedy(client, fake_engine):
    assert chat(client, temperature=1e-40, max_tokens=3).status_code == 200
    assert chat(client, top_p=0, max_tokens=3).status_code == 200
    tiny, zero_p = fake_engine.calls
    assert tiny.params.temperature == 1e-40 and tiny.params.greedy
    assert zero_p.params.top_p == 0.0 and zero_p.params.greedy


NULLABLE = (
    "n",
    "stream",
    "temperature",
    "top_p",
    "presence_penalty",
    "frequency_penalty",
    "stop",
    "seed",
    "max_tokens",
    "max_completion_tokens",
    "logprobs",
    "top_logprobs",
    "logit_bias",
    "user",
    "stream_options",
    "response_format",
    "tools",
    "tool_choice",
    "functions",
    "function_call",
    "ignore_eos",
    "top_k",
    "min_p",
    "repetition_penalty",
    "continue_final_message",
    "add_generation_prompt",
    "file_search",
    "audio",
    "modalities",
    "metadata",
)


def test_explicit_null_means_the_default(client, fake_engine):
    chat(client)
    for field in NULLABLE:
        response = chat(client, **{field: None})
        assert response.status_code == 200, (field, response.text)
        assert response.json()["object"] == "chat.completion"
    everything = chat(client, **dict.fromkeys(NULLABLE))
    assert everything.status_code == 200, everything.text
    default = fake_engine.calls[0]
    assert all(call.params == default.params for call in fake_engine.calls)
    assert all(call.prompt == default.prompt for call in fake_engine.calls)


def test_tool_choice_none_answers_in_text(client, fake_engine):
    fake_engine.enqueue("A poem.", "Another.")
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    body = chat(client, tools=tools, tool_choice="none").json()
    assert body["choices"][0]["message"]["content"] == "A poem."
    functions = [{"name": "get_weather", "parameters": {"type": "object"}}]
    body = chat(client, functions=functions, function_call="none").json()
    assert body["choices"][0]["message"]["content"] == "Another."


def test_refusal_parts_in_assistant_history(client, fake_engine):
    messages = [
        {"role": "user", "content": "Do something bad."},
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "I can't help with that."}]},
        {"role": "user", "content": [{"type": "text", "text": "OK, something good."}]},
    ]
    assert chat(client, messages=messages).status_code == 200
    assert "<assistant>I can't help with that.\n" in fake_engine.calls[0].prompt
    user_refusal = [{"role": "user", "content": [{"type": "refusal", "refusal": "no"}]}]
    assert_error(chat(client, messages=user_refusal), 400, "messages[0].content[0].type")


@pytest.mark.parametrize(
    "part",
    [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
        {"type": "file", "file": {"file_id": "file-abc"}},
    ],
)
def test_media_parts_get_a_text_only_400(client, fake_engine, part):
    messages = [{"role": "user", "content": [{"type": "text", "text": "What is this?"}, part]}]
    error = assert_error(chat(client, messages=messages), 400, "messages[0].content[1].type")
    assert "text only" in error["message"]
    assert "valid string" not in error["message"]
    assert fake_engine.calls == []


def test_malformed_content_parts(client):
    bad_type = [{"role": "user", "content": [{"type": "video", "text": "x"}]}]
    assert_error(chat(client, messages=bad_type), 400, "messages[0].content[0].type")
    no_text = [{"role": "user", "content": [{"type": "text"}]}]
    assert_error(chat(client, messages=no_text), 400, "messages[0].content[0].text")
    surrogate = '{"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "a\\ud800b"}]}'
    assert_error(post_raw(client, surrogate), 400, "messages[0].content")


def test_logit_bias_reaches_the_engine(client, fake_engine):
    assert chat(client, logit_bias={}).status_code == 200  # LangChain sends an empty one
    assert chat(client, logit_bias={"66": 5.5, "65": -100}).status_code == 200
    empty, biased = fake_engine.calls
    assert empty.params.logit_bias == ()
    assert biased.params.logit_bias == ((65, -100.0), (66, 5.5))
    # A key is a token id as written by str(int): "0065" would be a second spelling of 65.
    assert_error(chat(client, logit_bias={"0065": 3}), 400, "logit_bias")


def test_vllm_sampling_extensions_reach_the_engine(client, fake_engine):
    chat(client, top_k=5, min_p=0.1, repetition_penalty=1.3)
    chat(client, top_k=-1)
    chat(client, top_k=INT64_MAX)
    chat(client)
    custom, all_k, huge_k, default = fake_engine.calls
    assert (custom.params.top_k, custom.params.min_p, custom.params.repetition_penalty) == (5, 0.1, 1.3)
    assert all_k.params.top_k == 0 and huge_k.params.top_k == 0  # both mean "every token"
    assert (default.params.top_k, default.params.min_p, default.params.repetition_penalty) == (0, 0.0, 1.0)
    assert default.params.logprobs is None


def test_logprobs_non_stream_shape(client, fake_engine):
    fake_engine.enqueue("Hé")
    body = chat(client, logprobs=True, top_logprobs=2).json()
    assert fake_engine.calls[0].params.logprobs == 2
    logprobs = body["choices"][0]["logprobs"]
    assert logprobs == {
        "content": [
            {
                "token": "H",
                "logprob": -0.5,
                "bytes": [72],
                "top_logprobs": [
                    {"token": "H", "logprob": -0.5, "bytes": [72]},
                    {"token": "I", "logprob": -1.5, "bytes": [73]},
                ],
            },
            {
                "token": "é",
                "logprob": -0.5,
                "bytes": [195, 169],
                "top_logprobs": [
                    {"token": "é", "logprob": -0.5, "bytes": [195, 169]},
                    {"token": "ê", "logprob": -1.5, "bytes": [195, 170]},
                ],
            },
        ],
        "refusal": None,
    }
    fake_engine.enqueue("ab")
    body = chat(client, logprobs=True).json()
    assert fake_engine.calls[1].params.logprobs == 0
    assert [t["top_logprobs"] for t in body["choices"][0]["logprobs"]["content"]] == [[], []]
    assert chat(client, logprobs=False).json()["choices"][0]["logprobs"] is None


def test_logprobs_stream_every_chunk_carries_its_tokens(client, fake_engine):
    fake_engine.enqueue("Paris")
    status, events = stream_chat(client, logprobs=True, top_logprobs=1)
    assert status == 200 and events[-1] == "[DONE]"
    tokens = []
    for chunk in events[:-1]:
        for choice in chunk["choices"]:
            content = choice["delta"].get("content")
            if content:
                entries = choice["logprobs"]["content"]
                assert "".join(e["token"] for e in entries) == content
                assert all(len(e["top_logprobs"]) == 1 for e in entries)
                tokens += entries
    assert "".join(t["token"] for t in tokens) == "Paris"
    status, events = stream_chat(client)
    assert all(c["choices"][0]["logprobs"] is None for c in events[:-1] if c["choices"])


def test_continue_final_message(client, fake_engine):
    messages = [
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "The capital of France is"},
    ]
    fake_engine.enqueue(" Paris.")
    body = chat(client, messages=messages, continue_final_message=True, add_generation_prompt=False).json()
    assert body["choices"][0]["message"]["content"] == " Paris."
    assert fake_engine.calls[0].prompt.endswith("<assistant>The capital of France is")
    chat(client, messages=messages, continue_final_message=True)  # add_generation_prompt follows it
    assert fake_engine.calls[1].prompt == fake_engine.calls[0].prompt
    chat(client, messages=messages, add_generation_prompt=False)
    assert fake_engine.calls[2].prompt.endswith("<assistant>The capital of France is\n")
    both = chat(client, messages=messages, continue_final_message=True, add_generation_prompt=True)
    assert_error(both, 400, "continue_final_message")
    assert_error(chat(client, continue_final_message=True), 400, "messages")


def test_default_answer_length(tmp_path, make_client):
    assert Settings(data_dir=tmp_path).default_max_tokens == 512
    assert Settings(data_dir=tmp_path, default_max_tokens=64).default_max_tokens == 64
    engine = FakeEngine(max_model_len=8192)
    chat(make_client(engine))
    assert engine.calls[0].params.max_tokens == 512
    assert Settings(data_dir=tmp_path, batch_invariant=True).batch_invariant is True
    assert Settings(data_dir=tmp_path).batch_invariant is False


def test_response_finish_reasons_are_openais():
    from server.chat.protocol import Choice, ChunkChoice

    reasons = ["stop", "length", "tool_calls", "function_call"]
    assert Choice.model_json_schema()["properties"]["finish_reason"]["enum"] == reasons
    chunk_reason = ChunkChoice.model_json_schema()["properties"]["finish_reason"]["anyOf"][0]
    assert chunk_reason["enum"] == reasons


class MidStreamFailure(FakeEngine):
    """Fails after the first delta of every request whose prompt asks for it."""

    async def generate(self, prompt_ids, params, adapter=None):
        poisoned = "poison" in self.tokenizer.decode(prompt_ids)
        async for i, delta in _enumerate(super().generate(prompt_ids, params, adapter)):
            if poisoned and i == 1:
                raise RuntimeError("CUDA exploded: /secret/path/model.py line 12")
            yield delta


async def _enumerate(stream):
    i = 0
    async for item in stream:
        yield i, item
        i += 1


def test_mid_stream_failure_is_an_error_event_for_that_request_only(make_client):
    engine = MidStreamFailure()
    client = make_client(engine)
    status, events = stream_chat(client, messages=[{"role": "user", "content": "poison"}])
    assert status == 200
    assert events[-1] == "[DONE]"
    error = events[-2]["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "server_error"
    assert "secret" not in error["message"]
    healthy = stream_chat(client)
    assert healthy[0] == 200 and healthy[1][-1] == "[DONE]"
    assert all("error" not in e for e in healthy[1][:-1])


def test_one_failing_choice_stops_its_siblings(make_client):
    engine = MidStreamFailure(delay=0.01)
    engine.enqueue("ab", "a much longer answer that would take a while")
    client = make_client(engine)
    response = chat(client, n=2, messages=[{"role": "user", "content": "poison"}])
    assert_error(response, 500)
    assert engine.running == 0 and engine.cancelled >= 1


class AbortingEngine(FakeEngine):
    """Ends every sequence with a finish reason OpenAI does not define (as vLLM's `abort` once did)."""

    async def generate(self, prompt_ids, params, adapter=None):
        yield Delta("partial")
        yield Delta("", "abort", len(prompt_ids), 1)


def test_a_finish_reason_openai_lacks_never_reaches_the_client(make_client):
    client = make_client(AbortingEngine())
    assert_error(chat(client), 500)
    status, events = stream_chat(client)
    assert status == 200 and events[-1] == "[DONE]"
    assert events[-2]["error"]["type"] == "server_error"
    assert not any(c.get("choices") and c["choices"][0]["finish_reason"] for c in events[:-1])


def test_real_tokenizer_continue_final_message_and_logprob_tokens(make_client, smol_tokenizer):
    """The real SmolLM2 chat template continues the assistant's message; logprob tokens are the
    tokenizer's own strings (each id decoded alone) with their UTF-8 bytes."""
    engine = FakeEngine(tokenizer=smol_tokenizer)
    client = make_client(engine)
    messages = [
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "The capital of France is"},
    ]
    engine.enqueue(" Paris")
    body = chat(client, messages=messages, continue_final_message=True, logprobs=True, top_logprobs=1)
    prompt = smol_tokenizer.decode(engine.calls[0].prompt_ids)
    assert prompt.endswith("<|im_start|>assistant\nThe capital of France is")
    [entry] = body.json()["choices"][0]["logprobs"]["content"]
    assert entry["token"] == " Paris" and entry["bytes"] == list(b" Paris")
    assert_error(chat(client, logit_bias={"49152": 1}), 400, "logit_bias")
    assert chat(client, logit_bias={"49151": 1, "504": -100}).status_code == 200


TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"tool_choice": "auto"}, "tool_choice"),
        ({"tool_choice": "none"}, "tool_choice"),
        ({"tools": [], "tool_choice": "none"}, "tools"),
        ({"tools": []}, "tools"),
        ({"parallel_tool_calls": False}, "parallel_tool_calls"),
        ({"function_call": "auto"}, "function_call"),
        ({"function_call": "none"}, "function_call"),
        ({"functions": []}, "functions"),
    ],
)
def test_tool_options_without_tools_are_400(client, body, param):
    """OpenAI refuses tool options that steer no tools, and empty tool lists; so do we."""
    assert_error(chat(client, **body), 400, param)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"temperature": True}, "temperature"),
        ({"top_p": "0.5"}, "top_p"),
        ({"max_tokens": True}, "max_tokens"),
        ({"max_tokens": 2.0}, "max_tokens"),
        ({"n": "2"}, "n"),
        ({"seed": "7"}, "seed"),
        ({"stream": "yes"}, "stream"),
        ({"stream": 1}, "stream"),
        ({"logprobs": "true"}, "logprobs"),
        ({"stream": True, "stream_options": {"include_usage": "yes"}}, "stream_options.include_usage"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"logit_bias": {"5": "1"}}, "logit_bias.5"),
    ],
)
def test_types_are_strict(client, body, param):
    """`true` is not a number and `"2"` is not an integer: OpenAI answers 400, and so do we."""
    assert_error(chat(client, **body), 400, param)


def test_integers_are_accepted_where_numbers_go(client, fake_engine):
    assert chat(client, temperature=1, top_p=1, presence_penalty=0).status_code == 200
    assert fake_engine.calls[-1].params.temperature == 1.0


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        ([{"role": "user"}], "messages[0]"),
        ([{"role": "user", "content": None}], "messages[0]"),
        ([{"role": "user", "content": []}], "messages[0].content"),
        ([{"role": "system"}, {"role": "user", "content": "hi"}], "messages[0]"),
        ([{"role": "user", "content": "hi"}, {"role": "assistant"}], "messages[1]"),
    ],
)
def test_messages_need_content(client, messages, param):
    assert_error(chat(client, messages=messages), 400, param)


def test_assistant_tool_calls_in_history_need_no_content(client, fake_engine):
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
    ]
    assert chat(client, messages=messages).status_code == 200


@pytest.mark.parametrize("stream", [False, None])
def test_stream_options_need_stream(client, stream):
    response = chat(client, stream=stream, stream_options={"include_usage": True})
    assert_error(response, 400, "stream_options")


@pytest.mark.parametrize(
    ("field", "path", "param"),
    [
        ("temperature", "/v1/chat/completions", "temperature"),
        ("seed", "/v1/chat/completions", "seed"),
        ("max_tokens", "/v1/chat/completions", "max_tokens"),
        ("dimensions", "/v1/embeddings", "dimensions"),
    ],
)
def test_an_integer_past_pythons_digit_limit_is_400_naming_its_field(client, field, path, param):
    """Python refuses to parse integers over 4300 digits; the field holding one is named, not the body."""
    model = "smollm2-135m-instruct" if "chat" in path else "all-minilm-l6-v2"
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "input": "x"}
    raw = json.dumps(body)[:-1] + f', "{field}": -{"9" * 5001}}}'
    response = client.post(path, content=raw, headers={"content-type": "application/json"})
    assert_error(response, 400, param)


def test_logprobs_are_those_of_the_returned_content(client, fake_engine):
    """Tokens of a stop string cut from the text are not in logprobs (streamed or not)."""
    fake_engine.enqueue("Hello world")
    body = chat(client, logprobs=True, stop=["lo w"]).json()
    choice = body["choices"][0]
    assert choice["message"]["content"] == "Hel"
    assert [e["token"] for e in choice["logprobs"]["content"]] == ["H", "e", "l"]
    fake_engine.enqueue("Hello world")
    status, events = stream_chat(client, logprobs=True, stop=["lo w"])
    text, tokens = "", []
    for chunk in events[:-1]:
        for c in chunk["choices"]:
            text += c["delta"].get("content") or ""
            tokens += [e["token"] for e in (c["logprobs"] or {}).get("content") or ()]
    assert text == "Hel" and tokens == ["H", "e", "l"]


def test_real_tokenizer_logprob_bytes_rebuild_the_text(make_client, smol_tokenizer):
    """A byte-level BPE token holding part of a UTF-8 character carries its raw bytes (OpenAI's
    `bytes:\\x..` string): the bytes of every token, joined, are the answer's UTF-8; tokens of a stop
    string cut away and the end-of-sequence token are not listed."""
    engine = FakeEngine(tokenizer=smol_tokenizer)
    client = make_client(engine)
    engine.enqueue("你好 café 🙂 and more")
    choice = chat(client, logprobs=True, top_logprobs=2, stop=[" and"]).json()["choices"][0]
    content, entries = choice["message"]["content"], choice["logprobs"]["content"]
    assert content == "你好 café 🙂"
    assert b"".join(bytes(e["bytes"]) for e in entries) == content.encode()
    assert entries[0]["token"].startswith("bytes:\\x") and "\ufffd" not in entries[0]["token"]
    for alt in (a for e in entries for a in e["top_logprobs"]):
        assert "\ufffd" not in alt["token"]
    engine.enqueue("Oui<|im_end|>")
    choice = chat(client, logprobs=True).json()["choices"][0]
    assert "".join(e["token"] for e in choice["logprobs"]["content"]) == choice["message"]["content"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"repetition_penalty": 1e-40}, "repetition_penalty"),
        ({"reasoning_effort": "low"}, "reasoning_effort"),
        ({"verbosity": "low"}, "verbosity"),
        ({"web_search_options": {}}, "web_search_options"),
        ({"prediction": {"type": "content", "content": "x"}}, "prediction"),
        ({"logit_bias": {" 5": 1}}, "logit_bias"),
        ({"logit_bias": {"05": 1}}, "logit_bias"),
    ],
)
def test_fields_that_would_change_the_answer_are_refused(client, body, param):
    assert_error(chat(client, **body), 400, param)


def test_an_answer_cut_mid_character_ends_before_it_and_its_logprobs_match(make_client, smol_tokenizer):
    """max_tokens may end an answer inside a character (an emoji is several byte-level tokens): the
    content ends before it, as on vLLM, and the logprobs are those of the content, every byte of it."""
    engine = FakeEngine(tokenizer=smol_tokenizer)
    client = make_client(engine)
    reply = "😀🎉🚀👩"
    ids = smol_tokenizer.encode(reply, add_special_tokens=False)
    for limit in range(1, len(ids) + 1):
        engine.enqueue(reply)
        choice = chat(client, logprobs=True, max_tokens=limit).json()["choices"][0]
        content = choice["message"]["content"]
        assert "\ufffd" not in content and reply.startswith(content)
        assert b"".join(bytes(e["bytes"]) for e in choice["logprobs"]["content"]) == content.encode()
