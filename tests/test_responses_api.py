"""The Responses API over the scripted FakeEngine, read by the real `openai` client (in-process app, no
server): what each request became (prompt, tools, grammar, limits), the output items and their order,
the stream's events, stored responses, background and cancel, and OpenAI-shaped errors."""

from __future__ import annotations

import json
import time

import openai
import pytest

from server.chat.rag import EMPTY_RESPONSES, NO_SOURCE
from server.engines.fake import FakeEngine
from tests.helpers import MODEL, assert_error
from tests.test_rag_search import HOLIDAY, HR, IT, upload, wait_for_store

CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def sdk(client) -> openai.OpenAI:
    return openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=client, max_retries=0)


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine(max_model_len=16_384)


@pytest.fixture
def setup(make_client, engine):
    client = make_client(engine)
    return client, sdk(client), engine


@pytest.fixture
def store(setup, tmp_path):
    client, api, engine = setup
    hr, it = upload(client, tmp_path, "leave.md", HR), upload(client, tmp_path, "it-desk.md", IT)
    store_id = client.post("/v1/vector_stores", json={"name": "depts"}).json()["id"]
    for file_id in (hr, it):
        client.post(f"/v1/vector_stores/{store_id}/files", json={"file_id": file_id})
    wait_for_store(client, store_id)
    return store_id, hr, it


def test_a_string_input_answers_and_is_stored(setup):
    client, api, engine = setup
    engine.enqueue("Hello there.")
    response = api.responses.create(model=MODEL, input="Hi", instructions="Be brief.", metadata={"k": "v"})
    assert response.status == "completed" and response.output_text == "Hello there."
    assert response.id.startswith("resp_") and response.object == "response" and response.model == MODEL
    assert [item.type for item in response.output] == ["message"]
    assert response.usage.input_tokens == len(engine.calls[-1].prompt_ids)
    assert response.usage.output_tokens == len("Hello there.")
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    assert response.metadata == {"k": "v"} and response.instructions == "Be brief." and response.store
    assert engine.calls[-1].prompt == "<system>Be brief.\n<user>Hi\n<assistant>"
    stored = api.responses.retrieve(response.id)
    assert stored.model_dump() == response.model_dump()
    items = api.responses.input_items.list(response.id)
    assert [(i.type, i.role, i.content[0].text) for i in items.data] == [("message", "user", "Hi")]


def test_input_items_become_the_conversation(setup):
    client, api, engine = setup
    api.responses.create(
        model=MODEL,
        input=[
            {"role": "developer", "content": "Answer in French."},
            {"role": "user", "content": [{"type": "input_text", "text": "Hello"}]},
            {"role": "assistant", "content": [{"type": "output_text", "text": "Bonjour"}]},
            {"type": "message", "role": "user", "content": "And goodbye?"},
        ],
    )
    assert engine.calls[-1].prompt == (
        "<system>Answer in French.\n<user>Hello\n<assistant>Bonjour\n<user>And goodbye?\n<assistant>"
    )


def test_previous_response_id_carries_the_conversation_not_the_instructions(setup):
    client, api, engine = setup
    engine.enqueue("Nice to meet you, Ada.", "Your name is Ada.")
    first = api.responses.create(model=MODEL, input="My name is Ada.", instructions="Be kind.")
    second = api.responses.create(model=MODEL, input="What is my name?", previous_response_id=first.id)
    assert engine.calls[-1].prompt == (
        "<user>My name is Ada.\n<assistant>Nice to meet you, Ada.\n<user>What is my name?\n<assistant>"
    )
    assert second.previous_response_id == first.id and second.output_text == "Your name is Ada."
    # Only the new input is the second response's own.
    assert [i.content[0].text for i in api.responses.input_items.list(second.id).data] == ["What is my name?"]


