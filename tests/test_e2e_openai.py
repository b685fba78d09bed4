"""End to end: `ragtune serve` on loopback with the real default model, driven by the real `openai` client.

What every engine must do alike (chat, streaming, stops, seeds, adapters, cancellation, errors) is in
test_engine_conformance.py; this file covers the rest: models, embeddings, LangChain, CLI, API keys.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from tests.conftest import start_server, stop_server
from tests.helpers import MODEL

pytestmark = pytest.mark.slow

FRANCE = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def client(live_server) -> openai.OpenAI:
    return openai.OpenAI(base_url=live_server.api, api_key="unused", max_retries=0, timeout=300)


def test_models_list(client):
    ids = {m.id for m in client.models.list().data}
    assert {MODEL, "all-minilm-l6-v2"} <= ids


def test_embeddings(client):
    response = client.embeddings.create(model="all-minilm-l6-v2", input=["ragtune answers", "猫"])
    vectors = np.array([d.embedding for d in response.data])
    assert vectors.shape == (2, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


def test_langchain_chat_openai(live_server):
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(base_url=live_server.api, api_key="unused", model=MODEL, temperature=0, max_retries=0)
    assert "Paris" in llm.invoke("What is the capital of France?").content
    streamed = "".join(chunk.content for chunk in llm.stream("What is the capital of France?"))
    assert "Paris" in streamed


def test_langchain_chat_openai_on_the_responses_api(live_server):
    """LangChain's ChatOpenAI on OpenAI's Responses API (`use_responses_api=True`): invoke and stream."""
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(
        base_url=live_server.api,
        api_key="unused",
        model=MODEL,
        temperature=0,
        max_tokens=32,
        max_retries=0,
        use_responses_api=True,
    )
    answer = llm.invoke("What is the capital of France?")
    assert "Paris" in answer.text and answer.response_metadata["id"].startswith("resp_")
    assert answer.usage_metadata["output_tokens"] > 0
    streamed = "".join(chunk.text for chunk in llm.stream("What is the capital of France?"))
    assert streamed == answer.text


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
