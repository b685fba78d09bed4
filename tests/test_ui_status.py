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
