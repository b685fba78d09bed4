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
    # The tiny random model learns nothing the task score sees: the job says so, and still publishes.
    assert metrics["beats_base"] is (metrics["task_f1"] > metrics["base_task_f1"] + 0.005)
    warned = [d for _, d, _ in recipe.reporter.events if d.get("warning") == "no_gain_over_base"]
    assert bool(warned) is not metrics["beats_base"]
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
    # Every epoch's adapter is kept beside the published one, with its scores, as a model of its own.
    steps = [e["step"] for e in recipe.progress.epochs]
    assert steps == [recipe.steps_per_epoch, 2 * recipe.steps_per_epoch]
    saved = sorted((adapter / "checkpoints").iterdir())
    assert [d.name for d in saved] == [f"ckpt-step-{s}" for s in steps]
    for directory, epoch in zip(saved, (1, 2), strict=True):
        assert {p.name for p in directory.iterdir()} == {
            "adapter_config.json",
            "adapter_model.safetensors",
            "metrics.json",
        }
        scores = json.loads((directory / "metrics.json").read_text())
        assert scores["epoch"] == epoch and "retention" in scores and "task_f1" in scores
    last = load_file(saved[-1] / "adapter_model.safetensors")
    chosen = metrics["chosen_epoch"]
    published = load_file(saved[chosen - 1] / "adapter_model.safetensors")
    assert all(torch.equal(published[k], weights[k]) for k in weights)  # the published one is its epoch's
    assert set(last) == set(weights)


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


def test_a_run_resumed_from_an_epoch_end_knows_that_epochs_scores(tiny_model_dir, tmp_path):
    """Cancelled at the first step of epoch 2, the run resumes from epoch 1's checkpoint, whose progress
    already holds epoch 1's scores: the choice is made over both epochs."""
    data = write(tmp_path / "facts.jsonl", phrasings=1)
    probe = LoRARecipe(
        config(), tiny_model_dir, data, tmp_path / "probe", Recorder(), cache_dir=tmp_path / "c"
    )
    probe.setup()
    per_epoch = probe.total_steps // 2
    with pytest.raises(Cancelled):
        run(tiny_model_dir, tmp_path / "run", data, config(), Recorder(stop_at_step=per_epoch + 1))
    reporter = Recorder()
    resumed = run(tiny_model_dir, tmp_path / "run", data, config(), reporter)
    assert any(
        m.startswith(f"Resumed from the checkpoint at step {per_epoch}") for m, _, _ in reporter.events
    )
    assert [e["epoch"] for e in resumed.metrics["epoch_scores"]] == [1, 2]


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


def test_every_epoch_is_trained_and_the_best_allowed_one_is_published(tiny_model_dir, tmp_path, monkeypatch):
    """Retention dips at epoch 2 and recovers: training is not cut short (all 4 epochs run), and the
    published adapter is epoch 4's, the best task score among epochs whose retention is at least 0.8;
    epoch 3 scores higher but lost retention. Events and metrics say which and why."""
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
    assert recipe.task_source == "validation file" and recipe.task
    retention = iter([(57, 60), (40, 60), (45, 60), (54, 60)])
    task = iter([0.10, 0.30, 0.70, 0.50])

    def scripted_retention():
        kept, known = next(retention)
        return {
            "retention": kept / known,
            "retention_interval": [0.0, 1.0],
            "retention_kept": kept,
            "retention_known": known,
        }

    monkeypatch.setattr(recipe, "retention_scores", scripted_retention)
    monkeypatch.setattr(recipe, "task_scores", lambda: {"task_f1": next(task), "task_exact_match": 0.0})
    adapters = {}
    original = recipe.checkpoint

    def remember(scores=None):
        path = original(scores)
        if scores is not None:  # an end-of-epoch checkpoint, not a periodic one
            adapters[recipe.progress.epoch] = {
                k: v.clone() for k, v in recipe.model.named_parameters() if "lora_" in k
            }
        return path

    monkeypatch.setattr(recipe, "checkpoint", remember)
    metrics = recipe.train()
    assert metrics["epochs"] == 4 and metrics["chosen_epoch"] == 4 and metrics["task_f1"] == 0.5
    assert [e["epoch"] for e in metrics["epoch_scores"]] == [1, 2, 3, 4]
    final = dict(recipe.model.named_parameters())
    assert all(torch.equal(final[k], v) for k, v in adapters[4].items())
    assert any("Publishing epoch 4 of 4" in m for m, _, _ in reporter.events)


