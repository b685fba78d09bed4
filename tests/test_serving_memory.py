"""The transformers engine's automatic batch and the serving/training split of one card, on a CPU: a fake
CUDA card (torch.cuda.mem_get_info patched) for the batch arithmetic, real Settings for the split, and a
tiny Llama for the engine's wiring. The expected numbers are worked out by hand below, not by the planner."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
import torch
from pydantic import ValidationError

from bench.bench_gpu import SHAPES
from server.engines.transformers_engine import TransformersEngine, auto_max_batch, from_settings
from server.settings import Settings
from tests.conftest import MODELS_CACHE

GIB = 1024**3
CARD = 141 * GIB  # an H200's total memory, as the driver counts it
CONTEXT = 8192

SMOLLM2_135M = {  # SmolLM2-135M-Instruct's config.json, the fields memory depends on
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "head_dim": 64,
    "vocab_size": 49152,
    "max_position_embeddings": 8192,
    "tie_word_embeddings": True,
}
SHAPE_1_7B = {  # SmolLM2-1.7B's shape, as the GPU benchmark builds it (as many KV heads as heads)
    **SHAPES["1.7b-shape"],
    "vocab_size": 49152,
    "max_position_embeddings": 8192,
    "tie_word_embeddings": True,
}


def smollm2_135m_config() -> dict:
    """The converted default model's config.json when the test cache has it, else the numbers above."""
    path = MODELS_CACHE / "smollm2-135m-instruct" / "config.json"
    return json.loads(path.read_text()) if path.is_file() else SMOLLM2_135M


@pytest.fixture
def fake_card(monkeypatch):
    """torch.cuda.mem_get_info answers (free, total) = (100 GiB, 141 GiB) for any device."""
    asked: list[object] = []

    def mem_get_info(device=None):
        asked.append(device)
        return 100 * GIB, CARD

    monkeypatch.setattr(torch.cuda, "mem_get_info", mem_get_info)
    return asked


# Parameters, by hand: embeddings (tied: once) + per layer q/o (h x heads x head_dim, twice), k/v
# (h x kv heads x head_dim, twice), gate/up/down (3 x h x intermediate), two norms (2h), + final norm (h).
PARAMS_135M = 49152 * 576 + 30 * (2 * 576 * 9 * 64 + 2 * 576 * 3 * 64 + 3 * 576 * 1536 + 2 * 576) + 576
PARAMS_1_7B = (
    49152 * 2048 + 24 * (2 * 2048 * 32 * 64 + 2 * 2048 * 32 * 64 + 3 * 2048 * 8192 + 2 * 2048) + 2048
)
# KV cache per token: keys and values x layers x KV heads x head_dim x bytes per element.
KV_TOKEN_135M_BF16 = 2 * 30 * 3 * 64 * 2
KV_TOKEN_1_7B_BF16 = 2 * 24 * 32 * 64 * 2


def test_hand_arithmetic_is_the_published_size():
    assert PARAMS_135M == 134_515_008  # SmolLM2-135M: 134.5M parameters
    assert PARAMS_1_7B == 1_711_376_384  # SmolLM2-1.7B: 1.71B parameters
    assert KV_TOKEN_135M_BF16 == 23_040 and KV_TOKEN_1_7B_BF16 == 196_608


def test_auto_batch_for_1_7b_on_a_gpu_is_what_its_kv_cache_fits(fake_card, caplog):
    budget = int(0.9 * CARD)  # 126.9 GiB
    per_sequence = KV_TOKEN_1_7B_BF16 * CONTEXT  # 1.5 GiB
    expected = (budget - PARAMS_1_7B * 2) // per_sequence
    assert expected == 82
    with caplog.at_level(logging.INFO, logger="ragtune.engine"):
        batch = auto_max_batch(SHAPE_1_7B, torch.bfloat16, "cuda", 0.9, CONTEXT)
    assert batch == 82
    assert fake_card == ["cuda"]  # the card the engine runs on is the one measured
    line = caplog.records[-1].getMessage()
    assert "max_batch_size 82" in line and "1.500 GiB per 8192-token sequence" in line
    assert "126.9 GiB" in line  # the budget it came from


