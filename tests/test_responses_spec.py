"""The Responses API's shapes held against the public Open Responses specification and the `openai` SDK.

- The specification's OpenAPI document, as the pydantic models `openresponses-types` generates from it
  (`SPEC_VERSION`): every response object (create, stream, GET, cancel), every streamed event and every
  listed input item is validated with them strictly (from the wire's JSON), and the keys we send that the
  specification does not name must be the extensions listed here.
- What Open Responses does not define (its tools are function tools, its annotations `url_citation`):
  the `file_search` tool, `file_search_call` items and events and `file_citation` annotations are held
  against the `openai` SDK's own types instead, and taken out before the Open Responses check. Every
  object and event is also validated against the SDK's types (`Response`, each `ResponseStreamEvent`,
  `ResponseItemList`), which name the fields OpenAI declares required.
- The specification's published compliance cases (its compliance tester), each replayed here over the
  scripted FakeEngine: the request it sends and what it checks. The cases a text-only model cannot answer
  (image and file input, hosted web search) get the documented 400 naming the part or tool.
"""

from __future__ import annotations

import copy
import enum
import json
import time
import typing
from typing import Any

import openresponses_types as spec
import pytest
from openai.types.responses import (
    FileSearchTool,
    Response,
    ResponseFileSearchToolCall,
    ResponseItemList,
    ResponseStreamEvent,
)
from openai.types.responses.response_output_text import AnnotationFileCitation
from openai.types.responses.tool_choice_types import ToolChoiceTypes
from pydantic import BaseModel, Field, RootModel, TypeAdapter

from server.engines.fake import FakeEngine
from tests.helpers import MODEL, assert_error
from tests.test_rag_search import HOLIDAY, HR, IT, upload, wait_for_store

SPEC_VERSION = "2026-04-24"
"""The Open Responses document the installed `openresponses-types` was generated from (pinned in the
dev extras: a new version of the package is a new version of the specification to read)."""

# ---- keys neither side names: this server's documented extensions ------------------------------------------

CITATION_EXTENSIONS = {"vector_store_id", "chunk_id", "page", "score", "quote"}
"""Extension keys of a `file_citation` annotation: the store and chunk cited, its page, score and a quote."""
RESULT_EXTENSIONS = {"vector_store_id", "chunk_id", "page"}
"""Extension keys of a `file_search_call` result: the store (the specification's later drafts have it), the
chunk and its page."""
EVENT_EXTENSIONS = {"response.function_call_arguments.done": {"name"}}
"""Event keys neither the specification nor the SDK names: the function's `name` on arguments.done, as
OpenAI's API reference shows it."""


def extensions(keys: set[str], kind: str | None = None) -> set[str]:
    """Those of `keys` (dotted paths, see `unknown_keys`) that are not a documented extension."""
    out = set()
    for path in keys:
        parent, _, key = path.rpartition(".")
        if parent.endswith("annotations[]") or parent == "annotation":
            allowed = CITATION_EXTENSIONS
        elif parent.endswith("results[]"):
            allowed = RESULT_EXTENSIONS
        else:
            allowed = EVENT_EXTENSIONS.get(kind or "", set()) if not parent else set()
        if key not in allowed:
            out.add(path)
    return out


LISTED_EVENTS = {
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.output_item.done",
    "response.content_part.added",
    "response.content_part.done",
    "response.output_text.delta",
    "response.output_text.done",
    "response.output_text.annotation.added",
    "response.function_call_arguments.delta",
    "response.function_call_arguments.done",
    "response.completed",
    "response.incomplete",
    "response.failed",
    "response.file_search_call.in_progress",
    "response.file_search_call.searching",
    "response.file_search_call.completed",
}
"""The events this server sends; each must be produced by the streams below and validate."""
OPENAI_ONLY_EVENTS = {e for e in LISTED_EVENTS if e.startswith("response.file_search_call.")}


def _literal(annotation: Any) -> str:
    """The one value of a `type` field: a Literal, or a one-member StrEnum (maybe `| None`)."""
    for arg in typing.get_args(annotation) or (annotation,):
        if isinstance(arg, str):
            return arg
        if isinstance(arg, type) and issubclass(arg, enum.Enum):
            return next(iter(arg)).value
    raise AssertionError(f"no literal in {annotation}")


