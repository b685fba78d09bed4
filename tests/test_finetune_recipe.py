"""The LoRA recipe on a tiny architecture (2 layers, hidden 64) with the real SmolLM2 tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from finetune.config import TrainConfig
from finetune.recipe import Cancelled, LoRARecipe
from tests.data.make_facts import write


class Recorder:
    def __init__(self, stop_at_step: int | None = None) -> None:
        self.events: list[tuple[str, dict, str]] = []
        self.stop_at_step = stop_at_step

    def event(self, message, data=None, kind="message"):
        self.events.append((message, data or {}, kind))

    def stop_requested(self) -> bool:
        steps = [d["step"] for _, d, k in self.events if k == "metrics" and "train_loss" in d]
        return self.stop_at_step is not None and bool(steps) and steps[-1] >= self.stop_at_step


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory, smol_tokenizer) -> Path:
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(smol_tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        eos_token_id=smol_tokenizer.eos_token_id,
        pad_token_id=smol_tokenizer.pad_token_id,
    )
    path = tmp_path_factory.mktemp("tiny")
    AutoModelForCausalLM.from_config(config).save_pretrained(path)
    smol_tokenizer.save_pretrained(path)
    return path


def config(**overrides) -> TrainConfig:
    base = {
        "n_epochs": 2,
        "batch_size": 4,
        "micro_batch_size": 2,
        "learning_rate": 5e-3,
        "lora_r": 4,
        "lora_alpha": 8,
        "lora_dropout": 0.1,
        "max_length": 128,
        "rehearsal_ratio": 0.25,
        "seed": 3,
        "checkpoint_every": 3,
        "min_retention": 0.0,
    }
    return TrainConfig(**{**base, **overrides})


def run(model_dir: Path, run_dir: Path, data: Path, cfg: TrainConfig, reporter=None) -> LoRARecipe:
    recipe = LoRARecipe(cfg, model_dir, data, run_dir, reporter or Recorder(), cache_dir=run_dir / "cache")
    recipe.setup()
    recipe.train()
    return recipe


def test_lora_trains_adapter_only_and_saves_what_serving_needs(tiny_model_dir, tmp_path):
    data = write(tmp_path / "facts.jsonl")
    recipe = LoRARecipe(
        config(), tiny_model_dir, data, tmp_path / "run", Recorder(), cache_dir=tmp_path / "c"
    )
    recipe.setup()
    base_before = {k: v.clone() for k, v in recipe.model.named_parameters() if "lora_" not in k}
    lora_before = {k: v.clone() for k, v in recipe.model.named_parameters() if "lora_" in k}
    metrics = recipe.train()
    after = dict(recipe.model.named_parameters())
    assert all(torch.equal(base_before[k], after[k]) for k in base_before)  # the base model is untouched
    assert any(not torch.equal(lora_before[k], after[k]) for k in lora_before if "lora_B" in k)
    assert all(not after[k].requires_grad for k in base_before)
    assert metrics["steps"] == 2 * recipe.steps_per_epoch and "retention" in metrics
    adapter = tmp_path / "adapter"
    recipe.save(adapter, {"base_model": "tiny"})
    assert {p.name for p in adapter.iterdir()} >= {
        "adapter_config.json",
        "adapter_model.safetensors",
        "training_config.json",
        "metrics.json",
        "chat_template.jinja",
    }
    assert json.loads((adapter / "training_config.json").read_text())["lora_r"] == 4
    weights = load_file(adapter / "adapter_model.safetensors")
    assert weights and all("lora_" in k for k in weights)


def test_loss_falls_on_repeated_data(tiny_model_dir, tmp_path):
    reporter = Recorder()
    run(tiny_model_dir, tmp_path / "run", write(tmp_path / "facts.jsonl"), config(n_epochs=4), reporter)
    losses = [d["train_loss"] for _, d, k in reporter.events if k == "metrics" and "train_loss" in d]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5
    epochs = [d for _, d, k in reporter.events if k == "metrics" and "retention" in d]
    assert [d["epoch"] for d in epochs] == [1, 2, 3, 4]


def test_interrupted_run_resumes_to_the_same_adapter(tiny_model_dir, tmp_path):
    data = write(tmp_path / "facts.jsonl")
    straight = run(tiny_model_dir, tmp_path / "straight", data, config())
    with pytest.raises(Cancelled):
        run(tiny_model_dir, tmp_path / "resumed", data, config(), Recorder(stop_at_step=5))
    reporter = Recorder()
    resumed = run(tiny_model_dir, tmp_path / "resumed", data, config(), reporter)
    assert any(m.startswith("Resumed from the checkpoint at step 3") for m, _, _ in reporter.events)
    assert resumed.progress.step == straight.progress.step
    a = {k: v for k, v in straight.model.named_parameters() if "lora_" in k}
    b = dict(resumed.model.named_parameters())
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_train_on_prompts_trains_more_tokens(tiny_model_dir, tmp_path):
    data = write(tmp_path / "facts.jsonl")
    only_answers = LoRARecipe(config(rehearsal_ratio=0), tiny_model_dir, data, tmp_path / "a", Recorder())
    everything = LoRARecipe(
        config(rehearsal_ratio=0, train_on_prompts=True), tiny_model_dir, data, tmp_path / "b", Recorder()
    )
    only_answers.setup()
    everything.setup()
    count = lambda r: sum(sum(label != -100 for label in e.labels) for e in r.examples)  # noqa: E731
    assert count(everything) > 2 * count(only_answers)


def test_config_is_checked():
    with pytest.raises(ValueError, match="lora_r"):
        TrainConfig(lora_r=0)
    with pytest.raises(ValueError, match="n_epochs"):
        TrainConfig(n_epochs=0)
    assert TrainConfig(batch_size=4, micro_batch_size=16).micro_batch_size == 4


def test_retention_guard_keeps_the_last_good_epoch(tiny_model_dir, tmp_path, monkeypatch):
    data = write(tmp_path / "facts.jsonl")
    valid = write(tmp_path / "valid.jsonl", phrasings=1)
    reporter = Recorder()
    recipe = LoRARecipe(
        config(n_epochs=4, min_retention=0.8),
        tiny_model_dir,
        data,
        tmp_path / "run",
        reporter,
        validation_file=valid,
        cache_dir=tmp_path / "c",
    )
    recipe.setup()
    scores = iter([0.95, 0.85, 0.5, 0.9])
    monkeypatch.setattr(recipe, "retention", lambda: next(scores))
    kept = {}
    original = recipe.checkpoint

    def remember():
        path = original()
        if recipe.progress.step_in_epoch == 0:  # an end-of-epoch checkpoint, not a periodic one
            kept[recipe.progress.epoch] = {
                k: v.clone() for k, v in recipe.model.named_parameters() if "lora_" in k
            }
        return path

    monkeypatch.setattr(recipe, "checkpoint", remember)
    metrics = recipe.train()
    assert metrics["stopped_early"] is True and metrics["retention"] == 0.85 and metrics["epochs"] == 2
    final = dict(recipe.model.named_parameters())
    assert all(torch.equal(final[k], v) for k, v in kept[2].items())  # epoch 2's adapter, not epoch 3's
    epochs = [d for _, d, k in reporter.events if k == "metrics" and "retention" in d and "epoch" in d]
    assert [d["epoch"] for d in epochs][:3] == [1, 2, 3] and all("valid_loss" in d for d in epochs[:3])
    assert any("Retention fell to 0.50" in m for m, _, _ in reporter.events)


def test_unknown_target_modules_fail_at_once_as_bad_data(tiny_model_dir, tmp_path):
    """A typo in `lora.target_modules` is refused before any base-model generation, as a data error the
    job reports (exit 2), not a crash that is retried three times."""
    from finetune.data import DataError

    recipe = LoRARecipe(
        config(target_modules=("q_proj", "nope_proj")),
        tiny_model_dir,
        write(tmp_path / "facts.jsonl"),
        tmp_path / "run",
        Recorder(),
        cache_dir=tmp_path / "c",
    )
    with pytest.raises(DataError, match="nope_proj") as caught:
        recipe.setup()
    assert caught.value.code == "invalid_hyperparameters" and "q_proj" in caught.value.message
    assert not (tmp_path / "c").exists()  # no base answers were generated


@pytest.mark.parametrize(
    ("ratio", "n_user", "expected"),
    [(0.5, 1, 1), (0.5, 3, 2), (0.5, 40, 20), (0.25, 1, 1), (0, 5, 0), (1, 0, 0)],
)
def test_one_example_still_gets_rehearsal(ratio, n_user, expected):
    """README promises rehearsal in every job: 0.5 × 1 example used to round to none."""
    from finetune.recipe import rehearsal_count

    assert rehearsal_count(ratio, n_user) == expected
