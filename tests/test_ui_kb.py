"""The knowledge-base pages in Chromium: create a store, upload files through the page (file input and
drag-and-drop) and see them indexed or failed with their `last_error`, read the parsed text, compare the
three rankers, detach, delete; untrusted names shown as text; both pages in both languages and widths."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.test_knowledge_bases import wait_for_store
from tests.ui_support import no_overflow, open_page, screenshot

pytestmark = pytest.mark.browser

XSS_FILE = "<img src=x onerror=alert(1)>.md"
XSS_STORE = "<script>alert(1)</script> handbook"
SAFETY = (
    "倉庫安全須知\n一、堆高機限速每小時五公里。\n二、進入冷凍庫必須穿戴防寒衣。\n"
    "三、夜班值班電話為分機八八六六。\n"
)
UPLOADS_DONE = """n => {
    const states = [...document.querySelectorAll('#upload-list li')].map(li => li.dataset.state);
    return states.length === n && states.every(s => ['completed', 'failed', 'upload_failed'].includes(s));
}"""
SEARCH_DONE = (
    "document.querySelectorAll('#results .kb-col').length === 3"
    " && !document.querySelector('#search-button').disabled"
)
CITIES = ["Lyon", "Porto", "Graz", "Turku", "Leeds", "Brno", "Gdansk", "Malmo", "Genoa", "Berlin"]


def write_docs(directory: Path) -> dict[str, Path]:
    """Real documents (as ../shared/cases/kb-ft's parts table and Big5 safety notice), one the parser
    rejects (only blanks), one the upload refuses (a Windows program named .txt) and one whose name is
    HTML."""
    directory.mkdir(parents=True, exist_ok=True)
    rows = "\n".join(
        f"| P-{1000 + i} | {CITIES[(i - 1) % 10]} | {5 + 0.75 * i:.2f} | {(3 * i) % 17 + 1} |"
        for i in range(1, 41)
    )
    docs = {
        "parts": directory / "parts_table.md",
        "big5": directory / "safety_big5.txt",
        "blank": directory / "blank.md",
        "exe": directory / "setup.txt",
        "xss": directory / XSS_FILE,
    }
    docs["parts"].write_text(
        "# Spare parts price list\n\nPrices are in euros per unit; lead time is in working days.\n\n"
        "| Part number | Warehouse city | Unit price (EUR) | Lead time (days) |\n| --- | --- | --- | --- |\n"
        + rows
        + "\n",
        encoding="utf-8",
    )
    docs["big5"].write_bytes(SAFETY.encode("big5"))
    docs["blank"].write_text("   \n\n  \n", encoding="utf-8")
    docs["exe"].write_bytes(b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff" + bytes(range(256)) * 4)
    docs["xss"].write_text(
        "# Visitors\n\nEvery visitor must wear a yellow badge and sign the guest book at reception.\n",
        encoding="utf-8",
    )
    return docs


def file_row(page, name: str):
    return page.locator("#files tbody tr", has=page.locator(".kb-filename", has_text=name))


@pytest.fixture(scope="module")
def filled_store(ui_server, tmp_path_factory) -> str:
    """A store made through the API with three indexed files and one that failed (for screenshots)."""
    docs = write_docs(tmp_path_factory.mktemp("kb-docs"))
    ids = []
    for key in ("parts", "big5", "blank", "xss"):
        with open(docs[key], "rb") as f:
            response = ui_server.http.post(
                "/v1/files", files={"file": (docs[key].name, f)}, data={"purpose": "assistants"}
            )
        assert response.status_code == 200, response.text
        ids.append(response.json()["id"])
    store = ui_server.http.post("/v1/vector_stores", json={"name": "Warehouse 仓库手册", "file_ids": ids})
    store_id = store.json()["id"]
    assert wait_for_store(ui_server.http, store_id)["file_counts"]["completed"] == 3
    return store_id


def test_create_upload_read_search_detach_delete(ui_server, ui_browser, tmp_path):
    docs = write_docs(tmp_path / "docs")
    opened = open_page(ui_browser, f"{ui_server.base}/knowledge-bases", "en", "laptop")
    page = opened.page
    page.set_default_timeout(90_000)  # indexing and search wait on the embedder: slow on a busy CI machine
    page.on("dialog", lambda dialog: dialog.accept())

    # Create, with the embedder chosen from /v1/models: the page moves on to the new store.
    page.wait_for_selector("#kb-embedder option[value='all-minilm-l6-v2']", state="attached")
    page.fill("#kb-name", XSS_STORE)
    page.select_option("#kb-embedder", "all-minilm-l6-v2")
    page.press("#kb-name", "Enter")
    page.wait_for_url(re.compile(r"/knowledge-bases/vs_"))
    store_id = page.url.rsplit("/", 1)[1]
    page.wait_for_function("document.querySelector('#kb-cards .card')")
    assert page.inner_text("#kb-title") == XSS_STORE  # the name as text, no script element
    assert page.locator("main script").count() == 0
    assert "all-minilm-l6-v2" in page.inner_text("#kb-cards")

    # Upload through the file chooser the button opens (from the keyboard), and drop one on the drop zone.
    # A real <button> (keyboard-usable) opens the chooser.
    assert page.eval_on_selector("#choose-files", "e => e.tagName") == "BUTTON"
    with page.expect_file_chooser() as chooser:
        page.click("#choose-files")
    chooser.value.set_files([str(docs[k]) for k in ("parts", "big5", "blank", "exe")])
    page.evaluate(
        """([name, text]) => {
            const data = new DataTransfer();
            data.items.add(new File([text], name, { type: "text/markdown" }));
            document.getElementById("dropzone").dispatchEvent(
                new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true }));
        }""",
        [XSS_FILE, docs["xss"].read_text(encoding="utf-8")],
    )
    page.wait_for_function(UPLOADS_DONE, arg=5, timeout=180_000)
    states = page.eval_on_selector_all(
        "#upload-list li",
        "lis => lis.map(li => [li.querySelector('.kb-up-name').textContent, li.dataset.state])",
    )
    assert dict(states) == {
        "parts_table.md": "completed",
        "safety_big5.txt": "completed",
        "blank.md": "failed",
        "setup.txt": "upload_failed",
        XSS_FILE: "completed",
    }
    refused = page.locator("#upload-list li[data-state='upload_failed']").inner_text()
    assert "application/x-dosexec" in refused or "detected" in refused, refused

    # The files table: statuses, the failed file's last_error, what the parser read.
    page.wait_for_function("document.querySelectorAll('#files tbody tr[data-status]').length === 4")
    assert file_row(page, "parts_table.md").get_attribute("data-status") == "completed"
    failed = file_row(page, "blank.md")
    assert failed.get_attribute("data-status") == "failed"
    assert failed.locator(".kb-last-error").inner_text().strip()
    assert "big5" in file_row(page, "safety_big5.txt").locator(".kb-parse").inner_text().lower()
    assert "1 table" in file_row(page, "parts_table.md").locator(".kb-parse").inner_text()
    assert file_row(page, "parts_table.md").locator(".kb-view").is_enabled()
    assert failed.locator(".kb-view").is_disabled()

    # An HTML file name is text: literally in the page, no element made from it.
    assert XSS_FILE in page.inner_text("#files") and XSS_FILE in page.inner_text("#upload-list")
    assert page.locator("main img").count() == 0

    # The parsed text, decoded from Big5; Escape closes the panel and gives focus back.
    view = file_row(page, "safety_big5.txt").locator(".kb-view")
    view.click()
    page.wait_for_function("document.getElementById('text-body').textContent.includes('堆高機')")
    assert "safety_big5.txt" in page.inner_text("#text-title")
    page.keyboard.press("Escape")
    assert page.locator("#text-panel").is_hidden()
    assert page.evaluate("document.activeElement.classList.contains('kb-view')")

    # Retrieval test: three rankers side by side, each hit with a score to 3 decimals.
    page.fill("#query", "What is the unit price of part P-1003?")
    page.press("#query", "Enter")
    page.wait_for_function(SEARCH_DONE)
    columns = page.locator("#results .kb-col")
    assert [columns.nth(i).get_attribute("data-ranker") for i in range(3)] == ["hybrid", "dense", "bm25"]
    for i in range(3):
        scores = columns.nth(i).locator(".kb-score").all_inner_texts()
        assert scores and all(re.search(r"\d\.\d{3}$", s) for s in scores), scores
    assert "parts_table.md" in columns.nth(2).locator(".kb-hit-file").first.inner_text()
    boxes = [columns.nth(i).bounding_box() for i in range(3)]
    assert boxes[0]["y"] == boxes[1]["y"] == boxes[2]["y"] and boxes[0]["x"] < boxes[1]["x"] < boxes[2]["x"]
    more = page.locator("#results .kb-more").first
    if more.count():
        more.click()
        assert more.get_attribute("aria-expanded") == "true"
    assert no_overflow(page) == []
    screenshot(page, "kb-flow", "en", "laptop")

    # Detach the failed file: its row goes, the upload's file stays on the server.
    failed_id = failed.get_attribute("data-file-id")
    failed.locator(".kb-detach").click()
    page.wait_for_function("document.querySelectorAll('#files tbody tr[data-status]').length === 3")
    assert ui_server.http.get(f"/v1/vector_stores/{store_id}/files/{failed_id}").status_code == 404
    assert ui_server.http.get(f"/v1/files/{failed_id}").status_code == 200

    # Delete the store from its page: back to the list, where it is gone.
    page.click("#delete-store")
    page.wait_for_url(re.compile(r"/knowledge-bases$"))
    page.wait_for_function("!document.querySelector('#kbs tbody').textContent.includes('Loading')")
    assert page.locator(f"#kbs tr[data-id='{store_id}']").count() == 0
    assert ui_server.http.get(f"/v1/vector_stores/{store_id}").status_code == 404
    # Chromium logs every failed request: the refused upload's 415 is the one expected.
    assert [e for e in opened.errors if "status of 415" not in e] == []
    page.context.close()


def test_delete_from_the_list(ui_server, ui_browser):
    store_id = ui_server.http.post("/v1/vector_stores", json={"name": "Scratch"}).json()["id"]
    opened = open_page(ui_browser, f"{ui_server.base}/knowledge-bases", "zh", "phone")
    page = opened.page
    messages = []
    page.on("dialog", lambda dialog: (messages.append(dialog.message), dialog.accept()))
    row = page.locator(f"#kbs tr[data-id='{store_id}']")
    row.locator("button.danger").click()
    page.wait_for_selector(f"#kbs tr[data-id='{store_id}']", state="detached")
    assert "Scratch" in messages[0] and "删除" in messages[0]
    assert ui_server.http.get(f"/v1/vector_stores/{store_id}").status_code == 404
    assert opened.errors == []
    page.context.close()


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("width", ["laptop", "phone"])
def test_pages_in_both_languages(ui_server, ui_browser, filled_store, lang, width):
    opened = open_page(ui_browser, f"{ui_server.base}/knowledge-bases", lang, width)
    page = opened.page
    page.set_default_timeout(90_000)
    row = page.locator(f"#kbs tr[data-id='{filled_store}']")
    row.wait_for()
    assert "Warehouse 仓库手册" in row.inner_text()
    heading = page.inner_text("h1")
    assert heading == ("知识库" if lang == "zh" else "Knowledge bases")
    assert no_overflow(page) == []
    screenshot(page, "kbs", lang, width)

    page.goto(f"{ui_server.base}/knowledge-bases/{filled_store}")
    page.wait_for_function("document.querySelectorAll('#files tbody tr[data-status]').length === 4")
    assert page.locator(".kb-last-error").count() == 1
    # in Chinese the error code is explained before the server's English message
    assert ("无法将该文件读取为文档" in page.inner_text(".kb-last-error")) == (lang == "zh")
    assert XSS_FILE in page.inner_text("#files") and page.locator("main img").count() == 0
    file_row(page, "safety_big5.txt").locator("details summary").click()
    page.fill("#query", "叉车限速是多少？" if lang == "zh" else "forklift speed limit")
    page.click("#search-button")
    page.wait_for_function(SEARCH_DONE)
    file_row(page, "parts_table.md").locator(".kb-view").click()
    page.wait_for_function("document.getElementById('text-body').textContent.includes('P-1001')")
    assert ("检索测试" in page.inner_text("main")) == (lang == "zh")
    assert no_overflow(page) == []
    screenshot(page, "kb", lang, width)
    assert opened.errors == []
    page.context.close()


def test_a_knowledge_base_that_does_not_exist_shows_only_that(ui_server, ui_browser):
    opened = open_page(ui_browser, f"{ui_server.base}/knowledge-bases/vs_does_not_exist", "zh")
    page = opened.page
    page.wait_for_selector("#kb-error .alert")
    assert "不存在" in page.inner_text("#kb-error")
    assert page.is_hidden("#kb-body") and page.is_hidden("#delete-store")
    assert [e for e in opened.errors if "404" not in e] == []  # the store's 404 is the one console error
    page.context.close()