def test_file_search_cites_the_right_file_and_includes_scored_results(setup, store):
    client, api, engine = setup
    store_id, hr, it = store
    tool = {"type": "file_search", "vector_store_ids": [store_id], "max_num_results": 2}
    response = api.responses.create(
        model=MODEL, input=HOLIDAY, tools=[tool], include=["file_search_call.results"]
    )
    search, message = response.output
    assert search.type == "file_search_call" and search.status == "completed" and search.queries == [HOLIDAY]
    assert [r.file_id for r in search.results] == [hr, it] and search.results[0].filename == "leave.md"
    assert search.results[0].score >= search.results[1].score > 0 and "twenty-eight" in search.results[0].text
    found = client.post(f"/v1/vector_stores/{store_id}/search", json={"query": HOLIDAY, "max_num_results": 2})
    assert [r.score for r in search.results] == pytest.approx(
        [h["score"] for h in found.json()["data"]], abs=1e-5
    )
    notes = message.content[0].annotations
    assert [(n.type, n.file_id, n.filename) for n in notes] == [
        ("file_citation", hr, "leave.md"),
        ("file_citation", it, "it-desk.md"),
    ]
    assert all(n.index == len(response.output_text) for n in notes)  # no [n] marker: the end of the text
    assert "twenty-eight days" in engine.calls[-1].prompt
    # Without `include`, the search call says what it searched, not what it found.
    plain = api.responses.create(model=MODEL, input=HOLIDAY, tools=[tool])
    assert plain.output[0].results is None and len(plain.output[1].content[0].annotations) == 2


def test_file_search_that_finds_nothing_cites_nothing(setup, store):
    client, api, engine = setup
    tool = {
        "type": "file_search",
        "vector_store_ids": [store[0]],
        "ranking_options": {"score_threshold": 1.0},
    }
    response = api.responses.create(
        model=MODEL, input=HOLIDAY, tools=[tool], include=["file_search_call.results"]
    )
    assert response.output[0].results == [] and response.output[1].content[0].annotations == []
    assert response.output_text == EMPTY_RESPONSES["en"] and engine.calls == []  # said, not generated


def test_with_rag_empty_response_off_the_model_answers_told_nothing_was_found(make_client, tmp_path):
    engine = FakeEngine(max_model_len=16_384)
    client = make_client(engine, rag_empty_response="")
    store_id = client.post("/v1/vector_stores", json={"name": "empty"}).json()["id"]
    tool = {"type": "file_search", "vector_store_ids": [store_id]}
    response = sdk(client).responses.create(model=MODEL, input=HOLIDAY, tools=[tool])
    assert NO_SOURCE in engine.calls[-1].prompt and response.output_text == engine.default_reply
    assert response.output[1].content[0].annotations == []


def test_file_search_filters_and_citation_index_at_the_marker(setup, store):
    client, api, engine = setup
    store_id, hr, it = store
    tool = {
        "type": "file_search",
        "vector_store_ids": [store_id],
        "filters": {"type": "eq", "key": "x", "value": 1},
    }
    response = api.responses.create(model=MODEL, input=HOLIDAY, tools=[tool])
    assert response.output[1].content[0].annotations == []  # no file has attribute x
    assert response.output_text == EMPTY_RESPONSES["en"]
    engine.enqueue("Twenty-eight days [1].")
    tool.pop("filters")
    response = api.responses.create(model=MODEL, input=HOLIDAY, tools=[tool])
    first = response.output[1].content[0].annotations[0]
    assert first.file_id == hr and first.index == response.output_text.index("[1]")


def test_stream_sends_openai_events_in_order(setup, store):
    client, api, engine = setup
    store_id, hr, _ = store
    engine.enqueue("Twenty-eight days.")
    tool = {"type": "file_search", "vector_store_ids": [store_id], "max_num_results": 1}
    with api.responses.stream(model=MODEL, input=HOLIDAY, tools=[tool]) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    deltas = kinds.count("response.output_text.delta")
    assert deltas >= 2
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.file_search_call.in_progress",
        "response.file_search_call.searching",
        "response.file_search_call.completed",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * deltas,
        "response.output_text.annotation.added",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "Twenty-eight days."
    assert final.output_text == "Twenty-eight days." and final.status == "completed"
    assert final.output[1].content[0].annotations[0].file_id == hr
    assert api.responses.retrieve(final.id).output_text == "Twenty-eight days."


