"""With RAGTUNE_API_KEY set, every page asks for the key and nothing is reachable without it: page loads
go to /login, the API answers 401, and the key cookie the login page sets opens pages, never the API."""

from __future__ import annotations

import pytest

from server.app import build_app
from server.engines.fake import FakeEngine
from server.settings import Settings
from tests.ui_support import MODELS_CACHE, open_page, screenshot, serve

pytestmark = pytest.mark.browser
KEY = "sk-ui-test-key"
PAGES = [
    "/",
    "/status",
    "/knowledge-bases",
    "/knowledge-bases/vs_123",
    "/fine-tuning",
    "/fine-tuning/ftjob-123",
    "/comparisons",
    "/comparisons/cmp_123",
    "/models",
    "/arena",
    "/docs",
    "/v1/comparisons/cmp_123/report.html",
]


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory, embedder):
    settings = Settings(data_dir=tmp_path_factory.mktemp("ui-auth"), api_key=KEY, models_dir=MODELS_CACHE)
    base, stop = serve(build_app(settings, engine=FakeEngine(), embedder=embedder))
    yield base
    stop()


def test_nothing_is_reachable_without_the_key(keyed_server):
    import httpx

    with httpx.Client(base_url=keyed_server, follow_redirects=False) as http:
        for path in PAGES:
            response = http.get(path)
            assert response.status_code == 303, path
            assert response.headers["location"].startswith("/login?next=%2F"), path
            assert "ragtune" not in response.text  # no page content before the key
        for path in ("/v1/models", "/v1/files", "/v1/vector_stores", "/openapi.json", "/metrics"):
            assert http.get(path).status_code == 401, path
        assert http.post("/v1/chat/completions", json={"model": "x", "messages": []}).status_code == 401
        # The cookie opens pages, never the API: a request another site makes the browser send cannot act.
        http.cookies.set("ragtune_key", KEY)
        assert http.get("/status").status_code == 200
        assert http.get("/v1/models").status_code == 401
        assert http.delete("/v1/vector_stores/vs_1").status_code == 401
        # A browser's unknown address: the 404 page with the key; data routes stay bearer-only.
        html = {"Accept": "text/html"}
        assert http.get("/nope", headers=html).status_code == 404
        assert http.get("/metrics", headers=html).status_code == 401
        assert http.get("/v1/models", headers=html).status_code == 401
        http.cookies.set("ragtune_key", "wrong")
        assert http.get("/status").status_code == 303
        assert http.get("/nope", headers=html).headers["location"] == "/login?next=%2Fnope"
        assert http.get("/nope").status_code == 401  # an API client gets the API's answer
        # Open without a key: liveness, the login page, scripts and styles (no data).
        http.cookies.clear()
        for path in ("/health", "/login", "/static/ui/app.js", "/static/ui/app.css"):
            assert http.get(path).status_code == 200, path


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_pages_ask_for_the_key_then_work(keyed_server, ui_browser, lang):
    opened = open_page(ui_browser, f"{keyed_server}/status", lang)
    page = opened.page
    assert "/login" in page.url and page.locator("#api-key").is_visible()
    screenshot(page, "login", lang)
    page.fill("#api-key", "not-the-key")
    page.press("#api-key", "Enter")
    page.wait_for_selector("#login-error:not([hidden])")
    # The refused key's 401 is the one console error expected here.
    assert [e for e in opened.errors if "401" not in e] == []
    opened.errors.clear()
    page.fill("#api-key", KEY)
    page.press("#api-key", "Enter")
    page.wait_for_url(f"{keyed_server}/status")
    page.wait_for_function("document.querySelectorAll('#cards .card').length >= 6")
    assert "fake" in page.inner_text("#cards")  # the API answered the page's bearer calls
    page.goto(f"{keyed_server}/models")  # another page: the cookie lets it in
    assert page.url.endswith("/models")
    if lang == "en":  # the API docs' "Try it out" is authorized with the same key
        page.goto(f"{keyed_server}/docs")
        page.wait_for_selector(".opblock")
        assert page.locator("button.authorize").count() == 1
        status = page.evaluate(  # Swagger UI sends the value its auth state holds
            """async () => {
                const auth = ui.authSelectors.authorized().toJS();
                const key = auth.bearer && auth.bearer.value;
                return (await fetch('/v1/models', {headers: {Authorization: 'Bearer ' + key}})).status;
            }"""
        )
        assert status == 200
    page.goto(f"{keyed_server}/status")
    page.click("#sign-out")
    page.wait_for_url("**/login?next=*")
    page.goto(f"{keyed_server}/status")
    assert "/login" in page.url
    assert opened.errors == []
    page.context.close()
