"""Data-parallel LoRA training (finetune/distributed.py) on the CPU: the worker under torchrun with two
gloo processes trains the same adapter as one process, every rank ends with the same weights, rank 0
alone writes the job's files, a stop asked of rank 0 stops both, and the scheduler starts torchrun and
trusts rank 0's files over its exit code (tiny Llama, real tokenizer)."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from finetune import worker
from finetune.data import Example
from finetune.distributed import Distributed, rank_device
from finetune.hardware import DeviceUnavailable
from finetune.recipe import LoRARecipe, micro_batches, shard, trained_tokens
from tests.test_finetune_device import NotStarted, lengths_data, queued_job
from tests.test_finetune_recipe import Recorder, config

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = 13  # batches of 4, 4, 4, 1: rank 1's share of the last step is empty
STEPS = 4


def ddp_config():
    """One epoch of 4 steps, deterministic (no dropout), nothing generated (no rehearsal, no scoring); a
    mid-epoch checkpoint every 2 steps."""
    return config(
        n_epochs=1,
        batch_size=4,
        micro_batch_size=1,
        lora_dropout=0.0,
        rehearsal_ratio=0.0,
        eval_strategy="no",
        checkpoint_every=2,
    )


# Run by torchrun in every rank: the real worker, with float32 weights (a CPU with native bf16 would
# otherwise train in bf16, where micro-batches of other rows round differently) and each rank's LoRA
# weights dumped after training, or where Cancelled was raised; with STOP_AT_STEP, rank 0 alone is asked
# to stop after that step.
RANK_SCRIPT = """
import os, sys, traceback
from pathlib import Path

import torch

import finetune.hardware as hardware
import finetune.recipe as recipe_module
from finetune import worker

hardware.pick_dtype = lambda setting, device: torch.float32
train, dump = recipe_module.LoRARecipe.train, Path(os.environ["DUMP_DIR"])


def train_and_dump(self):
    try:
        metrics = train(self)
    except recipe_module.Cancelled as exc:  # where it was raised: the step boundary, or a signal handler
        where = traceback.extract_tb(exc.__traceback__)[-1].name
        (dump / f"cancelled-rank{self.dist.rank}").write_text(f"{where} at step {self.progress.step}")
        raise
    lora = {k: v.detach().clone() for k, v in self.model.named_parameters() if v.requires_grad}
    torch.save(lora, dump / f"rank{self.dist.rank}.pt")
    return metrics


recipe_module.LoRARecipe.train = train_and_dump
stop_at = int(os.environ.get("STOP_AT_STEP", "0"))
if stop_at and os.environ["RANK"] == "0":
    event = worker.FileReporter.event

    def event_then_stop(self, message, data=None, kind="message"):
        event(self, message, data, kind)
        if kind == "metrics" and (data or {}).get("step", 0) >= stop_at:
            self.stop = True

    worker.FileReporter.event = event_then_stop
