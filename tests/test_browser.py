"""The report page and the arena page in headless Chromium (Debian's package, driven by Playwright)."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
import uvicorn

from server.app import build_app
from server.engines.fake import FakeEngine
from server.settings import Settings
from tests.conftest import free_port
from tests.helpers import MODEL
from tests.ui_support import CHROMIUM, FLAGS

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it)"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory, embedder):
    """The app with a FakeEngine on a real loopback port, in a thread."""
    app = build_app(
        Settings(data_dir=tmp_path_factory.mktemp("browser")),
        embedder=embedder,
        engine=FakeEngine(respond=lambda p: "Paris" if "One word." in p else "The capital is Paris."),
    )
    port = free_port()
    config = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=config.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            httpx.get(f"{base}/health", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    yield base
    config.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


def open_page(browser, url):
    page = browser.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    response = page.goto(url)
    assert response.status == 200
    return page, errors


def test_report_page_renders(server, browser, tmp_path):
    evals = tmp_path / "eval.jsonl"
    evals.write_text('{"question": "What is the capital of France?", "reference": "Paris"}\n' * 3)
    with httpx.Client(base_url=server, timeout=30) as http:
        http.post("/v1/profiles", json={"name": "terse", "model": MODEL, "system": "One word."})
        with open(evals, "rb") as f:
            eval_id = http.post(
                "/v1/files", data={"purpose": "evals"}, files={"file": ("e.jsonl", f)}
            ).json()["id"]
        comparison = http.post(
            "/v1/comparisons", json={"eval_file_id": eval_id, "arms": [MODEL, "terse"]}
        ).json()
        while http.get(f"/v1/comparisons/{comparison['id']}").json()["status"] != "completed":
            time.sleep(0.1)
    page, errors = open_page(browser, f"{server}/v1/comparisons/{comparison['id']}/report.html")
    assert page.locator("figure.chart").count() >= 3
    assert page.locator("figure.chart svg rect").count() >= 6 and page.locator("line.errorbar").count() >= 6
    assert page.locator("#rows tr").count() == 4  # header + three questions
    assert errors == []


def test_arena_page_battle_and_vote(server, browser):
    with httpx.Client(base_url=server) as http:  # the second setup (the report test may have made it)
        if "terse" not in {m["id"] for m in http.get("/v1/models").json()["data"]}:
            http.post("/v1/profiles", json={"name": "terse", "model": MODEL, "system": "One word."})
    page, errors = open_page(browser, f"{server}/arena")
    page.wait_for_selector("#arm-boxes input:checked")
    page.fill("#question", "What is the capital of France?")
    page.click("#ask-button")
    page.wait_for_selector("#battle:not([hidden])")
    answers = {page.text_content("#answer-a"), page.text_content("#answer-b")}
    assert answers == {"Paris", "The capital is Paris."}
    page.click("button[data-winner=a]")
    page.wait_for_function("document.getElementById('reveal').textContent.includes('A was')")
    page.wait_for_function("document.querySelectorAll('#leaderboard tbody tr td.num').length >= 8")
    assert page.locator("#nav a[aria-current=page][href='/arena']").count() == 1  # the UI's layout
    assert errors == []


def test_api_docs_render_offline(server, browser):
    """/docs draws every operation from the vendored Swagger UI; no request leaves 127.0.0.1."""
    page, errors = open_page(browser, f"{server}/docs")
    outside: list[str] = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(server) else None)
    page.wait_for_selector(".opblock", timeout=30_000)
    assert page.locator(".opblock").count() >= 25
    assert page.get_by_text("/v1/chat/completions").count() >= 1
    assert outside == [] and errors == []
    page.close()
