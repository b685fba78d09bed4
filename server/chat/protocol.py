"""Wire types of /v1/chat/completions (OpenAI shapes; unknown fields are accepted and ignored)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from server.vector_stores.protocol import RankingOptions, check_filters

MAX_CHOICES = 16
"""The most choices (`n`) one request may ask for: each is a sequence in the engine's batch."""
MAX_LOGPROBS = 20
"""OpenAI's most `top_logprobs` (the engines' `server.engines.base.MAX_LOGPROBS`, the same number)."""

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]
PartType = Literal["text", "refusal", "image_url", "input_audio", "file"]
TEXT_PARTS = ("text", "refusal")
"""Content parts this text-only server reads; the others (images, audio, files) get a 400 saying so."""
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class ContentPart(BaseModel):
    """One part of a message's content. `text` parts (any role) and `refusal` parts (assistant history)
    are read; `image_url`, `input_audio` and `file` parts are OpenAI's, but this model takes text only,
    so the service refuses them naming the part (`messages[i].content[j].type`)."""

    model_config = ConfigDict(extra="allow", strict=True)
    type: PartType
    text: str | None = None
    refusal: str | None = None

    @property
    def value(self) -> str:
        return (self.text if self.type == "text" else self.refusal) or ""


FUNCTION_NAME = r"^[a-zA-Z0-9_-]{1,64}$"
"""OpenAI's rule for function (and json_schema) names."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class FunctionCall(_Strict):
    """A call in an assistant message: the function's name and its arguments as JSON text."""

    name: str
    arguments: str


class MessageToolCall(_Strict):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class FunctionDefinition(_Strict):
    """A function the model may call; `parameters` is a JSON schema (an object with no properties when
    absent)."""

    name: str = Field(pattern=FUNCTION_NAME)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ChatTool(_Strict):
    type: Literal["function"]
    function: FunctionDefinition


class FunctionName(_Strict):
    name: str


class NamedToolChoice(_Strict):
    type: Literal["function"]
    function: FunctionName


