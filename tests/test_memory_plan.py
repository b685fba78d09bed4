"""The GPU memory planner (common/memory_plan.py) and what uses it, on the CPU: the arithmetic against
PEFT's and the model's own counts, the split of one card between serving and training, a job that waits
for memory or can never fit, and the `auto` micro-batch that halves when a step runs out of memory."""

from __future__ import annotations

import json

import pytest
import torch

from common.memory_plan import (
    GIB,
    HEADROOM,
    GpuSplit,
    ModelShape,
    SplitError,
    activation_bytes_per_token,
    admit_job,
    kv_cache_bytes_per_token,
    micro_batch_for,
    plan_split,
    serving_max_batch,
    training_bytes,
)
from finetune.config import DEFAULT_TARGETS
from finetune.recipe import CPU_MICRO_BATCH, LoRARecipe
from server.state import serving_cards
from tests.test_finetune_device import NotStarted, lengths_data, queued_job
from tests.test_finetune_recipe import Recorder, config
from tests.test_serving_memory import SHAPE_1_7B


def test_the_shape_counts_the_parameters_the_model_has(tiny_model_dir):
    """Parameters and LoRA parameters from the shape alone equal the model's and PEFT's own counts."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    shape = ModelShape.from_model_dir(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert shape.parameters == sum(p.numel() for p in model.parameters())
    for targets in (DEFAULT_TARGETS, ("q_proj", "v_proj")):
        peft = get_peft_model(model, LoraConfig(r=8, target_modules=list(targets), task_type="CAUSAL_LM"))
        trainable = sum(p.numel() for p in peft.parameters() if p.requires_grad)
        assert shape.lora_parameters(8, targets) == trainable
        model = peft.unload()


def test_the_arithmetic_by_hand():
    """A 1.7B shape: 1.71e9 parameters, 196,608 bytes of bf16 KV cache per token (2 x 24 layers x 32
    heads x 64 x 2 bytes), and every estimate grows with what it counts."""
    shape = ModelShape.from_config(SHAPE_1_7B)
    assert 1.70e9 < shape.parameters < 1.72e9
    assert kv_cache_bytes_per_token(shape, 2) == 2 * 24 * 32 * 64 * 2 == 196_608
    # 100 GiB for a 3.4 GB model leaves room for int(96.8 GiB / (196,608 x 8192)) sequences of 8192
    room = 100 * GIB - shape.parameters * 2
    assert serving_max_batch(shape, 2, 100 * GIB, 8192) == room // (196_608 * 8192) == 64
    assert serving_max_batch(shape, 2, 100 * GIB, 512) == 256  # capped
    assert serving_max_batch(shape, 2, 1 * GIB, 8192) == 1  # never 0
    lora = shape.lora_parameters(16, DEFAULT_TARGETS)
    one, two = (training_bytes(shape, 2, lora, n) for n in (1024, 2048))
    assert two - one == one - training_bytes(shape, 2, lora, 0) > 0
    assert training_bytes(shape, 2, lora, 0) == shape.parameters * 2 + lora * 16
    assert activation_bytes_per_token(shape, 2, True) < activation_bytes_per_token(shape, 2, False) / 5


def test_the_micro_batch_fits_the_budget():
    shape = ModelShape.from_config(SHAPE_1_7B)
    lora = shape.lora_parameters(16, DEFAULT_TARGETS)
    budgets = [8 * GIB, 20 * GIB, 60 * GIB, 140 * GIB]
    sizes = [micro_batch_for(shape, 2, lora, b, 1024, 64) for b in budgets]
    assert sizes == sorted(sizes) and sizes[0] >= 1 and sizes[-1] <= 64
    for budget, size in zip(budgets, sizes, strict=True):
        if size > 1:  # the chosen size fits with the safety factor; one more row does not
            assert training_bytes(shape, 2, lora, size * 1024) <= budget
    assert micro_batch_for(shape, 2, lora, 1 * GIB, 1024, 64) == 1  # nothing fits: 1, the step says so
    assert micro_batch_for(shape, 2, lora, 140 * GIB, 16, 8) == 8  # never past the batch


def test_the_split_of_one_card():
    assert plan_split(0.5, True) == GpuSplit(0.5, pytest.approx(1 - HEADROOM - 0.5))
    assert plan_split(0.9, False) == GpuSplit(0.0, pytest.approx(1 - HEADROOM))  # serving is elsewhere
    assert plan_split(0.5, True, 0.4) == GpuSplit(0.5, 0.4)
    with pytest.raises(SplitError, match="RAGTUNE_GPU_MEMORY_UTILIZATION=0.9 and RAGTUNE_TRAINING_MEMORY"):
        plan_split(0.9, True, 0.3)
    with pytest.raises(SplitError, match="leaves nothing of the card for fine-tuning"):
        plan_split(0.96, True)
    assert serving_cards("cpu", 4) == [] and serving_cards("cuda:2") == [2]
    assert serving_cards("cuda", 2) == [0, 1]


def test_admission_starts_waits_or_never_fits():
    split = GpuSplit(0.5, 0.45)
    total = 80 * GIB
    assert admit_job(10 * GIB, split, total, free_bytes=40 * GIB).start
    waiting = admit_job(10 * GIB, split, total, free_bytes=5 * GIB)
    assert not waiting.start and waiting.wait and "Waiting for GPU memory" in waiting.reason
    never = admit_job(40 * GIB, split, total, free_bytes=80 * GIB)
    assert not never.start and not never.wait
    assert "training share of the card is 36.0 GiB" in never.reason and "max_length" in never.reason


def test_auto_micro_batch_is_eight_on_a_cpu_and_halves_when_a_step_runs_out(
    tiny_model_dir, tmp_path, monkeypatch
):
    """`micro_batch_size` None (auto) is CPU_MICRO_BATCH here. A micro-batch past what the device holds
    (simulated: more than 2 rows raise PyTorch's out-of-memory error) makes the step retry with half,
    saying so, until it fits; the loss of the step is the one a fitting size gives from the start."""
    cfg = config(eval_strategy="no", rehearsal_ratio=0, lora_dropout=0.0, batch_size=8, micro_batch_size=None)
    data = lengths_data(tmp_path / "lengths.jsonl")

    def make(run: str) -> LoRARecipe:
        recipe = LoRARecipe(cfg, tiny_model_dir, data, tmp_path / run, Recorder(), device="cpu")
        recipe.setup()
        return recipe

    recipe = make("a")
    assert recipe.micro_batch_size == CPU_MICRO_BATCH == 8
    real = LoRARecipe._loss_sum

    def small_device(self, ids, *args, **kwargs):
        if ids.shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")
        return real(self, ids, *args, **kwargs)

    monkeypatch.setattr(LoRARecipe, "_loss_sum", small_device)
    batch = recipe.examples[:8]
    loss, tokens = recipe._step(batch)
    retries = [d for m, d, _ in recipe.reporter.events if m.startswith("Out of memory with micro-batches")]
    assert [d["micro_batch_size"] for d in retries] == [4, 2] and recipe.micro_batch_size == 2
    assert tokens == sum(len(e.input_ids) for e in batch)

    fitting = make("b")
    fitting.micro_batch_size = 2
    assert fitting._step(fitting.examples[:8])[0] == pytest.approx(loss, rel=1e-5)

    monkeypatch.setattr(
        LoRARecipe, "_loss_sum", lambda *a, **k: (_ for _ in ()).throw(torch.OutOfMemoryError())
    )
    with pytest.raises(torch.OutOfMemoryError):  # at 1 row it is the job's out-of-memory failure
        recipe._step(batch)
    assert recipe.micro_batch_size == 1


def test_the_scheduler_hands_the_gpu_split_to_the_worker(make_client, smol_tokenizer, tmp_path, monkeypatch):
    """job.json carries the serving engine's share and cards (a CPU engine: none)."""
    import server.fine_tuning.scheduler as scheduler_module
    from tests.data.make_facts import write

    facts = write(tmp_path / "facts.jsonl", phrasings=1)
    client, _, job_id = queued_job(make_client, smol_tokenizer, facts)
    scheduler = client.app.state.services.fine_tuning_scheduler
    monkeypatch.setattr(scheduler_module.subprocess, "Popen", NotStarted)

    def launch():
        scheduler._launch(scheduler.db.one("SELECT * FROM fine_tuning_jobs WHERE id = ?", (job_id,)))
        scheduler._process, scheduler._running_job = None, None

    client.portal.call(launch)
    spec = json.loads((scheduler.runs / job_id / "job.json").read_text())
    assert spec["gpu_split"]["serving_share"] == 0.9 and spec["gpu_split"]["serving_cards"] == []


def test_a_tiny_default_training_share_on_the_serving_card_is_warned_at_start_up():
    """vLLM's default 0.9 leaves a job on the same card 0.05 of it: the server says so and what to set;
    not when training has its own card, its own share, or the card is not shared."""
    from server.settings import Settings
    from server.state import warn_small_training_share

    message = warn_small_training_share(Settings(), [0])
    assert message and "get 0.05 of the card" in message and "RAGTUNE_GPU_MEMORY_UTILIZATION" in message
    assert warn_small_training_share(Settings(gpu_memory_utilization=0.5), [0]) is None
    assert warn_small_training_share(Settings(training_device="cuda:1"), [0]) is None
    assert warn_small_training_share(Settings(training_device="cuda:1", training_processes=2), [0]) is None
    assert warn_small_training_share(Settings(training_memory_utilization=0.05), [0]) is None
    assert warn_small_training_share(Settings(), []) is None  # serving on the CPU
    assert warn_small_training_share(Settings(training_device="cpu"), [0]) is None
