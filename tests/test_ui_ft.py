"""The fine-tuning pages in Chromium: a training file uploaded as soon as it is chosen and checked by the
server (POST /v1/fine_tuning/validate: counts, errors by line, a non-UTF-8 encoding, examples that will be
cut; a file that fails is deleted again and no job can start), a job started from the form on that upload
that really trains (a 2-layer Llama with the SmolLM2 tokenizer, `tiny_model_dir`, in the real worker
process), its loss curve gaining points live, then cancelled; a job that succeeded, with its curves,
checkpoints and the link to the playground; untrusted names and messages shown as text; both pages in both
languages and widths."""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from finetune.config import BOUNDS, TrainConfig
from server.app import build_app
from server.engines.base import EngineInfo
from server.engines.fake import FakeEngine
from server.settings import Settings
from tests.data.make_facts import conversations
from tests.helpers import MODEL
from tests.ui_support import MODELS_CACHE, UIServer, default_reply, no_overflow, open_page, screenshot, serve

pytestmark = pytest.mark.browser

XSS_FILE = "<img src=x onerror=alert(1)>.jsonl"
XSS_ROLE = "<script>alert(1)</script>"
NO_HTML = "document.querySelectorAll('main script, main img, main iframe').length"
# 0 until the page has drawn the chart (after its first poll)
CHART_POINTS = "(Chart.getChart(document.getElementById('loss-chart'))?.data.datasets[{}].data.length ?? 0)"
TERMINAL = ("succeeded", "failed", "cancelled")


def lines(rows: list) -> str:
    return "".join(
        (row if isinstance(row, str) else json.dumps(row, ensure_ascii=False)) + "\n" for row in rows
    )


def chat(question: str, answer: str) -> dict:
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


def upload(http, name: str, text: str) -> str:
    response = http.post("/v1/files", data={"purpose": "fine-tune"}, files={"file": (name, text.encode())})
    assert response.status_code == 200, response.text
    return response.json()["id"]


def wait_job(http, job_id: str, statuses: tuple[str, ...], timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = http.get(f"/v1/fine_tuning/jobs/{job_id}").json()
        if job["status"] in statuses:
            return job
        assert job["status"] not in TERMINAL, job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} stayed {job['status']}")


@pytest.fixture(scope="module")
def ft_server(tmp_path_factory, embedder, smol_tokenizer, tiny_model_dir):
    """A server whose jobs really train: the FakeEngine serves (with the real tokenizer, which the
    file validation needs), the worker trains the tiny Llama of `tiny_model_dir` on the CPU. A short job
    (2 epochs of 4 examples and a validation file, unscored) starts now, so it trains while pages load."""
    engine = FakeEngine(respond=default_reply, max_model_len=8192, tokenizer=smol_tokenizer)
    engine.info = EngineInfo("fake", str(tiny_model_dir), "float32", "cpu", 8192)  # the workers' base model
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("ui-ft"), models_dir=MODELS_CACHE, max_training_jobs=1
    )
    app = build_app(settings, engine=engine, embedder=embedder)
    base, stop = serve(app)
    server = UIServer(base, engine, app)
    facts = conversations(1)
    train = upload(server.http, "facts.jsonl", lines(facts[:4]))
    valid = upload(server.http, "facts-valid.jsonl", lines(facts[-2:]))
    job = server.http.post(
        "/v1/fine_tuning/jobs",
        json={
            "model": MODEL,
            "training_file": train,
            "validation_file": valid,
            "suffix": "facts",
            "seed": 1,
            "hyperparameters": {"n_epochs": 2, "batch_size": 2},
            "training": {"eval_strategy": "no", "rehearsal_ratio": 0},
        },
    )
    assert job.status_code == 200, job.text
    server.done_job = job.json()["id"]
    yield server
    server.http.close()
    stop()