SPEC_EVENTS: dict[str, type[BaseModel]] = {
    _literal(model.model_fields["type"].annotation): model
    for name, model in vars(spec).items()
    if name.endswith("StreamingEvent") and isinstance(model, type) and issubclass(model, BaseModel)
}
SDK_EVENTS: dict[str, type[BaseModel]] = {
    _literal(model.model_fields["type"].annotation): model
    for model in typing.get_args(typing.get_args(ResponseStreamEvent)[0])
}
SPEC_ITEM = TypeAdapter(spec.Message | spec.FunctionCall | spec.FunctionCallOutput)


class JsonSchemaFormat(spec.JsonSchemaResponseFormat):
    """The specification's `JsonSchemaResponseFormat`, whose `schema` is an object or null; the generated
    model types it as null only (a generator slip), so a format with a schema is checked with this one."""

    schema_: dict[str, Any] | None = Field(alias="schema")


# ---- validation ------------------------------------------------------------------------------------------


def unknown_keys(model: Any, raw: Any, path: str = "") -> set[str]:
    """Keys of `raw` (JSON data) that `model` (what validated it) does not name, as dotted paths (`[]` for
    any list index). Pydantic ignores such keys; this is the other direction of the check."""
    if isinstance(model, RootModel):
        return unknown_keys(model.root, raw, path)
    if isinstance(model, BaseModel) and isinstance(raw, dict):
        names = {field.alias or name: name for name, field in type(model).model_fields.items()}
        out = {f"{path}.{key}".lstrip(".") for key in raw if key not in names}
        for key, name in names.items():
            if key in raw:
                out |= unknown_keys(getattr(model, name), raw[key], f"{path}.{key}")
        return out
    if isinstance(model, list) and isinstance(raw, list):
        return {key for m, r in zip(model, raw, strict=True) for key in unknown_keys(m, r, f"{path}[]")}
    return set()


def strict(model: type[BaseModel] | TypeAdapter, data: Any) -> Any:
    """`data` validated strictly from its JSON (no coercion: an int is not a string, a missing required
    field or a value outside an enum fails)."""
    text = json.dumps(data)
    if isinstance(model, TypeAdapter):
        return model.validate_json(text, strict=True)
    return model.model_validate_json(text, strict=True)


def spec_view(resource: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[type, Any]]]:
    """The response object without what Open Responses does not define (file_search tools and calls,
    file_citation annotations, a file_search tool_choice; and a json_schema format's schema, see
    `JsonSchemaFormat`), and those parts each with the type that holds them instead."""
    view, held = copy.deepcopy(resource), []
    for tool in [t for t in view["tools"] if t["type"] == "file_search"]:
        view["tools"].remove(tool)
        held.append((FileSearchTool, tool))
    if isinstance(view["tool_choice"], dict) and view["tool_choice"]["type"] == "file_search":
        held.append((ToolChoiceTypes, view["tool_choice"]))
        view["tool_choice"] = "auto"  # held above; the specification's choices name functions only
    for item in [i for i in view["output"] if i["type"] == "file_search_call"]:
        view["output"].remove(item)
        held.append((ResponseFileSearchToolCall, item))
    for item in view["output"]:
        held += without_citations(item.get("content") or ())
    text_format = view["text"]["format"]
    if text_format["type"] == "json_schema":
        held.append((JsonSchemaFormat, dict(text_format)))
        text_format["schema"] = None
    return view, held


def without_citations(parts: Any) -> list[tuple[type, Any]]:
    """Takes the file_citation annotations out of these content parts; returns them, to be held by the
    SDK's type."""
    held = []
    for part in parts:
        for note in [n for n in (part or {}).get("annotations") or () if n["type"] == "file_citation"]:
            part["annotations"].remove(note)
            held.append((AnnotationFileCitation, note))
    return held


