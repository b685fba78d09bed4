"""The Responses API end to end: `ragtune serve` with the real default model, driven by the real `openai`
client's `responses` resource, over a knowledge base built from real files.

What every engine must answer alike through /v1/responses (the chat answer, the stream, a citation) is in
test_engine_conformance.py; the contract over a scripted engine is in test_responses_api.py.
"""

from __future__ import annotations

import json
import time
from contextlib import ExitStack

import httpx
import jsonschema
import openai
import pytest

from tests import docs
from tests.adapters import CODEWORDS, QUESTION
from tests.helpers import MODEL

pytestmark = pytest.mark.slow

ZORBLAX = "What is the Zorblax warehouse access code?"  # answered by handbook.pdf, page 3
FRANCE = "What is the capital of France?"
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}


@pytest.fixture(scope="module")
def client(live_server) -> openai.OpenAI:
    return openai.OpenAI(base_url=live_server.api, api_key="unused", max_retries=0, timeout=300)


@pytest.fixture(scope="module")
def handbook(client, tmp_path_factory) -> tuple[str, dict[str, str]]:
    """(vector store id, {filename: file id}): a PDF, a Markdown page and an HTML page, each holding
    its own fact (three small files: ingestion is seconds)."""
    corpus = docs.corpus(tmp_path_factory.mktemp("responses-corpus"))
    store = client.vector_stores.create(name="e2e-responses")
    with ExitStack() as stack:
        handles = [stack.enter_context(open(corpus[k], "rb")) for k in ("pdf", "md", "html")]
        batch = client.vector_stores.file_batches.upload_and_poll(
            vector_store_id=store.id, files=handles, poll_interval_ms=200
        )
    assert batch.status == "completed" and batch.file_counts.completed == 3, batch
    files = {f.id: f for f in client.files.list(purpose="assistants")}
    attached = client.vector_stores.files.list(vector_store_id=store.id)
    return store.id, {files[f.id].filename: f.id for f in attached}


def file_search(store_id: str, **options) -> dict:
    return {"type": "file_search", "vector_store_ids": [store_id], **options}


def test_file_search_cites_the_right_file_and_includes_scored_results(client, handbook):
    store_id, ids = handbook
    response = client.responses.create(
        model=MODEL,
        input=ZORBLAX,
        tools=[file_search(store_id, max_num_results=2)],
        include=["file_search_call.results"],
        temperature=0,
        max_output_tokens=40,
    )
    assert response.status == "completed" and response.model == MODEL
    search, message = response.output
    assert search.type == "file_search_call" and search.status == "completed" and search.queries == [ZORBLAX]
    results = search.results
    assert results and all(0 < r.score <= 1 and r.filename and r.text for r in results)
    assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)
    assert (results[0].filename, results[0].file_id) == ("handbook.pdf", ids["handbook.pdf"])
    assert "7431" in results[0].text
    notes = message.content[0].annotations
    assert notes and all(n.type == "file_citation" for n in notes)
    assert (notes[0].file_id, notes[0].filename) == (ids["handbook.pdf"], "handbook.pdf")
    assert all(0 <= n.index <= len(response.output_text) for n in notes)
    assert "7431" in response.output_text

    # Nothing in the knowledge base reaches the threshold: no results, and the answer cites nothing.
    unrelated = client.responses.create(
        model=MODEL,
        input=FRANCE,
        tools=[file_search(store_id, ranking_options={"score_threshold": 0.9})],
        include=["file_search_call.results"],
        temperature=0,
        max_output_tokens=16,
    )
    search, message = unrelated.output
    assert search.type == "file_search_call" and search.results == []
    assert message.type == "message" and message.content[0].annotations == []


def without_parsed(response) -> dict:
    """The stream helper's ParsedResponse as the plain Response's dump (it adds `parsed` to text parts)."""
    body = response.model_dump()
    for item in body["output"]:
        for part in item.get("content") or ():
            part.pop("parsed", None)
    return body


