"""Chat completions: render the chat template once, build sampling params, drive the engine,
shape the answer."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
import weakref
from collections.abc import AsyncIterator
from contextlib import suppress
from dataclasses import dataclass, field

from common.chat_format import flatten_tools
from common.text import is_utf8
from server.catalog import ChatTarget, ModelCatalog
from server.chat.protocol import (
    TEXT_PARTS,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatMessage,
    Choice,
    ChoiceLogprobs,
    ChunkChoice,
    ChunkDelta,
    ChunkFunction,
    ChunkToolCall,
    FileSearch,
    FileSearchReport,
    ResponseMessage,
    TokenLogprob,
    TopLogprob,
    Usage,
)
from server.chat.rag import annotations, empty_response, prompt_format_for, rag_messages
from server.chat.tools import (
    ToolPlan,
    ToolStream,
    finish_reason,
    plan_structured,
    plan_tools,
    read_answer,
)
from server.engines.base import (
    Delta,
    EngineOverloaded,
    SamplingParams,
    StructuredOutput,
    choice_seed,
    floor_logprob,
)
from server.engines.base import TokenLogprob as EngineLogprob
from server.engines.detok import TokenBytes
from server.errors import APIError, bad_request, overloaded
from server.metrics import Metrics
from server.vector_stores.protocol import KnowledgeSearch, SearchHit, SearchQuery


@dataclass
class PreparedChat:
    """A validated request: everything needed to generate, decided before any byte is sent."""

    request: ChatCompletionRequest
    target: ChatTarget
    prompt_ids: list[int]
    params: list[SamplingParams]  # one per choice
    sources: list[SearchHit] = field(default_factory=list)
    file_search: FileSearchReport | None = None
    tools: ToolPlan = field(default_factory=ToolPlan)
    fixed_answer: str | None = None  # said instead of generating (retrieval found nothing)
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    created: int = field(default_factory=lambda: int(time.time()))
    started: float = field(default_factory=time.perf_counter)


log = logging.getLogger("ragtune")

STREAM_FAILED = "The server had an error while generating the answer; please retry."


@dataclass
class _ChoiceResult:
    text: str = ""
    finish_reason: str = "stop"
    completion_tokens: int = 0
    logprobs: list[EngineLogprob] = field(default_factory=list)


class ChatService:
    def __init__(
        self,
        catalog: ModelCatalog,
        metrics: Metrics,
        default_max_tokens: int | None = None,
        knowledge: KnowledgeSearch | None = None,
        rag_max_results: int = 4,
        rag_score_threshold: float = 0.0,
        rag_prompt_format: str = "auto",
        rag_empty_response: str = "auto",
    ) -> None:
        self.catalog = catalog
        self.metrics = metrics
        self.default_max_tokens = default_max_tokens
        self.knowledge = knowledge
        self.rag_max_results = rag_max_results
        self.rag_score_threshold = rag_score_threshold
        self.rag_prompt_format = rag_prompt_format
        self.rag_empty_response = rag_empty_response

    # ---- validation and prompt rendering ----------------------------------------------------------

    async def prepare(self, request: ChatCompletionRequest) -> PreparedChat:
        """Validate what pydantic cannot (fields OpenAI has that we refuse, content parts, token ids),
        resolve the model, retrieve, render the prompt once and build each choice's sampling params."""
        reject_unsupported(request)
        check_messages(request)
        target = self.catalog.chat_target(request.model)
        await self.catalog.ensure_loaded(target)  # a checkpoint model is loaded on its first request
        request = apply_profile(request, target.profile)
        plan = plan_tools(request)
        structured = plan_structured(request, plan)
        messages = [m.wire() for m in request.messages]
        sources, report = await self._retrieve(request, messages)

        prompt_format = self.prompt_format(request, target)

        def prompt(sources: list[SearchHit]) -> list[int]:
            # Retrieval augments the last user message; tools, calls and results then become text.
            chat = rag_messages(messages, sources, prompt_format) if report else messages
            try:
                flat = flatten_tools(chat, plan.tools)
            except ValueError as exc:
                raise bad_request(f"A tool call in the messages is not valid: {exc}", "messages") from exc
            return self.render(target, flat, request)

        prompt_ids = prompt(sources)
        room = target.engine.max_model_len - (request.answer_limit or 1)
        while sources and len(prompt_ids) > room:  # keep the best sources that fit the context
            sources = sources[:-1]
            prompt_ids = prompt(sources)
        if report:
            report.results = len(sources)
        params = self.sampling_params(
            request, len(prompt_ids), target.engine.max_model_len, target.engine.tokenizer, structured
        )
        fixed = None
        if report and not sources and not plan.active and structured is None:
            fixed = empty_response(self.rag_empty_response, report.query)
        return PreparedChat(
            request,
            target,
            prompt_ids,
            params,
            sources=sources,
            file_search=report,
            tools=plan,
            fixed_answer=fixed,
        )

    def prompt_format(self, request: ChatCompletionRequest, target: ChatTarget) -> str:
        """The RAG prompt format (server/chat/rag.py PROMPT_FORMATS) for this request: its
        `file_search.prompt_format`, else the server's `rag_prompt_format`; `auto` is resolved by the
        engine's model size."""
        setting = (request.file_search and request.file_search.prompt_format) or self.rag_prompt_format
        return prompt_format_for(setting, getattr(target.engine.info, "model_path", None))

    async def _retrieve(
        self, request: ChatCompletionRequest, messages: list[dict]
    ) -> tuple[list[SearchHit], FileSearchReport | None]:
        search = request.file_search
        if search is None:
            return [], None
        if self.knowledge is None:
            raise bad_request("Knowledge bases are not enabled on this server.", "file_search")
        questions = [m["content"] for m in messages if m["role"] == "user"]
        if not questions or not questions[-1].strip():
            raise bad_request("file_search needs a user message to search for.", "messages")
        options = search.ranking_options
        threshold = self.rag_score_threshold
        if options and options.score_threshold is not None:
            threshold = options.score_threshold
        query = SearchQuery(
            questions[-1],
            search.max_num_results or self.rag_max_results,
            search.filters,
            search.ranker,
            threshold,
            options.weights if options else None,
        )
        sources = await asyncio.to_thread(
            self.knowledge.search, search.vector_store_ids, query, "file_search"
        )
        report = FileSearchReport(vector_store_ids=search.vector_store_ids, query=questions[-1], results=0)
        return sources, report

    def render(
        self, target: ChatTarget, messages: list[dict], request: ChatCompletionRequest | None = None
    ) -> list[int]:
        """The prompt token ids, rendered once with the engine's tokenizer (vLLM's chat-template kwargs
        `add_generation_prompt` / `continue_final_message` come from the request)."""
        tokenizer = target.engine.tokenizer
        kwargs: dict = {"add_generation_prompt": request.generation_prompt if request else True}
        if request is not None and request.continue_final_message:
            kwargs["continue_final_message"] = True
        try:
            text = tokenizer.apply_chat_template(messages, tokenize=False, **kwargs)
        except Exception as exc:  # jinja raises for message orders a template refuses
            raise bad_request(f"The model's chat template rejected the messages: {exc}", "messages") from exc
        return list(tokenizer.encode(text, add_special_tokens=False))

    def sampling_params(
        self,
        request: ChatCompletionRequest,
        prompt_len: int,
        context: int,
        tokenizer=None,
        structured: StructuredOutput | None = None,
    ) -> list[SamplingParams]:
        """One SamplingParams per choice; `tokenizer` (default the served engine's) bounds token ids;
        `structured` (from `plan_structured`) constrains every choice."""
        room = context - prompt_len
        if room < 1:
            raise bad_request(
                f"This model's maximum context length is {context} tokens. However, your messages "
                f"resulted in {prompt_len} tokens.",
                "messages",
                "context_length_exceeded",
            )
        limit = request.answer_limit
        param = "max_completion_tokens" if request.max_completion_tokens else "max_tokens"
        if limit is not None and limit > room:
            raise bad_request(
                f"This model's maximum context length is {context} tokens. However, you requested "
                f"{prompt_len + limit} tokens ({prompt_len} in the messages, {limit} in the completion).",
                param,
                "context_length_exceeded",
            )
        max_tokens = limit or min(room, self.default_max_tokens or room)
        vocab = vocab_size(tokenizer or self.catalog.engine.tokenizer)
        top_k = request.top_k or 0
        base = {
            "max_tokens": max_tokens,
            "temperature": 1.0 if request.temperature is None else request.temperature,
            "top_p": 1.0 if request.top_p is None else request.top_p,
            "stop": tuple(request.stop or ()),
            "presence_penalty": request.presence_penalty,
            "frequency_penalty": request.frequency_penalty,
            "ignore_eos": request.ignore_eos,
            # -1 (vLLM's "all") and anything at least the vocabulary keep every token: torch.topk
            # refuses a k above the vocabulary size.
            "top_k": 0 if top_k < 0 or top_k >= vocab else top_k,
            "min_p": request.min_p or 0.0,
            "repetition_penalty": 1.0 if request.repetition_penalty is None else request.repetition_penalty,
            "logit_bias": token_biases(request.logit_bias, vocab),
            "logprobs": (request.top_logprobs or 0) if request.logprobs else None,
            "structured": structured,
        }
        return [SamplingParams(seed=choice_seed(request.seed, i), **base) for i in range(request.n)]

    # ---- generation --------------------------------------------------------------------------------

    async def _open(self, chat: PreparedChat) -> list[tuple[AsyncIterator[Delta], Delta]]:
        """Start every choice and wait for its first delta, so overload shows as 503 before streaming."""
        engine = chat.target.engine
        if chat.fixed_answer is not None:
            streams = [
                said(chat.fixed_answer, len(chat.prompt_ids), engine.tokenizer, p) for p in chat.params
            ]
        else:
            streams = [engine.generate(chat.prompt_ids, p, chat.target.adapter) for p in chat.params]
        firsts = await asyncio.gather(*(anext(s) for s in streams), return_exceptions=True)
        failure = next((f for f in firsts if isinstance(f, BaseException)), None)
        if failure is not None:
            for stream in streams:
                with suppress(Exception):
                    await stream.aclose()
            if isinstance(failure, EngineOverloaded):
                raise overloaded(f"The server is busy: {failure}. Retry shortly.") from failure
            if isinstance(failure, NotImplementedError):
                raise APIError(400, str(failure), param="model", code="model_not_supported") from failure
            raise failure
        self.metrics.ttft.labels(chat.target.name).observe(time.perf_counter() - chat.started)
        return list(zip(streams, firsts, strict=True))

    async def complete(self, chat: PreparedChat) -> ChatCompletion:
        opened = await self._open(chat)

        async def drain(stream: AsyncIterator[Delta], first: Delta) -> _ChoiceResult:
            result = _ChoiceResult()
            delta = first
            try:
                while True:
                    check_finish(delta)
                    result.text += delta.text
                    result.logprobs.extend(delta.logprobs or ())
                    if delta.finish_reason:
                        result.finish_reason = delta.finish_reason
                        result.completion_tokens = delta.completion_tokens
                        return result
                    delta = await anext(stream)
            finally:
                await stream.aclose()

        tasks = [asyncio.create_task(drain(s, f)) for s, f in opened]
        try:
            results = await asyncio.gather(*tasks)
        finally:
            # One choice failing (or the client leaving) must not leave its siblings generating.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        tokenizer = chat.target.engine.tokenizer
        wants_logprobs = chat.params[0].logprobs is not None
        choices = []
        for i, r in enumerate(results):
            answer = read_answer(r.text, chat.tools)
            message = ResponseMessage(
                content=answer.content,
                annotations=annotations(chat.sources),
                tool_calls=answer.tool_calls,
                function_call=answer.function_call,
            )
            choices.append(
                Choice(
                    index=i,
                    message=message,
                    finish_reason=finish_reason(r.finish_reason, answer.finish_reason),
                    logprobs=wire_logprobs(tokenizer, r.logprobs) if wants_logprobs else None,
                )
            )
        # Counted by the reasons the client sees (tool_calls included), as the stream counts them.
        usage = self._account(
            chat, [r.completion_tokens for r in results], [c.finish_reason for c in choices]
        )
        return ChatCompletion(
            id=chat.id,
            created=chat.created,
            model=chat.target.name,
            choices=choices,
            usage=usage,
            file_search=chat.file_search,
        )

    async def stream(self, chat: PreparedChat) -> AsyncIterator[str]:
        """Open the choices (errors raise here), then return the SSE event stream."""
        opened = await self._open(chat)
        return self._events(chat, opened)

    async def open_chunks(self, chat: PreparedChat) -> AsyncIterator[ChatCompletionChunk]:
        """Open the choices (errors raise here), then return the answer as ChatCompletionChunk objects:
        one role chunk per choice, content and tool-call deltas, each choice's final chunk (its
        `finish_reason`, citations and `file_search`), and last a chunk with no choices carrying the
        usage. A failure mid-generation raises from the iterator. The Responses API streams from this."""
        opened = await self._open(chat)
        return self._chunks(chat, opened)

    async def _events(
        self, chat: PreparedChat, opened: list[tuple[AsyncIterator[Delta], Delta]]
    ) -> AsyncIterator[str]:
        chunks = self._chunks(chat, opened)
        try:
            async for chunk in chunks:
                if chunk.usage is not None:
                    options = chat.request.stream_options
                    if options and options.include_usage:
                        yield f"data: {chunk.model_dump_json(exclude_none=True)}\n\n"
                    continue
                yield f"data: {chunk.model_dump_json(exclude_none=not chunk.choices)}\n\n"
            yield "data: [DONE]\n\n"
        except Exception:
            # Headers are sent: the failure becomes an OpenAI error event for this request only (the
            # trace goes to the log, never to the client), and the stream still ends with [DONE].
            log.exception("generation failed mid-stream for %s", chat.id)
            error = APIError(500, STREAM_FAILED, type="server_error").body()
            yield f"data: {json.dumps(error)}\n\n"
            yield "data: [DONE]\n\n"
        finally:
            await chunks.aclose()

    async def _chunks(
        self, chat: PreparedChat, opened: list[tuple[AsyncIterator[Delta], Delta]]
    ) -> AsyncIterator[ChatCompletionChunk]:
        queue: asyncio.Queue[tuple[int, Delta | BaseException]] = asyncio.Queue()

        async def pump(index: int, stream: AsyncIterator[Delta], first: Delta) -> None:
            try:
                await queue.put((index, first))
                if first.finish_reason:
                    return
                async for delta in stream:
                    await queue.put((index, delta))
            except Exception as exc:
                await queue.put((index, exc))
            finally:
                await stream.aclose()

        tasks = [asyncio.create_task(pump(i, s, f)) for i, (s, f) in enumerate(opened)]
        counts = [0] * len(opened)
        reasons = ["stop"] * len(opened)
        try:
            for i in range(len(opened)):
                yield self._chunk(
                    chat, [ChunkChoice(index=i, delta=ChunkDelta(role="assistant", content=""))]
                )
            remaining = len(opened)
            tokenizer = chat.target.engine.tokenizer
            readers = [ToolStream(chat.tools) for _ in opened]
            while remaining:
                index, item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                check_finish(item)
                content, calls = readers[index].feed(item.text)
                reason = None
                if item.finish_reason:
                    rest, last_calls, reason = readers[index].finish()
                    content, calls = content + rest, calls or last_calls
                if content or calls or item.logprobs:
                    logprobs = wire_logprobs(tokenizer, item.logprobs) if item.logprobs else None
                    delta = ChunkDelta(content=content or None, **_call_fields(calls))
                    yield self._chunk(chat, [ChunkChoice(index=index, delta=delta, logprobs=logprobs)])
                if item.finish_reason:
                    remaining -= 1
                    reason = finish_reason(item.finish_reason, reason)
                    counts[index], reasons[index] = item.completion_tokens, reason
                    # Citations travel on each choice's final chunk.
                    final = ChunkDelta(annotations=annotations(chat.sources) if chat.file_search else None)
                    choice = ChunkChoice(index=index, delta=final, finish_reason=reason)
                    yield self._chunk(chat, [choice], final=True)
            yield self._chunk(chat, [], self._account(chat, counts, reasons))
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _chunk(
        self, chat: PreparedChat, choices: list[ChunkChoice], usage: Usage | None = None, final: bool = False
    ) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=chat.id,
            created=chat.created,
            model=chat.target.name,
            choices=choices,
            usage=usage,
            file_search=chat.file_search if final else None,
        )

    def _account(self, chat: PreparedChat, completion_tokens: list[int], reasons: list[str]) -> Usage:
        name = chat.target.name
        prompt = len(chat.prompt_ids)
        completion = sum(completion_tokens)
        self.metrics.prompt_tokens.labels(name).inc(prompt)
        self.metrics.completion_tokens.labels(name).inc(completion)
        self.metrics.e2e.labels(name).observe(time.perf_counter() - chat.started)
        for reason in reasons:
            self.metrics.chat_requests.labels(name, reason).inc()
        return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


