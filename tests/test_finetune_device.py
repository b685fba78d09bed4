"""Training runs where the worker puts it: the recipe's device, length-grouped micro-batches, and the clear
failures of the training device setting and of an out-of-memory device (tiny Llama, real tokenizer, CPU)."""

from __future__ import annotations

import contextlib
import json
import signal
import time
import traceback
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils import _pytree as pytree
from torch.utils.weak import WeakIdKeyDictionary

import finetune.recipe as recipe_module
from common.memory_plan import CUDA_CONTEXT_BYTES, GIB, HEADROOM
from finetune import worker
from finetune.hardware import DeviceUnavailable, pick_dtype, resolve_training_device
from finetune.recipe import LoRARecipe, collate, micro_batches, trained_tokens
from server.engines.fake import FakeEngine
from tests.data.make_facts import write
from tests.helpers import MODEL
from tests.test_finetune_recipe import Recorder, config

PLACED, HOST = "placed", "host"
DEVICES = ["cpu"] + (["cuda:0"] if torch.cuda.is_available() else [])


class HostTensorTracker(TorchFunctionMode):
    """A second device, simulated on a CPU-only machine. Every tensor gets a label: `placed` when it was
    made on, or moved to, the configured device (`.to(device)`, a factory's `device=`), `host` when a
    factory made it without a device (so on a GPU it would be on the CPU), and from then on each op's
    result takes its inputs' label. An op that mixes a placed tensor with a host tensor of one or more
    dimensions is what raises "Expected all tensors to be on the same device" on a GPU: it is recorded in
    `violations`. Tensors whose origin it did not see (gradients, safetensors loads) are neutral.

    Stricter than CUDA in one way, on purpose: a placed tensor indexed by a host index (which CUDA copies
    over with a hidden sync) counts as left behind too."""

    def __init__(self, device: str) -> None:
        super().__init__()
        self.device = torch.device(device)
        self.labels: WeakIdKeyDictionary = WeakIdKeyDictionary()
        self.violations: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = getattr(func, "__name__", str(func))
        inputs = [t for t in pytree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        if name in ("copy_", "__setitem__"):  # writes across devices are allowed; self keeps its label
            return out
        if name == "__set__" and len(args) == 2 and isinstance(args[1], torch.Tensor):  # param.data = x
            self._label(args[0], self.labels.get(args[1]))
            return out
        target = self._target(name, args, kwargs)
        if target is not None:
            label = PLACED if target == self.device else HOST
        else:
            seen = [self.labels.get(t) for t in inputs]
            behind = [t for t, s in zip(inputs, seen, strict=True) if s == HOST and t.dim() > 0]
            if PLACED in seen and behind:
                self.violations.append(self._describe(name, inputs, seen))
            label = PLACED if PLACED in seen else HOST if HOST in seen or not inputs else None
        for tensor in pytree.tree_leaves(out):
            if isinstance(tensor, torch.Tensor):
                self._label(tensor, label)
        return out

    def on_host(self, model: torch.nn.Module) -> torch.nn.Module:
        """`model` as from_pretrained leaves it: every parameter and buffer on the host until moved."""
        for tensor in [*model.parameters(), *model.buffers()]:
            self.labels[tensor] = HOST
        return model

    def _target(self, name: str, args: tuple, kwargs: dict) -> torch.device | None:
        """The device an op explicitly puts its result on, or None when it follows its inputs."""
        if name == "cpu":
            return torch.device("cpu:1")  # "back to the host": never the configured device
        if name == "to":
            for value in [kwargs.get("device"), *args[1:]]:
                if isinstance(value, str | torch.device):
                    return torch.device(value)
                if isinstance(value, torch.Tensor):
                    label = self.labels.get(value)
                    return self.device if label == PLACED else None
            return None
        device = kwargs.get("device")
        return torch.device(device) if isinstance(device, str | torch.device) else None

    def _label(self, tensor: torch.Tensor, label: str | None) -> None:
        if label is None:
            self.labels.pop(tensor, None)
        else:
            self.labels[tensor] = label

    @staticmethod
    def _describe(name: str, inputs: list[torch.Tensor], seen: list[str | None]) -> str:
        where = [f for f in traceback.extract_stack()[:-3] if "/site-packages/torch/" not in f.filename]
        frame = where[-1] if where else None
        shapes = ", ".join(f"{s or 'unknown'} {tuple(t.shape)}" for t, s in zip(inputs, seen, strict=True))
        return f"{name}({shapes}) at {frame.filename}:{frame.lineno} {frame.line}" if frame else name


def lengths_data(path: Path, count: int = 16) -> Path:
    """`count` examples whose answers grow from 1 to about 50 words: lengths that differ a lot."""
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"Describe item {i}."},
                {"role": "assistant", "content": " ".join(["teal"] * (1 + 3 * i))},
            ]
        }
        for i in range(count)
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def device_recipe(
    model_dir: Path, tmp_path: Path, monkeypatch, device: str = "cpu", **overrides
) -> LoRARecipe:
    """A recipe on `device` (float32 on the CPU, the worker's dtype elsewhere) over 8 examples of
    different lengths (4 to validate and score), whose base answers are canned (rehearsal rows without
    minutes of generation) and whose scored answers are 4 tokens long: every path of the recipe, in
    seconds."""
    monkeypatch.setattr(recipe_module, "TASK_TOKENS", 4)
    recipe = LoRARecipe(
        config(**overrides),
        model_dir,
        lengths_data(tmp_path / "train.jsonl", 8),
        tmp_path / "run",
        Recorder(),
        validation_file=lengths_data(tmp_path / "valid.jsonl", 4),
        cache_dir=tmp_path / "cache",
        dtype=torch.float32 if device == "cpu" else pick_dtype("auto", device),
        device=device,
    )
    monkeypatch.setattr(
        recipe, "_general_answers", lambda name, prompts, n: [f"Sure. {q} is fine." for q in prompts]
    )
    return recipe


