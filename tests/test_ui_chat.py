"""The chat playground in Chromium: models grouped from /v1/models, knowledge bases from /v1/vector_stores,
answers streamed from /v1/chat/completions with numbered citations that open the quoted chunk, feedback
stored through /v1/feedback, conversations kept in the browser, errors shown inline, untrusted text
shown as text."""

from __future__ import annotations

import time

import pytest

from tests.docs import pdf
from tests.ui_support import default_reply, no_overflow, open_page, screenshot

pytestmark = pytest.mark.browser

ADAPTER = "ft:smollm2:ui-chat"
PROFILE = "support-bot"
KB_NAME = "Handbook <img src=x onerror=alert(1)>"
XSS = "<script>alert(1)</script><img src=x onerror=alert(2)>"


def cited_reply(prompt: str) -> str:
    """The fake model, also for the `cited` RAG prompt (numbered sources, which the fake engine's unknown
    size gets): quotes the last line of source [1] and cites it; else tests.ui_support's reply."""
    if "<sources>\n[1] " in prompt:
        source = prompt.split("<sources>\n[1] ", 1)[1].split("\n[2] ", 1)[0].split("</sources>", 1)[0]
        lines = [line for line in source.strip().splitlines()[1:] if line.strip()]
        return f"From the documents: {lines[-1][:80]} [1]"
    return default_reply(prompt)


@pytest.fixture(scope="module")
def chat_env(ui_server, tmp_path_factory):
    """A knowledge base holding a real two-page PDF and a Chinese text file, a fine-tuned adapter and a
    profile; the base model's id and the knowledge base's."""
    http = ui_server.http
    ui_server.engine.respond = cited_reply
    base = next(m["id"] for m in http.get("/v1/models").json()["data"] if m["kind"] == "chat")
    catalog = ui_server.app.state.services.catalog
    catalog.add_lazy_adapter(ADAPTER, str(tmp_path_factory.mktemp("adapter")))
    response = http.post("/v1/profiles", json={"name": PROFILE, "model": base, "system": "Be brief."})
    assert response.status_code == 200, response.text
    path = pdf(
        tmp_path_factory.mktemp("docs") / "handbook.pdf",
        [
            "Opening hours. The office opens at 9 am and closes at 6 pm on weekdays.",
            "Warranty. Every X200 drill carries a warranty of three years from the date of purchase.",
        ],
    )
    chinese = "保修说明\n\n每台 X200 电钻自购买之日起保修三年。保修期内免费维修。\n".encode()
    file_ids = []
    for name, content, mime in [
        ("handbook.pdf", path.read_bytes(), "application/pdf"),
        ("保修说明.txt", chinese, "text/plain"),
    ]:
        files = {"file": (name, content, mime)}
        uploaded = http.post("/v1/files", files=files, data={"purpose": "assistants"})
        assert uploaded.status_code == 200, uploaded.text
        file_ids.append(uploaded.json()["id"])
    store = http.post("/v1/vector_stores", json={"name": KB_NAME, "file_ids": file_ids}).json()
    deadline = time.monotonic() + 60
    while http.get(f"/v1/vector_stores/{store['id']}").json()["file_counts"]["completed"] < 2:
        assert time.monotonic() < deadline, "the PDF was not indexed in time"
        time.sleep(0.1)
    return {"base": base, "store": store["id"]}


def wait_ready(page):
    page.wait_for_function("document.querySelectorAll('#model option').length >= 3")
    page.wait_for_selector("#kb-list input[type=checkbox]")


def ask(page, question: str):
    page.fill("#prompt", question)
    page.press("#prompt", "Enter")