async def said(text: str, prompt_tokens: int, tokenizer, params: SamplingParams) -> AsyncIterator[Delta]:
    """A sequence that says `text` without the engine (the empty-retrieval answer): one delta, cut to
    `max_tokens` as a generated answer would be; its tokens counted with the model's tokenizer."""
    ids = list(tokenizer.encode(text, add_special_tokens=False))
    if len(ids) > params.max_tokens:
        ids = ids[: params.max_tokens]
        # A cut inside a character's bytes decodes to U+FFFD: the cut text ends at the last whole one.
        yield Delta(tokenizer.decode(ids).rstrip("\ufffd"), "length", prompt_tokens, len(ids))
        return
    yield Delta(text, "stop", prompt_tokens, len(ids))


def apply_profile(request: ChatCompletionRequest, profile: dict | None) -> ChatCompletionRequest:
    """A profile's system prompt, knowledge bases and sampling fill in what the request leaves unset."""
    if profile is None:
        return request
    updates: dict = {}
    if profile.get("system") and not any(m.role in ("system", "developer") for m in request.messages):
        updates["messages"] = [ChatMessage(role="system", content=profile["system"]), *request.messages]
    if request.file_search is None and profile.get("file_search") and not request._search_off:
        updates["file_search"] = FileSearch(**profile["file_search"])
    for key in ("temperature", "top_p"):
        if getattr(request, key) is None and profile.get(key) is not None:
            updates[key] = profile[key]
    if request.answer_limit is None and "max_tokens" in profile:
        updates["max_tokens"] = profile["max_tokens"]
    return request.model_copy(update=updates)


