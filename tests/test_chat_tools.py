"""Structured output and tools on the scripted engine: what reaches the engine, how answers are read.

The engines' own enforcement of the grammar is tested on real models (test_engine_conformance.py,
test_transformers_rows.py); here the replies are scripted, so these tests pin the wire shapes."""

from __future__ import annotations

import json

import pytest

from common.chat_format import flatten_tools, format_tool_call, parse_tool_calls
from server.engines.fake import FakeEngine
from tests.helpers import assert_error, chat, stream_chat

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"enum": ["C", "F"]}},
            "required": ["city"],
        },
    },
}
TIME = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
}
CALL = format_tool_call("get_weather", {"city": "Paris"})


@pytest.fixture
def fake_engine() -> FakeEngine:
    return FakeEngine(max_model_len=4096)  # one token per character: the tools block is long


def prompt_of(engine, call: int = -1) -> str:
    return engine.tokenizer.decode(engine.calls[call].prompt_ids)


def test_json_schema_and_json_object_reach_the_engine(client, fake_engine):
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    fake_engine.enqueue('{"a": 1}', '{"b": 2}')
    fmt = {"type": "json_schema", "json_schema": {"name": "thing", "schema": schema, "strict": True}}
    body = chat(client, response_format=fmt).json()
    assert body["choices"][0]["message"]["content"] == '{"a": 1}'
    structured = fake_engine.calls[0].params.structured
    assert (structured.kind, json.loads(structured.spec), structured.strict) == ("json_schema", schema, True)
    chat(client, response_format={"type": "json_object"})
    assert fake_engine.calls[1].params.structured.kind == "json_object"
    fake_engine.enqueue("free")
    chat(client, response_format={"type": "text"})
    assert fake_engine.calls[2].params.structured is None