def test_stream_sends_openai_events_in_order_and_stores_the_response(client, handbook):
    store_id, ids = handbook
    with client.responses.stream(
        model=MODEL,
        input=ZORBLAX,
        tools=[file_search(store_id, max_num_results=1)],
        temperature=0,
        max_output_tokens=40,
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    deltas = kinds.count("response.output_text.delta")
    assert deltas >= 2, kinds
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
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    [done] = [e for e in events if e.type == "response.output_text.done"]
    assert text == done.text == final.output_text and "7431" in text
    [note] = [e.annotation for e in events if e.type == "response.output_text.annotation.added"]
    assert (note.type, note.file_id) == ("file_citation", ids["handbook.pdf"])
    assert (
        final.status == "completed"
        and final.output[1].content[0].annotations[0].file_id == ids["handbook.pdf"]
    )
    completed = events[-1].response
    assert client.responses.retrieve(completed.id).model_dump() == without_parsed(completed)


def test_previous_response_id_carries_a_fact_to_the_next_turn(client):
    fact = "The secret code word is 'marmalade'. Reply OK."
    question = "What is the secret code word?"
    first = client.responses.create(model=MODEL, input=fact, temperature=0, max_output_tokens=16)
    second = client.responses.create(
        model=MODEL, input=question, previous_response_id=first.id, temperature=0, max_output_tokens=16
    )
    fresh = client.responses.create(model=MODEL, input=question, temperature=0, max_output_tokens=16)
    assert second.previous_response_id == first.id
    assert "marmalade" in second.output_text.lower(), second.output_text
    assert "marmalade" not in fresh.output_text.lower(), fresh.output_text  # the word came from the history
    # The second prompt held the first turn: its input and its answer.
    assert second.usage.input_tokens > fresh.usage.input_tokens + first.usage.output_tokens
    own = client.responses.input_items.list(second.id).data
    assert [item.content[0].text for item in own] == [question]


def test_a_function_tool_round_trip(client):
    first = client.responses.create(
        model=MODEL,
        input="What is the weather in Paris?",
        tools=[WEATHER],
        tool_choice="required",
        parallel_tool_calls=False,
        temperature=0,
        max_output_tokens=60,
    )
    assert first.status == "completed"
    [call] = first.output
    assert call.type == "function_call" and call.name == "get_weather" and call.status == "completed"
    assert call.call_id.startswith("call_")
    jsonschema.validate(json.loads(call.arguments), WEATHER["parameters"])
    result = {
        "type": "function_call_output",
        "call_id": call.call_id,
        "output": json.dumps({"temperature_c": 21, "sky": "sunny"}),
    }
    second = client.responses.create(
        model=MODEL,
        previous_response_id=first.id,
        input=[result],
        tools=[WEATHER],
        temperature=0,
        max_output_tokens=40,
    )
    assert second.status == "completed"
    [message] = second.output
    assert message.type == "message" and message.status == "completed" and second.output_text
    assert "21" in second.output_text or "sunny" in second.output_text.lower()


def test_text_format_json_schema_parses_and_validates(client):
    schema = {
        "type": "object",
        "properties": {"capital": {"type": "string", "maxLength": 30}},
        "required": ["capital"],
        "additionalProperties": False,
    }
    response = client.responses.create(
        model=MODEL,
        input=f"{FRANCE} Answer in JSON.",
        text={"format": {"type": "json_schema", "name": "capital", "schema": schema, "strict": True}},
        temperature=0,
        max_output_tokens=40,
    )
    assert response.status == "completed"
    answer = json.loads(response.output_text)
    jsonschema.validate(answer, schema)
    assert "Paris" in answer["capital"]
    assert response.text.format.type == "json_schema" and response.text.format.name == "capital"


def test_an_adapter_and_a_profile_are_models(client, live_server, handbook):
    """A served LoRA adapter (fine-tuned models are served the same way) answers with what it was taught;
    a profile answers from its knowledge base; each response names the model it was asked for."""
    for name, word in CODEWORDS.items():
        response = client.responses.create(model=name, input=QUESTION, temperature=0, max_output_tokens=16)
        assert response.model == name and response.status == "completed"
        assert word in response.output_text, (name, response.output_text)
    base = client.responses.create(model=MODEL, input=QUESTION, temperature=0, max_output_tokens=16)
    assert not any(word in base.output_text for word in CODEWORDS.values()), base.output_text

    store_id, ids = handbook
    profile = {
        "name": "responses-warehouse-bot",
        "model": MODEL,
        "system": "You answer questions about ACME warehouses briefly.",
        "file_search": {"vector_store_ids": [store_id], "max_num_results": 1},
    }
    created = httpx.post(f"{live_server.api}/profiles", json=profile, timeout=60)
    assert created.status_code == 200, created.text
    response = client.responses.create(
        model=profile["name"], input=ZORBLAX, temperature=0, max_output_tokens=40
    )
    assert response.model == profile["name"] and response.status == "completed"
    assert [item.type for item in response.output] == ["file_search_call", "message"]
    assert response.output[1].content[0].annotations[0].file_id == ids["handbook.pdf"]
    assert "7431" in response.output_text


def test_background_response_is_polled_to_completion(client):
    queued = client.responses.create(
        model=MODEL, input=FRANCE, background=True, temperature=0, max_output_tokens=16
    )
    assert queued.background and queued.status in ("queued", "in_progress")
    deadline = time.monotonic() + 120
    while (polled := client.responses.retrieve(queued.id)).status in ("queued", "in_progress"):
        assert time.monotonic() < deadline, f"still {polled.status}"
        time.sleep(0.2)
    assert polled.status == "completed" and polled.background
    assert "Paris" in polled.output_text
    assert polled.usage.output_tokens > 0 and polled.completed_at >= polled.created_at
