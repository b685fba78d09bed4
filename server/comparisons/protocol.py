"""Wire types of /v1/comparisons (ours: OpenAI has no equivalent)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from server.chat.protocol import FileSearch
from server.protocol import WireModel


class Arm(BaseModel):
    """One side of a comparison: a model (base, `ft:` adapter or profile), with or without retrieval, and
    how it samples. Greedy by default (temperature 0, one answer per question)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    name: str = Field(min_length=1, max_length=64)
    model: str
    file_search: FileSearch | None = None
    temperature: float | None = Field(None, ge=0, le=2, description="Sampling temperature; default 0.")
    top_p: float | None = Field(None, gt=0, le=1)
    n: int = Field(
        1,
        ge=1,
        le=16,
        description="Answers sampled per question (needs temperature > 0): the question's metrics are "
        "their mean, and the report gives each metric's within-question spread.",
    )
    seed: int | None = Field(
        None,
        ge=0,
        le=2**63 - 1,
        description="Seeds a sampled arm (default 0): each question's samples are seeded from it and the "
        "question's text, so the same comparison samples the same answers.",
    )
    api: Literal["chat.completions", "responses"] = Field(
        "chat.completions",
        description="The API the arm's answers come through: 'chat.completions' (`file_search` as the chat "
        "extension) or 'responses' (POST /v1/responses with the file_search tool, as an application "
        "written for OpenAI's Responses API calls it; one answer per question, max_tokens at least 16).",
    )


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
    testing_criteria: list[dict[str, Any]] | None = Field(
        None,
        max_length=16,
        description="OpenAI Evals graders to score every answer with too (string_check; text_similarity "
        "with fuzzy_match, bleu, gleu, rouge_1 to rouge_5, rouge_l): each becomes a metric named after it "
        "(pass rate), and text_similarity adds '<name>_score'. Templates read {{item.*}} of the eval "
        "file's rows and {{sample.output_text}}, the arm's answer.",
    )
    judge_mode: Literal["pointwise", "pairwise"] = Field(
        "pointwise",
        description="'pointwise': the judge calls each answer correct or not (metric 'judge'); "
        "'pairwise': it picks the better of two arms' answers, asked twice with the order swapped "
        "(report 'judge_pairwise', with its position bias).",
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
