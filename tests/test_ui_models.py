"""The models and profiles page in Chromium: the base model, a fine-tuned adapter with its job's training
settings and results, the embedders; a profile created in the page is served in /v1/models, edited and
deleted there; user text (a system prompt with markup) is shown as text; both languages, laptop and phone."""

from __future__ import annotations

import json

import pytest

from finetune.config import TrainConfig
from server.storage.db import dumps, now
from tests.ui_support import no_overflow, open_page, screenshot

pytestmark = pytest.mark.browser

SCRIPT = "<script>alert(1)</script>"
IMG = '<img src=x onerror="document.title=1">'
JOB_ID = "ftjob-uimodels01"


@pytest.fixture(scope="module")
def setup(ui_server, tmp_path_factory):
    """A knowledge base, a succeeded fine-tuning job whose adapter (and one epoch checkpoint) is served,
    and a profile with a long prompt: what the page shows besides the base model and embedders."""
    http = ui_server.http
    base = http.get("/health").json()["model"]
    store = http.post("/v1/vector_stores", json={"name": "Handbook 手册"}).json()
    services = ui_server.app.state.services
    adapter = f"ft:{base}:faq:{JOB_ID.removeprefix('ftjob-')[:8]}"
    hyperparameters = {"n_epochs": 3, "batch_size": 4, "learning_rate_multiplier": 1.0}
    metrics = {"train_loss": 0.4213, "valid_loss": 0.5127, "task_f1": 0.82, "base_task_f1": 0.31}
    metrics |= {"retention": 0.9, "retention_interval": [0.6, 0.98], "chosen_epoch": 3}
    services.db.execute(
        "INSERT INTO fine_tuning_jobs (id, model, training_file, suffix, seed, config, hyperparameters, "
        "status, fine_tuned_model, trained_tokens, metrics, metadata, created_at, finished_at) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            JOB_ID,
            base,
            "file-train",
            "faq",
            0,
            json.dumps(TrainConfig(n_epochs=3, batch_size=4).to_dict()),
            dumps(hyperparameters),
            "succeeded",
            adapter,
            12345,
            dumps(metrics),
            "{}",
            now(),
            now(),
        ),
    )
    folder = tmp_path_factory.mktemp("adapter")
    services.catalog.add_lazy_adapter(adapter, str(folder))
    services.catalog.add_lazy_adapter(f"{adapter}:ckpt-step-6", str(folder))
    long_prompt = "You answer questions about the staff handbook. " * 6 + "回答要简洁，并注明出处。"
    response = http.post(
        "/v1/profiles",
        json={
            "name": "handbook-bot",
            "model": adapter,
            "system": long_prompt,
            "file_search": {"vector_store_ids": [store["id"]], "max_num_results": 3},
            "temperature": 0.3,
            "description": "员工手册问答",
        },
    )
    assert response.status_code == 200, response.text
    return {"base": base, "adapter": adapter, "store": store["id"]}


def models(ui_server) -> dict[str, str]:
    return {m["id"]: m["kind"] for m in ui_server.http.get("/v1/models").json()["data"]}


def test_a_profile_made_in_the_page_is_a_model_and_is_edited_and_deleted_there(ui_server, ui_browser, setup):
    opened = open_page(ui_browser, f"{ui_server.base}/models")
    page = opened.page
    page.on("dialog", lambda dialog: dialog.accept())
    page.wait_for_selector("#profiles tr[data-profile='handbook-bot']")

    # the base model, the adapter (its job's results and settings, linked), its checkpoint, the embedder
    chat = page.inner_text("#chat-models")
    assert setup["base"] in chat and "Base model" in chat
    assert setup["adapter"] in chat and "Checkpoint of step 6" in chat
    card = page.inner_text(f"#adapters article[data-model='{setup['adapter']}']")
    assert "Training loss" in card and "0.4213" in card and "LoRA rank" in card and "16" in card
    assert page.get_attribute(f"#adapters a[href='/fine-tuning/{JOB_ID}']", "href")
    assert "all-minilm-l6-v2" in page.inner_text("#embedders")

    # create: typed in the form, submitted with Enter
    page.fill("#p-name", "support-bot")
    page.select_option("#p-model", setup["base"])
    page.fill("#p-system", f"{SCRIPT} {IMG} Be brief.")
    page.check(f"#p-kbs input[value='{setup['store']}']")
    page.fill("#p-temperature", "0.2")
    page.press("#p-name", "Enter")
    row = "#profiles tr[data-profile='support-bot']"
    page.wait_for_selector(row)
    assert models(ui_server).get("support-bot") == "profile"
    text = page.inner_text(row)
    assert SCRIPT in text and IMG in text and "temperature 0.2" in text and "Handbook 手册" in text
    assert page.evaluate("document.querySelectorAll('#profiles script, #profiles img').length") == 0
    assert page.title() != "1"

    # edit: the form comes prefilled; saving replaces the profile (delete + create)
    page.click(f"{row} button.edit")
    assert page.input_value("#p-name") == "support-bot"
    assert page.input_value("#p-system") == f"{SCRIPT} {IMG} Be brief."
    assert page.is_checked(f"#p-kbs input[value='{setup['store']}']")
    assert page.is_visible("#edit-note")
    page.fill("#p-system", "Answer in one sentence.")
    page.fill("#p-temperature", "")
    page.fill("#p-max-tokens", "64")
    page.click("#save-button")
    page.wait_for_function(f"document.querySelector(\"{row}\")?.innerText.includes('one sentence')")
    profile = ui_server.http.get("/v1/profiles/support-bot").json()
    assert profile["system"] == "Answer in one sentence." and profile["max_tokens"] == 64
    assert "temperature" not in profile and profile["file_search"]["vector_store_ids"] == [setup["store"]]
    assert models(ui_server).get("support-bot") == "profile"

    # renamed: the new name is created before the old one goes
    page.click(f"{row} button.edit")
    page.fill("#p-name", "support-desk")
    page.click("#save-button")
    page.wait_for_selector(row, state="detached")
    row = "#profiles tr[data-profile='support-desk']"
    page.wait_for_selector(row)
    served = models(ui_server)
    assert served.get("support-desk") == "profile" and "support-bot" not in served
    assert ui_server.http.get("/v1/profiles/support-desk").json()["max_tokens"] == 64
    assert opened.errors == []

    # a refused edit (a temperature the API rejects) puts the profile back as it was
    page.click(f"{row} button.edit")
    page.evaluate("document.getElementById('p-temperature').removeAttribute('max')")
    page.fill("#p-temperature", "5")
    page.click("#save-button")
    page.wait_for_selector("#form-error .alert")
    assert ui_server.http.get("/v1/profiles/support-desk").json()["system"] == "Answer in one sentence."
    page.click("#cancel-edit")

    # delete (confirmed)
    page.click(f"{row} button.delete")
    page.wait_for_selector(row, state="detached")
    assert "support-desk" not in models(ui_server)
    assert [e for e in opened.errors if "status of 400" not in e] == []  # only the refused request
    page.context.close()


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_models_page_screenshots(ui_server, ui_browser, setup, lang):
    for width in ("laptop", "phone"):
        opened = open_page(ui_browser, f"{ui_server.base}/models", lang, width)
        page = opened.page
        page.wait_for_selector("#profiles tr[data-profile='handbook-bot']")
        page.wait_for_selector("#adapters article")
        text = page.inner_text("main")
        assert ("训练损失" in text) == (lang == "zh") and ("Training loss" in text) == (lang == "en")
        assert "员工手册问答" in text
        screenshot(page, "models", lang, width)
        assert no_overflow(page) == []
        assert opened.errors == []
        page.context.close()
