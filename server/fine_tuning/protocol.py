"""Wire types of /v1/fine_tuning/jobs (OpenAI shapes, plus the `lora` and `training` extensions) and of
ragtune's /v1/fine_tuning/validate.

Every numeric limit comes from `finetune.config.BOUNDS`, the table `TrainConfig` checks itself against,
so a limit is written once; the field names are those of `finetune.config.REQUEST_FIELDS`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Tag, field_validator, model_validator

from finetune.config import BOUNDS
from server.protocol import WireModel

Auto = Literal["auto"]
JobStatus = Literal["validating_files", "queued", "running", "succeeded", "failed", "cancelled"]


def _limits(setting: str) -> dict[str, float]:
    return BOUNDS[setting].pydantic()


# The number's branch of `int | "auto"` is tagged with its plain type name, so that a refused value is
# reported on the field itself (`hyperparameters.n_epochs`), as server/errors.py drops type tags.
Epochs = Annotated[int, Field(**_limits("n_epochs")), Tag("int")]
BatchSize = Annotated[int, Field(**_limits("batch_size")), Tag("int")]
Multiplier = Annotated[float, Field(**_limits("learning_rate_multiplier")), Tag("float")]


class _Body(BaseModel):
    """A request body: types are strict as OpenAI's are, and an unknown field is a 400 naming it
    ("Unrecognized request argument supplied", as OpenAI says): a misspelt setting (`min_retension`) or
    one put in the wrong object must not train with the default silently."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Hyperparameters(_Body):
    """OpenAI's hyper-parameters; `auto` is resolved from the training file's size
    (`finetune.config.resolve_auto`)."""

    n_epochs: Epochs | Auto = "auto"
    batch_size: BatchSize | Auto = "auto"
    learning_rate_multiplier: Multiplier | Auto = "auto"


class Supervised(_Body):
    hyperparameters: Hyperparameters | None = None


class Method(_Body):
    type: Literal["supervised"]
    supervised: Supervised | None = None


class LoraOptions(_Body):
    """Extension: the LoRA adapter's shape (TrainConfig's `lora_r`, `lora_alpha`, `lora_dropout`,
    `target_modules`)."""

    r: int | None = Field(None, **_limits("lora_r"))
    alpha: int | None = Field(None, **_limits("lora_alpha"))
    dropout: float | None = Field(None, **_limits("lora_dropout"))
    target_modules: list[str] | None = Field(None, **_limits("target_modules"))


class TrainingOptions(_Body):
    """Extension: what the loss covers and how general ability is protected (TrainConfig's fields of the
    same names)."""

    train_on_prompts: bool | None = None
    rehearsal_ratio: float | None = Field(None, **_limits("rehearsal_ratio"))
    rehearsal_distillation: bool | None = None
    min_retention: float | None = Field(None, **_limits("min_retention"))
    held_out_share: float | None = Field(None, **_limits("held_out_share"))
    eval_strategy: Literal["epoch", "no"] | None = None
    max_length: int | None = Field(None, **_limits("max_length"))
    micro_batch_size: int | None = Field(None, **_limits("micro_batch_size"))
    gradient_checkpointing: bool | None = None


class CreateJob(_Body):
    """`POST /v1/fine_tuning/jobs`, and `POST /v1/fine_tuning/validate`'s dry run of it."""

    model: str
    training_file: str
    validation_file: str | None = None
    suffix: str | None = Field(None, max_length=64)
    seed: int | None = Field(None, **_limits("seed"))
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

    @model_validator(mode="after")
    def _one_place_for_hyperparameters(self) -> CreateJob:
        """Both places may be sent (clients forward one into the other), but not with different values."""
        legacy = self.hyperparameters
        method = self.method.supervised.hyperparameters if self.method and self.method.supervised else None
        if legacy is not None and method is not None:
            given = legacy.model_fields_set & method.model_fields_set
            clash = [k for k in sorted(given) if getattr(legacy, k) != getattr(method, k)]
            if clash:
                raise ValueError(
                    f"hyperparameters and method.supervised.hyperparameters disagree on {', '.join(clash)}; "
                    "give them once (method is OpenAI's current field)"
                )
        return self

    def resolved_hyperparameters(self) -> Hyperparameters:
        """`method.supervised.hyperparameters` wins over the legacy top-level field."""
        if self.method and self.method.supervised and self.method.supervised.hyperparameters:
            return self.method.supervised.hyperparameters
        return self.hyperparameters or Hyperparameters()


# ---- responses ------------------------------------------------------------------------------------