def test_function_call_round_trip_with_previous_response_id_and_stateless(setup):
    client, api, engine = setup
    engine.enqueue(CALL, "It is 18 degrees in Paris.")
    first = api.responses.create(model=MODEL, input="Weather in Paris?", tools=[WEATHER])
    (call,) = first.output
    assert call.type == "function_call" and call.name == "get_weather" and call.call_id.startswith("call_")
    assert json.loads(call.arguments) == {"city": "Paris"} and first.status == "completed"
    assert engine.calls[-1].params.structured.kind == "structural_tag"
    result = {"type": "function_call_output", "call_id": call.call_id, "output": '{"celsius": 18}'}
    second = api.responses.create(model=MODEL, previous_response_id=first.id, input=[result], tools=[WEATHER])
    assert second.output_text == "It is 18 degrees in Paris."
    assert '{"celsius": 18}' in engine.calls[-1].prompt and "Weather in Paris?" in engine.calls[-1].prompt
    # Stateless: the same turn sent whole.
    engine.enqueue("Still 18.")
    whole = [{"role": "user", "content": "Weather in Paris?"}, call.model_dump(exclude_none=True), result]
    third = api.responses.create(model=MODEL, input=whole, tools=[WEATHER], store=False)
    assert third.output_text == "Still 18." and engine.calls[-1].prompt == engine.calls[-2].prompt


