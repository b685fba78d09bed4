"""Wire types of /v1/embeddings (OpenAI shapes)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class EmbeddingRequest(BaseModel):
    """OpenAI's embeddings request; types are strict (`"2"` is not a number, `true` is not 1), as OpenAI's."""

    model_config = ConfigDict(extra="allow", strict=True)

    model: str
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] | None = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None
    truncate_prompt_tokens: int | None = Field(
        None,
        ge=-1,
        description="vLLM: embed only the first N tokens of each input (-1: the model's window) instead of "
        "refusing an input longer than the window.",
    )
    input_type: Literal["query", "passage"] | None = Field(
        None,
        description="Extension: the prompt of embedders trained with one (multilingual-e5-small's 'query: ' "
        "or 'passage: '); default query. Ignored by the others.",
    )


class EmbeddingItem(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingItem]
    model: str
    usage: EmbeddingUsage