def wait_answered(page, count: int):
    """Until `count` answers are finished (no answer still streaming)."""
    page.wait_for_function(
        "n => document.querySelectorAll('.msg.assistant:not([aria-busy]), .msg.error').length >= n"
        " && !document.querySelector('.msg.assistant[aria-busy]')",
        arg=count,
    )


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("width", ["laptop", "phone"])
def test_chat_page_answers_with_citations(ui_server, ui_browser, chat_env, lang, width):
    opened = open_page(ui_browser, f"{ui_server.base}/", lang, width)
    page = opened.page
    wait_ready(page)
    groups = page.eval_on_selector_all("#model optgroup", "gs => gs.map(g => g.label)")
    expected = ["Base model", "Fine-tuned", "Profiles"] if lang == "en" else ["基础模型", "微调模型", "配置"]
    assert groups == expected
    assert page.input_value("#model") == chat_env["base"]
    embedding = [m["id"] for m in ui_server.http.get("/v1/models").json()["data"] if m["kind"] == "embedding"]
    options = page.eval_on_selector_all("#model option", "os => os.map(o => o.value)")
    assert not set(embedding) & set(options) and ADAPTER in options and PROFILE in options
    assert ("Knowledge bases" in page.inner_text("main")) == (lang == "en")
    page.check(f"#kb-{chat_env['store']}")
    ask(page, "How long is the warranty of the X200 drill?" if lang == "en" else "X200 电钻的保修期多长？")
    wait_answered(page, 1)
    assert page.inner_text(".msg.assistant .sources li").startswith("[1]")
    assert no_overflow(page) == []
    screenshot(page, "chat", lang, width)
    page.click(".sources li button")
    page.wait_for_selector("#cite-dialog[open]")
    assert page.inner_text("#cite-file") == ("handbook.pdf" if lang == "en" else "保修说明.txt")
    screenshot(page, "chat-citation", lang, width)
    page.keyboard.press("Escape")
    page.wait_for_selector("#cite-dialog:not([open])", state="attached")
    assert opened.errors == []
    page.context.close()


