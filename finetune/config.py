"""Hyper-parameters of one LoRA fine-tune: one dataclass feeds the API, the CLI and the worker."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class TrainConfig:
    """Everything that decides a training run; saved next to the adapter to reproduce it."""

    n_epochs: int = 3
    """Passes over the training data (OpenAI `n_epochs`; `auto` resolves to 3)."""
    batch_size: int = 8
    """Examples per optimizer step, reached by gradient accumulation over micro-batches."""
    micro_batch_size: int = 8
    """Examples per forward/backward pass; lower it to save memory."""
    learning_rate: float = 1e-3
    """Peak AdamW learning rate (OpenAI's `learning_rate_multiplier` scales it). High for LoRA on
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
    rehearsal_ratio: float = 0.5
    """Rehearsal examples (the base model's own answers to general prompts) per user example; 0 = off."""
    min_retention: float = 0.8
    """After each epoch the share of general questions still answered correctly is measured; below this
    the run stops and keeps the last epoch that met it (0 = never stop early)."""
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
        checks = {
            "n_epochs": 1 <= self.n_epochs <= 50,
            "batch_size": 1 <= self.batch_size <= 256,
            "micro_batch_size": 1 <= self.micro_batch_size <= 256,
            "learning_rate": 0 < self.learning_rate < 1,
            "warmup_ratio": 0 <= self.warmup_ratio < 1,
            "max_length": 16 <= self.max_length <= 32768,
            "lora_r": 1 <= self.lora_r <= 256,
            "lora_alpha": 1 <= self.lora_alpha <= 1024,
            "lora_dropout": 0 <= self.lora_dropout < 1,
            "rehearsal_ratio": 0 <= self.rehearsal_ratio <= 4,
            "min_retention": 0 <= self.min_retention <= 1,
            "checkpoint_every": self.checkpoint_every >= 1,
            "target_modules": bool(self.target_modules),
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid training setting(s): {', '.join(bad)}")
        self.target_modules = tuple(self.target_modules)
        self.micro_batch_size = min(self.micro_batch_size, self.batch_size)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["target_modules"] = list(self.target_modules)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)