def test_streamed_function_call_events(setup):
    client, api, engine = setup
    engine.enqueue(CALL)
    with api.responses.stream(model=MODEL, input="Weather?", tools=[WEATHER]) as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_response()
    assert kinds[2:] == [
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert final.output[0].type == "function_call" and json.loads(final.output[0].arguments) == {
        "city": "Paris"
    }


def test_text_format_json_schema_reaches_the_grammar(setup):
    client, api, engine = setup
    engine.enqueue('{"city": "Paris"}')
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    response = api.responses.create(
        model=MODEL,
        input="Capital of France?",
        text={"format": {"type": "json_schema", "name": "answer", "schema": schema, "strict": True}},
    )
    assert json.loads(response.output_text) == {"city": "Paris"}
    structured = engine.calls[-1].params.structured
    assert structured.kind == "json_schema" and json.loads(structured.spec) == schema and structured.strict
    assert response.text.format.type == "json_schema" and response.text.format.name == "answer"


def test_max_output_tokens_makes_an_incomplete_response(setup):
    client, api, engine = setup
    engine.enqueue("x" * 40)
    response = api.responses.create(model=MODEL, input="Hi", max_output_tokens=16, temperature=0.5, top_p=0.9)
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"
    assert response.output_text == "x" * 16 and response.output[0].status == "incomplete"
    assert engine.calls[-1].params.max_tokens == 16 and engine.calls[-1].params.temperature == 0.5
    assert response.temperature == 0.5 and response.top_p == 0.9


def test_logprobs_are_included_when_asked(setup):
    client, api, engine = setup
    engine.enqueue("ok")
    response = api.responses.create(
        model=MODEL, input="Hi", include=["message.output_text.logprobs"], top_logprobs=2
    )
    logprobs = response.output[0].content[0].logprobs
    assert [p.token for p in logprobs] == ["o", "k"] and len(logprobs[0].top_logprobs) == 2


def test_store_false_delete_and_not_found(setup):
    client, api, engine = setup
    kept = api.responses.create(model=MODEL, input="Hi")
    unkept = api.responses.create(model=MODEL, input="Hi", store=False)
    assert_error(client.get(f"/v1/responses/{unkept.id}"), 404)
    deleted = api.responses.delete(kept.id)
    assert deleted is None or getattr(deleted, "deleted", True)
    assert_error(client.get(f"/v1/responses/{kept.id}"), 404)
    assert_error(client.delete(f"/v1/responses/{kept.id}"), 404)
    assert_error(client.get(f"/v1/responses/{kept.id}/input_items"), 404)
    gone = {"model": MODEL, "input": "Hi", "previous_response_id": kept.id}
    assert_error(
        client.post("/v1/responses", json=gone), 404, "previous_response_id", "previous_response_not_found"
    )


def test_input_items_pages(setup):
    client, api, engine = setup
    turns = [{"role": "user", "content": f"m{i}"} for i in range(5)]
    response = api.responses.create(model=MODEL, input=turns)
    page = client.get(f"/v1/responses/{response.id}/input_items", params={"limit": 2, "order": "asc"}).json()
    assert [i["content"][0]["text"] for i in page["data"]] == ["m0", "m1"] and page["has_more"]
    rest = client.get(
        f"/v1/responses/{response.id}/input_items", params={"order": "asc", "after": page["last_id"]}
    ).json()
    assert [i["content"][0]["text"] for i in rest["data"]] == ["m2", "m3", "m4"] and not rest["has_more"]
    newest = client.get(f"/v1/responses/{response.id}/input_items").json()
    assert newest["data"][0]["content"][0]["text"] == "m4"


def wait_for(client, response_id: str, statuses: tuple[str, ...]) -> dict:
    for _ in range(1000):
        body = client.get(f"/v1/responses/{response_id}").json()
        if body["status"] in statuses:
            return body
        time.sleep(0.01)
    raise AssertionError(f"response stayed {body['status']}")


def test_background_runs_and_can_be_cancelled(make_client):
    engine = FakeEngine(delay=0.02)
    client = make_client(engine)
    api = sdk(client)
    engine.enqueue("done.")
    quick = api.responses.create(model=MODEL, input="Hi", background=True)
    assert quick.status == "queued" and quick.background
    assert wait_for(client, quick.id, ("completed",))["output"][0]["content"][0]["text"] == "done."
    engine.enqueue("y" * 2000)
    slow = api.responses.create(model=MODEL, input="Hi", background=True)
    wait_for(client, slow.id, ("in_progress",))
    cancelled = api.responses.cancel(slow.id)
    assert cancelled.status == "cancelled" and api.responses.retrieve(slow.id).status == "cancelled"
    assert engine.cancelled == 1 and engine.running == 0
    assert api.responses.cancel(slow.id).status == "cancelled"  # cancelling again changes nothing
    foreground = api.responses.create(model=MODEL, input="Hi")
    assert_error(client.post(f"/v1/responses/{foreground.id}/cancel"), 400)


def test_truncation_auto_drops_the_oldest_turns(make_client):
    engine = FakeEngine(max_model_len=120)
    client = make_client(engine)
    long = [{"role": "user", "content": "a" * 60}, {"role": "assistant", "content": "b" * 30}]
    body = {"model": MODEL, "input": [*long, {"role": "user", "content": "last?"}]}
    assert_error(client.post("/v1/responses", json=body), 400, "input", "context_length_exceeded")
    response = client.post("/v1/responses", json={**body, "truncation": "auto", "instructions": "sys"})
    assert response.status_code == 200, response.text
    assert "a" * 60 not in engine.calls[-1].prompt and engine.calls[-1].prompt.startswith("<system>sys")
    assert "last?" in engine.calls[-1].prompt


def test_a_profile_is_a_model(setup, store):
    client, api, engine = setup
    profile = {"name": "hr-bot", "model": MODEL, "system": "You answer HR questions.",
               "file_search": {"vector_store_ids": [store[0]]}}  # fmt: skip
    assert client.post("/v1/profiles", json=profile).status_code == 200
    response = api.responses.create(model="hr-bot", input=HOLIDAY)
    assert response.model == "hr-bot" and "<system>You answer HR questions." in engine.calls[-1].prompt
    # The profile's knowledge base is searched (chat's path), and its citations come back.
    assert "twenty-eight" in engine.calls[-1].prompt


@pytest.mark.parametrize(
    ("body", "status", "param", "code"),
    [
        ({"tools": [{"type": "web_search"}]}, 400, "tools[0].type", "unsupported_parameter"),
        ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]}, 400,
         "input[0].content[0].type", "unsupported_content_type"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, 400, "input[0].type",
         "unsupported_parameter"),
        ({"input": [{"role": "robot", "content": "hi"}]}, 400, "input[0].role", None),
        ({"input": ""}, 400, "input", None),
        ({"input": None}, 400, "input", None),
        ({"include": ["code_interpreter_call.outputs"]}, 400, "include", "unsupported_parameter"),
        ({"background": True, "store": False}, 400, "background", None),
        ({"background": True, "stream": True}, 400, "stream", "unsupported_parameter"),
        ({"max_output_tokens": 5}, 400, "max_output_tokens", None),
        ({"temperature": 3}, 400, "temperature", None),
        ({"prompt": {"id": "pmpt_1"}}, 400, "prompt", "unsupported_parameter"),
        ({"metadata": {str(i): "v" for i in range(17)}}, 400, "metadata", None),
        ({"tool_choice": "required"}, 400, "tool_choice", None),
        ({"tool_choice": {"type": "function", "name": "nope"}, "tools": [WEATHER]}, 400, "tool_choice", None),
        ({"tools": [{"type": "file_search", "vector_store_ids": ["vs_nope"]}]}, 404, None, None),
        ({"text": {"format": {"type": "json_schema", "name": "x"}}}, 400, None, None),
        ({"model": "nope"}, 404, "model", None),
        ({"logit_bias": {"50": -100}}, 400, "logit_bias", "unsupported_parameter"),
        ({"max_tokens": 20}, 400, "max_tokens", "unsupported_parameter"),
        ({"messages": [{"role": "user", "content": "Hi"}]}, 400, "messages", "unsupported_parameter"),
        ({"tools": [WEATHER, {"type": "file_search", "vector_store_ids": ["vs_1"], "max_num_results": 0}]},
         400, "tools[1].max_num_results", None),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, 400, "tools[0].name", None),
        ({"tools": [WEATHER, {**WEATHER, "name": "bad name"}]}, 400, "tools[1].name", None),
    ],
)  # fmt: skip
def test_bad_requests_are_openai_errors(client, body, status, param, code):
    response = client.post("/v1/responses", json={"model": MODEL, "input": "Hi", **body})
    error = assert_error(response, status, param, code)
    assert "Traceback" not in response.text and error["message"]