def test_form_shows_the_training_defaults(ui_browser, ft_server):
    """Each setting's default (placeholder and help) and limits are TrainConfig's and BOUNDS'; a field
    left empty is not sent, so the server's default applies."""
    opened = open_page(ui_browser, f"{ft_server.base}/fine-tuning")
    page = opened.page
    page.wait_for_function("document.querySelectorAll('#f-model option').length > 0")
    assert page.eval_on_selector("#f-model", "s => s.value") == MODEL
    fields = page.eval_on_selector_all(
        "#job-form [data-setting]",
        """els => els.map(e => ({setting: e.dataset.setting, kind: e.dataset.kind, default: e.dataset.default,
            placeholder: e.placeholder, min: e.getAttribute('min'), max: e.getAttribute('max'),
            checked: e.checked, value: e.value,
            help: document.getElementById(e.getAttribute('aria-describedby')).textContent}))""",
    )
    defaults = TrainConfig()
    assert {f["setting"] for f in fields} == {
        "n_epochs", "batch_size", "learning_rate_multiplier", "lora_r", "lora_alpha", "lora_dropout",
        "train_on_prompts", "rehearsal_ratio", "rehearsal_distillation", "min_retention", "held_out_share",
        "eval_strategy", "max_length", "micro_batch_size", "gradient_checkpointing",
    }  # fmt: skip
    for field in fields:
        setting = field["setting"]
        if field["kind"] in ("int", "float"):
            auto = setting in ("n_epochs", "batch_size", "learning_rate_multiplier", "micro_batch_size")
            expected = "auto" if auto else getattr(defaults, setting)
            assert field["placeholder"] == str(expected) and field["default"] == str(expected), field
            assert ("auto" if auto else str(expected)) in field["help"], field
            bound = BOUNDS[setting]
            low, high = bound.ge, bound.le
            assert (field["min"], field["max"]) == (
                None if low is None else f"{low:g}",
                None if high is None else f"{high:g}",
            ), field
        elif field["kind"] == "bool":
            assert field["checked"] == getattr(defaults, setting) == (field["default"] == "true"), field
        else:
            assert field["value"] == field["default"] == defaults.eval_strategy
    modules = page.eval_on_selector_all("#target-modules input", "els => els.map(e => [e.value, e.checked])")
    assert modules == [[m, True] for m in defaults.target_modules]
    assert opened.errors == []
    page.context.close()


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("width", ["laptop", "phone"])
def test_jobs_page_in_both_languages(ui_browser, ft_server, lang, width):
    opened = open_page(ui_browser, f"{ft_server.base}/fine-tuning", lang, width)
    page = opened.page
    page.wait_for_selector(f"#jobs tbody tr[data-id='{ft_server.done_job}']")
    page.wait_for_function("document.querySelectorAll('#f-training-file option').length >= 2")
    text = page.inner_text("main")
    assert ("训练数据" in text) == (lang == "zh") and ("Training data" in text) == (lang == "en")
    assert MODEL in page.inner_text("#jobs")
    for details in page.query_selector_all("details.ft-more"):
        details.evaluate("d => d.open = true")
    assert no_overflow(page) == []
    screenshot(page, "ft-jobs", lang, width)
    assert opened.errors == []
    page.context.close()


USER, ASSISTANT = {"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}
WEATHER = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}
CALL = {
    "role": "assistant",
    "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}],
}
RESULT = {"role": "tool", "tool_call_id": "c1", "content": "Sunny"}
BAD_CASES = [
    ("{oops", "invalid_json"),
    (json.dumps({"messages": [{"role": XSS_ROLE, "content": "hi"}]}), "invalid_role"),
    (json.dumps({"messages": [USER]}), "no_assistant_message"),
    (json.dumps({"messages": [USER, {"role": "assistant", "content": " "}]}), "empty_content"),
    (json.dumps({"prompt": "x", "completion": "y"}), "unknown_format"),
    (json.dumps({"messages": [ASSISTANT, USER]}), "invalid_order"),
    (json.dumps({"instruction": "Say hi", "output": ""}), "empty_content"),
    (
        json.dumps({"conversations": [{"from": "human", "value": "hi"}, {"from": "bot", "value": "yo"}]}),
        "invalid_role",
    ),
]


