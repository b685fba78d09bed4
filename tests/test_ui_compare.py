"""The comparisons pages in Chromium: a comparison started from the page (an eval file uploaded there, the
base model against a profile) runs to completion with its progress shown; the report page draws a chart per
metric with intervals, the same numbers as a table, the paired differences and every answer side by side,
model output shown as text; the arena's leaderboard; both languages, laptop and phone."""

from __future__ import annotations

import json
import time

import pytest

from tests.ui_support import default_reply, no_overflow, open_page, screenshot

pytestmark = pytest.mark.browser

SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(2)>"
QUESTIONS = [
    {"question": "What is the capital of France?", "reference": "Paris"},
    {"question": "Which HTML tag runs code in a page?", "reference": "<script>"},
    {"question": "中国的首都是哪里？", "reference": "北京"},
]


def reply(prompt: str) -> str:
    """The fake model: quotes its sources with RAG, answers markup to the HTML question, briefly as the
    profile asks, and in Chinese to the Chinese question."""
    if "Context:\n" in prompt:
        return default_reply(prompt)
    if "HTML tag" in prompt:
        return f"{SCRIPT} runs code; {IMG} does too."
    if "首都" in prompt:
        return "北京是中国的首都。"
    if "a few words" in prompt:
        return "Paris."
    return "The capital of France is Paris."


def eval_jsonl() -> bytes:
    return "".join(json.dumps(q, ensure_ascii=False) + "\n" for q in QUESTIONS).encode()


def wait_completed(http, comparison_id: str) -> dict:
    for _ in range(600):
        comparison = http.get(f"/v1/comparisons/{comparison_id}").json()
        if comparison["status"] in ("completed", "failed"):
            return comparison
        time.sleep(0.1)
    raise AssertionError(f"comparison {comparison_id} did not finish")


@pytest.fixture(scope="module")
def setup(ui_server, tmp_path_factory):
    """A knowledge base, a served fine-tuned model, a profile, a finished comparison of the four standard
    setups (the screenshots' report) and an arena vote (a leaderboard row)."""
    http = ui_server.http
    engine = ui_server.engine
    respond, engine.respond = engine.respond, reply
    base = http.get("/health").json()["model"]
    text = b"# Capitals\n\nParis is the capital of France. Beijing is the capital of China.\n"
    doc = http.post("/v1/files", data={"purpose": "assistants"}, files={"file": ("capitals.md", text)}).json()
    store = http.post("/v1/vector_stores", json={"name": "Capitals 首都", "file_ids": [doc["id"]]}).json()
    for _ in range(600):
        if http.get(f"/v1/vector_stores/{store['id']}").json()["file_counts"]["completed"]:
            break
        time.sleep(0.1)
    adapter = f"ft:{base}:capitals:uicmp001"
    ui_server.app.state.services.catalog.add_lazy_adapter(adapter, str(tmp_path_factory.mktemp("adapter")))
    profile = http.post(
        "/v1/profiles", json={"name": "concise", "model": base, "system": "Answer in a few words."}
    )
    assert profile.status_code == 200, profile.text
    eval_file = http.post(
        "/v1/files", data={"purpose": "evals"}, files={"file": ("capitals.jsonl", eval_jsonl())}
    ).json()
    created = http.post(
        "/v1/comparisons",
        json={
            "eval_file_id": eval_file["id"],
            "vector_store_id": store["id"],
            "fine_tuned_model": adapter,
            "max_tokens": 100,
        },
    )
    assert created.status_code == 200, created.text
    finished = wait_completed(http, created.json()["id"])
    assert finished["status"] == "completed", finished["error"]
    battle = http.post("/v1/arena/battles", json={"question": "Hi?", "arms": [base, "concise"]}).json()
    http.post(f"/v1/arena/battles/{battle['id']}/vote", json={"winner": "a"})
    yield {"base": base, "store": store["id"], "adapter": adapter, "comparison": finished["id"]}
    engine.respond = respond