sys.argv = ["finetune.worker", *sys.argv[1:]]
worker.main()
"""


def make_job(tmp_path: Path, model_dir: Path, data: Path) -> tuple[Path, str]:
    """(data dir, job id) with the job.json the scheduler would write, training on the CPU."""
    data_dir, job_id = tmp_path / "data", "ftjob-ddp"
    run_dir = data_dir / "fine_tuning" / job_id
    run_dir.mkdir(parents=True)
    spec = {
        "job_id": job_id,
        "base_model": "tiny",
        "model_dir": str(model_dir),
        "training_file": str(data),
        "training_file_id": "file-ddp",
        "validation_file": None,
        "adapter_dir": str(tmp_path / "adapter"),
        "config": ddp_config().to_dict(),
        "training_device": "cpu",
    }
    (run_dir / "job.json").write_text(json.dumps(spec))
    return data_dir, job_id


def torchrun(tmp_path: Path, data_dir: Path, job_id: str, stop_at: int = 0) -> subprocess.CompletedProcess:
    """The worker in 2 gloo processes, as the scheduler starts it (with RANK_SCRIPT around it); the
    timeout turns a rank left waiting in a collective into a failure rather than a hung test."""
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DUMP_DIR": str(tmp_path),
        "STOP_AT_STEP": str(stop_at),
        "HF_HUB_OFFLINE": "1",
    }
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    return subprocess.run(
        [*argv, str(script), job_id, "--data-dir", str(data_dir)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def events(data_dir: Path, job_id: str) -> list[dict]:
    path = data_dir / "fine_tuning" / job_id / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def one_process(tiny_model_dir, tmp_path_factory):
    """The same job in one process (world 1, in this process): (recipe after training, its reporter,
    the saved adapter's weights)."""
    tmp = tmp_path_factory.mktemp("one")
    data = lengths_data(tmp / "train.jsonl", EXAMPLES)
    reporter = Recorder()
    recipe = LoRARecipe(ddp_config(), tiny_model_dir, data, tmp / "run", reporter, cache_dir=tmp / "cache")
    recipe.setup()
    recipe.train()
    recipe.save(tmp / "adapter", {"base_model": "tiny"})
    return recipe, reporter, load_file(tmp / "adapter" / "adapter_model.safetensors")


def assert_same_weights(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert set(got) == set(want) and got
    for name in want:
        assert torch.allclose(got[name], want[name], atol=1e-5, rtol=0), (
            name,
            float((got[name] - want[name]).abs().max()),
        )


def test_two_processes_train_the_adapter_of_one(tiny_model_dir, tmp_path, one_process):
    """The sharded step computes the whole batch's gradient: the adapter the worker saves under
    torchrun equals the one-process adapter (float32, atol 1e-5), each step's reported loss and tokens
    are the whole batch's, both ranks end with identical weights, and only rank 0 wrote events and
    result.json (each step's event once)."""
    recipe, reporter, want = one_process
    data_dir, job_id = make_job(tmp_path, tiny_model_dir, lengths_data(tmp_path / "train.jsonl", EXAMPLES))
    done = torchrun(tmp_path, data_dir, job_id)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]

    assert_same_weights(load_file(tmp_path / "adapter" / "adapter_model.safetensors"), want)
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert set(rank0) == set(rank1) and all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    assert any(bool(v.abs().sum()) for k, v in rank0.items() if "lora_B" in k)  # it trained

    records = events(data_dir, job_id)
    steps = [r["data"] for r in records if r["type"] == "metrics" and "train_loss" in r["data"]]
    assert [s["step"] for s in steps] == list(range(1, STEPS + 1))  # once each: rank 1 wrote none
    single = [d for _, d, k in reporter.events if k == "metrics" and "train_loss" in d]
    for got, expected in zip(steps, single, strict=True):
        assert got["train_loss"] == pytest.approx(expected["train_loss"], rel=1e-5)
        assert got["tokens_seen"] == expected["tokens_seen"]
    assert sum("Data-parallel training on 2 processes" in r["message"] for r in records) == 1
    result = json.loads((data_dir / "fine_tuning" / job_id / "result.json").read_text())
    assert result["metrics"]["steps"] == STEPS
    assert result["metrics"]["tokens_seen"] == recipe.progress.tokens_seen


def test_a_stop_asked_of_rank_0_stops_every_rank_and_the_job_resumes(tiny_model_dir, tmp_path, one_process):
    """Rank 0 alone is asked to stop after step 3: both ranks stop (rank 1 does not train on and wait
    forever at the next all_reduce), the worker's cancel path runs, and the next start resumes every rank
    from rank 0's checkpoint of step 2 to the one-process adapter."""
    *_, want = one_process
    data_dir, job_id = make_job(tmp_path, tiny_model_dir, lengths_data(tmp_path / "train.jsonl", EXAMPLES))
    stopped = torchrun(tmp_path, data_dir, job_id, stop_at=3)
    assert stopped.returncode != 0  # torchrun's code: a rank exited with EXIT_CANCELLED
    assert f"exitcode  : {worker.EXIT_CANCELLED}" in stopped.stdout + stopped.stderr
    messages = [r["message"] for r in events(data_dir, job_id)]
    assert messages[-1].startswith("Training stopped") and not (tmp_path / "rank1.pt").exists()
    for rank in (0, 1):  # rank 1 stopped on rank 0's word, not on torchrun's SIGTERM once rank 0 left
        assert (tmp_path / f"cancelled-rank{rank}").read_text() == "train at step 3"

    resumed = torchrun(tmp_path, data_dir, job_id)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-5000:]
    messages = [r["message"] for r in events(data_dir, job_id)]
    assert messages.count("Resumed from the checkpoint at step 2") == 1
    assert_same_weights(load_file(tmp_path / "adapter" / "adapter_model.safetensors"), want)
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)


# ---- the pieces -------------------------------------------------------------------------------------


def examples(lengths: list[int]) -> list[Example]:
    return [Example(list(range(n)), [-100] + list(range(1, n)), i + 1, False) for i, n in enumerate(lengths)]


@pytest.mark.parametrize("world_size", [2, 3, 8])
def test_shard_puts_every_example_on_one_rank_with_balanced_tokens(world_size):
    rng = random.Random(world_size)
    for size in (1, 5, 16, 48):
        batch = examples([rng.randint(2, 400) for _ in range(size)])
        shares = [shard(batch, rank, world_size) for rank in range(world_size)]
        assert sorted(id(e) for s in shares for e in s) == sorted(id(e) for e in batch)
        rows = [len(s) for s in shares]
        assert max(rows) - min(rows) <= 1
        tokens = [sum(len(e.input_ids) for e in s) for s in shares]
        assert max(tokens) - min(tokens) <= max(len(e.input_ids) for e in batch)
        assert sum(trained_tokens(s) for s in shares) == trained_tokens(batch)
        # each share is longest first, as micro_batches would order it: nothing is reordered again
        assert all(micro_batches(s, len(s) or 1) == ([s] if s else []) for s in shares)


