"""Hyper-parameters of one LoRA fine-tune: one dataclass and one bound table feed the API, the CLI and the
worker; OpenAI's request fields (`hyperparameters` and the `lora`/`training` extensions) become a
`TrainConfig` here, and `auto` is resolved here."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
EVAL_STRATEGIES = ("epoch", "no")
"""`TrainConfig.eval_strategy` values (a subset of transformers' `IntervalStrategy`)."""
AUTO = "auto"
HYPERPARAMETERS = ("n_epochs", "batch_size", "learning_rate_multiplier")
"""OpenAI's `hyperparameters` (also `method.supervised.hyperparameters`); each a number or `"auto"`."""


@dataclass(frozen=True)
class Bound:
    """The allowed values of one setting: `ge`/`gt` below, `le`/`lt` above (None: no limit on that side),
    `min_length` for a sequence. Its keyword names are pydantic's `Field` constraints."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    min_length: int | None = None

    def contains(self, value: Any) -> bool:
        if self.min_length is not None:
            return len(value) >= self.min_length
        return (
            (self.ge is None or value >= self.ge)
            and (self.gt is None or value > self.gt)
            and (self.le is None or value <= self.le)
            and (self.lt is None or value < self.lt)
        )

    def pydantic(self) -> dict[str, float]:
        """The bound as keyword arguments of `pydantic.Field`."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    def describe(self) -> str:
        """The bound for people: `in [1, 50]`, `in (0, 10]`, `at least 1`, `not empty`."""
        if self.min_length is not None:
            return "not empty" if self.min_length == 1 else f"at least {self.min_length} long"
        low, high = _first(self.ge, self.gt), _first(self.le, self.lt)
        if high is None:
            return f"{'at least' if self.gt is None else 'above'} {_num(low)}"
        if low is None:
            return f"{'at most' if self.lt is None else 'below'} {_num(high)}"
        left, right = "[" if self.gt is None else "(", "]" if self.lt is None else ")"
        return f"in {left}{_num(low)}, {_num(high)}{right}"


BOUNDS: dict[str, Bound] = {
    "n_epochs": Bound(ge=1, le=50),
    "batch_size": Bound(ge=1, le=256),
    "learning_rate_multiplier": Bound(gt=0, le=10),  # the API's; it scales TrainConfig.learning_rate
    "micro_batch_size": Bound(ge=1, le=256),
    "learning_rate": Bound(gt=0, lt=1),
    "warmup_ratio": Bound(ge=0, lt=1),
    "max_length": Bound(ge=16, le=32768),
    "lora_r": Bound(ge=1, le=256),
    "lora_alpha": Bound(ge=1, le=1024),
    "lora_dropout": Bound(ge=0, lt=1),
    "target_modules": Bound(min_length=1),
    "rehearsal_ratio": Bound(ge=0, le=4),
    "min_retention": Bound(ge=0, le=1),
    "held_out_share": Bound(ge=0, le=0.5),
    "seed": Bound(ge=0, le=2**31 - 1),
    "checkpoint_every": Bound(ge=1),
}
"""Every bound of every setting, written once: `TrainConfig` checks its fields against it and the API's
request model (server/fine_tuning/protocol.py) and `ragtune finetune` take their limits from it."""

REQUEST_FIELDS: dict[str, tuple[str, str]] = {
    "n_epochs": ("hyperparameters", "n_epochs"),
    "batch_size": ("hyperparameters", "batch_size"),
    "learning_rate_multiplier": ("hyperparameters", "learning_rate_multiplier"),
    "lora_r": ("lora", "r"),
    "lora_alpha": ("lora", "alpha"),
    "lora_dropout": ("lora", "dropout"),
    "target_modules": ("lora", "target_modules"),
    "train_on_prompts": ("training", "train_on_prompts"),
    "rehearsal_ratio": ("training", "rehearsal_ratio"),
    "rehearsal_distillation": ("training", "rehearsal_distillation"),
    "min_retention": ("training", "min_retention"),
    "held_out_share": ("training", "held_out_share"),
    "eval_strategy": ("training", "eval_strategy"),
    "max_length": ("training", "max_length"),
    "micro_batch_size": ("training", "micro_batch_size"),
    "gradient_checkpointing": ("training", "gradient_checkpointing"),
}
"""Where a client sets each setting in a fine-tuning job request: (request object, field name there).
`hyperparameters` is OpenAI's; `lora` and `training` are ragtune's extensions."""


@dataclass
class TrainConfig:
    """Everything that decides a training run; saved next to the adapter to reproduce it.

    Raises ValueError naming each field outside its `BOUNDS`; `micro_batch_size` is capped at
    `batch_size`."""

    n_epochs: int = 3
    """Passes over the training data (OpenAI `n_epochs`). `auto` gives about 200 examples' worth of
    passes, at least 3 and at most 10 (`resolve_auto`)."""
    batch_size: int = 8
    """Examples per optimizer step, reached by gradient accumulation over micro-batches (`auto`: an
    eighth of the examples, 1 to 8)."""
    micro_batch_size: int | None = None
    """Examples per forward/backward pass; lower it to save memory. None (`auto`): `CPU_MICRO_BATCH` on
    a CPU; on a GPU as many rows of the longest example as the free memory (or the card's training
    share) holds by common/memory_plan.py, halved and the step retried if a step still runs out."""
    learning_rate: float = 1e-3
    """Peak AdamW learning rate (OpenAI's `learning_rate_multiplier` scales this default). High for LoRA on
    purpose: small data sets must be learned in a few epochs; the retention guard limits the damage."""
    warmup_ratio: float = 0.1
    """Share of the steps spent warming the learning rate up linearly, before the cosine decay."""
    weight_decay: float = 0.0
    """AdamW weight decay on the LoRA weights."""
    max_length: int = 1024
    """Tokens per example; longer examples are truncated (and reported)."""
    lora_r: int = 16
    """LoRA rank."""
    lora_alpha: int = 32
    """LoRA scaling numerator (the update is scaled by alpha / r)."""
    lora_dropout: float = 0.05
    """Dropout on the LoRA input."""
    target_modules: tuple[str, ...] = DEFAULT_TARGETS
    """Linear layers that get a LoRA adapter."""
    train_on_prompts: bool = False
    """Also take the loss on system and user tokens (default: assistant tokens only)."""
    rehearsal_ratio: float = 1.0
    """Rehearsal examples (the base model's own answers to general prompts) per user example and epoch,
    rounded up; 0 = off. Measured (bench/finetune_quality.py, 20 facts x 3 phrasings, 10 epochs): at 1.0
    with distillation retention stayed 0.86-0.91 from epoch 3 on while recall reached 0.9-1.0; at 0.5 with
    cross-entropy rehearsal it fell to 0.76 after epoch 2, at 1.0 without distillation to 0.64 by epoch 4."""
    rehearsal_distillation: bool = True
    """On rehearsal examples, train towards the base model's whole next-token distribution (KL divergence)
    rather than only its greedy answer tokens (cross-entropy)."""
    min_retention: float = 0.8
    """After each epoch the share of general questions the base model answers correctly that the tuned
    model still answers correctly is measured; the published epoch is the best-scoring one whose
    retention is at least this (0 = retention never rules an epoch out). Every epoch asked for is
    trained."""
    held_out_share: float = 0.1
    """Without a validation file, this share of the training examples (only when there are at least
    `HELD_OUT_MIN_EXAMPLES`; chosen by `seed`) is held out of training to score each epoch; 0 = score on
    the training prompts themselves."""
    eval_strategy: str = "epoch"
    """When the tuned model is scored (the name and values of transformers' `TrainingArguments`):
    `"epoch"` measures retention and the task score after every epoch and publishes the best epoch
    (`min_retention`); `"no"` skips that scoring (minutes of generation per epoch on a CPU), and the base
    model's answers it needs, and publishes the last epoch, unmeasured. The validation loss, when there is
    a validation file, is computed either way."""
    seed: int = 0
    """Seeds data order, LoRA initialisation and dropout."""
    checkpoint_every: int = 20
    """Optimizer steps between resumable checkpoints (each epoch end is one too)."""
    max_grad_norm: float = 1.0
    """Gradient clipping."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: much less memory, about a third slower."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form notes stored with the run."""

    def __post_init__(self) -> None:
        bad = [
            f"{f.name}={getattr(self, f.name)!r} (must be {BOUNDS[f.name].describe()})"
            for f in fields(self)
            if f.name in BOUNDS
            and getattr(self, f.name) is not None
            and not BOUNDS[f.name].contains(getattr(self, f.name))
        ]
        if self.eval_strategy not in EVAL_STRATEGIES:
            bad.append(f"eval_strategy={self.eval_strategy!r} (must be one of {', '.join(EVAL_STRATEGIES)})")
        if bad:
            raise ValueError(f"invalid training setting(s): {', '.join(bad)}")
        self.target_modules = tuple(self.target_modules)
        if self.micro_batch_size is not None:
            self.micro_batch_size = min(self.micro_batch_size, self.batch_size)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (what the job row and the worker's job.json hold)."""
        out = asdict(self)
        out["target_modules"] = list(self.target_modules)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """The inverse of `to_dict`; unknown keys (notes of an older version) are ignored."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


DEFAULT_LEARNING_RATE: float = TrainConfig.learning_rate
"""What `learning_rate_multiplier` multiplies (TrainConfig's default)."""


def config_from_request(
    hyperparameters: Mapping[str, Any],
    lora: Mapping[str, Any] | None,
    training: Mapping[str, Any] | None,
    seed: int,
) -> tuple[dict[str, Any], TrainConfig]:
    """A job request's settings (each object as a dict, unset fields None or absent) as
    `(requested, config)`: `requested` is OpenAI's `hyperparameters` echo, with `"auto"` where the client
    gave none; `config` holds every explicit value, and defaults where `auto` waits for the data
    (`resolve_auto`). Fields not in `REQUEST_FIELDS` are ignored. Raises ValueError out of bounds."""
    objects = {"hyperparameters": hyperparameters, "lora": lora or {}, "training": training or {}}
    given = {
        setting: objects[obj][name]
        for setting, (obj, name) in REQUEST_FIELDS.items()
        if objects[obj].get(name) not in (None, AUTO)
    }
    requested = {name: given.get(name, AUTO) for name in HYPERPARAMETERS}
    multiplier = given.pop("learning_rate_multiplier", 1.0)
    if not BOUNDS["learning_rate_multiplier"].contains(multiplier):  # TrainConfig checks the others
        raise ValueError(f"learning_rate_multiplier must be {BOUNDS['learning_rate_multiplier'].describe()}")
    config = TrainConfig(**given, learning_rate=DEFAULT_LEARNING_RATE * multiplier, seed=seed)
    return requested, config


def resolve_auto(
    requested: Mapping[str, Any], n_examples: int, base: TrainConfig
) -> tuple[dict[str, Any], TrainConfig]:
    """Turn `"auto"` hyperparameters into numbers once the training file's size is known, as
    `(hyperparameters, config)`: the numbers OpenAI echoes, and `base` with them applied.

    Small data sets get more passes, as OpenAI's `auto` does: `n_epochs` = ceil(200 / n_examples)
    within [3, 10]; `batch_size` = n_examples // 8 within [1, 8]; `learning_rate_multiplier` = 1.0,
    which multiplies TrainConfig's default learning rate. E.g. 40 examples → 5 epochs, batch 5.
    Explicit values are kept. Raises ValueError when a value breaks a bound."""
    n = max(n_examples, 1)
    auto = {
        "n_epochs": min(10, max(3, math.ceil(200 / n))),
        "batch_size": max(1, min(8, n // 8)),
        "learning_rate_multiplier": 1.0,
    }
    numbers = {k: auto[k] if requested.get(k, AUTO) == AUTO else requested[k] for k in HYPERPARAMETERS}
    hyperparameters = {
        "n_epochs": int(numbers["n_epochs"]),
        "batch_size": int(numbers["batch_size"]),
        "learning_rate_multiplier": float(numbers["learning_rate_multiplier"]),
    }
    config = replace(  # replace() runs TrainConfig's checks again (and caps micro_batch_size)
        base,
        n_epochs=hyperparameters["n_epochs"],
        batch_size=hyperparameters["batch_size"],
        learning_rate=DEFAULT_LEARNING_RATE * hyperparameters["learning_rate_multiplier"],
    )
    return hyperparameters, config


def request_fields(settings: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The inverse of `config_from_request` for a client: settings by name (`n_epochs`, `lora_r`, …;
    None = unset) as request objects, e.g. `{"hyperparameters": {"n_epochs": 3}, "lora": {"r": 8}}`."""
    out: dict[str, dict[str, Any]] = {}
    for setting, value in settings.items():
        if value is not None:
            obj, name = REQUEST_FIELDS[setting]
            out.setdefault(obj, {})[name] = value
    return out


def _first(*values: float | None) -> float | None:
    return next((v for v in values if v is not None), None)


def _num(value: float | None) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
