"""The status page in Chromium: engine, device, queue and traffic from the public API, in both languages."""

from __future__ import annotations

import pytest

from tests.ui_support import no_overflow, open_page, screenshot

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("width", ["laptop", "phone"])
def test_status_page_shows_the_engine_and_queue(ui_server, ui_browser, lang, width):
    ui_server.http.post(
        "/v1/chat/completions",
        json={"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "Hi"}]},
    )
    opened = open_page(ui_browser, f"{ui_server.base}/status", lang, width)
    page = opened.page
    page.wait_for_function("document.querySelectorAll('#cards .card').length >= 6")
    cards = page.inner_text("#cards")
    assert "fake" in cards and "cpu" in cards
    assert ("推理引擎" in cards) == (lang == "zh") and ("Engine" in cards) == (lang == "en")
    page.wait_for_function("document.querySelector('#traffic').innerText.match(/[1-9]/)")
    assert no_overflow(page) == []
    screenshot(page, "status", lang, width)
    assert opened.errors == []
    page.context.close()


def test_an_unknown_page_is_a_page_for_a_browser_and_json_for_a_client(ui_server, ui_browser):
    opened = open_page(ui_browser, f"{ui_server.base}/no-such-page", "zh", "phone", status=404)
    page = opened.page
    assert page.inner_text("h1") == "页面不存在" and page.locator("#nav a[href='/']").count() == 1
    # the phone menu opens with its button and closes with Escape, focus back on the button
    page.click("#nav-toggle")
    assert page.is_visible("#nav")
    page.keyboard.press("Escape")
    assert page.is_hidden("#nav") and page.get_attribute("#nav-toggle", "aria-expanded") == "false"
    assert page.evaluate("document.activeElement.id") == "nav-toggle"
    # the 404 document is the one console error
    assert [e for e in opened.errors if "404" not in e] == []
    page.context.close()
    answer = ui_server.http.get("/no-such-page")
    assert answer.status_code == 404 and answer.json()["error"]["message"] == "Unknown route."
    html = ui_server.http.get("/v1/nope", headers={"Accept": "text/html"})
    assert html.status_code == 404 and html.json()["error"]  # the API stays JSON