def test_tools_auto_renders_the_tools_and_reads_the_call(client, fake_engine):
    fake_engine.enqueue(CALL)
    body = chat(client, tools=[WEATHER, TIME]).json()
    [choice] = body["choices"]
    assert choice["finish_reason"] == "tool_calls"
    message = choice["message"]
    assert message["content"] is None
    [call] = message["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    prompt = prompt_of(fake_engine)
    assert "<tools>" in prompt and '"name": "get_weather"' in prompt and '"name": "get_time"' in prompt
    tag = json.loads(fake_engine.calls[0].params.structured.spec)
    assert fake_engine.calls[0].params.structured.kind == "structural_tag"
    assert tag["format"]["type"] == "triggered_tags" and tag["format"]["at_least_one"] is False


def test_tools_auto_text_answer_stays_text(client, fake_engine):
    fake_engine.enqueue("It is sunny.")
    [choice] = chat(client, tools=[WEATHER]).json()["choices"]
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["content"] == "It is sunny." and "tool_calls" not in choice["message"]


def test_required_named_and_none(client, fake_engine):
    fake_engine.enqueue(CALL, CALL, "Plain text.")
    chat(client, tools=[WEATHER, TIME], tool_choice="required")
    tag = json.loads(fake_engine.calls[0].params.structured.spec)
    assert tag["format"]["type"] == "tags_with_separator" and tag["format"]["at_least_one"] is True
    named = {"type": "function", "function": {"name": "get_weather"}}
    body = chat(client, tools=[WEATHER, TIME], tool_choice=named).json()
    assert body["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_weather"
    tag = json.loads(fake_engine.calls[1].params.structured.spec)
    assert tag["format"]["type"] == "tag" and "get_weather" in tag["format"]["begin"]
    body = chat(client, tools=[WEATHER], tool_choice="none").json()
    assert body["choices"][0]["message"]["content"] == "Plain text."
    assert fake_engine.calls[2].params.structured is None and "<tools>" not in prompt_of(fake_engine)


def test_parallel_calls_and_parallel_false(client, fake_engine):
    two = "Let me check.\n" + CALL + "\n" + format_tool_call("get_time", {})
    fake_engine.enqueue(two, two)
    message = chat(client, tools=[WEATHER, TIME]).json()["choices"][0]["message"]
    assert message["content"] == "Let me check."
    assert [c["function"]["name"] for c in message["tool_calls"]] == ["get_weather", "get_time"]
    assert len({c["id"] for c in message["tool_calls"]}) == 2
    message = chat(client, tools=[WEATHER, TIME], parallel_tool_calls=False).json()["choices"][0]["message"]
    assert [c["function"]["name"] for c in message["tool_calls"]] == ["get_weather"]
    tag = json.loads(fake_engine.calls[1].params.structured.spec)
    assert tag["format"]["stop_after_first"] is True


def test_streamed_tool_calls_are_openai_deltas(client, fake_engine):
    fake_engine.enqueue("Checking. " + CALL)
    status, events = stream_chat(client, tools=[WEATHER])
    assert status == 200 and events[-1] == "[DONE]"
    chunks = [c for c in events[:-1] if c["choices"]]
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert content == "Checking. "
    calls = [tc for c in chunks for tc in c["choices"][0]["delta"].get("tool_calls") or ()]
    assert len(calls) == 1 and calls[0]["index"] == 0 and calls[0]["id"].startswith("call_")
    assert calls[0]["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert "<tool_call>" not in content


def test_streamed_text_that_only_looks_like_a_call_is_sent(client, fake_engine):
    fake_engine.enqueue("a < b and <tool is not a call")
    status, events = stream_chat(client, tools=[WEATHER])
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in events[:-1] if c["choices"])
    assert text == "a < b and <tool is not a call"
    fake_engine.enqueue("<tool_call>\n{broken")  # cut before the call ends: it is text
    status, events = stream_chat(client, tools=[WEATHER])
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in events[:-1] if c["choices"])
    assert text == "<tool_call>\n{broken"
    assert events[-2]["choices"][0]["finish_reason"] == "stop"


def test_legacy_functions_answer_with_function_call(client, fake_engine):
    fake_engine.enqueue(CALL, CALL)
    functions = [WEATHER["function"]]
    [choice] = chat(client, functions=functions, function_call={"name": "get_weather"}).json()["choices"]
    assert choice["finish_reason"] == "function_call"
    assert choice["message"]["function_call"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    assert "tool_calls" not in choice["message"]
    status, events = stream_chat(client, functions=functions)
    deltas = [c["choices"][0]["delta"] for c in events[:-1] if c["choices"]]
    assert [d["function_call"] for d in deltas if "function_call" in d] == [
        {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    ]
    assert events[-2]["choices"][0]["finish_reason"] == "function_call"


def test_tool_history_is_rendered(client, fake_engine):
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": '{"temp": 21}'},
    ]
    fake_engine.enqueue("It is 21 degrees.")
    body = chat(client, messages=messages, tools=[WEATHER]).json()
    assert body["choices"][0]["message"]["content"] == "It is 21 degrees."
    prompt = prompt_of(fake_engine)
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>' in prompt
    assert '<tool_response>\n{"temp": 21}\n</tool_response>' in prompt


@pytest.mark.parametrize(
    ("message", "param"),
    [
        ({"role": "tool", "content": "42"}, "messages[1]"),
        ({"role": "user", "content": "x", "tool_calls": []}, "messages[1]"),
        (
            {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f"}}]},
            "messages[1].tool_calls[0].function.arguments",
        ),
        (
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}
                ],
            },
            "messages",
        ),
    ],
)
def test_bad_tool_history_is_400(client, message, param):
    assert_error(chat(client, messages=[{"role": "user", "content": "hi"}, message]), 400, param)


def test_auto_with_a_json_answer_is_either(client, fake_engine):
    fmt = {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}}
    fake_engine.enqueue("{}")
    chat(client, tools=[WEATHER], response_format=fmt)
    tag = json.loads(fake_engine.calls[0].params.structured.spec)
    assert tag["format"]["type"] == "or"


