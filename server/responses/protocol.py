"""Wire types of /v1/responses (OpenAI's Responses API; the Open Responses specification's core).

The request is typed here; its `input` items and `tools` are read by `server.responses.items`, which
names the exact item or part it refuses (`input[2].content[0].type`). Unknown fields are accepted and
ignored, as in the rest of the API; the fields OpenAI has that change an answer here but cannot be
honoured are refused by name (`UNSUPPORTED`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from server.chat.protocol import FUNCTION_NAME, INT64_MAX, INT64_MIN, MAX_LOGPROBS
from server.protocol import WireModel

MIN_OUTPUT_TOKENS = 16
"""OpenAI's smallest `max_output_tokens` ("Expected a value >= 16")."""
METADATA_KEYS, METADATA_KEY_CHARS, METADATA_VALUE_CHARS = 16, 64, 512
"""OpenAI's limits on `metadata`: 16 pairs, keys up to 64 characters, values up to 512."""


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False, strict=True)


class TextFormat(_Body):
    """`text.format`: `text`, `json_object` or `json_schema` (flat: `name`, `schema`, `strict` beside
    `type`, unlike chat's `response_format.json_schema`)."""

    type: Literal["text", "json_object", "json_schema"] = "text"
    name: str | None = Field(None, pattern=FUNCTION_NAME)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None

    @model_validator(mode="after")
    def _schema_named(self) -> TextFormat:
        if self.type == "json_schema" and not self.name:
            raise ValueError("text.format of type json_schema needs its name")
        if self.type == "json_schema" and self.schema_ is None:
            raise ValueError("text.format of type json_schema needs its schema")
        return self


class TextConfig(_Body):
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class ReasoningConfig(_Body):
    """Accepted and ignored, as OpenAI does for models that do not reason: this one has no reasoning."""

    effort: str | None = None
    summary: str | None = None


class ResponsesRequest(_Body):
    """OpenAI's `POST /v1/responses` body. `input` is a string (one user message) or a list of items
    (messages with input_text parts, earlier output items, `function_call_output`); `tools` holds the
    `file_search` tool (at most one) and function tools; numeric fields are bounded as OpenAI's are."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"model": "smollm2-135m-instruct", "input": "What does the handbook say about leave?"},
                {
                    "model": "smollm2-135m-instruct",
                    "input": "What does the handbook say about leave?",
                    "tools": [{"type": "file_search", "vector_store_ids": ["vs_..."]}],
                },
            ]
        }
    )
    model: str
    input: str | list[dict[str, Any]] | None = None
    instructions: str | None = None
    max_output_tokens: int | None = Field(None, ge=MIN_OUTPUT_TOKENS)
    max_tool_calls: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, ge=0.0, le=1.0)
    top_logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    tools: list[dict[str, Any]] | None = Field(None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    include: list[str] | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    service_tier: str | None = None
    store: bool | None = True
    previous_response_id: str | None = None
    stream: bool | None = False
    stream_options: dict[str, Any] | None = None
    truncation: Literal["auto", "disabled"] | None = "disabled"
    background: bool | None = False
    reasoning: ReasoningConfig | None = None
    seed: int | None = Field(
        None,
        ge=INT64_MIN,
        le=INT64_MAX,
        description="Extension (as chat's): seeds sampling, for reproducible answers.",
    )

    @model_validator(mode="after")
    def _null_is_default(self) -> ResponsesRequest:
        # The official client sends null for a parameter passed as None: null means the default.
        for name in ("store", "stream", "truncation", "background"):
            if getattr(self, name) is None:
                setattr(self, name, type(self).model_fields[name].default)
        return self

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is None:
            return None
        if len(value) > METADATA_KEYS:
            raise ValueError(f"metadata holds at most {METADATA_KEYS} pairs")
        for key, text in value.items():
            if len(key) > METADATA_KEY_CHARS or len(text) > METADATA_VALUE_CHARS:
                raise ValueError(
                    f"metadata keys are at most {METADATA_KEY_CHARS} characters and values at most "
                    f"{METADATA_VALUE_CHARS}"
                )
        return value


UNSUPPORTED = {
    "prompt": "reusable prompt templates are OpenAI's dashboard feature; send `instructions` and `input`.",
    "conversation": "the Conversations API is not implemented; continue with `previous_response_id`.",
}
"""Fields OpenAI defines that this server cannot honour: a 400 naming them, never a silent ignore."""

CHAT_ONLY = {
    "messages": "the Responses API takes `input` (and `instructions`)",
    "max_tokens": "use `max_output_tokens`",
    "max_completion_tokens": "use `max_output_tokens`",
    "response_format": "use `text.format`",
    "n": "a response has one answer",
    "stop": "the Responses API has no stop sequences",
    "logit_bias": "the Responses API has no logit_bias",
    "logprobs": "use `include: ['message.output_text.logprobs']` and `top_logprobs`",
    "functions": "use function tools in `tools`",
    "function_call": "use `tool_choice`",
    "file_search": "give the `file_search` tool in `tools`",
    "continue_final_message": "the Responses API always answers a new turn",
    "add_generation_prompt": "the Responses API always answers a new turn",
    "context_management": "context compaction is not implemented; `truncation: auto` drops the oldest turns",
}
"""Chat Completions fields (and OpenAI's compaction) sent to /v1/responses: they would change the answer
there, so here they are a 400 saying what to use, not an unknown field silently ignored."""

INCLUDE_SUPPORTED = ("file_search_call.results", "message.output_text.logprobs")
INCLUDE_IGNORED = ("reasoning.encrypted_content",)
"""`include` values: the supported ones; the ignored one (this model has no reasoning to include);
any other names a tool or input this server does not have (a 400)."""


class ResponseObject(WireModel):
    """OpenAI's Response object, for the API document: the fields every response has (the service
    writes them all, see `ResponsesService.resource`); the rest pass through."""

    id: str
    object: Literal["response"] = "response"
    created_at: int
    status: Literal["queued", "in_progress", "completed", "incomplete", "failed", "cancelled"]
    model: str
    output: list[dict[str, Any]]
    usage: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    incomplete_details: dict[str, Any] | None = None


class InputItemList(BaseModel):
    object: Literal["list"] = "list"
    data: list[dict[str, Any]]
    first_id: str | None
    last_id: str | None
    has_more: bool


class DeletedResponse(BaseModel):
    id: str
    object: Literal["response.deleted"] = "response.deleted"
    deleted: bool = True