def test_a_comparison_started_in_the_page_runs_and_its_report_is_drawn(ui_server, ui_browser, setup):
    opened = open_page(ui_browser, f"{ui_server.base}/comparisons")
    page = opened.page
    page.wait_for_selector("#arm-boxes input[value='concise']")
    # the four standard setups are offered (a knowledge base and a fine-tuned model exist)
    assert page.is_enabled("#arms-default")
    page.check("#arms-default")
    assert page.input_value("#default-ft") == setup["adapter"]
    page.check("#arms-chosen")

    upload = {"name": "three.jsonl", "mimeType": "application/json", "buffer": eval_jsonl()}
    page.set_input_files("#eval-upload", files=[upload])
    assert page.inner_text("#upload-part .file-name") == "three.jsonl"  # the page's own file picker
    assert page.is_checked(f"#arm-boxes input[value='{setup['base']}']")  # the base model is pre-checked
    page.check("#arm-boxes input[value='concise']")
    page.fill("#max-tokens", "100")
    page.click("#start-button")
    page.wait_for_selector("#cmp-notice a")
    comparison_id = page.get_attribute("#cmp-notice a", "href").rsplit("/", 1)[1]
    row = f"#comparisons tr[data-id='{comparison_id}']"
    page.wait_for_selector(f"{row} .badge-completed", timeout=60_000)
    assert "6 of 6" in page.inner_text(row)
    comparison = ui_server.http.get(f"/v1/comparisons/{comparison_id}").json()
    assert [a["name"] for a in comparison["arms"]] == [setup["base"], "concise"]
    assert len(comparison["report"]["rows"]) == 3
    # the arena's leaderboard has the voted battle
    assert "concise" in page.inner_text("#leaderboard") and page.get_attribute("a[href='/arena']", "href")
    assert opened.errors == []

    page.click(f"{row} a[href='/comparisons/{comparison_id}']")
    page.wait_for_selector("#charts canvas")
    assert page.evaluate("[...document.querySelectorAll('#charts canvas')].every(c => Chart.getChart(c))")
    assert page.get_attribute("#charts figure[data-metric='f1'] canvas", "aria-label").startswith("F1")
    scores = page.inner_text("#scores")
    assert "F1 (word overlap)" in scores and "[" in scores and "concise" in scores
    f1 = page.inner_text("#scores tr[data-metric='f1']")
    assert any(ch.isdigit() for ch in f1)
    pairs = page.inner_text("#pairs")
    assert f"{setup['base']} − concise" in pairs and ("Within noise" in pairs or "Real difference" in pairs)

    # every question's answers side by side, model output as text
    assert page.locator("#rows .cmp-question").count() == 3
    assert page.locator("#rows .cmp-answer").count() == 6
    rows = page.inner_text("#rows")
    assert SCRIPT in rows and IMG in rows and "北京是中国的首都。" in rows and "Paris." in rows
    assert page.evaluate("document.querySelectorAll('#rows script, #rows img').length") == 0
    assert page.get_attribute("#standalone", "href") == f"/v1/comparisons/{comparison_id}/report.html"
    assert opened.errors == []
    page.context.close()


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_comparison_pages_screenshots(ui_server, ui_browser, setup, lang):
    for width in ("laptop", "phone"):
        opened = open_page(ui_browser, f"{ui_server.base}/comparisons", lang, width)
        page = opened.page
        page.wait_for_selector(f"#comparisons tr[data-id='{setup['comparison']}'] .badge-completed")
        page.wait_for_selector("#leaderboard td.num")
        assert ("对比评测" in page.inner_text("main")) == (lang == "zh")
        screenshot(page, "comparisons", lang, width)
        assert no_overflow(page) == []
        assert opened.errors == []
        page.context.close()

        opened = open_page(ui_browser, f"{ui_server.base}/comparisons/{setup['comparison']}", lang, width)
        page = opened.page
        page.wait_for_selector("#rows .cmp-answer")
        assert page.locator("#charts canvas").count() >= 3
        assert page.locator("#rows .cmp-answer[data-arm='rag'] details").count() >= 1  # its sources
        text = page.inner_text("main")
        assert ("逐题回答对比" in text) == (lang == "zh")
        assert ("Answers side by side" in text) == (lang == "en")
        screenshot(page, "comparison", lang, width)
        assert no_overflow(page) == []
        assert opened.errors == []
        page.context.close()


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_arena_page_battles_votes_and_ranks(ui_server, ui_browser, setup, lang):
    """Two checked setups answer (markup in an answer is text), a vote reveals them and the leaderboard
    counts it; the page is in the UI's layout in both languages, laptop and phone."""
    http = ui_server.http
    before = http.get("/v1/comparisons/leaderboard").json()["votes"]
    opened = open_page(ui_browser, f"{ui_server.base}/arena", lang)
    page = opened.page
    page.wait_for_selector(f"#arm-boxes input[value='{setup['base']}']")
    for box in page.locator("#arm-boxes input").all():
        if box.get_attribute("value") not in (setup["base"], "concise"):
            box.uncheck()
    page.fill("#question", "Which HTML tag runs code in a page?")
    page.click("#ask-button")
    page.wait_for_selector("#battle:not([hidden])")
    answers = page.inner_text("#battle")
    assert SCRIPT in answers and IMG in answers
    assert page.evaluate("document.querySelectorAll('#battle script, #battle img').length") == 0
    page.click("button[data-winner=tie]")
    page.wait_for_function("document.getElementById('reveal').textContent.includes('concise')")
    reveal = page.inner_text("#reveal")
    assert setup["base"] in reveal and ("A 是" in reveal) == (lang == "zh")
    page.wait_for_function(f"document.getElementById('votes').textContent.includes('{before + 1}')")
    assert http.get("/v1/comparisons/leaderboard").json()["votes"] == before + 1
    assert page.locator("#nav a[aria-current=page][href='/arena']").count() == 1
    screenshot(page, "arena", lang, "laptop")
    assert no_overflow(page) == [] and opened.errors == []
    page.context.close()

    opened = open_page(ui_browser, f"{ui_server.base}/arena", lang, "phone")
    opened.page.wait_for_selector("#leaderboard td.num")
    screenshot(opened.page, "arena", lang, "phone")
    assert no_overflow(opened.page) == [] and opened.errors == []
    opened.page.context.close()


def test_the_arena_with_one_model_says_how_to_get_a_second(ui_server, ui_browser):
    """A fresh server has one model: the arena says to create a profile or fine-tune, instead of failing
    on the first question (the model list is narrowed here to what a fresh server lists)."""
    opened = open_page(ui_browser, f"{ui_server.base}/login")
    page = opened.page
    one = {"object": "list", "data": [{"id": "smollm2-135m-instruct", "object": "model", "kind": "chat"}]}
    page.route("**/v1/models", lambda route: route.fulfill(json=one))
    page.goto(f"{ui_server.base}/arena")
    page.wait_for_selector("#too-few")
    assert page.is_disabled("#ask-button") and page.get_attribute("#too-few a", "href") == "/models"
    assert opened.errors == []
    page.context.close()