def check_held(held: list[tuple[type, Any]]) -> None:
    for kind, part in held:
        keys = unknown_keys(strict(kind, part), part, "annotation" if kind is AnnotationFileCitation else "")
        assert not extensions(keys), (kind.__name__, extensions(keys))


def check_resource(resource: dict[str, Any]) -> Response:
    """A response object (any status) against the specification's ResponseResource and the SDK's
    Response: strictly valid for both, and every key named by one of them or a documented extension.
    Returns the SDK's object."""
    view, held = spec_view(resource)
    model = strict(spec.ResponseResource, view)
    assert set(spec.ResponseResource.model_fields) <= set(resource)  # required, null or not
    check_held(held)
    sdk = strict(Response, resource)
    unknown = extensions(unknown_keys(model, view) & unknown_keys(sdk, resource))
    assert not unknown, unknown
    return sdk


def check_event(event: dict[str, Any]) -> None:
    """One streamed event against the SDK's event type of its `type` and, where the specification has
    the event, against its StreamingEvent (file_search items and file_citation annotations held by the
    SDK's types): strictly valid, and every key named by one of them or a documented extension."""
    kind = event["type"]
    sdk = strict(SDK_EVENTS[kind], event)
    if "response" in event:  # the envelope here, the response object by check_resource
        assert not {k for k in unknown_keys(sdk, event) if not k.startswith("response.")}, kind
        check_resource(event["response"])
        return
    unknown = unknown_keys(sdk, event)
    if kind not in OPENAI_ONLY_EVENTS and event.get("item", {}).get("type") != "file_search_call":
        view = copy.deepcopy(event)
        held = without_citations([view.get("part"), *((view.get("item") or {}).get("content") or ())])
        if kind == "response.output_text.annotation.added":
            held.append((AnnotationFileCitation, view["annotation"]))
            view["annotation"] = None  # the specification's annotation is url_citation (or null)
        check_held(held)
        unknown &= unknown_keys(strict(SPEC_EVENTS[kind], view), view)
    assert not extensions(unknown, kind), (kind, extensions(unknown, kind))


def check_stream(lines: list[str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The SSE lines of a stream: (its events, the final response object). Each event is framed as
    `event: <type>` then `data: <JSON>`, validates (`check_event`), and they tell one consistent story:
    sequence numbers 0..n-1, one terminal event last, each item's deltas adding up to its done text or
    arguments, and the done items making the final response's output."""
    events, framed = [], None
    for line in lines:
        if line.startswith("event: "):
            framed = line.removeprefix("event: ")
        elif line.startswith("data: "):
            event = json.loads(line.removeprefix("data: "))
            assert event["type"] == framed, (framed, event["type"])
            check_event(event)
            events.append(event)
        else:
            assert line == "", line
    kinds = [e["type"] for e in events]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert kinds[:2] == ["response.created", "response.in_progress"]
    terminal = ("response.completed", "response.incomplete", "response.failed")
    assert kinds[-1] in terminal and not set(kinds[:-1]) & set(terminal)
    ids = {e["response"]["id"] for e in events if "response" in e}
    assert len(ids) == 1
    added = {e["output_index"]: e["item"] for e in events if e["type"] == "response.output_item.added"}
    done = {e["output_index"]: e["item"] for e in events if e["type"] == "response.output_item.done"}
    for e in events:
        if "item_id" in e:
            assert added[e["output_index"]]["id"] == e["item_id"]
    for e in events:
        if e["type"] == "response.output_text.done":
            deltas = [
                d["delta"]
                for d in events
                if d["type"] == "response.output_text.delta" and d["item_id"] == e["item_id"]
            ]
            assert "".join(deltas) == e["text"]
            assert done[e["output_index"]]["content"][e["content_index"]]["text"] == e["text"]
        if e["type"] == "response.function_call_arguments.done":
            deltas = [
                d["delta"]
                for d in events
                if d["type"] == "response.function_call_arguments.delta" and d["item_id"] == e["item_id"]
            ]
            assert "".join(deltas) == e["arguments"] == done[e["output_index"]]["arguments"]
    final = events[-1]["response"]
    if final["status"] != "failed":
        assert sorted(done) == sorted(added) == list(range(len(final["output"])))
        assert [done[i] for i in sorted(done)] == final["output"]
    return events, final


# ---- the app, and requests as the compliance tester sends them ---------------------------------------------

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Get the current weather for a location",
    "parameters": {
        "type": "object",
        "properties": {
            "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"}
        },
        "required": ["location"],
    },
}
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"location": "San Francisco, CA"}}\n</tool_call>'
OPENAI_ONLY_BODY = ("tools", "tool_choice", "include")