def test_shard_balances_where_a_plain_cut_does_not():
    """Lengths that rise along the batch: cutting it in halves would give one rank nearly all tokens."""
    batch = examples(list(range(10, 170, 10)))
    halves = [sum(len(e.input_ids) for e in batch[:8]), sum(len(e.input_ids) for e in batch[8:])]
    tokens = [sum(len(e.input_ids) for e in shard(batch, r, 2)) for r in (0, 1)]
    assert tokens == [720, 640] and halves == [360, 1000]


def test_a_world_of_one_changes_nothing():
    """Without torchrun every collective hands back its input: the single-process recipe is untouched."""
    one = Distributed.from_env({})
    assert one == Distributed() and one.main and one.world_size == 1
    batch = examples([5, 9, 2])
    assert shard(batch, 0, 1) is batch  # not even sorted: micro_batches does that, as before
    layer = torch.nn.Linear(3, 2)
    layer(torch.ones(4, 3)).sum().backward()
    before = [p.grad.clone() for p in layer.parameters()]
    grads = [p.grad for p in layer.parameters()]
    frozen = torch.nn.Parameter(torch.zeros(2))
    one.all_reduce_gradients([*layer.parameters(), frozen])
    assert [p.grad for p in layer.parameters()] == grads  # the same tensors
    assert all(torch.equal(p.grad, b) for p, b in zip(layer.parameters(), before, strict=True))
    assert frozen.grad is None
    assert one.all_reduce_sum(1.5, 7) == (1.5, 7)
    assert one.broadcast_object({"stop": True}) == {"stop": True} and one.all_gather_object(3) == [3]
    one.barrier()
    one.init_process_group("cpu")
    assert not torch.distributed.is_initialized()


def test_torchrun_environment():
    dist = Distributed.from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (dist.rank, dist.world_size, dist.local_rank, dist.main) == (3, 4, 1, False)
    with pytest.raises(ValueError, match="rank 4.*world_size 4"):
        Distributed.from_env({"RANK": "4", "WORLD_SIZE": "4"})


def test_each_rank_trains_on_its_own_gpu(monkeypatch):
    """cpu stays cpu (gloo); CUDA becomes cuda:<K + local_rank> from the card K the setting named (so
    serving can keep card 0); cards past the GPUs, or MPS, fail the job with the setting to change."""
    rank1 = Distributed(1, 2, 1)
    assert rank_device("cpu", rank1) == "cpu" and rank_device("cuda:3", Distributed()) == "cuda:3"
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert (
        rank_device("cuda:0", rank1) == "cuda:1" and rank_device("cuda:0", Distributed(0, 2, 0)) == "cuda:0"
    )
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    assert [rank_device("cuda:1", Distributed(r, 2, r)) for r in (0, 1)] == ["cuda:1", "cuda:2"]
    with pytest.raises(DeviceUnavailable, match="from cuda:2 needs cards cuda:2 to cuda:3.* sees 3 here"):
        rank_device("cuda:2", rank1)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    for rank in (0, 1):  # every rank gives the same answer, so rank 0's error.json is the job's
        with pytest.raises(DeviceUnavailable, match="RAGTUNE_TRAINING_PROCESSES=2 .* sees 1 here"):
            rank_device("cuda:0", Distributed(rank, 2, rank))
    with pytest.raises(DeviceUnavailable, match="not on mps"):
        rank_device("mps", rank1)


def test_the_worst_card_decides_for_every_rank():
    from common.memory_plan import Admission

    fits, busy, small = (
        Admission(True, False, 1, "fits"),
        Admission(False, True, 1, "busy"),
        Admission(False, False, 1, "small"),
    )
    assert worker.worst_admission([("cuda:0", fits), ("cuda:1", fits)]) == ("cuda:0", fits)
    assert worker.worst_admission([("cuda:0", fits), ("cuda:1", busy)]) == ("cuda:1", busy)
    assert worker.worst_admission([("cuda:0", busy), ("cuda:1", small)]) == ("cuda:1", small)