def test_auto_batch_follows_the_dtype_and_the_share(fake_card):
    # float32: twice the bytes for weights and cache
    assert (int(0.9 * CARD) - PARAMS_1_7B * 4) // (KV_TOKEN_1_7B_BF16 * 2 * CONTEXT) == 40
    assert auto_max_batch(SHAPE_1_7B, torch.float32, "cuda:0", 0.9, CONTEXT) == 40
    # half the card, bf16
    assert (int(0.5 * CARD) - PARAMS_1_7B * 2) // (KV_TOKEN_1_7B_BF16 * CONTEXT) == 44
    assert auto_max_batch(SHAPE_1_7B, "bfloat16", "cuda", 0.5, CONTEXT) == 44
    # a shorter context holds more sequences
    assert (int(0.5 * CARD) - PARAMS_1_7B * 2) // (KV_TOKEN_1_7B_BF16 * 2048) == 179
    assert auto_max_batch(SHAPE_1_7B, torch.bfloat16, "cuda", 0.5, 2048) == 179


def test_auto_batch_for_smollm2_135m(fake_card):
    from transformers import LlamaConfig

    config = LlamaConfig(**smollm2_135m_config())  # a config object, as the engine passes it
    per_sequence = KV_TOKEN_135M_BF16 * CONTEXT  # 180 MiB
    assert (int(0.3 * CARD) - PARAMS_135M * 2) // per_sequence == 239
    assert auto_max_batch(config, torch.bfloat16, "cuda", 0.3, CONTEXT) == 239
    # 0.9 of the card would hold 720 such sequences: the batch stops at the engine's largest, 256
    assert (int(0.9 * CARD) - PARAMS_135M * 2) // per_sequence == 720
    assert auto_max_batch(config, torch.bfloat16, "cuda", 0.9, CONTEXT) == 256


def test_auto_batch_is_one_when_not_even_one_sequence_fits(fake_card):
    # 0.02 of 141 GiB = 2.82 GiB: the 3.19 GiB of bf16 weights alone do not fit
    assert auto_max_batch(SHAPE_1_7B, torch.bfloat16, "cuda", 0.02, CONTEXT) == 1


def test_auto_batch_on_a_cpu_is_16_whatever_the_memory(monkeypatch):
    def no_card(device=None):
        raise AssertionError("a CPU engine must not ask CUDA for memory")

    monkeypatch.setattr(torch.cuda, "mem_get_info", no_card)
    assert auto_max_batch(SHAPE_1_7B, torch.float32, "cpu", 0.9, CONTEXT) == 16
    assert auto_max_batch(SMOLLM2_135M, torch.bfloat16, "cpu", 0.1, 512) == 16


def test_auto_batch_without_a_known_shape_keeps_the_cpu_batch(fake_card):
    assert auto_max_batch({"hidden_size": 64}, torch.bfloat16, "cuda", 0.9, CONTEXT) == 16


# ---- the engine: the automatic batch on a CPU, and a queue that can fill it ------------------------


def test_engine_from_settings_decides_the_batch_and_raises_a_short_queue(tiny_model_dir, tmp_path):
    settings = Settings(data_dir=tmp_path, device="cpu", dtype="float32", max_queue=4)
    assert settings.max_batch_size is None
    engine = from_settings(settings, str(tiny_model_dir))
    try:
        assert engine.max_batch_size == 16 and engine.max_queue == 16
        assert engine.info.extra["max_batch_size"] == 16
    finally:
        asyncio.run(engine.close())


def test_engine_keeps_an_explicit_batch_and_queue(tiny_model_dir):
    engine = TransformersEngine(str(tiny_model_dir), dtype="float32", device="cpu", max_batch_size=3)
    try:
        assert engine.max_batch_size == 3 and engine.max_queue == 256
    finally:
        asyncio.run(engine.close())


# ---- the split of one card between serving and training ------------------------------------------


