"""Wire types of /v1/vector_stores (OpenAI shapes)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from retrieval import filters as filter_grammar

AttributeValue = str | float | bool


def check_attributes(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    if len(value) > 16:
        raise ValueError("at most 16 attributes")
    for key, item in value.items():
        if len(key) > 64:
            raise ValueError(f"attribute key {key[:20]!r}… is longer than 64 characters")
        if isinstance(item, str) and len(item) > 512:
            raise ValueError(f"attribute {key!r} is longer than 512 characters")
    return value


def check_metadata(value: dict[str, str] | None) -> dict[str, str] | None:
    if value is None:
        return None
    if len(value) > 16:
        raise ValueError("at most 16 metadata pairs")
    if any(len(k) > 64 or len(v) > 512 for k, v in value.items()):
        raise ValueError("metadata keys are at most 64 characters and values at most 512")
    return value


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow")


class CreateVectorStore(_Body):
    name: str | None = None
    file_ids: list[str] = Field(default_factory=list, max_length=500)
    chunking_strategy: dict[str, Any] | None = None
    metadata: dict[str, str] | None = None
    expires_after: dict[str, Any] | None = None

    _meta = field_validator("metadata")(check_metadata)


class UpdateVectorStore(_Body):
    name: str | None = None
    metadata: dict[str, str] | None = None
    expires_after: dict[str, Any] | None = None

    _meta = field_validator("metadata")(check_metadata)


class AttachFile(_Body):
    file_id: str
    attributes: dict[str, AttributeValue] | None = None
    chunking_strategy: dict[str, Any] | None = None

    _attrs = field_validator("attributes")(check_attributes)


class UpdateFileAttributes(_Body):
    attributes: dict[str, AttributeValue] | None

    _attrs = field_validator("attributes")(check_attributes)


class BatchFile(_Body):
    file_id: str
    attributes: dict[str, AttributeValue] | None = None
    chunking_strategy: dict[str, Any] | None = None

    _attrs = field_validator("attributes")(check_attributes)


class CreateFileBatch(_Body):
    file_ids: list[str] | None = Field(None, max_length=2000)
    files: list[BatchFile] | None = Field(None, max_length=2000)
    attributes: dict[str, AttributeValue] | None = None
    chunking_strategy: dict[str, Any] | None = None

    _attrs = field_validator("attributes")(check_attributes)


class RankingOptions(_Body):
    ranker: str | None = None
    score_threshold: float = Field(0.0, ge=0.0, le=1.0)


class SearchRequest(_Body):
    query: str | list[str]
    max_num_results: int = Field(10, ge=1, le=50)
    filters: dict[str, Any] | None = None
    ranking_options: RankingOptions | None = None
    rewrite_query: bool = False

    @field_validator("filters")
    @classmethod
    def _filters(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            filter_grammar.validate(value)
        return value

    @field_validator("query")
    @classmethod
    def _query(cls, value: str | list[str]) -> str | list[str]:
        texts = [value] if isinstance(value, str) else value
        if not texts or not all(t.strip() for t in texts):
            raise ValueError("query must not be empty")
        return value

    @property
    def text(self) -> str:
        return self.query if isinstance(self.query, str) else " ".join(self.query)


Order = Literal["asc", "desc"]