def test_a_worker_under_torchrun_stops_when_the_server_dies(tmp_path):
    """torchrun gets no signal when the server that started it dies; its workers watch for that
    (die_with_launcher) and take the cancel path. A chain launcher (the server) → agent (torchrun) →
    worker: the worker gets SIGTERM once the launcher is killed, not before."""
    ready, got = tmp_path / "ready", tmp_path / "sigterm"
    child = (
        "import os, signal, sys, time, pathlib\n"
        "from finetune.worker import die_with_launcher\n"
        f"signal.signal(signal.SIGTERM, lambda *_: (pathlib.Path({str(got)!r}).touch(), sys.exit(0)))\n"
        "die_with_launcher()\n"
        f"pathlib.Path({str(ready)!r}).write_text(str(os.getpid()))\n"
        "time.sleep(60)\n"
    )
    agent = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {child!r}])"
    start_agent = (
        f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {agent!r}]); time.sleep(60)"
    )
    launcher = subprocess.Popen(
        [sys.executable, "-c", start_agent],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    pid = None
    try:
        deadline = time.monotonic() + 30
        while not ready.exists() or not ready.read_text():
            assert time.monotonic() < deadline, "the worker never started"
            time.sleep(0.1)
        pid = int(ready.read_text())
        time.sleep(2.5)  # more than one watch interval: the launcher is alive, nothing happens
        assert not got.exists()
        launcher.kill()
        launcher.wait()
        deadline = time.monotonic() + 10
        while not got.exists():
            assert time.monotonic() < deadline, "the worker did not get SIGTERM"
            time.sleep(0.1)
    finally:
        launcher.kill()
        launcher.wait()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# ---- the server -------------------------------------------------------------------------------------


def test_training_processes_setting(monkeypatch):
    from pydantic import ValidationError

    from server.settings import Settings

    assert Settings().training_processes == 1
    monkeypatch.setenv("RAGTUNE_TRAINING_PROCESSES", "4")
    assert Settings().training_processes == 4
    for bad in (0, 65):
        with pytest.raises(ValidationError, match="training_processes"):
            Settings(training_processes=bad)


def test_the_scheduler_starts_torchrun_and_trusts_rank_0s_files(
    make_client, smol_tokenizer, tmp_path, monkeypatch
):
    """With training_processes 2 (RAGTUNE_TRAINING_PROCESSES, through server/state.py) the worker is
    started under torchrun; torchrun's exit code (1 whatever the worker returned) does not decide, the
    file rank 0 wrote does: result.json succeeds, error.json fails, none re-queues. One process keeps
    trusting its own exit code."""
    import server.fine_tuning.scheduler as scheduler_module
    from tests.data.make_facts import write

    started = NotStarted.started
    started.clear()

    def two_processes(engine, **overrides):
        return make_client(engine, training_processes=2, **overrides)

    facts = write(tmp_path / "facts.jsonl", phrasings=1)
    client, _, job_id = queued_job(two_processes, smol_tokenizer, facts)
    scheduler = client.app.state.services.fine_tuning_scheduler
    assert scheduler.training_processes == 2
    monkeypatch.setattr(scheduler_module.subprocess, "Popen", NotStarted)  # nothing is started
    run_dir = scheduler.runs / job_id

    def launch_and_exit(outcome: dict[str, dict] | None, code: int, processes: int = 2) -> dict:
        scheduler.training_processes = processes
        scheduler.db.execute("UPDATE fine_tuning_jobs SET status = 'queued' WHERE id = ?", (job_id,))

        def go():
            scheduler._launch(scheduler.db.one("SELECT * FROM fine_tuning_jobs WHERE id = ?", (job_id,)))
            scheduler._process, scheduler._running_job = None, None  # the loop must not wait on it

        client.portal.call(go)
        for name, value in (outcome or {}).items():
            (run_dir / name).write_text(json.dumps(value))
        client.portal.call(scheduler._exited, job_id, code)
        return client.get(f"/v1/fine_tuning/jobs/{job_id}").json()

    result = {"metrics": {"steps": 4}, "adapter_dir": str(tmp_path / "no-adapter")}
    error = {"code": "out_of_memory", "message": "Out of memory on cuda:1", "param": None}
    (run_dir).mkdir(parents=True, exist_ok=True)
    (run_dir / "result.json").write_text(json.dumps(result))  # an earlier try's: removed at the launch
    assert launch_and_exit(None, 1)["status"] == "queued"  # torchrun failed, rank 0 wrote nothing
    assert started[-1] == [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=2",
        "-m",
        "finetune.worker",
        job_id,
        "--data-dir",
        str(scheduler.data_dir),
    ]
    assert launch_and_exit({"result.json": result}, 1, processes=1)["status"] == "queued"  # not trusted
    assert started[-1][:3] == [sys.executable, "-m", "finetune.worker"]
    state = launch_and_exit({"error.json": error}, 1)
    assert state["status"] == "failed" and state["error"]["code"] == "out_of_memory"
    scheduler.db.execute("UPDATE fine_tuning_jobs SET attempts = 0, error = NULL WHERE id = ?", (job_id,))
    state = launch_and_exit({"result.json": result}, 1)
    assert state["status"] == "succeeded" and state["fine_tuned_model"]
