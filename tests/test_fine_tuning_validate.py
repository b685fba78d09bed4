"""POST /v1/fine_tuning/validate on a FakeEngine with the real SmolLM2 tokenizer: the dry run finds what a
job on the same files finds when it validates them (the same counts and event text, the same error and
line, the same request errors), decodes files as the job does, and creates no job."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from pathlib import Path

import pytest

import server.fine_tuning.service as service_module
from ingest.detect import HEAD_SIZE
from server.engines.fake import FakeEngine
from tests.data.make_facts import write
from tests.helpers import MODEL, assert_error

SHARED = Path(__file__).resolve().parents[2] / "shared"
CASES = SHARED / "cases" / "kb-ft"
HUANHUAN = SHARED / "data" / "huanhuan.json"
VALIDATE, JOBS = "/v1/fine_tuning/validate", "/v1/fine_tuning/jobs"


def shared(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"{path} is not on this machine (../shared holds the real-world inputs)")
    return path


def upload(client, name: str, data: bytes, purpose: str = "fine-tune") -> str:
    response = client.post("/v1/files", data={"purpose": purpose}, files={"file": (name, data)})
    assert response.status_code == 200, response.text
    return response.json()["id"]


def chat(question: str, answer: str) -> dict:
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


def jsonl(records: list) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def validate(client, file_id: str, **body) -> dict:
    response = client.post(VALIDATE, json={"model": MODEL, "training_file": file_id, **body})
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["object"] == "fine_tuning.validation"
    return result


def job_validation(client, file_id: str, **body) -> tuple[dict, dict | None]:
    """Create a job on the file and wait until its files are checked: (the job, its 'Files validated'
    event or None when it failed)."""
    job = client.post(JOBS, json={"model": MODEL, "training_file": file_id, **body})
    assert job.status_code == 200, job.text
    job_id = job.json()["id"]
    deadline = time.monotonic() + 60
    while (job := client.get(f"{JOBS}/{job_id}").json())["status"] == "validating_files":
        assert time.monotonic() < deadline, "the job's files were never checked"
        time.sleep(0.05)
    events = client.get(f"{JOBS}/{job_id}/events").json()["data"]
    validated = [e for e in events if e["message"].startswith("Files validated: ")]
    return job, validated[0] if validated else None


def same_as_the_job(client, file_id: str, result: dict, **body) -> None:
    """The job on the same file reports what the dry run did: counts and message, or error and line."""
    job, event = job_validation(client, file_id, **body)
    if result["valid"]:
        assert job["status"] == "queued" and event is not None, job
        assert event["message"] == result["message"]
        assert event["data"] == {k: result[k] for k in ("examples", "tokens", "truncated")}
        assert job["hyperparameters"] == result["hyperparameters"]
    else:
        assert job["status"] == "failed" and event is None, job
        error = result["error"]
        line = None if error["line"] is None else str(error["line"])
        assert job["error"] == {"code": error["code"], "message": error["message"], "param": line}


@pytest.fixture
def client(make_client, smol_tokenizer):
    return make_client(FakeEngine(tokenizer=smol_tokenizer, max_model_len=2048), max_training_jobs=0)


@pytest.fixture
def facts(client, tmp_path) -> str:
    return upload(client, "facts.jsonl", write(tmp_path / "facts.jsonl", phrasings=2).read_bytes())


def test_a_good_file_is_counted_as_its_job_counts_it_and_no_job_is_made(client, facts):
    result = validate(client, facts)
    assert result["valid"] is True and result["error"] is None and result["errors"] == []
    assert result["examples"] == 40 and result["truncated"] == 0 and result["truncated_lines"] == []
    assert 0 < result["trained_tokens"] < result["tokens"] and 0 < result["longest"] <= 1024
    assert result["max_length"] == 1024 and result["encoding"] == "utf-8" and result["warnings"] == []
    assert result["hyperparameters"] == {"n_epochs": 5, "batch_size": 5, "learning_rate_multiplier": 1.0}
    assert result["message"].startswith("Files validated: 40 examples, ")
    assert client.get(JOBS).json()["data"] == []  # a dry run
    same_as_the_job(client, facts, result)

    # the job's settings are the ones checked with: explicit hyper-parameters and max_length
    settings = {
        "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}},
        "training": {"max_length": 16},
    }
    short = validate(client, facts, **settings)
    assert short["hyperparameters"]["n_epochs"] == 2 and short["max_length"] == 16
    assert short["truncated"] == 40 and short["truncated_lines"] == list(range(1, 41))
    assert short["tokens"] == 40 * 16 and "longer than 16 tokens will be cut" in short["warnings"][0]
    same_as_the_job(client, facts, short, **settings)


def test_a_utf16_file_with_a_bom_is_read_as_the_job_reads_it(client):
    """PowerShell's `>` writes UTF-16 with a BOM (../shared/cases/kb-ft/utf16_powershell.jsonl): the
    check reads it as the job does, with the same counts as the same records in UTF-8."""
    data = shared(CASES / "utf16_powershell.jsonl").read_bytes()
    utf8 = validate(client, upload(client, "utf8.jsonl", data.decode("utf-16").encode()))
    file_id = upload(client, "utf16_powershell.jsonl", data)
    result = validate(client, file_id)
    assert result["valid"] is True and result["encoding"] == "utf-16"
    assert (result["examples"], result["tokens"]) == (utf8["examples"], utf8["tokens"]) and utf8["examples"]
    assert any("not UTF-8" in warning for warning in result["warnings"])
    same_as_the_job(client, file_id, result)


def big5_records() -> list[dict]:
    """Traditional Chinese Q&A made from ../shared/cases/kb-ft/safety_big5.txt (a Big5 text file)."""
    text = shared(CASES / "safety_big5.txt").read_bytes().decode("big5")
    rules = [line.split("、", 1)[1] for line in text.splitlines() if "、" in line]
    return [chat(f"倉庫安全須知第{n}條是什麼？", rule) for n, rule in enumerate(rules, start=1)]


def gb18030_records() -> list[dict]:
    """Simplified Chinese alpaca records: a slice of ../shared/data/huanhuan.json."""
    return json.loads(shared(HUANHUAN).read_text(encoding="utf-8"))[:30]


@pytest.mark.parametrize(
    ("make", "encoding", "read_as"),
    [(big5_records, "big5", ("big5", "cp950", "big5hkscs")), (gb18030_records, "gb18030", ("gb18030",))],
)
def test_a_chinese_legacy_encoding_is_read_as_the_job_reads_it(client, make, encoding, read_as):
    records = make()
    text = jsonl(records)
    utf8 = validate(client, upload(client, "utf8.jsonl", text.encode()))
    file_id = upload(client, f"{encoding}.jsonl", text.encode(encoding))
    result = validate(client, file_id)
    assert result["valid"] is True and result["encoding"] in read_as
    # decoded right: the very tokens of the UTF-8 file, not mojibake
    assert (result["examples"], result["tokens"]) == (len(records), utf8["tokens"])
    same_as_the_job(client, file_id, result)


def test_an_undecodable_file_is_invalid_encoding(client):
    """UTF-8 whose bytes break after the first 8 KiB (the upload checks the head only): the check says
    `invalid_encoding` for the whole file (no line), as the job's error does."""
    good = jsonl([chat("请介绍一下你自己，你是谁？", "我是一个乐于助人的助手，很高兴认识你。")]).encode()
    data = good * (HEAD_SIZE // len(good) + 2) + good.replace("乐".encode(), b"\xe4\xb9\xff")
    file_id = upload(client, "broken.jsonl", data)
    result = validate(client, file_id)
    assert result["valid"] is False and result["encoding"] is None and result["message"] is None
    assert result["error"]["code"] == "invalid_encoding" and result["error"]["line"] is None
    assert result["error"]["param"] == "training_file" and result["hyperparameters"] is None
    same_as_the_job(client, file_id, result)


def test_bad_lines_are_listed_by_line_the_first_as_the_job_fails(client):
    good = json.dumps(chat("hi", "yo"))
    text = "\n".join([good, good, "{oops", good, '{"messages": [{"role": "wizard", "content": "x"}]}']) + "\n"
    file_id = upload(client, "bad.jsonl", text.encode())
    result = validate(client, file_id)
    assert result["valid"] is False and result["examples"] == 0
    assert [(e["code"], e["line"]) for e in result["errors"]] == [("invalid_json", 3), ("invalid_role", 5)]
    assert result["error"] == result["errors"][0] and result["error"]["param"] == "training_file"
    same_as_the_job(client, file_id, result)


def test_a_bad_validation_file_is_named(client, facts):
    file_id = upload(client, "valid.jsonl", b'{"messages": []}\n')
    result = validate(client, facts, validation_file=file_id)
    assert result["valid"] is False
    assert (result["error"]["param"], result["error"]["code"], result["error"]["line"]) == (
        "validation_file",
        "invalid_message",
        1,
    )
    same_as_the_job(client, facts, result, validation_file=file_id)


def test_one_very_long_example_is_truncated_and_said_so(client):
    """../shared/cases/kb-ft/single_long_prompt.jsonl: one 9,842-character example. It trains (the prompt
    loses its middle, the answer is kept), and the check says it will be cut."""
    file_id = upload(
        client, "single_long_prompt.jsonl", shared(CASES / "single_long_prompt.jsonl").read_bytes()
    )
    result = validate(client, file_id)
    assert result["valid"] is True and result["examples"] == 1
    assert result["truncated"] == 1 and result["truncated_lines"] == [1] and result["longest"] > 1024
    assert result["tokens"] == 1024 and result["trained_tokens"] > 0
    assert result["warnings"] == [
        "1 example longer than 1024 tokens will be cut to fit: the answer is kept and the middle of the "
        "prompt dropped (line 1)."
    ]
    assert "1 longer than 1024 tokens was truncated" in result["message"]
    same_as_the_job(client, file_id, result)


def test_a_file_that_would_train_nothing_is_invalid(make_client, smol_tokenizer):
    """With a chat template that never writes the assistant's turn, no example has a token to train on:
    `no_trained_tokens` at the first line, the counts still given."""
    tokenizer = copy.deepcopy(smol_tokenizer)
    tokenizer.chat_template = (
        "{% for m in messages %}{% if m.role != 'assistant' %}<|im_start|>{{ m.role }}\n{{ m.content }}"
        "<|im_end|>\n{% endif %}{% endfor %}"
    )
    client = make_client(FakeEngine(tokenizer=tokenizer, max_model_len=2048), max_training_jobs=0)
    file_id = upload(client, "two.jsonl", jsonl([chat("hi", "yo"), chat("hello", "hey")]).encode())
    result = validate(client, file_id)
    assert result["valid"] is False and result["error"]["code"] == "no_trained_tokens"
    assert result["error"]["line"] == 1 and result["examples"] == 2 and result["trained_tokens"] == 0
    assert result["empty_lines"] == [1, 2] and result["message"] is None
    same_as_the_job(client, file_id, result)


def test_request_errors_are_those_of_creating_a_job(client, facts, tmp_path):
    document = upload(client, "notes.md", b"# notes", purpose="assistants")
    cases = [
        ({"model": "nope", "training_file": facts}, 404, "model", "model_not_found"),
        ({"model": MODEL, "training_file": "file-nope"}, 404, "training_file", "file_not_found"),
        (
            {"model": MODEL, "training_file": facts, "validation_file": "file-nope"},
            404,
            "validation_file",
            "file_not_found",
        ),
        ({"model": MODEL, "training_file": document}, 400, "training_file", "invalid_file"),
        (
            {"model": MODEL, "training_file": facts, "hyperparameters": {"n_epochs": 0}},
            400,
            "hyperparameters.n_epochs",
            None,
        ),
        (
            {"model": MODEL, "training_file": facts, "training": {"max_length": 8}},
            400,
            "training.max_length",
            None,
        ),
        (
            {"model": MODEL, "training_file": facts, "lora": {"rank": 8}},
            400,
            "lora.rank",
            "unknown_parameter",
        ),
        ({"training_file": facts}, 400, "model", None),
    ]
    for body, status, param, code in cases:
        checked = client.post(VALIDATE, json=body)
        error = assert_error(checked, status, param, code)
        assert error == assert_error(client.post(JOBS, json=body), status), body
    assert client.get(JOBS).json()["data"] == []


def test_the_check_runs_off_the_event_loop(client, facts, monkeypatch):
    """Tokenizing thousands of examples takes seconds: the check runs in a worker thread, where no event
    loop runs, so the server keeps answering meanwhile."""
    threads = []
    real = service_module.check_files

    def spy(*args, **kwargs):
        try:
            asyncio.get_running_loop()
            threads.append("event loop")
        except RuntimeError:
            threads.append("worker")
        return real(*args, **kwargs)

    monkeypatch.setattr(service_module, "check_files", spy)
    assert validate(client, facts)["valid"] is True
    assert threads == ["worker"]
