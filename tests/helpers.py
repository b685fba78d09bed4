"""Helpers shared by the tests: request shortcuts and OpenAI error-shape checks."""

from __future__ import annotations

import json
import time

import httpx

MODEL = "smollm2-135m-instruct"
# Invented warehouses and their access codes: facts no model knows, for RAG tests.
WAREHOUSE_CODES = {
    "Zorblax": "7431",
    "Quindle": "2958",
    "Marrow": "6604",
    "Tessel": "1187",
    "Brinley": "5521",
    "Ostrava": "9043",
    "Pellam": "3376",
    "Vexford": "8210",
}
CAPITALS = {
    "France": "Paris",
    "Germany": "Berlin",
    "Japan": "Tokyo",
    "England": "London",
    "Russia": "Moscow",
    "China": "Beijing",
    "Egypt": "Cairo",
    "Greece": "Athens",
}


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


def stream_chat(client, **body) -> tuple[int, list]:
    """POST a streaming chat; return the status and the parsed SSE events (empty on an error status)."""
    body.setdefault("model", MODEL)
    body.setdefault("messages", [{"role": "user", "content": "Hi"}])
    with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as response:
        if response.status_code != 200:
            return response.status_code, []
        return 200, sse_events(response)


def long_story(**extra) -> dict:
    """A request that would generate for minutes on a CPU unless cancelled."""
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Tell me a very long story."}],
        "max_tokens": 2000,
        "ignore_eos": True,
        **extra,
    }


def wait_until_idle(http: httpx.Client, seconds: float = 10) -> int:
    """Poll /health until no sequence runs; return how many still run."""
    deadline = time.monotonic() + seconds
    while (running := http.get("/health").json()["running"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return running
