"""Fine-tuning jobs API on a FakeEngine with the real SmolLM2 tokenizer; no worker is started."""

from __future__ import annotations

import time

import pytest

from server.engines.fake import FakeEngine
from tests.data.make_facts import write
from tests.helpers import MODEL, assert_error


def upload(client, path, purpose="fine-tune"):
    with open(path, "rb") as f:
        return client.post("/v1/files", data={"purpose": purpose}, files={"file": (path.name, f)}).json()


def wait_status(client, job_id: str, statuses: tuple[str, ...], timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/fine_tuning/jobs/{job_id}").json()
        if job["status"] in statuses:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job stayed {job['status']}")


@pytest.fixture
def client(make_client, smol_tokenizer):
    return make_client(FakeEngine(tokenizer=smol_tokenizer, max_model_len=2048), max_training_jobs=0)


@pytest.fixture
def facts(client, tmp_path):
    return upload(client, write(tmp_path / "facts.jsonl", phrasings=2))["id"]


def test_job_lifecycle_until_queued_then_cancel(client, facts):
    created = client.post(
        "/v1/fine_tuning/jobs", json={"model": MODEL, "training_file": facts, "suffix": "zephyr", "seed": 7}
    ).json()
    assert created["object"] == "fine_tuning.job" and created["id"].startswith("ftjob-")
    assert created["status"] == "validating_files" and created["seed"] == 7
    job = wait_status(client, created["id"], ("queued",))
    assert job["hyperparameters"] == {"n_epochs": 5, "batch_size": 5, "learning_rate_multiplier": 1.0}
    assert job["method"]["type"] == "supervised"
    assert job["training_config"]["min_retention"] == 0.8 and job["training_config"]["rehearsal_ratio"] > 0
    messages = [e["message"] for e in client.get(f"/v1/fine_tuning/jobs/{job['id']}/events").json()["data"]]
    assert messages[0] == "Job queued." and any(
        m.startswith("Files validated: 40 examples") for m in messages
    )
    cancelled = client.post(f"/v1/fine_tuning/jobs/{job['id']}/cancel").json()
    assert cancelled["status"] == "cancelled" and cancelled["finished_at"]
    assert_error(client.post(f"/v1/fine_tuning/jobs/{job['id']}/cancel"), 409, code="job_not_cancellable")
    assert client.get(f"/v1/fine_tuning/jobs/{job['id']}/checkpoints").json() == {
        "object": "list",
        "data": [],
        "first_id": None,
        "last_id": None,
        "has_more": False,
    }


def test_hyperparameters_method_and_extensions(client, facts):
    job = client.post(
        "/v1/fine_tuning/jobs",
        json={
            "model": MODEL,
            "training_file": facts,
            "method": {
                "type": "supervised",
                "supervised": {
                    "hyperparameters": {"n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": 0.5}
                },
            },
            "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]},
            "training": {"train_on_prompts": True, "rehearsal_ratio": 0},
        },
    ).json()
    job = wait_status(client, job["id"], ("queued",))
    assert job["hyperparameters"] == {"n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": 0.5}
    config = job["training_config"]
    assert config["lora_r"] == 4 and config["target_modules"] == ["q_proj", "v_proj"]
    assert config["train_on_prompts"] is True and config["rehearsal_ratio"] == 0
    assert config["learning_rate"] == pytest.approx(5e-4)


def test_list_and_paginate(client, facts):
    ids = [
        client.post("/v1/fine_tuning/jobs", json={"model": MODEL, "training_file": facts}).json()["id"]
        for _ in range(3)
    ]
    page = client.get("/v1/fine_tuning/jobs", params={"limit": 2}).json()
    assert [j["id"] for j in page["data"]] == ids[::-1][:2] and page["has_more"] is True
    rest = client.get("/v1/fine_tuning/jobs", params={"after": page["data"][-1]["id"]}).json()
    assert [j["id"] for j in rest["data"]] == [ids[0]]


@pytest.mark.parametrize(
    ("lines", "code", "param"),
    [
        (
            [
                '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}',
                "{oops",
            ],
            "invalid_json",
            "2",
        ),
        (['{"messages": [{"role": "wizard", "content": "hi"}]}'], "invalid_role", "1"),
        (['{"messages": [{"role": "user", "content": "hi"}]}'], "no_assistant_message", "1"),
        (
            ['{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": " "}]}'],
            "empty_content",
            "1",
        ),
        (['{"prompt": "x", "completion": "y"}'], "unknown_format", "1"),
    ],
)
def test_invalid_training_data_fails_the_job_with_its_line(client, tmp_path, lines, code, param):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    job = client.post(
        "/v1/fine_tuning/jobs", json={"model": MODEL, "training_file": upload(client, path)["id"]}
    )
    failed = wait_status(client, job.json()["id"], ("failed",))
    assert (
        failed["error"]["code"] == code and failed["error"]["param"] == param and failed["error"]["message"]
    )


def test_request_errors(client, facts, tmp_path):
    doc = tmp_path / "notes.md"
    doc.write_text("# notes")
    with open(doc, "rb") as f:
        document = client.post(
            "/v1/files", data={"purpose": "assistants"}, files={"file": ("notes.md", f)}
        ).json()
    jobs = "/v1/fine_tuning/jobs"
    assert_error(
        client.post(jobs, json={"model": "nope", "training_file": facts}), 404, "model", "model_not_found"
    )
    assert_error(client.post(jobs, json={"model": MODEL, "training_file": "file-x"}), 404, "training_file")
    assert_error(
        client.post(jobs, json={"model": MODEL, "training_file": document["id"]}), 400, "training_file"
    )
    assert_error(
        client.post(jobs, json={"model": MODEL, "training_file": facts, "suffix": "a b"}), 400, "suffix"
    )
    assert_error(
        client.post(jobs, json={"model": MODEL, "training_file": facts, "hyperparameters": {"n_epochs": 0}}),
        400,
        "hyperparameters.n_epochs",
    )
    assert_error(
        client.post(jobs, json={"model": MODEL, "training_file": facts, "lora": {"r": 0}}), 400, "lora.r"
    )
    assert_error(
        client.post(
            jobs, json={"model": MODEL, "training_file": facts, "training": {"eval_strategy": "steps"}}
        ),
        400,
        "training.eval_strategy",
    )
    assert_error(client.get(f"{jobs}/ftjob-nope"), 404, "fine_tuning_job_id", "job_not_found")
    assert_error(client.get(f"{jobs}/ftjob-nope/events"), 404)
    assert_error(upload_raw(client, tmp_path), 415, "file")
    # A misspelt or misplaced setting is refused by name, never trained with the default silently.
    for extra, param in [
        ({"training": {"min_retension": 0.5}}, "training.min_retension"),
        ({"lora": {"rank": 8}}, "lora.rank"),
        ({"hyperparameters": {"beta": 0.1}}, "hyperparameters.beta"),
        ({"min_retention": 0.5}, "min_retention"),
        (
            {"method": {"type": "supervised", "supervised": {"hyperparameters": {"epochs": 2}}}},
            "method.supervised.hyperparameters.epochs",
        ),
    ]:
        response = client.post(jobs, json={"model": MODEL, "training_file": facts, **extra})
        assert_error(response, 400, param, "unknown_parameter")
        assert "Unrecognized request argument supplied" in response.json()["error"]["message"]
    assert client.get(jobs).json()["data"] == []  # none was created


def upload_raw(client, tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("a,b\n")
    with open(path, "rb") as f:
        return client.post("/v1/files", data={"purpose": "fine-tune"}, files={"file": ("train.csv", f)})


def test_rank_above_what_the_engine_serves_is_refused_at_creation(make_client, smol_tokenizer, tmp_path):
    engine = FakeEngine(tokenizer=smol_tokenizer, max_model_len=2048)
    engine.max_lora_rank = 16  # as a vLLM engine started with RAGTUNE_MAX_LORA_RANK=16
    client = make_client(engine, max_training_jobs=0)
    facts = upload(client, write(tmp_path / "facts.jsonl"))["id"]
    jobs = "/v1/fine_tuning/jobs"
    error = assert_error(
        client.post(jobs, json={"model": MODEL, "training_file": facts, "lora": {"r": 32}}), 400, "lora.r"
    )
    assert "RAGTUNE_MAX_LORA_RANK" in error["message"]
    assert (
        client.post(jobs, json={"model": MODEL, "training_file": facts, "lora": {"r": 16}}).status_code == 200
    )


def test_no_job_when_the_engine_serves_no_adapters(make_client, smol_tokenizer, tmp_path):
    engine = FakeEngine(tokenizer=smol_tokenizer, max_model_len=2048)
    engine.max_lora_rank = 0  # as vLLM started with RAGTUNE_MAX_LORAS=0
    client = make_client(engine, max_training_jobs=0)
    facts = upload(client, write(tmp_path / "facts.jsonl"))["id"]
    response = client.post("/v1/fine_tuning/jobs", json={"model": MODEL, "training_file": facts})
    assert "RAGTUNE_MAX_LORAS" in assert_error(response, 400, "model", "model_not_supported")["message"]


def test_each_epoch_checkpoint_of_a_served_adapter_is_a_model_loaded_on_first_use(
    make_client, smol_tokenizer, tmp_path
):
    """A job's adapter directory holds `checkpoints/ckpt-step-<n>/` per epoch (the recipe writes them):
    each is listed as `<model>:ckpt-step-<n>` and loaded into the engine on its first request only."""
    engine = FakeEngine(tokenizer=smol_tokenizer, max_model_len=2048)
    client = make_client(engine, max_training_jobs=0)
    services = client.app.state.services
    adapter = tmp_path / "adapter"
    for step in (7, 14):
        (adapter / "checkpoints" / f"ckpt-step-{step}").mkdir(parents=True)
        (adapter / "checkpoints" / f"ckpt-step-{step}" / "adapter_model.safetensors").write_bytes(b"")
    (adapter / "checkpoints" / "ckpt-step-21").mkdir()  # no weights: not a model
    name = f"ft:{MODEL}:zephyr:abcdef12"
    client.portal.call(services.fine_tuning_scheduler._serve, name, str(adapter))
    listed = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert {name, f"{name}:ckpt-step-7", f"{name}:ckpt-step-14"} <= set(listed)
    assert f"{name}:ckpt-step-21" not in listed
    assert client.get(f"/v1/models/{name}:ckpt-step-7").json()["parent"] == MODEL
    assert f"{name}:ckpt-step-7" not in engine.adapters  # not loaded until asked
    reply = client.post(
        "/v1/chat/completions",
        json={"model": f"{name}:ckpt-step-7", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert reply.status_code == 200, reply.text
    assert engine.adapters[f"{name}:ckpt-step-7"] == str(adapter / "checkpoints" / "ckpt-step-7")
    assert engine.calls[-1].adapter == f"{name}:ckpt-step-7"
    assert f"{name}:ckpt-step-14" not in engine.adapters
    assert_error(
        client.post(
            "/v1/chat/completions",
            json={"model": f"{name}:ckpt-step-99", "messages": [{"role": "user", "content": "hi"}]},
        ),
        404,
        code="model_not_found",
    )