def files_named(http, name: str) -> list[str]:
    listed = http.get("/v1/files", params={"purpose": "fine-tune", "limit": 1000}).json()["data"]
    return [f["id"] for f in listed if f["filename"] == name]


def choose(page, name: str, data: bytes) -> None:
    page.set_input_files(
        "#train-file", files=[{"name": name, "mimeType": "application/json", "buffer": data}]
    )


def test_a_chosen_file_is_uploaded_and_checked_by_the_server(ui_browser, ft_server):
    """The server's check lists each bad record by its line, with the code a job on the file fails with;
    the upload of a bad file is deleted and no job can start. A good file is counted with the model's
    tokenizer, stays uploaded and is selected for the job."""
    opened = open_page(ui_browser, f"{ft_server.base}/fine-tuning")
    page = opened.page
    page.wait_for_function("document.querySelectorAll('#f-model option').length > 0")
    good = [
        chat("What is the battery capacity of the Zephyr X9?", "4200 mAh."),
        {"instruction": "Translate to French", "input": "cat", "output": "chat"},
        {"conversations": [{"from": "human", "value": "你好"}, {"from": "gpt", "value": "你好！"}]},
        {"tools": [WEATHER], "messages": [USER, CALL, RESULT, ASSISTANT]},
    ]
    # one file with every bad record after a good one: each is listed by its line
    bad_name = "<img src=x onerror=alert(1)> bad.jsonl"  # a browser's file name has no "/"
    choose(page, bad_name, lines([good[0]] + [record for record, _ in BAD_CASES]).encode())
    page.wait_for_selector("#report-errors")
    report = page.inner_text("#report")
    assert f"Check of {bad_name}" in report and XSS_ROLE in report
    listed = page.eval_on_selector_all(
        "#report-errors li", "els => els.map(e => [e.dataset.line, e.querySelector('code').innerText])"
    )
    assert listed == [[str(n), code] for n, (_, code) in enumerate(BAD_CASES, start=2)]
    assert "Line 2" in report and "Line 3" in report and f"role '{XSS_ROLE}'" in report
    page.wait_for_selector("#upload-status >> text=did not pass the check and was deleted")
    assert files_named(ft_server.http, bad_name) == []  # the upload was deleted
    assert page.is_disabled("#start")
    assert "failed its check" in page.inner_text("#start-status")  # the disabled button says why
    assert page.evaluate(NO_HTML) == 0
    screenshot(page, "ft-report", "en")

    choose(page, XSS_FILE, lines(good).encode())
    page.wait_for_selector("#report .ft-ok")
    stats = page.eval_on_selector_all("#check-stats .ft-stat-value", "els => els.map(e => e.innerText)")
    assert stats[0] == "4" and int(stats[1].replace(",", "")) > int(stats[2].replace(",", "")) > 0
    assert stats[4] == "0" and page.locator("#report .ft-warning").count() == 0
    page.wait_for_selector("#upload-status .ft-ok")
    file_id = page.inner_text("#upload-status").split("Uploaded as ")[1].split(".")[0]
    assert files_named(ft_server.http, XSS_FILE) == [file_id]
    assert page.eval_on_selector("#f-training-file", "s => s.value") == file_id
    assert XSS_FILE in page.eval_on_selector("#f-training-file", "s => s.selectedOptions[0].textContent")
    assert page.is_enabled("#start")
    assert page.evaluate(NO_HTML) == 0
    assert opened.errors == []
    page.context.close()