def check_request(body: dict[str, Any]) -> None:
    """A request body the tests send is one the specification allows (its CreateResponseBody), the
    file_search parts aside (OpenAI's, not in the specification)."""
    view = {k: v for k, v in body.items() if not (k in OPENAI_ONLY_BODY and "file_search" in json.dumps(v))}
    strict(spec.CreateResponseBody, view)


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine(max_model_len=16_384)


@pytest.fixture
def client(make_client, engine):
    return make_client(engine)


@pytest.fixture
def store(client, tmp_path) -> str:
    """A vector store holding two files (HR's leave policy, the IT desk's holiday cover)."""
    hr, it = upload(client, tmp_path, "leave.md", HR), upload(client, tmp_path, "it-desk.md", IT)
    store_id = client.post("/v1/vector_stores", json={"name": "depts"}).json()["id"]
    for file_id in (hr, it):
        client.post(f"/v1/vector_stores/{store_id}/files", json={"file_id": file_id})
    wait_for_store(client, store_id)
    return store_id


def create(client, **body: Any) -> dict[str, Any]:
    """POST /v1/responses (not streamed): the object, checked."""
    body = {"model": MODEL, **body}
    check_request(body)
    response = client.post("/v1/responses", json=body)
    assert response.status_code == 200, response.text
    resource = response.json()
    check_resource(resource)
    return resource


def stream(client, **body: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """POST /v1/responses with stream: true: the events and the final response, checked."""
    body = {"model": MODEL, **body, "stream": True}
    check_request(body)
    with client.stream("POST", "/v1/responses", json=body) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = list(response.iter_lines())
    return check_stream(lines)


def refused(client, body: dict[str, Any], param: str, code: str) -> None:
    check_request(body)
    assert_error(client.post("/v1/responses", json=body), 400, param, code)


def has_output(resource: dict[str, Any], kind: str | None = None) -> bool:
    return bool(resource["output"]) and (kind is None or any(i["type"] == kind for i in resource["output"]))


def test_the_specification_is_the_pinned_one():
    assert spec.__spec_version__ == SPEC_VERSION
    assert set(SPEC_EVENTS) >= LISTED_EVENTS - OPENAI_ONLY_EVENTS and set(SDK_EVENTS) >= LISTED_EVENTS


# ---- the compliance cases -------------------------------------------------------------------------------
# The Open Responses compliance tester's cases, by id: basic-response, streaming-response, system-prompt,
# tool-calling, tool-calling-streaming, function-call-roundtrip, image-input, file-input, multi-turn,
# previous-response-id, file-search and offline-web-search (the last two optional there). Each sends the
# tester's request and checks what it checks (the object's schema, then has output / completed / an item
# of a type, and for streams every event's schema), besides this file's own checks (`create`, `stream`).


def test_compliance_basic_response(client, engine):
    engine.enqueue("Hello, dear friend.")
    input = [{"type": "message", "role": "user", "content": "Say hello in exactly 3 words."}]
    resource = create(client, input=input)
    assert has_output(resource) and resource["status"] == "completed"
    assert resource["output"][0]["content"][0]["text"] == "Hello, dear friend."


def test_compliance_streaming_response(client, engine):
    engine.enqueue("1, 2, 3, 4, 5")
    input = [{"type": "message", "role": "user", "content": "Count from 1 to 5."}]
    events, final = stream(client, input=input)
    assert events and final["status"] == "completed"
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * len("1, 2, 3, 4, 5"),
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]