def test_chat_format_round_trip():
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}],
        },
        {"role": "tool", "content": "1"},
        {"role": "tool", "content": "2"},
    ]
    flat = flatten_tools(messages, [TIME])
    assert [m["role"] for m in flat] == ["system", "user", "assistant", "user"]
    assert flat[0]["content"].startswith("Be brief.\n\n# Tools") and '"get_time"' in flat[0]["content"]
    assert flat[3]["content"].count("<tool_response>") == 2
    content, calls = parse_tool_calls(flat[2]["content"])
    assert content == "" and calls[0].name == "f" and json.loads(calls[0].arguments) == {"x": 1}
    assert parse_tool_calls("no calls <tool_call>{bad}</tool_call>") == (
        "no calls <tool_call>{bad}</tool_call>",
        [],
    )


def test_calls_cut_by_max_tokens_say_length(client, fake_engine):
    """Complete calls are returned, but an answer cut short says `length`, streamed or not."""
    fake_engine.enqueue(CALL + "\n" + CALL, CALL + "\n" + CALL)
    limit = len(CALL) + 5  # the fake tokenizer: one token per character
    [choice] = chat(client, tools=[WEATHER], max_tokens=limit).json()["choices"]
    assert choice["finish_reason"] == "length" and len(choice["message"]["tool_calls"]) == 1
    status, events = stream_chat(client, tools=[WEATHER], max_tokens=limit)
    chunks = [c for c in events[:-1] if c["choices"]]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert sum(len(c["choices"][0]["delta"].get("tool_calls") or ()) for c in chunks) == 1


def test_a_function_without_parameters_takes_an_object(client, fake_engine):
    fake_engine.enqueue(format_tool_call("get_time", {}))
    bare = {"type": "function", "function": {"name": "get_time"}}
    message = chat(client, tools=[bare], tool_choice="required").json()["choices"][0]["message"]
    assert message["tool_calls"][0]["function"] == {"name": "get_time", "arguments": "{}"}
    tag = fake_engine.calls[0].params.structured.spec
    assert json.loads(tag)["format"]["tags"][0]["content"]["json_schema"] == {
        "type": "object",
        "properties": {},
    }


def test_forced_calls_cut_short_leave_no_markup(client, fake_engine):
    """A forced call that max_tokens cuts is neither a call nor content: its markup is no answer."""
    for choice in ("required", {"type": "function", "function": {"name": "get_weather"}}):
        fake_engine.enqueue(CALL, CALL)
        body = chat(client, tools=[WEATHER], tool_choice=choice, max_tokens=12).json()
        [answer] = body["choices"]
        assert answer["finish_reason"] == "length" and answer["message"]["content"] is None
        assert "tool_calls" not in answer["message"]
        status, events = stream_chat(client, tools=[WEATHER], tool_choice=choice, max_tokens=3)
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in events[:-1] if c["choices"])
        assert text == "" and events[-2]["choices"][0]["finish_reason"] == "length"


def test_tool_messages_must_answer_a_call_and_names_are_unique(client):
    orphan = [{"role": "user", "content": "hi"}, {"role": "tool", "tool_call_id": "call_x", "content": "x"}]
    assert_error(chat(client, messages=orphan), 400, "messages[1].tool_call_id")
    assert_error(chat(client, tools=[WEATHER, WEATHER]), 400, "tools")


def test_json_schema_without_a_schema_is_an_object(client, fake_engine):
    fake_engine.enqueue("{}")
    chat(client, response_format={"type": "json_schema", "json_schema": {"name": "x"}})
    assert json.loads(fake_engine.calls[0].params.structured.spec) == {"type": "object"}


def test_logprobs_of_tokens_a_grammar_forbids_are_floored():
    """-inf (a token the grammar masks) is not JSON: it is written as -9999.0, as OpenAI and vLLM do."""
    from server.chat.service import wire_logprobs
    from server.engines.base import TokenLogprob
    from server.engines.fake import CharTokenizer

    entry = TokenLogprob(
        ord("a"), 0.0, ((ord("a"), 0.0), (ord("b"), float("-inf")), (ord("c"), float("nan")))
    )
    wire = wire_logprobs(CharTokenizer(), [entry]).model_dump_json()
    assert "Infinity" not in wire and "NaN" not in wire
    assert [t["logprob"] for t in json.loads(wire)["content"][0]["top_logprobs"]] == [0.0, -9999.0, -9999.0]