def test_a_lone_surrogate_is_a_400(client):
    raw = '{"model": "' + MODEL + '", "input": "\\ud800"}'
    response = client.post("/v1/responses", content=raw, headers={"content-type": "application/json"})
    assert_error(response, 400, "input")


def test_reasoning_and_unknown_fields_are_accepted(client):
    body = {"model": MODEL, "input": "Hi", "reasoning": {"effort": "low"}, "some_future_field": 1}
    response = client.post("/v1/responses", json=body)
    assert response.status_code == 200 and response.json()["reasoning"] == {"effort": None, "summary": None}


class MidStreamFailure(FakeEngine):
    async def generate(self, prompt_ids, params, adapter=None):
        async for delta in super().generate(prompt_ids, params, adapter):
            yield delta
            raise RuntimeError("CUDA exploded: /secret/path/model.py")


def test_a_failure_mid_generation_is_a_failed_response_and_the_server_goes_on(make_client):
    engine = MidStreamFailure()
    client = make_client(engine)
    api = sdk(client)
    failed = api.responses.create(model=MODEL, input="Hi")
    assert failed.status == "failed" and failed.error.code == "server_error"
    assert "secret" not in failed.error.message
    with api.responses.stream(model=MODEL, input="Hi") as stream:
        kinds = [e.type for e in stream]
    assert kinds[-1] == "response.failed"
    assert api.responses.retrieve(failed.id).status == "failed"


def test_unfinished_responses_are_failed_at_start_up(tmp_path):
    from server.responses.store import ResponseStore
    from server.storage.db import Database

    store = ResponseStore(Database(tmp_path / "db.sqlite3"))
    body = {"id": "resp_1", "created_at": 1, "status": "in_progress", "output": [], "error": None}
    store.save(body, [])
    assert store.fail_interrupted() == 1
    assert store.get("resp_1")["status"] == "failed" and "stopped" in store.get("resp_1")["error"]["message"]
    assert store.fail_interrupted() == 0


def test_a_stopping_server_fails_its_running_background_responses(tmp_path, embedder):
    from fastapi.testclient import TestClient

    from server.app import build_app
    from server.settings import Settings

    settings = Settings(data_dir=tmp_path / "data")
    engine = FakeEngine(delay=0.02)
    engine.enqueue("y" * 2000)
    with TestClient(build_app(settings, engine=engine, embedder=embedder)) as client:
        created = client.post(
            "/v1/responses", json={"model": MODEL, "input": "Hi", "background": True}
        ).json()
        wait_for(client, created["id"], ("in_progress",))
    assert engine.running == 0 and engine.cancelled == 1
    with TestClient(build_app(settings, engine=FakeEngine(), embedder=embedder)) as client:
        body = client.get(f"/v1/responses/{created['id']}").json()
    assert body["status"] == "failed" and "stopped" in body["error"]["message"]


def test_errors_name_the_input_item(client):
    body = {
        "model": MODEL,
        "instructions": "sys",
        "input": [
            {"role": "user", "content": "Hi"},
            {"type": "function_call_output", "call_id": "call_nope", "output": "1"},
        ],
    }
    error = assert_error(client.post("/v1/responses", json=body), 400, "input[1].call_id")
    assert "input[1]" in error["message"] and "messages[" not in error["message"]


