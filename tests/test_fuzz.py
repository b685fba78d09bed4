"""Fuzzing /v1/chat/completions, /v1/responses and /v1/embeddings from the app's own OpenAPI document
(schemathesis): valid and invalid requests alike never get a 5xx (issue 11). Runs on the FakeEngine and
the real packaged embedder."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, Phase, given, settings

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.generation import GenerationMode  # noqa: E402

from server.responses.protocol import INCLUDE_SUPPORTED  # noqa: E402

# Examples per operation and generation mode; 3 operations x 2 modes x this = the cases run.
EXAMPLES = 100
# A random `model` is only ever a 404; valid requests name the served model so they reach the engine.
OPERATIONS = {
    "/v1/chat/completions": "smollm2-135m-instruct",
    "/v1/responses": "smollm2-135m-instruct",
    "/v1/embeddings": "all-minilm-l6-v2",
}


def openai_rules(body: dict) -> None:
    """Make a generated valid-by-schema body valid by OpenAI's cross-field rules too, which a JSON schema
    does not express (each is refused by OpenAI and by us with a 400, tested in test_chat_contract.py):
    content is required except on an assistant message with calls; tool options need their tools;
    stream_options needs stream; top_logprobs needs logprobs."""
    for message in body.get("messages") or ():
        if isinstance(message, dict):
            calls = message.get("tool_calls") or message.get("function_call")
            if message.get("role") != "assistant":
                message.pop("tool_calls", None), message.pop("function_call", None)
            elif calls:
                continue
            if not message.get("content"):
                message["content"] = "hi"
            if message.get("role") == "tool":
                message.setdefault("tool_call_id", "call_1")
    for tools, options in (
        ("tools", ("tool_choice", "parallel_tool_calls")),
        ("functions", ("function_call",)),
    ):
        if not body.get(tools):
            for option in options:
                body.pop(option, None)
    if not body.get("stream"):
        body.pop("stream_options", None)
    if not body.get("logprobs") and "messages" in body:
        body.pop("top_logprobs", None)
    if "input" in body:
        responses_rules(body)


def responses_rules(body: dict) -> None:
    """The Responses API's rules that its schema leaves open (`input` items and `tools` are free-form
    objects there; each rule is a 400 tested in test_responses_api.py): items are messages; a previous
    response must exist; `include` names what this server includes; tool options need tools;
    `text.verbosity` is medium; background needs store and no stream."""
    if isinstance(body["input"], list):
        body["input"] = [
            item
            if isinstance(item, dict)
            and item.get("role") in ("user", "system", "developer")
            and isinstance(item.get("content"), str)
            and item["content"]
            else {"role": "user", "content": "hi"}
            for item in body["input"]
        ] or "hi"
    body.pop("previous_response_id", None)
    body.pop("tools", None)
    for option in ("tool_choice", "parallel_tool_calls", "max_tool_calls"):
        body.pop(option, None)
    if body.get("include"):
        body["include"] = [v for v in body["include"] if v in INCLUDE_SUPPORTED]
    if isinstance(body.get("text"), dict):
        body["text"].pop("verbosity", None)
    if body.get("background"):
        body["store"], body["stream"] = True, False


def run_cases(client, operation, mode: GenerationMode, seen: list[tuple[str, int]]) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,  # a fixed, repeatable run: no example database between runs
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case) -> None:
        if mode == GenerationMode.POSITIVE and isinstance(case.body, dict):
            case.body["model"] = OPERATIONS[operation.path]
            openai_rules(case.body)
        kwargs = case.as_transport_kwargs(base_url="http://testserver")
        kwargs.pop("cookies", None)
        if "data" in kwargs:
            kwargs["content"] = kwargs.pop("data")
        response = client.request(**kwargs)
        seen.append((operation.path, response.status_code))
        assert response.status_code < 500, (kwargs, response.text[:500])
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            assert "server_error" not in response.text, response.text[-500:]
            if operation.path == "/v1/responses":
                assert response.text.rstrip().split("\n")[-1].startswith('data: {"type":"response.'), (
                    response.text[-500:]
                )
                assert "response.completed" in response.text or "response.incomplete" in response.text
            else:
                assert response.text.rstrip().endswith("data: [DONE]"), response.text[-500:]

    check()


@pytest.mark.slow
def test_fuzz_chat_responses_and_embeddings_never_5xx(client, capsys):
    document = client.get("/openapi.json").json()
    schema = schemathesis.openapi.from_dict(document)
    operations = [r.ok() for r in schema.get_all_operations()]
    operations = [op for op in operations if op.path in OPERATIONS and op.method.upper() == "POST"]
    assert sorted(op.path for op in operations) == sorted(OPERATIONS)
    seen: list[tuple[str, int]] = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            run_cases(client, operation, mode, seen)
    statuses = sorted({status for _, status in seen})
    answered = {path for path, status in seen if status == 200}
    with capsys.disabled():
        counts = {(path, status): seen.count((path, status)) for path, status in sorted(set(seen))}
        print(f"\nschemathesis: {len(seen)} cases, statuses {statuses}: {counts}")
    assert len(seen) >= len(OPERATIONS) * 2 * EXAMPLES // 2  # hypothesis may stop early on small spaces
    assert answered == set(OPERATIONS)  # valid requests are really answered, not all refused