def test_compliance_system_prompt(client, engine):
    input = [
        {"type": "message", "role": "system", "content": "You are a pirate. Always respond in pirate speak."},
        {"type": "message", "role": "user", "content": "Say hello."},
    ]
    resource = create(client, input=input)
    assert has_output(resource) and resource["status"] == "completed"
    assert engine.calls[-1].prompt.startswith("<system>You are a pirate.")


def test_compliance_tool_calling(client, engine):
    engine.enqueue(CALL)
    input = [{"type": "message", "role": "user", "content": "What's the weather like in San Francisco?"}]
    resource = create(client, input=input, tools=[WEATHER])
    assert has_output(resource, "function_call")
    (call,) = resource["output"]
    assert call["name"] == "get_weather"
    assert json.loads(call["arguments"]) == {"location": "San Francisco, CA"}


def test_compliance_tool_calling_streaming(client, engine):
    engine.enqueue(CALL)
    input = [{"type": "message", "role": "user", "content": "What's the weather like in San Francisco?"}]
    events, final = stream(client, input=input, tools=[WEATHER])
    kinds = [(e["type"], e.get("item", {}).get("type")) for e in events]
    assert ("response.output_item.added", "function_call") in kinds
    assert ("response.function_call_arguments.delta", None) in kinds
    assert ("response.function_call_arguments.done", None) in kinds
    assert ("response.output_item.done", "function_call") in kinds
    assert has_output(final, "function_call")


def test_compliance_function_call_round_trip(client, engine):
    engine.enqueue(CALL, "It is 64 degrees and clear in San Francisco.")
    first = create(
        client,
        input="Use the weather tool to get the temperature in San Francisco.",
        tools=[WEATHER],
        tool_choice={"type": "function", "name": "get_weather"},
    )
    call = next(item for item in first["output"] if item["type"] == "function_call")
    assert first["tool_choice"] == {"type": "function", "name": "get_weather"}
    output = {"type": "function_call_output", "call_id": call["call_id"], "output": "64 degrees and clear"}
    second = create(client, previous_response_id=first["id"], input=[output])
    assert has_output(second) and second["status"] == "completed"
    assert "64 degrees and clear" in engine.calls[-1].prompt
    # The output item is listed back as the second response's input, in the specification's shape.
    listed = client.get(f"/v1/responses/{second['id']}/input_items").json()
    check_input_items(listed)
    assert [(i["type"], i["call_id"]) for i in listed["data"]] == [("function_call_output", call["call_id"])]


IMAGE = (  # one white pixel
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)
PDF = "data:application/pdf;base64,JVBERi0xLjEKJSVFT0YK"


def test_compliance_image_input_is_refused_by_name(client):
    """A text-only model cannot see an image: a 400 naming the part (listed as not covered)."""
    content = [
        {"type": "input_text", "text": "What do you see in this image? Answer in one sentence."},
        {"type": "input_image", "image_url": IMAGE},
    ]
    body = {"model": MODEL, "input": [{"type": "message", "role": "user", "content": content}]}
    refused(client, body, "input[0].content[1].type", "unsupported_content_type")


def test_compliance_file_input_is_refused_by_name(client):
    """An input_file part (base64 PDF) is not read: a 400 naming the part (listed as not covered; upload
    the file to a vector store and use file_search)."""
    content = [
        {"type": "input_text", "text": "Read the attached file and answer with its title only."},
        {"type": "input_file", "filename": "openresponses-fixture.pdf", "file_data": PDF},
    ]
    body = {"model": MODEL, "input": [{"type": "message", "role": "user", "content": content}]}
    refused(client, body, "input[0].content[1].type", "unsupported_content_type")


def test_compliance_multi_turn(client, engine):
    engine.enqueue("Your name is Alice.")
    input = [
        {"type": "message", "role": "user", "content": "My name is Alice."},
        {
            "type": "message",
            "role": "assistant",
            "content": "Hello Alice! Nice to meet you. How can I help you today?",
        },
        {"type": "message", "role": "user", "content": "What is my name?"},
    ]
    resource = create(client, input=input)
    assert has_output(resource) and resource["status"] == "completed"
    listed = client.get(f"/v1/responses/{resource['id']}/input_items", params={"order": "asc"}).json()
    check_input_items(listed)
    assert [i["role"] for i in listed["data"]] == ["user", "assistant", "user"]