@pytest.mark.parametrize("device", DEVICES)
def test_the_model_and_every_batch_are_on_the_recipe_device(tiny_model_dir, tmp_path, monkeypatch, device):
    """A scored epoch with validation and rehearsal with distillation: every parameter and buffer is on
    the recipe's device, and so is every input_ids that reaches the model (training, the distillation
    reference, validation, generation). On a machine with a CUDA GPU it runs there too."""
    seen: list[torch.device] = []

    def record(_module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is not None:
            seen.append(ids.device)

    recipe = device_recipe(tiny_model_dir, tmp_path, monkeypatch, device, n_epochs=1, rehearsal_ratio=0.5)
    recipe.setup()
    decoder = recipe.model.get_base_model().get_decoder()
    decoder.register_forward_pre_hook(record, with_kwargs=True)
    recipe.train()
    dtype = str(recipe.dtype).removeprefix("torch.")
    device = torch.device(device)
    assert recipe.device == device and next(recipe.model.parameters()).device == device
    assert {p.device for p in recipe.model.parameters()} == {device}
    assert {b.device for b in recipe.model.buffers()} == {device}
    assert len(seen) > recipe.total_steps and set(seen) == {device}
    assert recipe.metrics["valid_loss"] > 0 and "retention" in recipe.metrics
    loaded = [d for _, d, _ in recipe.reporter.events if "device" in d]
    assert loaded == [{"device": str(device), "dtype": dtype}]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_checkpoint_resumes_across_the_cpu_and_a_gpu(tiny_model_dir, tmp_path, monkeypatch):
    """Stopped on the CPU, resumed on the GPU from the CPU's checkpoint, stopped there, resumed on the CPU
    from the GPU's checkpoint (which holds the GPU's RNG state too): each leg continues where the last one
    stopped and the job ends with every step trained."""

    def leg(device: str, stop_at: int | None) -> LoRARecipe:
        recipe = device_recipe(tiny_model_dir, tmp_path, monkeypatch, device, n_epochs=3, rehearsal_ratio=0.5)
        recipe.reporter.stop_at_step = stop_at
        recipe.setup()
        if stop_at is None:
            recipe.train()
        else:
            with pytest.raises(recipe_module.Cancelled):
                recipe.train()
        return recipe

    def resumed_at(recipe: LoRARecipe) -> list[str]:
        return [m for m, _, _ in recipe.reporter.events if m.startswith("Resumed from the checkpoint")]

    leg("cpu", 4)  # 3 steps per epoch: the checkpoint of step 3
    on_gpu = leg("cuda:0", 7)
    assert resumed_at(on_gpu) == ["Resumed from the checkpoint at step 3"]
    written = tmp_path / "run" / "checkpoints" / "step-000006" / "trainer_state.pt"
    assert "cuda_rng" in torch.load(written, map_location="cpu", weights_only=True)
    back = leg("cpu", None)
    assert resumed_at(back) == ["Resumed from the checkpoint at step 6"]
    assert back.metrics["steps"] == back.total_steps == 9
    assert {p.device for p in back.model.parameters()} == {torch.device("cpu")}


def test_nothing_is_left_on_the_host(tiny_model_dir, tmp_path, monkeypatch):
    """The whole recipe (loading, base answers, rehearsal with distillation, steps, a checkpoint and a
    resume, validation, retention and task scoring by generation, publishing an epoch's adapter) under
    HostTensorTracker, the loaded model's weights on the host until moved: no op mixes a tensor moved
    to the device with one left behind. On a CPU-only machine this is what catches a model, batch or mask
    a GPU run would find on the wrong device (checked by hand by deleting each move: the model's, the
    batches', the rehearsal flags', the generation inputs'); the next test shows it on the batches."""
    tracker = HostTensorTracker("cpu")
    real_load = recipe_module.load_model
    monkeypatch.setattr(
        recipe_module, "load_model", lambda path, dtype: tracker.on_host(real_load(path, dtype))
    )
    with tracker:
        with pytest.raises(recipe_module.Cancelled):
            recipe = device_recipe(tiny_model_dir, tmp_path, monkeypatch, n_epochs=2, rehearsal_ratio=0.5)
            recipe.reporter.stop_at_step = 4
            recipe.setup()
            recipe.train()
        recipe = device_recipe(tiny_model_dir, tmp_path, monkeypatch, n_epochs=2, rehearsal_ratio=0.5)
        recipe.setup()
        metrics = recipe.train()
        recipe.save(tmp_path / "adapter", {"base_model": "tiny"})
    assert any(m.startswith("Resumed from the checkpoint") for m, _, _ in recipe.reporter.events)
    assert metrics["steps"] == recipe.total_steps and "valid_loss" in metrics
    assert tracker.violations == []


def test_the_tracker_sees_a_batch_left_on_the_host(tiny_model_dir, tmp_path, monkeypatch):
    """Without the copy to the device in collate (as before this fix), the tracker reports the embedding
    lookup of host input ids in device weights: the test above can fail."""
    real_collate = recipe_module.collate
    monkeypatch.setattr(
        recipe_module, "collate", lambda batch, pad_id, device=None: real_collate(batch, pad_id)
    )
    tracker = HostTensorTracker("cpu")
    with tracker:
        recipe = device_recipe(tiny_model_dir, tmp_path, monkeypatch, eval_strategy="no", rehearsal_ratio=0)
        recipe.setup()
        recipe._step(recipe.examples[:2])
    assert any(v.startswith("embedding(") for v in tracker.violations), tracker.violations


def test_micro_batches_are_grouped_by_length_and_the_step_loss_is_unchanged(
    tiny_model_dir, tmp_path, monkeypatch
):
    """Within an optimizer batch, examples are sorted by length before they are cut into micro-batches:
    less padding than cutting the batch in its shuffled order, every example once, and the step's loss
    (a sum over trained tokens divided by the whole batch's count) the same as the ungrouped cut and as
    the batch in one piece."""
    recipe = LoRARecipe(
        config(eval_strategy="no", rehearsal_ratio=0, lora_dropout=0.0, batch_size=8, micro_batch_size=2),
        tiny_model_dir,
        lengths_data(tmp_path / "lengths.jsonl"),
        tmp_path / "run",
        Recorder(),
        device="cpu",
    )
    recipe.setup()
    shuffled = torch.randperm(len(recipe.examples), generator=torch.Generator().manual_seed(1)).tolist()
    batch = [recipe.examples[i] for i in shuffled[:8]]

    def padding(micros):
        return sum(
            len(m) * max(len(e.input_ids) for e in m) - sum(len(e.input_ids) for e in m) for m in micros
        )

    grouped = micro_batches(batch, 2)
    in_order = [batch[i : i + 2] for i in range(0, len(batch), 2)]
    assert padding(grouped) < padding(in_order)
    assert sorted(id(e) for m in grouped for e in m) == sorted(id(e) for e in batch)
    lengths = [len(e.input_ids) for m in grouped for e in m]
    assert lengths == sorted(lengths, reverse=True)

    def loss_of(micros) -> float:
        trained = trained_tokens(batch)
        with torch.no_grad():
            return sum(
                float(recipe._loss_sum(*collate(m, recipe.tokenizer.pad_token_id, "cpu"))) / trained
                for m in micros
            )

    recipe.model.train()  # as _step runs it; lora_dropout 0 makes it deterministic
    ungrouped, whole = loss_of(in_order), loss_of([batch])
    stepped, tokens = recipe._step(batch)  # the grouped micro-batches, before the optimizer moves
    assert stepped == pytest.approx(ungrouped, rel=1e-5) and stepped == pytest.approx(whole, rel=1e-5)
    assert tokens == sum(len(e.input_ids) for e in batch)


# ---- the worker: failures reach the job -------------------------------------------------------------


class NotStarted:
    """subprocess.Popen's stand-in for tests of what the scheduler starts: records the command line
    (`argv`, and every one in `NotStarted.started`) and runs nothing (`poll()` None: still running)."""

    started: list[list[str]] = []
    returncode = None

    def __init__(self, argv, **_):
        self.argv = argv
        NotStarted.started.append(argv)

    def poll(self):
        return None


def queued_job(make_client, smol_tokenizer, facts: Path) -> tuple[Any, str, str]:
    """(client, training file id, job id) of a job created through the API on `facts` and validated
    until queued (FakeEngine; max_training_jobs 0, so no worker is started)."""
    client = make_client(FakeEngine(tokenizer=smol_tokenizer, max_model_len=2048), max_training_jobs=0)
    with open(facts, "rb") as f:
        sent = {"file": (facts.name, f)}
        file_id = client.post("/v1/files", data={"purpose": "fine-tune"}, files=sent).json()["id"]
    job_id = client.post("/v1/fine_tuning/jobs", json={"model": MODEL, "training_file": file_id}).json()["id"]
    deadline = time.monotonic() + 30
    while client.get(f"/v1/fine_tuning/jobs/{job_id}").json()["status"] != "queued":
        assert time.monotonic() < deadline, "the job was never queued"
        time.sleep(0.1)
    return client, file_id, job_id


@pytest.fixture
def job(make_client, smol_tokenizer, tmp_path, tiny_model_dir):
    """A queued job of the API (FakeEngine, no worker started) and a function that writes its job.json
    for the tiny model with a given training device, runs the worker in this process, hands its exit
    code to the scheduler as a finished worker's would be, and returns the job as the API shows it."""
    facts = write(tmp_path / "facts.jsonl", phrasings=1)
    client, file_id, job_id = queued_job(make_client, smol_tokenizer, facts)
    scheduler = client.app.state.services.fine_tuning_scheduler

    def run(training_device: str) -> tuple[int, dict]:
        run_dir = scheduler.runs / job_id
        run_dir.mkdir(parents=True, exist_ok=True)
        spec = {
            "job_id": job_id,
            "base_model": MODEL,
            "model_dir": str(tiny_model_dir),
            "training_file": str(facts),
            "training_file_id": file_id,
            "validation_file": None,
            "adapter_dir": str(tmp_path / "adapter"),
            "config": config(eval_strategy="no", rehearsal_ratio=0, n_epochs=1).to_dict(),
            "training_device": training_device,
        }
        (run_dir / "job.json").write_text(json.dumps(spec))
        scheduler.db.execute("UPDATE fine_tuning_jobs SET status = 'running' WHERE id = ?", (job_id,))
        previous = signal.getsignal(signal.SIGTERM)
        try:
            code = worker.run(job_id, scheduler.data_dir)
        finally:
            signal.signal(signal.SIGTERM, previous)
        client.portal.call(scheduler._exited, job_id, code)
        return code, client.get(f"/v1/fine_tuning/jobs/{job_id}").json()

    run.client, run.job_id = client, job_id  # for the job's events
    return run


def test_out_of_memory_fails_the_job_with_what_to_lower(job, monkeypatch):
    """CUDA's out-of-memory error in a step ends the job `failed` (not re-queued, no trace) with
    error.code `out_of_memory` and a message naming the device, the allocation and the settings to
    lower or enable."""

    def out_of_memory(self, batch):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(LoRARecipe, "_step", out_of_memory)
    code, state = job("cpu")
    assert code == worker.EXIT_FAILED
    assert state["status"] == "failed" and state["error"]["code"] == "out_of_memory"
    message = state["error"]["message"]
    assert message.startswith("Out of memory on cpu while training")
    assert "2.00 GiB" in message
    for setting in ("training.micro_batch_size (now 2)", "training.max_length (now 128)"):
        assert setting in message
    assert "training.gradient_checkpointing" in message


def as_cuda(monkeypatch, free: int, total: int) -> None:
    """The worker sees a CUDA card with `free` of `total` bytes free (no GPU here: the job must stop at
    the planner, before any model is loaded)."""
    import finetune.hardware as hardware

    monkeypatch.setattr(hardware, "resolve_training_device", lambda setting, *a: "cuda:0")
    monkeypatch.setattr(hardware, "pick_dtype", lambda setting, device: torch.bfloat16)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free, total))
    monkeypatch.setattr(LoRARecipe, "setup", lambda self: pytest.fail("the model was loaded"))