def test_chat_streams_cites_rates_and_keeps_the_conversation(ui_server, ui_browser, chat_env):
    opened = open_page(ui_browser, f"{ui_server.base}/?model={ADAPTER}", "en", "laptop")
    page = opened.page
    wait_ready(page)
    assert page.input_value("#model") == ADAPTER  # the fine-tuning page's "try in playground" link
    page.select_option("#model", chat_env["base"])
    # The knowledge base's name is shown as text: no element made from it.
    assert KB_NAME in page.inner_text("#kb-list") and page.query_selector("#kb-list img") is None
    page.check(f"#kb-{chat_env['store']}")
    # Every change of the streaming answer's text, to see it arrive in pieces.
    page.evaluate(
        """() => { window.seen = new Set();
        new MutationObserver(() => { const a = document.querySelector('.msg.assistant .text');
          if (a) window.seen.add(a.textContent); })
        .observe(document.getElementById('messages'),
                 {subtree: true, childList: true, characterData: true}); }"""
    )
    ask(page, "How long is the warranty of the X200 drill?")
    page.wait_for_selector("#stop:not([hidden])")
    wait_answered(page, 1)
    assert page.evaluate("window.seen.size") > 3
    answer = page.inner_text(".msg.assistant .text")
    assert answer, "an answer was shown"
    assert page.is_hidden("#stop") and page.is_visible("#send")
    meta = page.inner_text(".msg.assistant .meta")
    assert "tokens" in meta and " s" in meta

    # The numbered citation opens the quoted chunk with its file, page and knowledge base.
    sources = page.inner_text(".msg.assistant .sources")
    assert "[1]" in sources and "handbook.pdf" in sources
    page.click(".sources li:first-child button")
    dialog = page.wait_for_selector("#cite-dialog[open]")
    assert page.inner_text("#cite-title") == "Source [1]"
    assert page.inner_text("#cite-file") == "handbook.pdf"
    assert page.inner_text("#cite-kb") == KB_NAME
    assert page.inner_text("#cite-page") == "2" and 0 < float(page.inner_text("#cite-score")) <= 1
    assert "three years" in page.inner_text("#cite-quote")
    page.click("#cite-full")
    page.wait_for_selector("#cite-full-text:not([hidden])")
    assert "Opening hours" in page.inner_text("#cite-full-text")
    assert "three years" in page.inner_text("#cite-full-text mark")
    page.keyboard.press("Escape")
    page.wait_for_selector("#cite-dialog:not([open])", state="attached")
    assert not dialog.is_visible()
    assert page.evaluate("document.activeElement.matches('.sources li:first-child button')")

    # Thumbs down with a correction is stored as feedback.
    page.click("button.thumb-down")
    page.fill(".correction textarea", "Three years from the date of purchase.")
    page.click(".correction button[type=submit]")
    page.wait_for_function("document.querySelector('.feedback-status').textContent.includes('correction')")
    stored = ui_server.http.get("/v1/feedback").json()["data"][-1]
    assert stored["rating"] == "down" and stored["correction"] == "Three years from the date of purchase."
    assert stored["model"] == chat_env["base"] and stored["response"] == answer
    assert stored["messages"] == [{"role": "user", "content": "How long is the warranty of the X200 drill?"}]

    # An answer holding markup is shown as text (asked without the knowledge base: nothing in it matches,
    # and the server would say so instead of asking the model).
    page.uncheck(f"#kb-{chat_env['store']}")
    ui_server.engine.enqueue(XSS)
    ask(page, "Say something odd")
    wait_answered(page, 2)
    assert XSS in page.inner_text("#messages")
    assert page.query_selector("#messages script, #messages img") is None

    # A finished answer's Markdown is drawn (code, emphasis, a list); an image a model writes is not
    # fetched, and a javascript: link is dropped.
    ui_server.engine.enqueue(
        "Use **this**:\n\n```python\nprint([1])\n```\n\n- one\n- two\n\n"
        "![x](http://127.0.0.1:9/tracker.png) [bad](javascript:alert(3))"
    )
    ask(page, "Show me code")
    wait_answered(page, 3)
    last = ".msg.assistant:last-of-type .text"
    assert page.inner_text(f"{last} pre code").strip() == "print([1])"  # not a citation button in code
    assert page.inner_text(f"{last} strong") == "this" and page.locator(f"{last} li").count() == 2
    assert "```" not in page.inner_text(last) and "**" not in page.inner_text(last)
    assert page.query_selector("#messages img, #messages a[href^='javascript']") is None

    # A setting out of its field's range is caught at the field, the question kept; one the server
    # refuses (longer than the context) is a 400 shown in the conversation, naming the parameter.
    page.click("#settings summary")
    page.fill("#temperature", "5")
    page.fill("#prompt", "Hello?")
    page.press("#prompt", "Enter")
    assert page.evaluate("document.activeElement.id") == "temperature"
    assert page.input_value("#prompt") == "Hello?" and page.locator(".msg.user").count() == 3
    page.fill("#temperature", "")
    page.fill("#max_tokens", "10000000")
    page.press("#prompt", "Enter")
    page.wait_for_selector(".msg.error")
    error = page.inner_text(".msg.error")
    assert "400" in error and "max_tokens" in error
    assert no_overflow(page) == []
    page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")  # the composer sits last
    screenshot(page, "chat-flow", "en", "laptop")  # settings open, feedback saved, markup as text, the error
    page.click("#settings-reset")
    # Retry asks the failed question again, now with the reset settings: the error gives way to an answer.
    page.click(".msg.error .retry")
    page.wait_for_selector(".msg.error", state="detached")
    wait_answered(page, 4)
    asked = page.locator(".msg.user")
    assert asked.count() == 4 and asked.last.inner_text().endswith("Hello?")

    # Stop ends a long answer early and keeps what was said.
    ui_server.engine.enqueue("word " * 400)
    ask(page, "Tell me a long story")
    page.wait_for_function("(document.querySelector('.msg.assistant[aria-busy] .text') || {}).textContent")
    page.click("#stop")
    wait_answered(page, 5)
    assert "Stopped" in page.inner_text("#messages .msg.assistant:last-child")

    # The conversation survives a reload: messages, citations and the saved feedback.
    page.reload()
    wait_ready(page)
    assert page.locator(".msg.user").count() == 5
    assert "handbook.pdf" in page.inner_text(".msg.assistant .sources")
    assert "correction" in page.inner_text(".feedback-status")
    assert page.is_disabled("button.thumb-down")
    assert XSS in page.inner_text("#messages")
    assert page.inner_text("#conversations").startswith("How long is the warranty")

    # New, switch and delete conversations.
    page.click("#new-chat")
    assert page.locator(".msg").count() == 0
    ask(page, "Second conversation")
    wait_answered(page, 1)
    assert page.locator("#conversations li").count() == 2
    page.click("#conversations li:nth-child(2) .conv-open")
    assert page.locator(".msg.user").count() == 5
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#conversations li:nth-child(1) .conv-delete")
    assert page.locator("#conversations li").count() == 1
    assert "How long is the warranty" in page.inner_text("#conversations")
    # Chromium logs the refused request itself (the max_tokens too long): that one, and nothing else.
    refused = "Failed to load resource: the server responded with a status of 400 (Bad Request)"
    assert opened.errors == [refused]
    page.context.close()


def test_chat_warns_of_a_model_the_server_does_not_serve(ui_server, ui_browser, chat_env):
    opened = open_page(ui_browser, f"{ui_server.base}/?model=ft:gone&lang=zh", "zh", "laptop")
    page = opened.page
    wait_ready(page)
    assert "ft:gone" in page.inner_text("#model-note") and "没有提供模型" in page.inner_text("#model-note")
    assert page.input_value("#model") == chat_env["base"]
    assert opened.errors == []
    page.context.close()