def test_a_split_over_the_card_is_refused_naming_both_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("RAGTUNE_GPU_MEMORY_UTILIZATION", "0.9")
    monkeypatch.setenv("RAGTUNE_TRAINING_MEMORY_UTILIZATION", "0.3")
    with pytest.raises(ValidationError) as caught:
        Settings(data_dir=tmp_path)
    (error,) = caught.value.errors()
    assert error["loc"] == ("training_memory_utilization",)  # reported as RAGTUNE_TRAINING_...
    assert "RAGTUNE_GPU_MEMORY_UTILIZATION=0.9" in error["msg"]
    assert "RAGTUNE_TRAINING_MEMORY_UTILIZATION=0.3" in error["msg"]
    assert "1.2" in error["msg"] and "0.95" in error["msg"]


def test_the_cli_reports_the_split_under_the_training_setting(tmp_path, monkeypatch, capsys):
    import typer

    from server.cli.main import load_settings

    monkeypatch.setenv("RAGTUNE_GPU_MEMORY_UTILIZATION", "0.7")
    monkeypatch.setenv("RAGTUNE_TRAINING_MEMORY_UTILIZATION", "0.3")
    with pytest.raises(typer.Exit):
        load_settings(data_dir=tmp_path)
    err = " ".join(capsys.readouterr().err.split())
    assert "invalid setting RAGTUNE_TRAINING_MEMORY_UTILIZATION: RAGTUNE_GPU_MEMORY_UTILIZATION=0.7" in err


@pytest.mark.parametrize(
    ("serving", "training"),
    [("0.5", "0.4"), ("0.9", None), ("0.9", "0.05"), ("0.3", "0.65")],
)
def test_a_split_that_holds_is_accepted(tmp_path, monkeypatch, serving, training):
    monkeypatch.setenv("RAGTUNE_GPU_MEMORY_UTILIZATION", serving)
    if training is not None:
        monkeypatch.setenv("RAGTUNE_TRAINING_MEMORY_UTILIZATION", training)
    else:
        monkeypatch.delenv("RAGTUNE_TRAINING_MEMORY_UTILIZATION", raising=False)
    s = Settings(data_dir=tmp_path)
    assert s.gpu_memory_utilization == float(serving)
    assert s.training_memory_utilization == (None if training is None else float(training))


def test_training_share_alone_is_checked_against_the_default_serving_share(tmp_path):
    with pytest.raises(ValidationError, match="RAGTUNE_GPU_MEMORY_UTILIZATION=0.9 and"):
        Settings(data_dir=tmp_path, training_memory_utilization=0.1)
    assert Settings(data_dir=tmp_path, training_memory_utilization=0.05).training_memory_utilization == 0.05


@pytest.mark.parametrize("value", [0, 1.5])
def test_training_share_bounds(tmp_path, value):
    with pytest.raises(ValidationError, match="training_memory_utilization"):
        Settings(data_dir=tmp_path, gpu_memory_utilization=0.1, training_memory_utilization=value)


def test_a_split_is_not_checked_for_a_card_serving_does_not_use(tmp_path):
    """Training on its own card (or the CPU) shares nothing with serving: 0.9 + 0.9 is fine there, and
    refused on a card vLLM's tensor parallelism also serves from."""
    for device in ("cuda:1", "cpu"):
        s = Settings(data_dir=tmp_path, training_device=device, training_memory_utilization=0.9)
        assert s.training_memory_utilization == 0.9
    with pytest.raises(ValidationError, match="RAGTUNE_TRAINING_MEMORY_UTILIZATION"):
        Settings(
            data_dir=tmp_path,
            training_device="cuda:1",
            tensor_parallel_size=2,
            training_memory_utilization=0.9,
        )


def test_the_split_is_not_checked_when_serving_uses_no_card_or_training_has_its_own(tmp_path):
    """The transformers engine on the CPU shares no card; data-parallel ranks from cuda:1 miss a one-card
    vLLM; from cuda:0 they share card 0 and the split is refused."""
    s = Settings(data_dir=tmp_path, engine="transformers", device="cpu", training_memory_utilization=0.9)
    assert s.training_memory_utilization == 0.9
    s = Settings(
        data_dir=tmp_path, training_device="cuda:1", training_processes=2, training_memory_utilization=0.9
    )
    assert s.training_memory_utilization == 0.9
    with pytest.raises(ValidationError, match="RAGTUNE_TRAINING_MEMORY_UTILIZATION"):
        Settings(data_dir=tmp_path, training_processes=2, training_memory_utilization=0.9)