def test_the_chosen_epoch_adapter_is_loaded_when_it_is_not_the_last(tiny_model_dir, tmp_path, monkeypatch):
    recipe = LoRARecipe(
        config(n_epochs=3, min_retention=0.8),
        tiny_model_dir,
        write(tmp_path / "facts.jsonl", phrasings=1),
        tmp_path / "run",
        Recorder(),
        cache_dir=tmp_path / "c",
    )
    recipe.setup()
    assert recipe.task_source == "training prompts"  # too few examples to hold any out
    retention = iter([0.9, 0.9, 0.5])
    task = iter([0.2, 0.6, 0.9])
    monkeypatch.setattr(
        recipe,
        "retention_scores",
        lambda: {
            "retention": next(retention),
            "retention_interval": [0.0, 1.0],
            "retention_kept": 0,
            "retention_known": 0,
        },
    )
    monkeypatch.setattr(recipe, "task_scores", lambda: {"task_f1": next(task), "task_exact_match": 0.0})
    adapters = {}
    original = recipe.checkpoint

    def remember(scores=None):
        path = original(scores)
        if scores is not None:
            adapters[recipe.progress.epoch] = {
                k: v.clone() for k, v in recipe.model.named_parameters() if "lora_" in k
            }
        return path

    monkeypatch.setattr(recipe, "checkpoint", remember)
    metrics = recipe.train()
    assert metrics["chosen_epoch"] == 2 and metrics["epochs"] == 3
    final = dict(recipe.model.named_parameters())
    assert all(torch.equal(final[k], v) for k, v in adapters[2].items())
    assert not all(torch.equal(final[k], v) for k, v in adapters[3].items())


@pytest.mark.parametrize(
    ("epochs", "floor", "chosen"),
    [
        ([(0.9, 0.1), (0.7, 0.5), (0.9, 0.4)], 0.8, 2),  # dip and recover: the best allowed, not the first
        ([(0.9, 0.5), (0.9, 0.5)], 0.8, 0),  # ties go to the earlier epoch
        ([(0.85, 1.0), (0.91, 1.0), (0.95, 0.998)], 0.8, 0),  # not to a better retention: the earliest best
        ([(0.85, 0.9), (0.81, 1.0), (0.7, 1.0), (0.9, 1.0)], 0.8, 1),  # an earlier best, not the later
        ([(0.5, 0.9), (0.6, 0.1)], 0.8, 1),  # none allowed: the best retention
        ([(0.1, 0.2), (0.0, 0.9)], 0.0, 1),  # min_retention 0: task score alone
    ],
)
def test_choose_epoch(epochs, floor, chosen):
    from finetune.recipe import choose_epoch

    rows = [{"epoch": i + 1, "retention": r, "task_f1": t} for i, (r, t) in enumerate(epochs)]
    index, reason = choose_epoch(rows, floor)
    assert index == chosen and reason


def test_large_files_hold_out_examples_to_score_epochs(tiny_model_dir, tmp_path):
    from finetune.recipe import HELD_OUT_MIN_EXAMPLES

    data = write(tmp_path / "facts.jsonl", phrasings=3)
    lines = data.read_text().splitlines()
    assert len(lines) >= HELD_OUT_MIN_EXAMPLES, len(lines)
    reporter = Recorder()
    recipe = LoRARecipe(config(), tiny_model_dir, data, tmp_path / "run", reporter, cache_dir=tmp_path / "c")
    recipe.setup()
    held = next(d for _, d, _ in reporter.events if "held_out_lines" in d)["held_out_lines"]
    assert recipe.task_source == "held-out examples" and len(held) == len(recipe.task) == round(
        0.1 * len(lines)
    )
    again = LoRARecipe(
        config(), tiny_model_dir, data, tmp_path / "run2", Recorder(), cache_dir=tmp_path / "c"
    )
    again.setup()
    assert [m for m, _ in again.task] == [m for m, _ in recipe.task]  # reproducible by seed


def test_unscored_epochs_generate_nothing_hold_nothing_out_and_publish_the_last(
    tiny_model_dir, tmp_path, monkeypatch
):
    """`eval_strategy="no"`: no base-model answers to the retention questions, no held-out examples, no
    per-epoch scoring (all generation); every epoch is still trained and checkpointed, and the last one
    is published, saying why."""
    import finetune.recipe as recipe_module

    prompts_generated: list[str] = []
    real_generate = recipe_module.generate

    def counting(model, tokenizer, prompts, max_new_tokens, **options):
        prompts_generated.extend(map(str, prompts))
        return real_generate(model, tokenizer, prompts, max_new_tokens, **options)

    monkeypatch.setattr(recipe_module, "generate", counting)
    data = write(tmp_path / "facts.jsonl", phrasings=3)  # large enough to hold examples out otherwise
    reporter = Recorder()
    cfg = config(n_epochs=3, eval_strategy="no", rehearsal_ratio=0.0)
    recipe = run(tiny_model_dir, tmp_path / "run", data, cfg, reporter)
    assert prompts_generated == []
    assert not any("held_out_lines" in d for _, d, _ in reporter.events)
    assert len(recipe.examples) == len(data.read_text().splitlines())  # all trained on
    assert [e["epoch"] for e in recipe.progress.epochs] == [1, 2, 3]
    assert recipe.metrics["chosen_epoch"] == 3 and "eval_strategy" in recipe.metrics["chosen_reason"]
    assert "retention" not in recipe.metrics and "task_f1" not in recipe.metrics
    messages = [m for m, _, _ in reporter.events]
    assert any(m.startswith("Publishing epoch 3 of 3: epochs were not scored") for m in messages)
    with pytest.raises(ValueError, match="eval_strategy"):
        config(eval_strategy="steps")


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


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A decade is 10 years. It is used to", "A decade is 10 years."),
        ("  Paris.  ", "Paris."),
        ("中国的首都是北京。北京是一个", "中国的首都是北京。"),
        ("他说：“好。”然后", "他说：“好。”"),
        ('He said "hi." Then we', 'He said "hi."'),
        ("apples, pears, plums", "apples, pears, plums"),  # no sentence end: kept whole
        ("Version 2.5 is out and", "Version 2.5 is out and"),  # a decimal point ends nothing
        ("Is it? Yes! And", "Is it? Yes!"),
    ],
)
def test_rehearsal_answers_are_cut_to_whole_sentences(text, expected):
    from finetune.recipe import whole_sentences

    assert whole_sentences(text) == expected