CASES = Path(__file__).resolve().parents[2] / "shared" / "cases" / "kb-ft"


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_servers_findings_on_utf16_and_a_long_example(ui_browser, ft_server, lang):
    """What the in-browser check missed (../shared/cases/kb-ft): a UTF-16 file from PowerShell is read as
    the job reads it, and says so; one 9,842-character example is counted in tokens and said to be cut
    to the maximum length. A setting the server refuses deletes the upload and marks the field."""
    utf16, long = CASES / "utf16_powershell.jsonl", CASES / "single_long_prompt.jsonl"
    if not (utf16.is_file() and long.is_file()):
        pytest.skip(f"{CASES} (the real-world failing inputs) is not on this machine")
    opened = open_page(ui_browser, f"{ft_server.base}/fine-tuning", lang)
    page = opened.page
    page.wait_for_function("document.querySelectorAll('#f-model option').length > 0")
    records = utf16.read_bytes().decode("utf-16").strip().count("\n") + 1

    choose(page, "utf16_powershell.jsonl", utf16.read_bytes())
    page.wait_for_selector("#report .ft-ok")
    stats = page.eval_on_selector_all("#check-stats .ft-stat-value", "els => els.map(e => e.innerText)")
    assert stats[0] == str(records)
    encoding = page.inner_text("#check-encoding")
    assert "utf-16" in encoding and ("not UTF-8" in encoding) == (lang == "en")
    assert page.is_enabled("#start")

    # a broken line: in Chinese its code is explained before the server's English message
    choose(page, "broken.jsonl", b'{"messages": [}\n')
    page.wait_for_selector("#report-errors li")
    assert ("不是有效的 JSON" in page.inner_text("#report-errors")) == (lang == "zh")

    choose(page, "single_long_prompt.jsonl", long.read_bytes())
    page.wait_for_selector("#check-truncated")
    stats = page.eval_on_selector_all("#check-stats .ft-stat-value", "els => els.map(e => e.innerText)")
    assert stats[0] == "1" and stats[4] == "1" and int(stats[3].split()[0].replace(",", "")) > 1024
    note = page.inner_text("#check-truncated")
    assert (
        "1,024" in note and ("will cut them" in note) == (lang == "en") and ("截断" in note) == (lang == "zh")
    )
    assert page.locator("#report .ft-ok").count() == 1 and page.is_enabled("#start")
    assert len(files_named(ft_server.http, "single_long_prompt.jsonl")) >= 1
    screenshot(page, "ft-check-long", lang)

    # a maximum length the server refuses: the check cannot run, the upload goes, the field is marked
    page.click("details.ft-more:nth-of-type(2) summary")
    page.fill("#f-training-max_length", "8")
    before = files_named(ft_server.http, "single_long_prompt.jsonl")
    choose(page, "single_long_prompt.jsonl", long.read_bytes())
    page.wait_for_selector("#report .alert")
    assert page.get_attribute("#f-training-max_length", "aria-invalid") == "true"
    assert files_named(ft_server.http, "single_long_prompt.jsonl") == before
    assert page.is_disabled("#start")
    page.select_option("#f-training-file", before[0])  # a listed file chosen by hand: a job may start
    assert page.is_enabled("#start")
    assert no_overflow(page) == []
    screenshot(page, "ft-check", lang)
    # the refused check is the one console error: the browser logs every failed request
    assert all("400" in error for error in opened.errors)
    page.context.close()