UNSUPPORTED = {
    "reasoning_effort": "this model does not reason before answering (OpenAI refuses it for such models).",
    "verbosity": "this model has no verbosity control.",
    "web_search_options": "this server does not search the web; use file_search over your knowledge bases.",
    "prediction": "predicted outputs are not implemented.",
}
"""OpenAI fields that change what an answer is on OpenAI but cannot here: a 400, never a silent ignore."""


def reject_unsupported(request: ChatCompletionRequest) -> None:
    """Fields OpenAI defines that this server does not implement: a clear 400 rather than a silent ignore.
    A `tool_choice` / `function_call` of "none" asks for a text answer, which needs no tools at all."""
    extra = request.model_extra or {}
    # What OpenAI refuses outright: tool options without the tools they steer.
    for tools, options in (
        ("tools", ("tool_choice", "parallel_tool_calls")),
        ("functions", ("function_call",)),
    ):
        for option in options:
            if getattr(request, option) is not None and not getattr(request, tools):
                raise bad_request(
                    f"Invalid value for '{option}': '{option}' is only allowed when '{tools}' are specified.",
                    option,
                    "invalid_value",
                )
    if request.tools and request.functions:
        raise bad_request("Send tools or the legacy functions, not both.", "functions")
    for name, why in UNSUPPORTED.items():
        if extra.get(name) is not None:
            raise bad_request(f"'{name}' is not supported: {why}", name, "unsupported_parameter")
    if extra.get("audio") is not None or any(m != "text" for m in extra.get("modalities") or ()):
        param = "audio" if extra.get("audio") is not None else "modalities"
        raise bad_request("This model answers in text only.", param, "unsupported_parameter")
    if request.stream_options is not None and not request.stream:
        raise bad_request("stream_options is only allowed when stream is true.", "stream_options")
    if request.top_logprobs is not None and not request.logprobs:
        raise bad_request("top_logprobs needs logprobs set to true.", "top_logprobs")
    if request.continue_final_message and request.add_generation_prompt:
        raise bad_request(
            "continue_final_message and add_generation_prompt cannot both be true.", "continue_final_message"
        )
    if request.continue_final_message and request.messages[-1].role != "assistant":
        raise bad_request(
            "continue_final_message needs the last message to be the assistant's (the one to continue).",
            "messages",
        )