def test_each_epoch_rehearses_a_new_share_of_the_pool(tiny_model_dir, tmp_path, monkeypatch):
    """Successive epochs take successive slices of one seeded order of the pool: every prompt is rehearsed
    before any is repeated, and the same seed gives the same epochs (so a resumed run sees the same).
    Only the prompts the job's epochs use are answered (the tiny random model's own answers are mostly
    empty, so a stand-in answers here)."""
    data = write(tmp_path / "facts.jsonl", phrasings=1)
    recipe = LoRARecipe(
        config(rehearsal_ratio=1.0, n_epochs=3),
        tiny_model_dir,
        data,
        tmp_path / "run",
        Recorder(),
        cache_dir=tmp_path / "c",
    )
    asked: dict[str, list[str]] = {}

    def answers(name, prompts, max_new_tokens):
        asked[name] = prompts
        return [f"An answer to {q} It has two sentences. And a cut" for q in prompts]

    monkeypatch.setattr(recipe, "_general_answers", answers)
    recipe.setup()
    assert len(asked["rehearsal"]) == 3 * 20  # 3 epochs x 20 rehearsal examples, not the whole pool
    text = recipe.tokenizer.decode(recipe.rehearsal_pool[0].input_ids)
    assert "two sentences." in text and "And a cut" not in text  # cut to whole sentences
    pool = [tuple(e.input_ids) for e in recipe.rehearsal_pool]
    count = recipe.rehearsal_count
    assert count == 20 and len(pool) > count  # one per user example, from a larger pool
    assert recipe.steps_per_epoch == -(-(len(recipe.examples) + count) // 4)
    n = -(-len(pool) // count) + 1
    epochs = [[tuple(e.input_ids) for e in recipe.epoch_rehearsal(i)] for i in range(n)]
    assert all(len(e) == count for e in epochs)
    seen = [x for e in epochs for x in e][: len(pool)]
    assert sorted(seen) == sorted(pool)  # the whole pool before a repeat
    assert epochs[0] != epochs[1]
    assert epochs == [[tuple(e.input_ids) for e in recipe.epoch_rehearsal(i)] for i in range(n)]


def test_rehearsal_rows_are_distilled_from_the_base_model(tiny_model_dir, tmp_path, monkeypatch):
    """With `rehearsal_distillation` a rehearsal row's loss is KL(base ‖ tuned): zero while the adapter
    is still the identity (LoRA B starts at zero), positive once it has moved; the user's rows keep
    cross-entropy. Without it, rehearsal rows take cross-entropy on the base model's answer tokens."""
    from finetune.recipe import collate

    data = write(tmp_path / "facts.jsonl", phrasings=1)
    recipe = LoRARecipe(
        config(rehearsal_ratio=1.0),
        tiny_model_dir,
        data,
        tmp_path / "run",
        Recorder(),
        cache_dir=tmp_path / "c",
    )
    monkeypatch.setattr(
        recipe,
        "_general_answers",
        lambda name, prompts, n: [f"Sure. {q} is a fine question." for q in prompts],
    )
    recipe.setup()
    rows = recipe.epoch_rehearsal(0)[:2] + recipe.examples[:2]
    ids, labels, mask = collate(rows, recipe.tokenizer.pad_token_id)
    rehearsal = torch.tensor([True, True, False, False])
    recipe.model.eval()  # no dropout: the comparison is exact
    with torch.no_grad():
        only_rehearsal = recipe._loss_sum(ids[:2], labels[:2], mask[:2], rehearsal[:2])
        user = recipe._loss_sum(ids[2:], labels[2:], mask[2:], rehearsal[2:])
        mixed = recipe._loss_sum(ids, labels, mask, rehearsal)
    assert float(only_rehearsal) == pytest.approx(0.0, abs=1e-4)
    assert float(user) > 1.0 and float(mixed) == pytest.approx(float(user), rel=1e-4)
    with torch.no_grad():
        for name, weight in recipe.model.named_parameters():
            if "lora_B" in name:
                weight.add_(0.05)
        assert float(recipe._loss_sum(ids[:2], labels[:2], mask[:2], rehearsal[:2])) > 1e-3
    recipe.config.rehearsal_distillation = False
    with torch.no_grad():
        assert float(recipe._loss_sum(ids[:2], labels[:2], mask[:2], rehearsal[:2])) > 1.0