def test_compliance_previous_response_id(client, engine):
    engine.enqueue("OK", "papaya")
    first = create(client, input="Remember this code word: papaya. Reply with only OK.")
    second = create(
        client, previous_response_id=first["id"], input="What code word did I ask you to remember?"
    )
    assert has_output(second) and second["status"] == "completed"
    assert second["previous_response_id"] == first["id"] and "papaya" in engine.calls[-1].prompt


def test_compliance_file_search(client, engine, store):
    """The specification's optional file_search case, with a vector store of this server."""
    engine.enqueue("Employees get twenty-eight days [1].")
    resource = create(
        client,
        input="Search the configured vector store for relevant content and summarize one result.",
        tools=[{"type": "file_search", "vector_store_ids": [store]}],
        tool_choice={"type": "file_search"},
        include=["file_search_call.results"],
    )
    assert has_output(resource, "file_search_call")
    # tool_choice file_search: the search runs (and no function could be called).
    search, message = resource["output"]
    assert search["status"] == "completed" and isinstance(search["results"], list)
    assert message["type"] == "message" and message["content"][0]["text"]
    assert resource["tool_choice"] == {"type": "file_search"}


def test_compliance_offline_web_search_is_refused_by_name(client):
    """Hosted web search is OpenAI's: a 400 naming what is refused (listed as not covered)."""
    body = {
        "model": MODEL,
        "input": "Find the most relevant cached result for OpenResponses.",
        "tools": [{"type": "web_search", "external_web_access": False}],
        "tool_choice": {"type": "web_search"},
        "include": ["web_search_call.action.sources"],
    }
    assert_error(client.post("/v1/responses", json=body), 400, "include", "unsupported_parameter")
    del body["include"]
    assert_error(client.post("/v1/responses", json=body), 400, "tools[0].type", "unsupported_parameter")


# ---- every route and event ------------------------------------------------------------------------------


def check_input_items(listed: dict[str, Any]) -> None:
    """GET /v1/responses/{id}/input_items: the SDK's ResponseItemList, each item the specification's."""
    sdk = strict(ResponseItemList, listed)
    assert not unknown_keys(sdk, listed), unknown_keys(sdk, listed)
    for item in listed["data"]:
        model = strict(SPEC_ITEM, item)
        assert not unknown_keys(model, item), unknown_keys(model, item)


def stream_file_search(client, engine, store: str) -> list[dict[str, Any]]:
    engine.enqueue("Twenty-eight days [1].")
    tool = {"type": "file_search", "vector_store_ids": [store], "max_num_results": 2}
    events, final = stream(client, input=HOLIDAY, tools=[tool], include=["file_search_call.results"])
    assert final["status"] == "completed" and [i["type"] for i in final["output"]] == [
        "file_search_call",
        "message",
    ]
    return events


def stream_function_call(client, engine) -> list[dict[str, Any]]:
    engine.enqueue(CALL)
    events, final = stream(client, input="Weather in San Francisco?", tools=[WEATHER])
    assert final["status"] == "completed"
    return events