def _call_fields(calls: list[ChunkToolCall] | ChunkFunction | None) -> dict:
    if calls is None:
        return {}
    return {"function_call": calls} if isinstance(calls, ChunkFunction) else {"tool_calls": calls}


def check_finish(delta: Delta) -> None:
    """Only OpenAI's finish reasons reach a client; any other is an engine bug, answered as an error."""
    if delta.finish_reason not in (None, "stop", "length"):
        raise RuntimeError(f"the engine ended a sequence with finish reason {delta.finish_reason!r}")


def check_messages(request: ChatCompletionRequest) -> None:
    """Content this text-only model cannot read gets a 400 naming the part; text must be valid UTF-8
    (JSON allows lone surrogates, which no tokenizer accepts)."""
    calls: set[str] = set()  # ids of the calls made so far: a tool message answers one of them
    for i, message in enumerate(request.messages):
        calls.update(call.id for call in message.tool_calls or ())
        if message.role == "tool" and message.tool_call_id not in calls:
            raise bad_request(
                f"messages[{i}] answers the tool call '{message.tool_call_id}', which no earlier assistant "
                "message made: a tool message must follow the message with its tool_calls.",
                f"messages[{i}].tool_call_id",
            )
        parts = message.content if isinstance(message.content, list) else []
        for j, part in enumerate(parts):
            where = f"messages[{i}].content[{j}]"
            if part.type not in TEXT_PARTS:
                raise bad_request(
                    f"This model takes text only; content parts of type '{part.type}' cannot be read. "
                    "Send text parts.",
                    f"{where}.type",
                    "unsupported_content_type",
                )
            if part.type == "refusal" and message.role != "assistant":
                raise bad_request("refusal parts belong to assistant messages.", f"{where}.type")
            if getattr(part, part.type) is None:
                missing = f"A '{part.type}' part needs its '{part.type}' field."
                raise bad_request(missing, f"{where}.{part.type}")
        if not is_utf8(message.text):
            raise bad_request("The message is not valid UTF-8 text.", f"messages[{i}].content")
    if not all(is_utf8(s) for s in request.stop or ()):
        raise bad_request("A stop sequence is not valid UTF-8 text.", "stop")