class JobHyperparameters(WireModel):
    """The hyper-parameters a job echoes: what the client asked for until the training file is
    validated, the numbers `auto` became after."""

    n_epochs: int | Auto
    batch_size: int | Auto
    learning_rate_multiplier: float | Auto


class JobSupervised(WireModel):
    hyperparameters: JobHyperparameters


class JobMethod(WireModel):
    type: Literal["supervised"] = "supervised"
    supervised: JobSupervised


class JobError(WireModel):
    """Why a job failed: `code` (e.g. `invalid_json`, `server_error`), `message`, and `param` (for a bad
    training record, its line number)."""

    code: str
    message: str
    param: str | None = None


class FineTuningJob(WireModel):
    """OpenAI's fine-tuning job object, plus ragtune's `training_config` (every setting of the run,
    `TrainConfig.to_dict()`) and `metrics` (loss, retention, …; set when it succeeded)."""

    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    id: str
    model: str
    created_at: int
    finished_at: int | None = None
    fine_tuned_model: str | None = None
    organization_id: str = "ragtune"
    result_files: list[str] = []
    status: JobStatus
    validation_file: str | None = None
    training_file: str
    hyperparameters: JobHyperparameters
    method: JobMethod
    trained_tokens: int | None = None
    error: JobError | None = None
    seed: int
    estimated_finish: int | None = None
    integrations: list[Any] = []
    suffix: str | None = None
    metadata: dict[str, str] | None = None
    training_config: dict[str, Any]
    metrics: dict[str, Any] | None = None


class FineTuningJobEvent(WireModel):
    """One line of a job's log; `type` `metrics` events carry the step's numbers in `data`."""

    object: Literal["fine_tuning.job.event"] = "fine_tuning.job.event"
    id: str
    created_at: int
    level: str
    message: str
    data: dict[str, Any] | None = None
    type: str = "message"


class FineTuningJobCheckpoint(WireModel):
    """A resumable checkpoint, named as the model it would be (`<fine-tuned model>:ckpt-step-<n>`)."""

    object: Literal["fine_tuning.job.checkpoint"] = "fine_tuning.job.checkpoint"
    id: str
    created_at: int
    fine_tuned_model_checkpoint: str
    fine_tuning_job_id: str
    metrics: dict[str, Any]
    step_number: int


class FileProblem(WireModel):
    """Why a file cannot train: `code` and `message` as a job's `error` would give them, `param` the
    request field of the file (`training_file` or `validation_file`), `line` the record's 1-based line
    (its index in a JSON array; None: the whole file)."""

    code: str
    message: str
    param: str
    line: int | None = None


class FileValidation(WireModel):
    """`POST /v1/fine_tuning/validate` (ragtune's; OpenAI has none): what a job on these files would find
    when it validates them, without creating the job. `valid` false with `error` for a file a job would
    fail on (the check ran: still a 200). The counts are the training file's, by the job's tokenizer and
    `max_length`, set once it tokenized (also when it then had nothing to train on)."""

    object: Literal["fine_tuning.validation"] = "fine_tuning.validation"
    valid: bool
    error: FileProblem | None = None
    """The error a job on these files would fail with (None when valid)."""
    errors: list[FileProblem] = []
    """Every invalid record found, up to MAX_REPORTED_ERRORS, `error` first."""
    examples: int = 0
    tokens: int = 0
    """Tokens of all examples after truncation (what the job's event counts)."""
    trained_tokens: int = 0
    """Of `tokens`, those the loss is taken on."""
    longest: int = 0
    """Tokens of the longest example before truncation."""
    truncated: int = 0
    """Examples longer than `max_length`: they keep their answer and lose the middle of the prompt."""
    truncated_lines: list[int] = []
    empty_lines: list[int] = []
    """Examples left with nothing to train on (skipped; more than half of them fails the file)."""
    max_length: int
    encoding: str | None = None
    """The training file's text encoding as training reads it (`utf-8`, `utf-16`, `big5`, …)."""
    hyperparameters: JobHyperparameters | None = None
    """The numbers the job would train with, `auto` resolved from the file's size (None when invalid)."""
    warnings: list[str] = []
    """What the job would do to the data without failing (cut long examples, skip empty ones, read a
    file that is not UTF-8)."""
    message: str | None = None
    """The job's 'Files validated: …' event, word for word (None when invalid)."""


def job_error(code: str, message: str, param: str | None = None) -> dict[str, Any]:
    """A job's `error` object (`JobError`) as stored in its row."""
    return {"code": code, "message": message, "param": param}
