"""Shared by the UI's browser tests: a real server on 127.0.0.1 (FakeEngine, real embedder) in a thread,
Debian's Chromium driven by Playwright, pages opened with their console errors collected, and screenshots
of each page in both languages at laptop and phone widths (written to `ui-screenshots/`, git-ignored).

The fixtures `ui_server` and `ui_browser` are registered in tests/conftest.py.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import uvicorn

from server.app import build_app
from server.engines.fake import FakeEngine
from server.settings import Settings

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it)"
)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "ui-screenshots"
MODELS_CACHE = ROOT / ".pytest_cache" / "ragtune-models"  # as tests/conftest.py's
WIDTHS = {"laptop": (1280, 800), "phone": (390, 844)}


@dataclass
class UIServer:
    base: str
    engine: FakeEngine
    app: object
    http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx.Client(base_url=self.base, timeout=60)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(app) -> tuple[str, Callable[[], None]]:
    """Run `app` with uvicorn on a free loopback port in a thread; (base URL, stop)."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            httpx.get(f"{base}/health", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.05)

    def stop() -> None:
        server.should_exit = True
        thread.join(10)

    return base, stop


def default_reply(prompt: str) -> str:
    """The fake model: quotes the first source when RAG put one in the prompt, else a fixed answer."""
    if "Context:\n" in prompt:  # the plain RAG format
        return "From the documents: " + prompt.split("Context:\n", 1)[1].split("\n", 1)[0][:80]
    if "<sources>\n[1] " in prompt:  # the cited format (the fake model's size is unknown: auto picks it)
        source = prompt.split("<sources>\n[1] ", 1)[1].split("\n", 2)[1]
        return f"From the documents: {source[:80]} [1]"
    return "The capital of France is Paris."


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory, embedder) -> Iterator[UIServer]:
    """One server per test module, no API key; `ui_server.engine` is its FakeEngine (answers slowly
    enough that a stream is seen streaming)."""
    engine = FakeEngine(respond=default_reply, max_model_len=8192, delay=0.01)
    settings = Settings(data_dir=tmp_path_factory.mktemp("ui"), models_dir=MODELS_CACHE)
    app = build_app(settings, engine=engine, embedder=embedder)
    base, stop = serve(app)
    server = UIServer(base, engine, app)
    yield server
    server.http.close()
    stop()


@pytest.fixture(scope="module")
def ui_browser():
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (make test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


@dataclass
class Opened:
    page: object
    errors: list[str]


def open_page(
    browser, url: str, lang: str = "en", width: str = "laptop", key: str | None = None, status: int = 200
) -> Opened:
    """A new page at `url` in `lang` (the browser's Accept-Language), answered with `status`, its console
    errors and uncaught exceptions collected in `errors` (a test asserts it stays empty)."""
    w, h = WIDTHS[width]
    context = browser.new_context(
        viewport={"width": w, "height": h}, locale="zh-CN" if lang == "zh" else "en-US"
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    if key is not None:
        page.goto(url.split("/", 3)[0] + "//" + url.split("/", 3)[2] + "/login")
        page.evaluate("key => RT.setKey(key)", key)
    response = page.goto(url)
    assert response is not None and response.status == status, (url, response and response.status)
    return Opened(page, errors)


def screenshot(page, name: str, lang: str, width: str = "laptop") -> Path:
    """Save the whole page as `ui-screenshots/<name>-<lang>-<width>.png`."""
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / f"{name}-{lang}-{width}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def no_overflow(page) -> list[str]:
    """Elements wider than the page (text cut off or a layout that scrolls sideways): their tags."""
    return page.evaluate(
        """() => [...document.querySelectorAll('main *')]
            .filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1
                         && !e.closest('.table-wrap, pre, canvas'))
            .map(e => e.tagName + (e.id ? '#' + e.id : '') + (e.className ? '.' + e.className : ''))"""
    )
