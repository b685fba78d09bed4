"""Helpers shared by the tests: request shortcuts and OpenAI error-shape checks."""

from __future__ import annotations

import json


def chat(client, **body):
    body.setdefault("model", "smollm2-135m-instruct")
    body.setdefault("messages", [{"role": "user", "content": "Hi"}])
    return client.post("/v1/chat/completions", json=body)


def assert_error(response, status: int, param: str | None = None, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if param is not None:
        assert error["param"] == param
    if code is not None:
        assert error["code"] == code
    return error


def sse_events(response) -> list:
    events = []
    for line in response.iter_lines():
        if not line:
            continue
        assert line.startswith("data: ")
        payload = line.removeprefix("data: ")
        events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events