def vocab_size(tokenizer) -> int:
    """Token ids the tokenizer knows (with added special tokens): the valid `logit_bias` keys."""
    try:
        return len(tokenizer)
    except TypeError:
        return int(tokenizer.vocab_size)


def token_biases(logit_bias: dict[str, float] | None, vocab: int) -> tuple[tuple[int, float], ...]:
    """`logit_bias` as (token id, bias) pairs; a key that is not a token id of this model is a 400."""
    biases: dict[int, float] = {}
    for key, bias in (logit_bias or {}).items():
        token = int(key) if key.isascii() and key.isdigit() and str(int(key)) == key else -1
        if not 0 <= token < vocab:
            raise bad_request(
                f"logit_bias key {key!r} is not a token id of this model (0 to {vocab - 1}).", "logit_bias"
            )
        biases[token] = bias
    return tuple(sorted(biases.items()))


_TOKEN_BYTES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def wire_logprobs(tokenizer, entries: list[EngineLogprob]) -> ChoiceLogprobs:
    """OpenAI's logprobs object: each token's raw `bytes` (joined, they rebuild the answer's text) and
    its string (`bytes:\\x..` for a token holding part of a UTF-8 character, as OpenAI writes it)."""
    token = _TOKEN_BYTES.get(tokenizer)
    if token is None:
        token = _TOKEN_BYTES[tokenizer] = TokenBytes(tokenizer)
    content = []
    for entry in entries:
        text, raw = token(entry.token_id)
        tops = []
        for alt_id, alt_logprob in entry.top:
            alt_text, alt_raw = token(alt_id)
            tops.append(TopLogprob(token=alt_text, logprob=floor_logprob(alt_logprob), bytes=alt_raw))
        logprob = floor_logprob(entry.logprob)
        content.append(TokenLogprob(token=text, logprob=logprob, bytes=raw, top_logprobs=tops))
    return ChoiceLogprobs(content=content)
