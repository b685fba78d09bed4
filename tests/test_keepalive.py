"""An unexpected error is a clean OpenAI 500 and leaves the kept-alive connection usable (issue 11),
checked on a real uvicorn server on 127.0.0.1 with one httpx connection."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from fastapi import Request

from server.app import build_app
from server.engines.fake import FakeEngine
from server.settings import Settings
from tests.conftest import free_port
from tests.helpers import MODEL, assert_error


class BrokenEngine(FakeEngine):
    async def generate(self, prompt_ids, params, adapter=None):
        raise RuntimeError("engine bug: /secret/path/model.py line 12")
        yield  # pragma: no cover


@pytest.fixture
def live(tmp_path, embedder) -> Iterator[str]:
    app = build_app(Settings(data_dir=tmp_path / "data"), engine=BrokenEngine(), embedder=embedder)

    @app.get("/test/bug")
    async def bug() -> dict:  # a route-level bug, as a future one would be
        raise KeyError("not a client's fault")

    @app.get("/test/peer")
    async def peer(request: Request) -> dict:  # which client socket this request came on
        return {"port": request.client.port}

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)


def test_connection_survives_unexpected_errors(live):
    with httpx.Client(base_url=live, timeout=30, limits=httpx.Limits(max_connections=1)) as client:
        port = client.get("/test/peer").json()["port"]
        body = {"model": MODEL, "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]}
        for failing in (
            lambda: client.post("/v1/chat/completions", json=body),
            lambda: client.post("/v1/chat/completions", json={**body, "stream": True}),
            lambda: client.get("/test/bug"),
        ):
            response = failing()
            error = assert_error(response, 500)
            assert error["type"] == "server_error"
            assert "secret" not in response.text and "Traceback" not in response.text
            # The next request travels on the same socket and is answered normally.
            assert client.get("/v1/models").status_code == 200
            assert client.get("/test/peer").json()["port"] == port