def test_a_job_started_from_the_page_trains_live_and_is_cancelled(ui_browser, ft_server):
    """The form sends what was set (and only that) with the file uploaded when it was checked (no second
    upload); the job page's loss curve gains points as the worker trains, without a reload; Cancel stops
    it."""
    opened = open_page(ui_browser, f"{ft_server.base}/fine-tuning")
    page = opened.page
    page.wait_for_function("document.querySelectorAll('#f-model option').length > 0")
    choose(page, "zephyr.jsonl", lines(conversations(1)).encode())
    page.wait_for_selector("#report .ft-ok")
    page.wait_for_selector("#upload-status .ft-ok")
    [uploaded] = files_named(ft_server.http, "zephyr.jsonl")
    page.fill("#f-hyperparameters-n_epochs", "50")  # 1000 steps: still training when it is cancelled
    page.fill("#f-hyperparameters-batch_size", "1")
    page.click("details.ft-more:nth-of-type(2) summary")
    page.select_option("#f-training-eval_strategy", "no")
    page.fill("#f-training-rehearsal_ratio", "0")
    page.fill("#f-suffix", "live")
    page.press("#f-suffix", "Enter")  # the form submits with Enter
    page.wait_for_url("**/fine-tuning/ftjob-*")
    job_id = page.url.rsplit("/", 1)[1]
    job = ft_server.http.get(f"/v1/fine_tuning/jobs/{job_id}").json()
    assert job["suffix"] == "live" and job["hyperparameters"]["n_epochs"] == 50
    assert job["training_file"] == uploaded and files_named(ft_server.http, "zephyr.jsonl") == [uploaded]
    assert job["hyperparameters"]["batch_size"] == 1
    config = job["training_config"]
    assert config["eval_strategy"] == "no" and config["rehearsal_ratio"] == 0
    assert config["lora_r"] == TrainConfig.lora_r and config["min_retention"] == TrainConfig.min_retention

    # before its first step the job says what it is doing (waiting, loading, answering), never "—"
    page.wait_for_selector("#card-progress .value")
    assert page.inner_text("#card-progress .value").strip() not in ("", "—")
    # training starts once the fixture's short job is done, then each poll adds steps
    page.wait_for_function(f"{CHART_POINTS.format(0)} >= 1", timeout=240_000)
    first = page.evaluate(CHART_POINTS.format(0))
    page.wait_for_function(f"{CHART_POINTS.format(0)} > {first}", timeout=60_000)
    assert "Step" in page.inner_text("#card-progress") and "tokens/s" in page.inner_text("#card-speed")
    assert page.locator("#events tbody tr", has_text="training loss=").count() >= 1
    assert page.is_visible("#cancel")
    screenshot(page, "ft-job-live", "en")

    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#cancel")
    page.wait_for_selector("#job-status .badge-cancelled")
    assert page.is_hidden("#cancel")
    page.wait_for_selector("#events tbody tr >> text=Job cancelled by request.")
    assert ft_server.http.get(f"/v1/fine_tuning/jobs/{job_id}").json()["status"] == "cancelled"
    assert opened.errors == []
    page.context.close()


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("width", ["laptop", "phone"])
def test_a_succeeded_job_shows_its_curves_and_opens_in_the_playground(ui_browser, ft_server, lang, width):
    """The fixture's job, once it has succeeded: both loss curves (4 steps, 2 epoch ends with a
    validation loss), the checkpoints, the model one click from the playground. Its epochs were not
    scored (scoring takes minutes on a CPU), so the page is given the job as a scored job's would be,
    `metrics.epoch_scores` as finetune/recipe.py writes it, to show retention per epoch."""
    job = wait_job(ft_server.http, ft_server.done_job, ("succeeded",))
    name = job["fine_tuned_model"]
    assert name.startswith(f"ft:{MODEL}:facts:")
    scores = [
        {"epoch": 1, "task_f1": 0.41, "retention": 0.9125, "retention_interval": [0.83, 0.96]},
        {"epoch": 2, "task_f1": 0.44, "retention": 0.85, "retention_interval": [0.76, 0.91]},
    ]
    opened = open_page(ui_browser, f"{ft_server.base}/login", lang, width)
    page = opened.page

    def scored(route):
        response = route.fetch()
        body = response.json()
        body["metrics"].update(epoch_scores=scores, chosen_epoch=2, chosen_reason="the best task F1")
        body["training_config"]["eval_strategy"] = "epoch"
        route.fulfill(response=response, json=body)

    page.route(f"**/v1/fine_tuning/jobs/{ft_server.done_job}", scored)
    page.goto(f"{ft_server.base}/fine-tuning/{ft_server.done_job}")
    page.wait_for_selector("#job-status .badge-succeeded")
    page.wait_for_function("document.querySelectorAll('#checkpoints tbody tr').length === 2")
    assert page.get_attribute("#try", "href") == f"/?model={quote(name, safe='')}"
    assert page.evaluate(CHART_POINTS.format(0)) == 4 and page.evaluate(CHART_POINTS.format(1)) == 2
    assert page.is_hidden("#cancel")
    assert page.inner_text("#card-files").count("facts") == 2  # the training and validation file names
    epochs = page.eval_on_selector_all("#epochs tbody tr", "els => els.map(e => e.innerText.split('\\t'))")
    assert [row[1] for row in epochs] == ["0.91", "0.85"] and [row[2] for row in epochs] == [
        "0.83–0.96",
        "0.76–0.91",
    ]
    assert page.get_attribute("#epochs tbody tr.ft-published", "data-epoch") == "2"
    assert all(row[4] != "—" for row in epochs)  # each epoch's validation loss, from its event
    links = page.eval_on_selector_all("#checkpoints a", "els => els.map(e => e.getAttribute('href'))")
    assert links == [f"/?model={quote(f'{name}:ckpt-step-{s}', safe='')}" for s in (2, 4)]
    page.click("#loss-numbers summary")
    page.wait_for_function("document.querySelectorAll('#loss-table tbody tr').length === 4")  # on toggle
    messages = page.eval_on_selector_all("#events tbody td.ft-message", "els => els.map(e => e.innerText)")
    assert messages[0] == "The job has successfully completed." and messages[-1].startswith("Validating")
    text = page.inner_text("main")
    assert ("训练损失" in text) == (lang == "zh") and ("Training loss" in text) == (lang == "en")
    assert no_overflow(page) == []
    screenshot(page, "ft-job", lang, width)
    assert opened.errors == []
    page.context.close()


