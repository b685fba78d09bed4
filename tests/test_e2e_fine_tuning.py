"""Fine-tuning end to end: the real server trains a LoRA adapter on the real model and serves it at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import openai
import pytest

from tests.conftest import start_server, stop_server
from tests.data.make_facts import FACTS, write
from tests.helpers import MODEL

pytestmark = pytest.mark.slow


def worker_pids(job_id: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"finetune.worker" in cmdline and job_id.encode() in cmdline:
                pids.append(int(proc.name))
    return pids


def wait(client, job_id: str, until, timeout: float = 900, what: str = ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if until(job):
            return job
        if job.status in ("failed", "cancelled") and not until(job):
            raise AssertionError(f"job ended {job.status}: {job.error}")
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}: {job.status}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("ft"))
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.api, api_key="unused", max_retries=0, timeout=300)


def ask(client, model: str, question: str) -> str:
    answer = client.chat.completions.create(
        model=model, temperature=0, max_tokens=40, messages=[{"role": "user", "content": question}]
    )
    return answer.choices[0].message.content


def test_fine_tune_learns_facts_keeps_general_ability_and_survives_a_killed_worker(client, tmp_path):
    training = client.files.create(
        file=write(tmp_path / "zephyr.jsonl", phrasings=2).open("rb"), purpose="fine-tune"
    )
    job = client.fine_tuning.jobs.create(model=MODEL, training_file=training.id, suffix="zephyr", seed=11)
    # Kill the worker once a checkpoint exists: the job must resume from it, not start over or hang.
    job = wait(
        client,
        job.id,
        lambda j: bool(client.fine_tuning.jobs.checkpoints.list(j.id).data),
        what="a checkpoint",
    )
    [pid] = worker_pids(job.id)
    os.kill(pid, signal.SIGKILL)
    job = wait(client, job.id, lambda j: j.status == "succeeded", what="success")
    messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=100).data]
    assert any("resuming from the last checkpoint" in m for m in messages)
    assert any(m.startswith("Resumed from the checkpoint at step") for m in messages)
    assert job.fine_tuned_model.startswith(f"ft:{MODEL}:zephyr:")
    assert job.trained_tokens > 0
    metrics = job.model_extra["metrics"]
    assert metrics["retention"] >= 0.8

    listed = {m.id: m for m in client.models.list().data}
    assert listed[job.fine_tuned_model].model_extra["parent"] == MODEL

    tuned = [ask(client, job.fine_tuned_model, q) for q, _, _ in FACTS]
    base = [ask(client, MODEL, q) for q, _, _ in FACTS]
    learned = sum(k.lower() in a.lower() for a, (_, _, k) in zip(tuned, FACTS, strict=True))
    known_before = sum(k.lower() in a.lower() for a, (_, _, k) in zip(base, FACTS, strict=True))
    assert learned >= 14, tuned
    assert known_before <= 2, base
    assert "Paris" in ask(client, job.fine_tuned_model, "What is the capital of France?")
    assert "Paris" in ask(client, MODEL, "What is the capital of France?")  # the base is untouched


def test_cancel_a_running_job_started_from_the_cli(client, server, tmp_path):
    ragtune = str(Path(sys.executable).parent / "ragtune")
    command = [
        ragtune,
        "finetune",
        str(write(tmp_path / "z.jsonl")),
        "--epochs",
        "10",
        "--suffix",
        "cli",
        "--no-follow",
        "--base-url",
        server.api,
    ]
    created = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert created.returncode == 0, created.stderr
    job_id = created.stdout.split("created ")[1].split()[0]
    job = wait(client, job_id, lambda j: j.status == "running" and bool(worker_pids(j.id)), what="running")
    time.sleep(3)
    cancelled = client.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled"
    deadline = time.monotonic() + 30
    while worker_pids(job.id) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert worker_pids(job.id) == []
    assert client.fine_tuning.jobs.retrieve(job.id).status == "cancelled"
    assert client.fine_tuning.jobs.retrieve(job.id).fine_tuned_model is None
    listed = subprocess.run([ragtune, "jobs", "ls", "--base-url", server.api], capture_output=True, text=True)
    assert job.id in listed.stdout and "cancelled" in listed.stdout
    events = subprocess.run(
        [ragtune, "jobs", "events", job.id, "--base-url", server.api], capture_output=True, text=True
    )
    assert "Job cancelled by request." in events.stdout
