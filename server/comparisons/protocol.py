"""Wire types of /v1/comparisons (ours: OpenAI has no equivalent)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from server.chat.protocol import FileSearch
from server.protocol import WireModel


class Arm(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: str = Field(min_length=1, max_length=64)
    model: str
    file_search: FileSearch | None = None


class CreateComparison(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    eval_file_id: str
    arms: list[Arm | str] | None = Field(None, min_length=1, max_length=8)
    vector_store_id: str | None = None
    fine_tuned_model: str | None = None
    max_tokens: int = Field(128, ge=1, le=2048)
    max_num_results: int = Field(4, ge=1, le=50)
    concurrency: int = Field(4, ge=1, le=32)
    judge_model: str | None = Field(
        None, description="Also score answers with this model as a judge (off by default)."
    )


class Progress(BaseModel):
    """Answers done out of `total` (questions × arms)."""

    done: int
    total: int


class ComparisonError(BaseModel):
    code: str
    message: str


class Comparison(WireModel):
    """A comparison run: `status` is `queued`, `running`, `completed` or `failed`; `report` (the metrics
    per arm, paired differences with intervals, and every answer; see evals/report.py) is set once it
    completed, and left out of list pages."""

    id: str
    object: Literal["comparison"] = "comparison"
    created_at: int
    status: Literal["queued", "running", "completed", "failed"]
    progress: Progress
    arms: list[dict[str, Any]]
    error: ComparisonError | None = None
    report: dict[str, Any] | None = None