class JSONSchemaSpec(_Strict):
    """`response_format.json_schema`: the answer must validate against `schema` (OpenAI's shape)."""

    name: str = Field(pattern=FUNCTION_NAME)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Strict):
    """`text` (free), `json_object` (any JSON object) or `json_schema` (one that validates)."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaSpec | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("response_format of type json_schema needs its json_schema")
        return self


class ChatMessage(BaseModel):
    """One message of the conversation. Content is required (a string, or a non-empty list of parts),
    except on an assistant message that carries `tool_calls` or `function_call` instead (OpenAI's rule);
    a `tool` message answers the call named by its `tool_call_id`."""

    model_config = ConfigDict(extra="allow", strict=True)
    role: Role
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[MessageToolCall] | None = None
    tool_call_id: str | None = None
    function_call: FunctionCall | None = None

    @field_validator("content")
    @classmethod
    def _parts(cls, value: str | list[ContentPart] | None) -> str | list[ContentPart] | None:
        if isinstance(value, list) and not value:
            raise ValueError("content must be a string or a non-empty array of content parts")
        return value

    @model_validator(mode="after")
    def _has_content(self) -> ChatMessage:
        calls = self.tool_calls or self.function_call
        if self.content is None and not (self.role == "assistant" and calls):
            raise ValueError(f"a {self.role} message needs content")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs the tool_call_id of the call it answers")
        if (self.tool_calls is not None or self.function_call is not None) and self.role != "assistant":
            raise ValueError("only assistant messages carry tool_calls or function_call")
        return self

    def wire(self) -> dict[str, Any]:
        """The message as `common.chat_format.flatten_tools` takes it (developer is system)."""
        out: dict[str, Any] = {
            "role": "system" if self.role == "developer" else self.role,
            "content": self.text,
        }
        if self.tool_calls:
            out["tool_calls"] = [call.model_dump() for call in self.tool_calls]
        if self.function_call:
            out["function_call"] = self.function_call.model_dump()
        return out

    @property
    def text(self) -> str:
        """The message's text: its string, or its text and refusal parts joined."""
        if isinstance(self.content, list):
            return "".join(part.value for part in self.content if part.type in TEXT_PARTS)
        return self.content or ""


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    include_usage: bool = False


class FileSearch(BaseModel):
    """Extension: retrieve from these knowledge bases and answer with citations (the fields of OpenAI's
    file_search tool). `max_num_results` defaults to the server's `rag_max_results`, and
    `ranking_options.score_threshold` to its `rag_score_threshold`; `filters` narrows the files by their
    attributes as in `/v1/vector_stores/{id}/search`."""

    model_config = ConfigDict(extra="allow", strict=True)
    vector_store_ids: list[str] = Field(min_length=1, max_length=16)
    max_num_results: int | None = Field(None, ge=1, le=50)
    ranking_options: RankingOptions | None = None
    filters: dict[str, Any] | None = None
    prompt_format: Literal["auto", "plain", "cited"] | None = Field(
        None,
        description="Extension: how the sources are put into the prompt: 'plain' (Context, Question, "
        "Answer), 'cited' (numbered sources, asked to cite like [1]) or 'auto' (by model size); default "
        "the server's rag_prompt_format. Citations are in the response either way.",
    )

    _filters = field_validator("filters")(check_filters)

    @property
    def ranker(self) -> str | None:
        return self.ranking_options.ranker if self.ranking_options else None


# Fields OpenAI marks nullable whose `null` means "the default" (the official client sends null for a
# parameter a caller passes as None); the validator below puts the default back.
NULL_IS_DEFAULT = (
    "stream",
    "n",
    "presence_penalty",
    "frequency_penalty",
    "logprobs",
    "ignore_eos",
    "continue_final_message",
)


class ChatCompletionRequest(BaseModel):
    """OpenAI's chat request, every numeric field bounded to its documented range (vLLM's for vLLM's
    extensions), so nothing out of range ever reaches an engine. Types are strict, as OpenAI's are:
    `true` is not a number and `"2"` is not an integer (JSON integers are accepted for floats)."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False, strict=True)

    model: str
    messages: list[ChatMessage]
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, ge=0.0, le=1.0, description="0 means greedy.")
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    n: int | None = Field(1, ge=1, le=MAX_CHOICES, description=f"At most {MAX_CHOICES} choices.")
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=INT64_MIN, le=INT64_MAX)
    presence_penalty: float | None = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(0.0, ge=-2.0, le=2.0)
    logit_bias: dict[str, float] | None = Field(
        None, description="Token id (as a string) -> bias in [-100, 100] added to its logit."
    )
    logprobs: bool | None = False
    top_logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)
    user: str | None = None
    # vLLM-compatible extensions.
    ignore_eos: bool | None = Field(False, description="vLLM: keep generating past end-of-sequence.")
    top_k: int | None = Field(
        None, ge=-1, le=INT64_MAX, description="vLLM: keep the k likeliest tokens (-1 or 0: all)."
    )
    min_p: float | None = Field(None, ge=0.0, le=1.0, description="vLLM: drop tokens below min_p x the top.")
    repetition_penalty: float | None = Field(
        None,
        ge=0.01,
        le=2.0,
        description="vLLM: > 1 discourages tokens already in the prompt or answer; 0.01 to 2 (below, the "
        "divided logits overflow).",
    )
    continue_final_message: bool | None = Field(
        False, description="vLLM: continue the last (assistant) message instead of starting a new turn."
    )
    add_generation_prompt: bool | None = Field(
        None, description="vLLM: open a new assistant turn; default true unless continue_final_message."
    )
    file_search: FileSearch | None = None
    tools: list[ChatTool] | None = Field(None, min_length=1, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    functions: list[FunctionDefinition] | None = Field(
        None, min_length=1, max_length=128, description="Deprecated by OpenAI: answered as tools."
    )
    function_call: Literal["none", "auto"] | FunctionName | None = None
    response_format: ResponseFormat | None = None
    # Set by the Responses API for tool_choice "none": no retrieval, not even a profile's knowledge bases.
    _search_off: bool = PrivateAttr(False)

    @model_validator(mode="after")
    def _null_is_default(self) -> ChatCompletionRequest:
        for name in NULL_IS_DEFAULT:
            if getattr(self, name) is None:
                setattr(self, name, type(self).model_fields[name].default)
        return self

    @field_validator("messages")
    @classmethod
    def _not_empty(cls, value: list[ChatMessage]) -> list[ChatMessage]:
        if not value:
            raise ValueError("messages must hold at least one message")
        return value

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value: str | list[str] | None) -> list[str] | None:
        if value is None:
            return None
        stops = [value] if isinstance(value, str) else value
        if len(stops) > 4:
            raise ValueError("at most 4 stop sequences")
        return [s for s in stops if s]

    @field_validator("logit_bias")
    @classmethod
    def _bias_range(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        # Token ids are checked against the model's vocabulary in the service (it knows the tokenizer).
        for key, bias in (value or {}).items():
            if not -100.0 <= bias <= 100.0:
                raise ValueError(f"the bias of token {key!r} is {bias}; biases must be within [-100, 100]")
        return value

    @property
    def answer_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    @property
    def generation_prompt(self) -> bool:
        """Whether the rendered prompt opens a new assistant turn (vLLM's `add_generation_prompt`)."""
        if self.add_generation_prompt is None:
            return not self.continue_final_message
        return self.add_generation_prompt


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    refusal: None = None
    annotations: list[dict[str, Any]] = Field(default_factory=list)
    tool_calls: list[MessageToolCall] | None = None
    function_call: FunctionCall | None = None

    @model_serializer(mode="wrap")
    def _calls_when_present(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """`tool_calls` / `function_call` are written only when the answer calls (as OpenAI's)."""
        out = handler(self)
        for key in ("tool_calls", "function_call"):
            if out.get(key) is None:
                out.pop(key, None)
        return out


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None = None


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob] = Field(default_factory=list)


class ChoiceLogprobs(BaseModel):
    """OpenAI's `choices[i].logprobs`: one entry per generated token, each with its alternatives."""

    content: list[TokenLogprob] | None = None
    refusal: None = None


FINISH_REASONS = Literal["stop", "length", "tool_calls", "function_call"]


class Choice(BaseModel):
    index: int
    message: ResponseMessage
    finish_reason: FINISH_REASONS
    logprobs: ChoiceLogprobs | None = None


class FileSearchReport(BaseModel):
    """Extension on the response: what retrieval found (`results == 0` means no source was used)."""

    vector_store_ids: list[str]
    query: str
    results: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    system_fingerprint: str | None = None
    file_search: FileSearchReport | None = None


class ChunkFunction(BaseModel):
    name: str | None = None
    arguments: str | None = None


class ChunkToolCall(BaseModel):
    """OpenAI's streamed tool call: the first delta of call `index` has its id, type and name."""

    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: ChunkFunction


class ChunkDelta(BaseModel):
    """A streamed choice's new content. Only the fields it carries are written: the last chunk's delta is
    `{}` as OpenAI's is (or holds only the citations)."""

    role: Literal["assistant"] | None = None
    content: str | None = None
    annotations: list[dict[str, Any]] | None = None
    tool_calls: list[ChunkToolCall] | None = None
    function_call: ChunkFunction | None = None

    @model_serializer(mode="wrap")
    def _only_set(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {key: value for key, value in handler(self).items() if value is not None}


class ChunkChoice(BaseModel):
    index: int
    delta: ChunkDelta
    finish_reason: FINISH_REASONS | None = None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None
    file_search: FileSearchReport | None = None
