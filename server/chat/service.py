"""Chat completions: render the chat template once, build sampling params, drive the engine,
shape the answer."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import suppress
from dataclasses import dataclass, field

from server.catalog import ChatTarget, ModelCatalog
from server.chat.protocol import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatMessage,
    Choice,
    ChunkChoice,
    ChunkDelta,
    FileSearch,
    FileSearchReport,
    ResponseMessage,
    Usage,
)
from server.chat.rag import annotations, rag_messages
from server.engines.base import Delta, EngineOverloaded, SamplingParams
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
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    created: int = field(default_factory=lambda: int(time.time()))
    started: float = field(default_factory=time.perf_counter)


@dataclass
class _ChoiceResult:
    text: str = ""
    finish_reason: str = "stop"
    completion_tokens: int = 0


class ChatService:
    def __init__(
        self,
        catalog: ModelCatalog,
        metrics: Metrics,
        default_max_tokens: int | None = None,
        knowledge: KnowledgeSearch | None = None,
        rag_max_results: int = 4,
        rag_score_threshold: float = 0.0,
    ) -> None:
        self.catalog = catalog
        self.metrics = metrics
        self.default_max_tokens = default_max_tokens
        self.knowledge = knowledge
        self.rag_max_results = rag_max_results
        self.rag_score_threshold = rag_score_threshold

    # ---- validation and prompt rendering ----------------------------------------------------------

    async def prepare(self, request: ChatCompletionRequest) -> PreparedChat:
        reject_unsupported(request)
        target = self.catalog.chat_target(request.model)
        request = apply_profile(request, target.profile)
        messages = [
            {"role": "system" if m.role == "developer" else m.role, "content": m.text}
            for m in request.messages
        ]
        sources, report = await self._retrieve(request, messages)
        prompt_ids = self.render(target, rag_messages(messages, sources) if report else messages)
        room = target.engine.max_model_len - (request.answer_limit or 1)
        while sources and len(prompt_ids) > room:  # keep the best sources that fit the context
            sources = sources[:-1]
            prompt_ids = self.render(target, rag_messages(messages, sources))
        if report:
            report.results = len(sources)
        params = self.sampling_params(request, len(prompt_ids), target.engine.max_model_len)
        return PreparedChat(request, target, prompt_ids, params, sources=sources, file_search=report)

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
        )
        sources = await asyncio.to_thread(
            self.knowledge.search, search.vector_store_ids, query, "file_search"
        )
        report = FileSearchReport(vector_store_ids=search.vector_store_ids, query=questions[-1], results=0)
        return sources, report

    def render(self, target: ChatTarget, messages: list[dict]) -> list[int]:
        tokenizer = target.engine.tokenizer
        try:
            text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception as exc:  # jinja raises for message orders a template refuses
            raise bad_request(f"The model's chat template rejected the messages: {exc}", "messages") from exc
        return list(tokenizer.encode(text, add_special_tokens=False))

    def sampling_params(
        self, request: ChatCompletionRequest, prompt_len: int, context: int
    ) -> list[SamplingParams]:
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
        base = {
            "max_tokens": max_tokens,
            "temperature": 1.0 if request.temperature is None else request.temperature,
            "top_p": 1.0 if request.top_p is None else request.top_p,
            "stop": tuple(request.stop or ()),
            "presence_penalty": request.presence_penalty,
            "frequency_penalty": request.frequency_penalty,
            "ignore_eos": request.ignore_eos,
        }
        seeds = [None if request.seed is None else request.seed + i for i in range(request.n)]
        return [SamplingParams(seed=seed, **base) for seed in seeds]

    # ---- generation --------------------------------------------------------------------------------

    async def _open(self, chat: PreparedChat) -> list[tuple[AsyncIterator[Delta], Delta]]:
        """Start every choice and wait for its first delta, so overload shows as 503 before streaming."""
        engine = chat.target.engine
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
            while True:
                result.text += delta.text
                if delta.finish_reason:
                    result.finish_reason = delta.finish_reason
                    result.completion_tokens = delta.completion_tokens
                    return result
                delta = await anext(stream)

        results = await asyncio.gather(*(drain(s, f) for s, f in opened))
        usage = self._account(
            chat, [r.completion_tokens for r in results], [r.finish_reason for r in results]
        )
        return ChatCompletion(
            id=chat.id,
            created=chat.created,
            model=chat.target.name,
            choices=[
                Choice(
                    index=i,
                    message=ResponseMessage(content=r.text, annotations=annotations(chat.sources)),
                    finish_reason=r.finish_reason,
                )
                for i, r in enumerate(results)
            ],
            usage=usage,
            file_search=chat.file_search,
        )

    async def stream(self, chat: PreparedChat) -> AsyncIterator[str]:
        """Open the choices (errors raise here), then return the SSE event stream."""
        opened = await self._open(chat)
        return self._events(chat, opened)

    async def _events(
        self, chat: PreparedChat, opened: list[tuple[AsyncIterator[Delta], Delta]]
    ) -> AsyncIterator[str]:
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
            while remaining:
                index, item = await queue.get()
                if isinstance(item, BaseException):
                    error = {
                        "error": {
                            "message": f"generation failed: {item}",
                            "type": "server_error",
                            "param": None,
                            "code": None,
                        }
                    }
                    yield f"data: {json.dumps(error)}\n\n"
                    return
                if item.text:
                    yield self._chunk(chat, [ChunkChoice(index=index, delta=ChunkDelta(content=item.text))])
                if item.finish_reason:
                    remaining -= 1
                    counts[index], reasons[index] = item.completion_tokens, item.finish_reason
                    # Citations travel on each choice's final chunk.
                    final = ChunkDelta(annotations=annotations(chat.sources) if chat.file_search else None)
                    choice = ChunkChoice(index=index, delta=final, finish_reason=item.finish_reason)
                    yield self._chunk(chat, [choice], final=True)
            usage = self._account(chat, counts, reasons)
            options = chat.request.stream_options
            if options and options.include_usage:
                yield self._chunk(chat, [], usage)
            yield "data: [DONE]\n\n"
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _chunk(
        self, chat: PreparedChat, choices: list[ChunkChoice], usage: Usage | None = None, final: bool = False
    ) -> str:
        chunk = ChatCompletionChunk(
            id=chat.id,
            created=chat.created,
            model=chat.target.name,
            choices=choices,
            usage=usage,
            file_search=chat.file_search if final else None,
        )
        return f"data: {chunk.model_dump_json(exclude_none=not choices)}\n\n"

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


def apply_profile(request: ChatCompletionRequest, profile: dict | None) -> ChatCompletionRequest:
    """A profile's system prompt, knowledge bases and sampling fill in what the request leaves unset."""
    if profile is None:
        return request
    updates: dict = {}
    if profile.get("system") and not any(m.role in ("system", "developer") for m in request.messages):
        updates["messages"] = [ChatMessage(role="system", content=profile["system"]), *request.messages]
    if request.file_search is None and profile.get("file_search"):
        updates["file_search"] = FileSearch(**profile["file_search"])
    for key in ("temperature", "top_p"):
        if getattr(request, key) is None and key in profile:
            updates[key] = profile[key]
    if request.answer_limit is None and "max_tokens" in profile:
        updates["max_tokens"] = profile["max_tokens"]
    return request.model_copy(update=updates)


def reject_unsupported(request: ChatCompletionRequest) -> None:
    """Fields OpenAI defines that this server does not implement: a clear 400 rather than a silent ignore."""
    extra = request.model_extra or {}
    if extra.get("tools"):
        raise bad_request("tools are not supported by this server.", "tools", "unsupported_parameter")
    fmt = extra.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") not in (None, "text"):
        raise bad_request(
            "Only response_format 'text' is supported.", "response_format", "unsupported_parameter"
        )
    if extra.get("logprobs"):
        raise bad_request("logprobs are not supported by this server.", "logprobs", "unsupported_parameter")