def test_stored_results_follow_include_on_get(setup, store):
    client, api, engine = setup
    tool = {"type": "file_search", "vector_store_ids": [store[0]]}
    created = api.responses.create(model=MODEL, input=HOLIDAY, tools=[tool])
    assert created.output[0].results is None
    again = client.get(f"/v1/responses/{created.id}", params={"include": "file_search_call.results"}).json()
    assert [r["filename"] for r in again["output"][0]["results"]] == ["leave.md", "it-desk.md"]
    assert client.get(f"/v1/responses/{created.id}").json()["output"][0]["results"] is None
    assert_error(client.get(f"/v1/responses/{created.id}", params={"stream": "true"}), 400, "stream")


def test_one_citation_per_file_and_place(setup, tmp_path):
    client, api, engine = setup
    long = "\n\n".join(f"## Part {i}\n\nHoliday rule {i}: " + "paid holiday days " * 40 for i in range(4))
    file_id = upload(client, tmp_path, "rules.md", long)
    store_id = client.post("/v1/vector_stores", json={"file_ids": [file_id]}).json()["id"]
    wait_for_store(client, store_id)
    tool = {"type": "file_search", "vector_store_ids": [store_id], "ranking_options": {"score_threshold": 0}}
    response = api.responses.create(
        model=MODEL, input=HOLIDAY, tools=[tool], include=["file_search_call.results"]
    )
    assert len(response.output[0].results) > 1  # several chunks of the one file were given
    assert [a.filename for a in response.output[1].content[0].annotations] == ["rules.md"]


def test_tool_choice_none_turns_off_a_profiles_search(setup, store):
    client, api, engine = setup
    profile = {"name": "kb-bot", "model": MODEL, "file_search": {"vector_store_ids": [store[0]]}}
    assert client.post("/v1/profiles", json=profile).status_code == 200
    searched = api.responses.create(model="kb-bot", input=HOLIDAY)
    assert [i.type for i in searched.output] == ["file_search_call", "message"]
    assert [t.type for t in searched.tools] == ["file_search"]  # the profile's search is echoed
    plain = api.responses.create(model="kb-bot", input=HOLIDAY, tool_choice="none")
    assert [i.type for i in plain.output] == ["message"] and "twenty-eight" not in engine.calls[-1].prompt


def test_max_tool_calls_one_asks_the_grammar_for_one_call(setup):
    client, api, engine = setup
    engine.enqueue(CALL)
    response = api.responses.create(model=MODEL, input="Weather?", tools=[WEATHER], max_tool_calls=1)
    assert [i.type for i in response.output] == ["function_call"]
    assert '"stop_after_first": true' in engine.calls[-1].params.structured.spec.replace('":true', '": true')


def test_a_cancelled_response_keeps_what_was_said(make_client):
    engine = FakeEngine(delay=0.02)
    client = make_client(engine)
    engine.enqueue("y" * 2000)
    created = client.post("/v1/responses", json={"model": MODEL, "input": "Hi", "background": True}).json()
    wait_for(client, created["id"], ("in_progress",))
    time.sleep(0.2)  # let it say something
    cancelled = client.post(f"/v1/responses/{created['id']}/cancel").json()
    message = cancelled["output"][0]
    assert cancelled["status"] == "cancelled" and message["status"] == "incomplete"
    assert message["content"][0]["text"].startswith("y")


def test_the_said_empty_answer_is_cut_at_whole_characters(smol_tokenizer):
    import asyncio

    from server.chat.service import said
    from server.engines.base import SamplingParams

    async def say(limit: int) -> str:
        deltas = [
            d async for d in said(EMPTY_RESPONSES["zh"], 0, smol_tokenizer, SamplingParams(max_tokens=limit))
        ]
        return deltas[0].text

    total = len(smol_tokenizer.encode(EMPTY_RESPONSES["zh"], add_special_tokens=False))
    for limit in range(1, total):
        text = asyncio.run(say(limit))
        assert "\ufffd" not in text and EMPTY_RESPONSES["zh"].startswith(text)
    assert asyncio.run(say(total)) == EMPTY_RESPONSES["zh"]