def test_a_job_that_fits_the_share_but_not_the_free_memory_waits_in_the_queue(job, monkeypatch):
    """Exit EXIT_WAIT: back to `queued` (not counted as an attempt), the reason in its events once."""
    as_cuda(monkeypatch, free=GIB // 10, total=80 * GIB)
    for _ in range(2):
        code, state = job("cuda")
        assert code == worker.EXIT_WAIT
        assert state["status"] == "queued" and state["error"] is None
    events = job.client.get(f"/v1/fine_tuning/jobs/{job.job_id}/events?limit=100").json()["data"]
    waits = [e["message"] for e in events if e["message"].startswith("Waiting for GPU memory")]
    assert len(waits) == 1 and "0.1 GiB of the card is free" in waits[0], waits


def test_a_job_that_can_never_fit_the_card_fails_saying_what_to_change(job, monkeypatch):
    as_cuda(monkeypatch, free=GIB // 10, total=GIB // 5)  # a 0.2 GiB card: not even a CUDA context fits
    code, state = job("cuda")
    assert code == worker.EXIT_FAILED
    assert state["status"] == "failed" and state["error"]["code"] == "insufficient_gpu_memory"
    assert "training.max_length" in state["error"]["message"]
    assert CUDA_CONTEXT_BYTES > GIB // 5 * (1 - HEADROOM)


@pytest.mark.parametrize("setting", ["cuda:99", "gpu"] + ([] if torch.cuda.is_available() else ["cuda"]))
def test_an_unavailable_training_device_fails_the_job_at_once(job, monkeypatch, setting):
    """A training device this machine lacks (or no device at all) fails the job before the model is
    loaded, with error.code `training_device_unavailable` and a message naming the setting."""
    monkeypatch.setattr(LoRARecipe, "setup", lambda self: pytest.fail("the model was loaded"))
    code, state = job(setting)
    assert code == worker.EXIT_FAILED
    assert state["status"] == "failed" and state["error"]["code"] == "training_device_unavailable"
    assert f"RAGTUNE_TRAINING_DEVICE={setting!r}" in state["error"]["message"]


def test_training_device_values():
    """`auto` is the CUDA GPU when there is one, else the CPU; `cuda` is an indexed device; a value that
    names no device is refused by the server's settings at start-up."""
    from pydantic import ValidationError

    from server.settings import Settings

    assert resolve_training_device("auto") == ("cuda:0" if torch.cuda.is_available() else "cpu")
    assert resolve_training_device("cpu") == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(DeviceUnavailable, match="RAGTUNE_TRAINING_DEVICE='cuda'.*no CUDA GPU"):
            resolve_training_device("cuda")
    assert Settings().training_device == "auto"
    assert Settings(training_device=" CUDA:1 ").training_device == "cuda:1"
    with pytest.raises(ValidationError, match="RAGTUNE_TRAINING_DEVICE"):
        Settings(training_device="gpu0")


def test_the_scheduler_hands_the_training_device_to_the_worker(
    make_client, smol_tokenizer, tmp_path, monkeypatch
):
    """job.json, the worker's only input, carries the scheduler's training device."""
    import server.fine_tuning.scheduler as scheduler_module

    facts = write(tmp_path / "facts.jsonl", phrasings=1)
    client, file_id, job_id = queued_job(make_client, smol_tokenizer, facts)
    scheduler = client.app.state.services.fine_tuning_scheduler
    monkeypatch.setattr(scheduler_module.subprocess, "Popen", NotStarted)  # the worker is not started

    def launch():
        scheduler.training_device = "cuda:1"
        scheduler._launch(scheduler.db.one("SELECT * FROM fine_tuning_jobs WHERE id = ?", (job_id,)))
        scheduler._process, scheduler._running_job = None, None  # nothing runs: the loop must not wait on it

    client.portal.call(launch)
    spec = json.loads((scheduler.runs / job_id / "job.json").read_text())
    assert spec["training_device"] == "cuda:1"


def test_bfloat16_weights_run_the_lora_path_in_bfloat16(tiny_model_dir, tmp_path):
    """With bfloat16 base weights (a GPU, a CPU with native bf16) each LoRA layer gets its input in
    bfloat16, not a float32 copy of it (half of a 1.7B step's GPU time went to those copies and float32
    GEMMs), while the adapter's weights stay float32 for AdamW; the loss is PEFT's own float32 path's
    within bfloat16 precision, and a step trains. Float32 weights keep PEFT's path."""
    cfg = config(eval_strategy="no", rehearsal_ratio=0, lora_dropout=0.0, batch_size=4, micro_batch_size=4)
    data = lengths_data(tmp_path / "lengths.jsonl")
    recipe = LoRARecipe(cfg, tiny_model_dir, data, tmp_path / "run", Recorder(), dtype=torch.bfloat16)
    recipe.setup()
    seen: list[torch.dtype] = []
    for name, module in recipe.model.named_modules():
        if name.endswith("lora_A.default"):
            module.register_forward_pre_hook(lambda module, args: seen.append(args[0].dtype))
    ids, labels, mask = collate(recipe.examples[:4], recipe.tokenizer.pad_token_id, "cpu")
    with torch.no_grad():
        fast = float(recipe._loss_sum(ids, labels, mask))
    assert seen and set(seen) == {torch.bfloat16}
    seen.clear()
    with torch.no_grad():
        peft_path = float(recipe._loss_sum_inner(ids, labels, mask, None))  # no autocast, PEFT casts
    assert set(seen) == {torch.float32}
    assert fast == pytest.approx(peft_path, rel=2e-2)
    assert all(p.dtype == torch.float32 for p in recipe.model.parameters() if p.requires_grad)
    before = [p.detach().clone() for p in recipe.model.parameters() if p.requires_grad]
    loss, _ = recipe._step(recipe.examples[:4])
    after = [p for p in recipe.model.parameters() if p.requires_grad]
    assert loss == loss and any(not torch.equal(a, b) for a, b in zip(after, before, strict=True))

    plain = LoRARecipe(cfg, tiny_model_dir, data, tmp_path / "run32", Recorder(), dtype=torch.float32)
    assert isinstance(plain._mixed_precision(), contextlib.nullcontext)
