"""Wire types of /v1/fine_tuning/jobs (OpenAI shapes, plus the `lora` and `training` extensions)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Auto = Literal["auto"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow")


class Hyperparameters(_Body):
    n_epochs: int | Auto = Field("auto")
    batch_size: int | Auto = Field("auto")
    learning_rate_multiplier: float | Auto = Field("auto")

    @field_validator("n_epochs")
    @classmethod
    def _epochs(cls, v: int | str) -> int | str:
        if v != "auto" and not 1 <= int(v) <= 50:
            raise ValueError("n_epochs must be between 1 and 50")
        return v

    @field_validator("batch_size")
    @classmethod
    def _batch(cls, v: int | str) -> int | str:
        if v != "auto" and not 1 <= int(v) <= 256:
            raise ValueError("batch_size must be between 1 and 256")
        return v

    @field_validator("learning_rate_multiplier")
    @classmethod
    def _lr(cls, v: float | str) -> float | str:
        if v != "auto" and not 0 < float(v) <= 10:
            raise ValueError("learning_rate_multiplier must be in (0, 10]")
        return v


class Supervised(_Body):
    hyperparameters: Hyperparameters | None = None


class Method(_Body):
    type: Literal["supervised"]
    supervised: Supervised | None = None


class LoraOptions(_Body):
    """Extension: the LoRA adapter's shape."""

    r: int | None = Field(None, ge=1, le=256)
    alpha: int | None = Field(None, ge=1, le=1024)
    dropout: float | None = Field(None, ge=0, lt=1)
    target_modules: list[str] | None = Field(None, min_length=1)


class TrainingOptions(_Body):
    """Extension: what the loss covers and how general ability is protected."""

    train_on_prompts: bool | None = None
    rehearsal_ratio: float | None = Field(None, ge=0, le=4)
    min_retention: float | None = Field(None, ge=0, le=1)
    max_length: int | None = Field(None, ge=16, le=32768)
    micro_batch_size: int | None = Field(None, ge=1, le=256)
    gradient_checkpointing: bool | None = None


class CreateJob(_Body):
    model: str
    training_file: str
    validation_file: str | None = None
    suffix: str | None = Field(None, max_length=64)
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    hyperparameters: Hyperparameters | None = None
    method: Method | None = None
    lora: LoraOptions | None = None
    training: TrainingOptions | None = None
    metadata: dict[str, str] | None = None

    @field_validator("suffix")
    @classmethod
    def _suffix(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z0-9_-]+", v):
            raise ValueError("suffix may hold letters, digits, '-' and '_' only")
        return v

    def resolved_hyperparameters(self) -> Hyperparameters:
        """`method.supervised.hyperparameters` wins over the legacy top-level field."""
        if self.method and self.method.supervised and self.method.supervised.hyperparameters:
            return self.method.supervised.hyperparameters
        return self.hyperparameters or Hyperparameters()


def job_error(code: str, message: str, param: str | None = None) -> dict[str, Any]:
    return {"code": code, "message": message, "param": param}