def stream_incomplete(client, engine) -> list[dict[str, Any]]:
    engine.enqueue("x" * 40)
    events, final = stream(client, input="Hi", max_output_tokens=16)
    assert final["status"] == "incomplete" and final["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["output"][0]["status"] == "incomplete"
    return events


class MidStreamFailure(FakeEngine):
    async def generate(self, prompt_ids, params, adapter=None):
        async for delta in super().generate(prompt_ids, params, adapter):
            yield delta
            raise RuntimeError("CUDA exploded")


def stream_failed(make_client) -> list[dict[str, Any]]:
    events, final = stream(make_client(MidStreamFailure()), input="Hi")
    assert final["status"] == "failed" and final["error"]["code"] == "server_error"
    return events


def test_every_listed_event_is_sent_and_valid(client, engine, store, make_client):
    events = [
        *stream_file_search(client, engine, store),
        *stream_function_call(client, engine),
        *stream_incomplete(client, engine),
        *stream_failed(make_client),
    ]
    assert {e["type"] for e in events} == LISTED_EVENTS


def test_file_search_objects_are_openai_shaped(client, engine, store):
    events = stream_file_search(client, engine, store)
    final = events[-1]["response"]
    search = final["output"][0]
    assert search["results"] and search["queries"] == [HOLIDAY]
    stages = [e for e in events if e["type"].startswith("response.file_search_call.")]
    assert [e["item_id"] for e in stages] == [search["id"]] * 3
    note = next(e for e in events if e["type"] == "response.output_text.annotation.added")
    assert note["annotation"] == final["output"][1]["content"][0]["annotations"][0]
    # Without include, the call says what it searched (results: null, as OpenAI's).
    plain = create(client, input=HOLIDAY, tools=[{"type": "file_search", "vector_store_ids": [store]}])
    assert plain["output"][0]["results"] is None
    assert plain["tools"][0]["vector_store_ids"] == [store]


def test_retrieve_cancel_delete_and_input_items(make_client):
    engine = FakeEngine(delay=0.02)
    client = make_client(engine)
    engine.enqueue("Hello there.")
    resource = create(
        client,
        input=[{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]}],
        metadata={"k": "v"},
    )
    stored = client.get(f"/v1/responses/{resource['id']}").json()
    check_resource(stored)
    assert stored == resource
    check_input_items(client.get(f"/v1/responses/{resource['id']}/input_items").json())
    # Background: queued, then cancelled while in progress.
    engine.enqueue("y" * 2000)
    queued = create(client, input="Hi", background=True)
    assert queued["status"] == "queued" and queued["background"]
    for _ in range(500):
        if client.get(f"/v1/responses/{queued['id']}").json()["status"] == "in_progress":
            break
        time.sleep(0.01)
    cancelled = client.post(f"/v1/responses/{queued['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    check_resource(cancelled.json())
    assert cancelled.json()["status"] == "cancelled"
    check_resource(client.get(f"/v1/responses/{queued['id']}").json())
    # DELETE: the specification's (and OpenAI's) deleted object.
    deleted = client.delete(f"/v1/responses/{resource['id']}")
    assert deleted.json() == {"id": resource["id"], "object": "response.deleted", "deleted": True}


def test_stateless_function_call_items_and_structured_output(client, engine):
    engine.enqueue(CALL)
    first = create(client, input="Weather?", tools=[WEATHER], parallel_tool_calls=False, store=False)
    call = first["output"][0]
    turn = [
        {"type": "message", "role": "user", "content": "Weather?"},
        {"type": "function_call", **{k: call[k] for k in ("call_id", "name", "arguments")}},
        {"type": "function_call_output", "call_id": call["call_id"], "output": '{"celsius": 18}'},
    ]
    engine.enqueue('{"celsius": 18}')
    schema = {"type": "object", "properties": {"celsius": {"type": "number"}}, "required": ["celsius"]}
    second = create(
        client,
        input=turn,
        tools=[WEATHER],
        text={"format": {"type": "json_schema", "name": "reading", "schema": schema}},
    )
    assert second["text"]["format"] == {
        "type": "json_schema",
        "name": "reading",
        "description": None,
        "schema": schema,
        "strict": False,
    }
    listed = client.get(f"/v1/responses/{second['id']}/input_items", params={"order": "asc"}).json()
    check_input_items(listed)
    assert [i["type"] for i in listed["data"]] == ["message", "function_call", "function_call_output"]


def test_logprobs_have_the_specified_shape(client, engine):
    engine.enqueue("ok")
    resource = create(client, input="Hi", include=["message.output_text.logprobs"], top_logprobs=2)
    (entry, _) = resource["output"][0]["content"][0]["logprobs"]
    assert set(entry) == {"token", "logprob", "bytes", "top_logprobs"} and len(entry["top_logprobs"]) == 2
    engine.enqueue("ok")
    events, _ = stream(client, input="Hi", include=["message.output_text.logprobs"], top_logprobs=2)
    deltas = [e for e in events if e["type"] == "response.output_text.delta"]
    assert all(len(d["logprobs"]) == 1 for d in deltas)