def test_untrusted_names_and_messages_are_text(ui_browser, ft_server):
    """A training file named as HTML, whose record's role is a script: the job fails with the line, and
    the file name, the error and the event show the markup as text."""
    record = json.dumps({"messages": [{"role": XSS_ROLE, "content": "<img src=x onerror=alert(2)>"}]})
    file_id = upload(ft_server.http, XSS_FILE, lines([chat("hi", "yo"), record]))
    job = ft_server.http.post("/v1/fine_tuning/jobs", json={"model": MODEL, "training_file": file_id}).json()
    wait_job(ft_server.http, job["id"], ("failed",), timeout=60)
    opened = open_page(ui_browser, f"{ft_server.base}/fine-tuning/{job['id']}")
    page = opened.page
    page.wait_for_selector("#failure")
    failure = page.inner_text("#failure")
    assert XSS_ROLE in failure and "invalid_role" in failure and "line 2 of the training file" in failure
    assert XSS_FILE in page.inner_text("#card-files")
    assert (
        page.locator(
            "#events td.ft-message", has_text=f"Job failed: messages[0] has role '{XSS_ROLE}'"
        ).count()
        == 1
    )
    assert page.evaluate(NO_HTML) == 0
    page.goto(f"{ft_server.base}/fine-tuning")
    page.wait_for_selector(f"#jobs tbody tr[data-id='{job['id']}'] .badge-failed")
    assert XSS_FILE in page.eval_on_selector_all(
        "#f-training-file option", "els => els.map(e => e.textContent).join()"
    )
    assert page.evaluate(NO_HTML) == 0
    assert opened.errors == []
    page.context.close()


def test_an_unknown_job_says_so(ui_browser, ft_server):
    opened = open_page(ui_browser, f"{ft_server.base}/fine-tuning/ftjob-nope")
    page = opened.page
    page.wait_for_selector("#job-error .alert")
    assert "There is no fine-tuning job with this ID." in page.inner_text("#job-error")
    # the API's 404 is the one console error: the browser logs every failed request
    assert all("404" in error for error in opened.errors)
    page.context.close()
