"""End to end: `ragtune serve` on loopback with the real default model, driven by the real `openai` client."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from tests.conftest import start_server, stop_server
from tests.helpers import CAPITALS, MODEL, long_story, wait_until_idle

pytestmark = pytest.mark.slow

FRANCE = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def client(live_server) -> openai.OpenAI:
    return openai.OpenAI(base_url=live_server.api, api_key="unused", max_retries=0, timeout=300)


def test_chat_non_streaming(client):
    response = client.chat.completions.create(model=MODEL, messages=FRANCE, temperature=0)
    assert "Paris" in response.choices[0].message.content
    assert response.choices[0].finish_reason == "stop"
    assert response.usage.prompt_tokens > 5
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens


def test_chat_streaming(client):
    stream = client.chat.completions.create(
        model=MODEL, messages=FRANCE, temperature=0, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Paris" in text
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "stop"
    ]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_seed_n_and_max_tokens(client):
    kwargs = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Write a poem."}],
        "temperature": 1.0,
        "max_tokens": 16,
        "seed": 1234,
    }
    first = client.chat.completions.create(n=2, **kwargs)
    second = client.chat.completions.create(n=2, **kwargs)
    assert [c.message.content for c in first.choices] == [c.message.content for c in second.choices]
    assert first.choices[0].message.content != first.choices[1].message.content
    assert all(c.finish_reason in ("stop", "length") for c in first.choices)
    assert first.usage.completion_tokens <= 32


def test_models_list(client):
    ids = {m.id for m in client.models.list().data}
    assert {MODEL, "all-minilm-l6-v2"} <= ids


def test_embeddings(client):
    response = client.embeddings.create(model="all-minilm-l6-v2", input=["ragtune answers", "猫"])
    vectors = np.array([d.embedding for d in response.data])
    assert vectors.shape == (2, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


def test_errors_through_the_client(client):
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="no-such-model", messages=FRANCE)
    assert missing.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=MODEL, messages=FRANCE, max_tokens=-1)
    assert bad.value.body["param"] == "max_tokens"
    with pytest.raises(openai.BadRequestError) as long:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "word " * 9000}])
    assert long.value.body["code"] == "context_length_exceeded"


def test_eight_concurrent_requests(client, live_server):

    def ask(country: str) -> str:
        response = client.chat.completions.create(
            model=MODEL,
            temperature=0,
            max_tokens=30,
            messages=[{"role": "user", "content": f"What is the capital of {country}?"}],
        )
        return response.choices[0].message.content

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, CAPITALS))
    for answer, city in zip(answers, CAPITALS.values(), strict=True):
        assert city in answer
    metrics = httpx.get(f"{live_server.base_url}/metrics").text
    assert 'ragtune_chat_requests_total{finish_reason="stop",model="smollm2-135m-instruct"}' in metrics


def test_langchain_chat_openai(live_server):
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(base_url=live_server.api, api_key="unused", model=MODEL, temperature=0, max_retries=0)
    assert "Paris" in llm.invoke("What is the capital of France?").content
    streamed = "".join(chunk.content for chunk in llm.stream("What is the capital of France?"))
    assert "Paris" in streamed


def test_cli_chat_and_models(live_server):
    ragtune = str(Path(sys.executable).parent / "ragtune")
    out = subprocess.run(
        [ragtune, "chat", "What is the capital of France?", "--base-url", live_server.api],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "Paris" in out.stdout
    listed = subprocess.run(
        [ragtune, "models", "--base-url", live_server.api], capture_output=True, text=True, timeout=60
    )
    assert MODEL in listed.stdout and "all-minilm-l6-v2" in listed.stdout


def test_api_key_required(tmp_path):
    server = start_server(tmp_path, {"RAGTUNE_API_KEY": "secret-1,secret-2"})
    try:
        assert httpx.get(f"{server.base_url}/health").status_code == 200
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=server.api, api_key="wrong", max_retries=0).models.list()
        good = openai.OpenAI(base_url=server.api, api_key="secret-2", max_retries=0, timeout=300)
        answer = good.chat.completions.create(model=MODEL, messages=FRANCE, temperature=0)
        assert "Paris" in answer.choices[0].message.content
    finally:
        stop_server(server)


def test_cli_chat_in_process(tmp_path):
    import os

    from tests.conftest import MODELS_CACHE

    env = {**os.environ, "RAGTUNE_DATA_DIR": str(tmp_path), "RAGTUNE_MODELS_DIR": str(MODELS_CACHE)}
    ragtune = str(Path(sys.executable).parent / "ragtune")
    out = subprocess.run(
        [ragtune, "chat", "What is the capital of France?", "--local"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    assert "Paris" in out.stdout


def test_client_disconnect_stops_generation(live_server):
    with httpx.Client(base_url=live_server.base_url, timeout=60) as http:
        with http.stream("POST", "/v1/chat/completions", json=long_story(stream=True)) as response:
            lines = response.iter_lines()
            received = [next(lines) for _ in range(6)]
            assert http.get("/health").json()["running"] == 1
        # Leaving the block closes the connection mid-answer.
        assert wait_until_idle(http) == 0
    assert any("content" in line for line in received)


def test_client_timeout_cancels_non_streaming_generation(live_server):
    with httpx.Client(base_url=live_server.base_url, timeout=60) as http:
        with pytest.raises(httpx.ReadTimeout):
            http.post("/v1/chat/completions", json=long_story(), timeout=1.5)
        assert wait_until_idle(http) == 0
