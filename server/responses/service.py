"""The Responses API over the chat service: a Responses request becomes a chat request (the same
`ChatService.prepare` renders, retrieves and cites), and the chat service's chunks become Responses
output items and events.

One generator (`_run`) turns the chunks into OpenAI's event sequence; a streamed request sends those
events, a plain one drains them and returns the final object, and a background one drains them in a task
that `cancel` can stop. With `store` (OpenAI's default) each response is kept in SQLite
(`server.responses.store`) for `GET`, `input_items` and `previous_response_id`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
from collections.abc import AsyncIterator
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from server.chat.protocol import ChatCompletionChunk, ChatCompletionRequest, ChoiceLogprobs, Usage
from server.chat.service import STREAM_FAILED, ChatService, PreparedChat
from server.chat.tools import call_id
from server.errors import APIError, bad_request, not_found
from server.responses.items import (
    ToolSet,
    citations,
    item_id,
    normalize_input,
    read_tools,
    search_item,
    to_messages,
)
from server.responses.protocol import (
    CHAT_ONLY,
    INCLUDE_IGNORED,
    INCLUDE_SUPPORTED,
    UNSUPPORTED,
    InputItemList,
    ResponsesRequest,
    TextFormat,
)
from server.responses.store import STOPPED, ResponseStore
from server.storage.db import now

log = logging.getLogger("ragtune")

PARAMS = {
    "messages": "input",
    "max_completion_tokens": "max_output_tokens",
    "max_tokens": "max_output_tokens",
    "response_format": "text.format",
    "file_search": "tools",
    "functions": "tools",
    "logprobs": "include",
}
"""Chat request fields -> the Responses field a client sent (for the `param` of an error)."""


@dataclass
class Turn:
    """One response being made: the request, its prepared chat, and the output built so far."""

    request: ResponsesRequest
    prepared: PreparedChat
    input_items: list[dict[str, Any]]
    id: str = field(default_factory=lambda: item_id("resp"))
    created_at: int = field(default_factory=now)
    status: str = "in_progress"
    output: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    incomplete_details: dict[str, Any] | None = None
    completed_at: int | None = None

    @property
    def query(self) -> str:
        report = self.prepared.file_search
        return report.query if report else ""


class ResponsesService:
    def __init__(self, chat: ChatService, store: ResponseStore) -> None:
        self.chat = chat
        self.store = store
        self.tasks: dict[str, asyncio.Task] = {}  # background responses still running
        self.stopping = False

    # ---- create ------------------------------------------------------------------------------------

    async def create(self, request: ResponsesRequest) -> dict[str, Any] | AsyncIterator[str]:
        """The response object (completed, incomplete or failed; `queued` with `background`), or with
        `stream` the SSE event stream. Errors found before generation are raised as APIError (400, 404,
        429, ...); a failure during generation becomes a `failed` response (`response.failed` event)."""
        turn = await self._prepare(request)
        if request.background:
            turn.status = "queued"
            self._save(turn, first=True)
            task = self.tasks[turn.id] = asyncio.create_task(self._background(turn))
            task.add_done_callback(lambda _: self.tasks.pop(turn.id, None))
            return shown(self.resource(turn), request.include)
        chunks = await self._open(turn)
        self._save(turn, first=True)
        run = self._run(turn, chunks)
        if request.stream:
            return self._sse(run)
        async for _ in run:
            pass
        return shown(self.resource(turn), request.include)

    async def _prepare(self, request: ResponsesRequest) -> Turn:
        reject_unsupported(request)
        history = self.store.history(request.previous_response_id) if request.previous_response_id else []
        items = normalize_input(request.input)
        origins: list[str] = []  # the item each chat message comes from, for error params
        messages = to_messages(history, "previous_response_id", origins) + to_messages(items, None, origins)
        if request.instructions:  # this request's only: instructions are not carried to the next turn
            messages.insert(0, {"role": "system", "content": request.instructions})
            origins.insert(0, "instructions")
        tools = read_tools(request.tools)
        chat_request = chat_request_for(request, messages, tools)
        dropped = 0
        while True:
            try:
                prepared = await self.chat.prepare(chat_request)
                break
            except APIError as exc:
                if exc.code != "context_length_exceeded" or request.truncation != "auto":
                    raise translated(exc, origins, tools) from exc
                dropped = dropped * 2 or 1  # drop the oldest items, doubling, until the rest fits
                kept = drop_oldest(messages, dropped)
                if kept is None:
                    raise translated(exc, origins, tools) from exc
                update = {"messages": validated_messages([messages[k] for k in kept])}
                chat_request = chat_request.model_copy(update=update)
                origins = [origins[k] for k in kept]
        return Turn(request, prepared, items)

    async def _open(self, turn: Turn) -> AsyncIterator[ChatCompletionChunk]:
        try:
            return await self.chat.open_chunks(turn.prepared)
        except APIError as exc:
            raise translated(exc, [], ToolSet()) from exc

    async def _background(self, turn: Turn) -> None:
        try:
            chunks = await self._open(turn)
        except APIError as exc:
            turn.status, turn.error = "failed", response_error(exc)
            self._save(turn)
            return
        except asyncio.CancelledError:
            if self.stopping:
                turn.status, turn.error = "failed", {"code": "server_error", "message": STOPPED}
            else:
                turn.status = "cancelled"
            self._save(turn)
            raise
        turn.status = "in_progress"
        self._save(turn)
        async for _ in self._run(turn, chunks):
            pass

    async def _sse(self, run: AsyncIterator[dict[str, Any]]) -> AsyncIterator[str]:
        try:
            async for event in run:
                yield f"event: {event['type']}\ndata: {json.dumps(event, ensure_ascii=False)}\n\n"
        finally:
            await run.aclose()

    # ---- the event sequence --------------------------------------------------------------------------

    async def _run(
        self, turn: Turn, chunks: AsyncIterator[ChatCompletionChunk]
    ) -> AsyncIterator[dict[str, Any]]:
        """OpenAI's events for this turn, in order, each with its `sequence_number`; `turn` holds the
        output as it grows, and is saved (when stored) however the run ends."""
        counter = itertools.count()

        request, chat = turn.request, turn.prepared

        def event(kind: str, **fields: Any) -> dict[str, Any]:
            if "response" in fields:
                fields["response"] = shown(fields["response"], request.include)
            if "item" in fields:
                fields["item"] = shown_item(fields["item"], request.include)
            return {"type": kind, "sequence_number": next(counter), **fields}

        wants_logprobs = chat.params[0].logprobs is not None
        message: dict[str, Any] | None = None  # the open message item
        text, logprobs, reason, calls = "", [], "stop", 0

        def open_message() -> list[dict[str, Any]]:
            nonlocal message
            message = {"id": item_id("msg"), "type": "message", "status": "in_progress", "role": "assistant"}
            message["content"] = []
            turn.output.append(message)
            at = len(turn.output) - 1
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            return [
                event("response.output_item.added", output_index=at, item=dict(message, content=[])),
                event("response.content_part.added", item_id=message["id"], output_index=at, content_index=0,
                      part=part),
            ]  # fmt: skip

        def close_message(status: str) -> list[dict[str, Any]]:
            nonlocal message
            assert message is not None
            at, where = turn.output.index(message), {"item_id": message["id"], "content_index": 0}
            notes = citations(chat.sources, text) if chat.file_search else []
            part = {"type": "output_text", "text": text, "annotations": notes, "logprobs": logprobs}
            message["content"], message["status"] = [part], status
            events = [
                event("response.output_text.annotation.added", output_index=at, **where, annotation_index=i,
                      annotation=note)
                for i, note in enumerate(notes)
            ]  # fmt: skip
            events += [
                event("response.output_text.done", output_index=at, **where, text=text, logprobs=logprobs),
                event("response.content_part.done", output_index=at, **where, part=part),
                event("response.output_item.done", output_index=at, item=message),
            ]
            message = None
            return events

        try:
            turn.status = "in_progress"
            yield event("response.created", response=self.resource(turn))
            yield event("response.in_progress", response=self.resource(turn))
            if chat.file_search is not None:
                for e in self._search_events(turn, event):
                    yield e
            try:
                async for chunk in chunks:
                    if chunk.usage is not None:
                        turn.usage = responses_usage(chunk.usage)
                        continue
                    choice = chunk.choices[0]
                    delta = choice.delta
                    if delta.content:
                        if message is None:
                            for e in open_message():
                                yield e
                        new = wire_logprobs(choice.logprobs) if wants_logprobs else []
                        text += delta.content
                        logprobs += new
                        yield event("response.output_text.delta", item_id=message["id"],
                                    output_index=len(turn.output) - 1, content_index=0, delta=delta.content,
                                    logprobs=new)  # fmt: skip
                    for call in delta.tool_calls or ():
                        if request.max_tool_calls is not None and calls >= request.max_tool_calls:
                            continue
                        calls += 1
                        if message is not None:
                            for e in close_message("completed"):
                                yield e
                        for e in self._call_events(turn, event, call.function.name, call.function.arguments):
                            yield e
                    if choice.finish_reason:
                        reason = choice.finish_reason
            finally:
                await chunks.aclose()
            status = "incomplete" if reason == "length" else "completed"
            if message is None and not calls:
                for e in open_message():
                    yield e
            if message is not None:
                for e in close_message(status):
                    yield e
            turn.status = status
            if status == "incomplete":
                turn.incomplete_details = {"reason": "max_output_tokens"}
            else:
                turn.completed_at = now()
            yield event(f"response.{status}", response=self.resource(turn))
        except Exception as exc:
            if isinstance(exc, APIError):
                turn.error = response_error(exc)
            else:  # the trace goes to the log, never to the client
                log.exception("generation failed for response %s", turn.id)
                turn.error = {"code": "server_error", "message": STREAM_FAILED}
            turn.status = "failed"
            yield event("response.failed", response=self.resource(turn))
        finally:
            if message is not None and turn.status in ("queued", "in_progress"):  # keep what was said
                part = {"type": "output_text", "text": text, "annotations": [], "logprobs": logprobs}
                message["content"], message["status"] = [part], "incomplete"
            if turn.status in ("queued", "in_progress") and self.stopping:
                turn.status, turn.error = "failed", {"code": "server_error", "message": STOPPED}
            elif turn.status in ("queued", "in_progress"):  # cancelled, or the client left a stream
                turn.status = "cancelled"
            self._save(turn)

    def _search_events(self, turn: Turn, event) -> list[dict[str, Any]]:
        at, search_id = len(turn.output), item_id("fs")
        turn.output.append(search_item([], turn.query, "in_progress", search_id))
        events = [event("response.output_item.added", output_index=at, item=turn.output[at])]
        for stage in ("in_progress", "searching", "completed"):
            events.append(event(f"response.file_search_call.{stage}", output_index=at, item_id=search_id))
        # Kept whole (a GET with `include` shows them); `shown_item` hides them unless included.
        turn.output[at] = search_item(turn.prepared.sources, turn.query, "completed", search_id)
        events.append(event("response.output_item.done", output_index=at, item=turn.output[at]))
        return events

    def _call_events(
        self, turn: Turn, event, name: str | None, arguments: str | None
    ) -> list[dict[str, Any]]:
        at, arguments = len(turn.output), arguments or ""
        item = {"id": item_id("fc"), "type": "function_call", "status": "in_progress", "call_id": call_id()}
        item.update(name=name or "", arguments="")
        turn.output.append(item)
        events = [event("response.output_item.added", output_index=at, item=dict(item))]
        events.append(
            event(
                "response.function_call_arguments.delta", item_id=item["id"], output_index=at, delta=arguments
            )
        )
        item.update(arguments=arguments, status="completed")
        events.append(
            event("response.function_call_arguments.done", item_id=item["id"], output_index=at,
                  name=item["name"], arguments=arguments)
        )  # fmt: skip
        events.append(event("response.output_item.done", output_index=at, item=item))
        return events

    # ---- the object, and stored responses --------------------------------------------------------------

    def resource(self, turn: Turn) -> dict[str, Any]:
        """The response object: OpenAI's fields (and the Open Responses specification's, which has the
        same), echoing the settings the answer was made with (a profile's included)."""
        request, chat = turn.request, turn.prepared.request
        text_format = (request.text.format if request.text else None) or None
        return {
            "id": turn.id,
            "object": "response",
            "created_at": turn.created_at,
            "completed_at": turn.completed_at,
            "status": turn.status,
            "background": bool(request.background),
            "error": turn.error,
            "incomplete_details": turn.incomplete_details,
            "instructions": request.instructions,
            "max_output_tokens": request.max_output_tokens,
            "max_tool_calls": request.max_tool_calls,
            "model": turn.prepared.target.name,
            "output": turn.output,
            "parallel_tool_calls": request.parallel_tool_calls is not False,
            "previous_response_id": request.previous_response_id,
            "prompt_cache_key": request.prompt_cache_key,
            "reasoning": {"effort": None, "summary": None},
            "safety_identifier": request.safety_identifier,
            "service_tier": "default",
            "store": bool(request.store),
            "temperature": 1.0 if chat.temperature is None else chat.temperature,
            "text": {"format": echo_format(text_format), "verbosity": "medium"},
            "tool_choice": request.tool_choice or "auto",
            "tools": echo_tools(
                effective_tools(request.tools, chat), self.chat.rag_max_results, self.chat.rag_score_threshold
            ),
            "top_logprobs": request.top_logprobs or 0,
            "top_p": 1.0 if chat.top_p is None else chat.top_p,
            "presence_penalty": chat.presence_penalty or 0.0,
            "frequency_penalty": chat.frequency_penalty or 0.0,
            "truncation": request.truncation,
            "usage": turn.usage,
            "user": request.user,
            "metadata": request.metadata or {},
        }

    def _save(self, turn: Turn, first: bool = False) -> None:
        if turn.request.store:
            self.store.save(self.resource(turn), turn.input_items if first else None)

    def get(self, response_id: str, include: list[str] | None = None) -> dict[str, Any]:
        """The stored response, with the `file_search_call` results when `include` asks for them."""
        response = self.store.get(response_id)
        if response is None:
            raise not_found(f"No response with id '{response_id}' (only stored responses can be read).")
        return shown(response, include)

    def input_items(
        self, response_id: str, limit: int = 20, order: str = "desc", after: str | None = None
    ) -> InputItemList:
        """The response's own input items (not its conversation's earlier ones), `order` by position
        (`desc`: newest first), `limit` after the item `after`."""
        items = self.store.input_items(response_id)
        if items is None:
            raise not_found(f"No response with id '{response_id}'.")
        if order == "desc":
            items = items[::-1]
        if after is not None:
            ids = [item.get("id") for item in items]
            if after not in ids:
                raise bad_request(f"No input item with id '{after}' in this response.", "after")
            items = items[ids.index(after) + 1 :]
        page = items[:limit]
        return InputItemList(
            data=page,
            first_id=page[0].get("id") if page else None,
            last_id=page[-1].get("id") if page else None,
            has_more=len(items) > limit,
        )

    async def delete(self, response_id: str) -> dict[str, Any]:
        task = self.tasks.pop(response_id, None)
        if task is not None:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        if not self.store.delete(response_id):
            raise not_found(f"No response with id '{response_id}'.")
        return {"id": response_id, "object": "response.deleted", "deleted": True}

    async def cancel(self, response_id: str, include: list[str] | None = None) -> dict[str, Any]:
        """Stop a background response still queued or in progress (its status becomes `cancelled`); a
        finished one is returned as it is. Only background responses can be cancelled (OpenAI's rule)."""
        response = self.get(response_id)
        if not response.get("background"):
            raise bad_request("Only responses created with background: true can be cancelled.", "response_id")
        task = self.tasks.pop(response_id, None)
        if task is not None:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        return self.get(response_id, include)

    def start(self) -> None:
        failed = self.store.fail_interrupted()
        if failed:
            log.warning("%d stored responses were left unfinished by the last run: marked failed", failed)

    async def stop(self) -> None:
        """Stop the background responses still running: they are `failed` (the server stopped), not
        `cancelled` (which only a client's cancel means)."""
        self.stopping = True
        tasks = list(self.tasks.values())
        self.tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def reject_unsupported(request: ResponsesRequest) -> None:
    """Fields OpenAI defines that this server cannot honour: a 400 naming each, never a silent ignore."""
    extra = request.model_extra or {}
    for name, why in UNSUPPORTED.items():
        if extra.get(name) is not None:
            raise bad_request(f"'{name}' is not supported: {why}", name, "unsupported_parameter")
    for name, instead in CHAT_ONLY.items():
        if extra.get(name) is not None:
            raise bad_request(
                f"'{name}' is not a Responses API field: {instead}.", name, "unsupported_parameter"
            )
    for value in request.include or ():
        if value not in INCLUDE_SUPPORTED + INCLUDE_IGNORED:
            raise bad_request(
                f"include value '{value}' is not supported: this server includes "
                f"{' and '.join(INCLUDE_SUPPORTED)}.",
                "include",
                "unsupported_parameter",
            )
    if request.background and not request.store:
        raise bad_request(
            "background mode needs store: true (the response is read back by its id).", "background"
        )
    if request.background and request.stream:
        raise bad_request(
            "background with stream is not supported: create it in the background and poll GET "
            "/v1/responses/{id}, or stream it in the foreground.",
            "stream",
            "unsupported_parameter",
        )
    if request.stream_options is not None and not request.stream:
        raise bad_request("stream_options is only allowed when stream is true.", "stream_options")
    if request.text and request.text.verbosity not in (None, "medium"):
        raise bad_request(
            "This model has no verbosity control: text.verbosity can only be 'medium'.", "text.verbosity"
        )


def chat_request_for(
    request: ResponsesRequest, messages: list[dict[str, Any]], tools: ToolSet | None = None
) -> ChatCompletionRequest:
    """The chat request that answers `request` over `messages` (`tools`: the request's tools, read);
    raises APIError 400 naming the Responses field for what the chat request refuses."""
    tools = tools or read_tools(request.tools)
    file_search, functions = tools.file_search, tools.functions
    choice: Any = request.tool_choice
    if isinstance(choice, dict):
        kind = choice.get("type")
        if kind == "function" and isinstance(choice.get("name"), str):
            choice = {"type": "function", "function": {"name": choice["name"]}}
        elif kind == "file_search":
            if file_search is None:
                raise bad_request(
                    "tool_choice names file_search, which is not among the tools.", "tool_choice"
                )
            choice = {"type": "file_search"}  # the search runs; no function is called (below)
        else:
            raise bad_request(
                f"tool_choice of type '{kind}' is not supported here: use none, auto, required, a function "
                "({'type': 'function', 'name': ...}) or file_search.",
                "tool_choice",
                "unsupported_parameter",
            )
    if choice == "none":
        file_search = None
    elif choice == {"type": "file_search"}:
        choice = "none"
    if choice == "required" and not functions and file_search is None:
        raise bad_request("tool_choice 'required' needs tools.", "tool_choice")
    text_format = request.text.format if request.text else None
    response_format = None
    if text_format is not None and text_format.type == "json_schema":
        spec = {"name": text_format.name, "schema": text_format.schema_, "strict": text_format.strict}
        if text_format.description:
            spec["description"] = text_format.description
        response_format = {
            "type": "json_schema",
            "json_schema": {k: v for k, v in spec.items() if v is not None},
        }
    elif text_format is not None and text_format.type == "json_object":
        response_format = {"type": "json_object"}
    include = set(request.include or ())
    logprobs = "message.output_text.logprobs" in include or bool(request.top_logprobs)
    body: dict[str, Any] = {
        "model": request.model,
        "messages": messages,
        "max_completion_tokens": request.max_output_tokens,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "presence_penalty": request.presence_penalty,
        "frequency_penalty": request.frequency_penalty,
        "user": request.user,
        "seed": request.seed,
        "file_search": file_search,
        "response_format": response_format,
        "logprobs": logprobs or None,
        "top_logprobs": request.top_logprobs if logprobs else None,
    }
    if functions:
        # One call allowed: the grammar stops after the first (not a second generated, then dropped).
        parallel = False if request.max_tool_calls == 1 else request.parallel_tool_calls
        body.update(tools=functions, tool_choice=choice, parallel_tool_calls=parallel)
    body = {k: v for k, v in body.items() if v is not None}
    try:
        chat = ChatCompletionRequest.model_validate(body)
    except ValidationError as exc:
        error = exc.errors()[0]
        param = responses_param([str(part) for part in error["loc"]], [], tools)
        raise bad_request(f"{error['msg']} (at {param})", param) from exc
    chat._search_off = choice == "none"  # not even a profile's knowledge bases
    return chat


def validated_messages(messages: list[dict[str, Any]]) -> list:
    return ChatCompletionRequest.model_validate({"model": "-", "messages": messages}).messages


def drop_oldest(messages: list[dict[str, Any]], count: int) -> list[int] | None:
    """The indices of `messages` kept without the `count` oldest after the leading system ones (and
    without tool results left answering a dropped call); None when that would leave no user message."""
    start = 0
    while start < len(messages) and messages[start]["role"] == "system":
        start += 1
    rest = list(range(start + count, len(messages)))
    while rest and messages[rest[0]]["role"] == "tool":
        rest = rest[1:]
    if not any(messages[k]["role"] == "user" for k in rest):
        return None
    return list(range(start)) + rest


CHAT_FIELDS = {"content": "content", "tool_call_id": "call_id", "role": "role"}
"""A chat message's fields -> the Responses item's."""


def responses_param(loc: list[str], origins: list[str], tools: ToolSet) -> str:
    """The Responses field a chat request's location (`loc`, as pydantic or APIError.param give it)
    came from: `messages[k]...` -> the item `origins[k]`, `file_search.x` -> `tools[i].x`, chat's
    `tools[k].function.x` -> `tools[i].x`, `max_completion_tokens` -> `max_output_tokens`, ..."""
    if not loc:
        return "input"
    head, rest = loc[0], loc[1:]
    if head == "messages":
        if rest and rest[0].isdigit() and int(rest[0]) < len(origins):
            field = CHAT_FIELDS.get(rest[1]) if len(rest) > 1 else None
            return origins[int(rest[0])] + (f".{field}" if field else "")
        return "input"
    if head == "file_search" and tools.file_search_at is not None:
        return ".".join([f"tools[{tools.file_search_at}]", *rest])
    if head == "tools" and rest and rest[0].isdigit() and int(rest[0]) < len(tools.functions_at):
        inner = [part for part in rest[1:] if part != "function"]
        return ".".join([f"tools[{tools.functions_at[int(rest[0])]}]", *inner])
    return PARAMS.get(head, head)


def translated(exc: APIError, origins: list[str], tools: ToolSet) -> APIError:
    """The chat service's error with `param` (and the `messages[k]` its message names) as the Responses
    request names them."""
    if exc.param:
        loc = [part for part in re.split(r"[.\[\]]+", exc.param) if part]
        exc.param = responses_param(loc, origins, tools)
    for k, origin in enumerate(origins):
        exc.message = exc.message.replace(f"messages[{k}]", origin)
    return exc


def shown_item(item: dict[str, Any], include: list[str] | None) -> dict[str, Any]:
    """An output item as the client asked to see it: a `file_search_call`'s results (always stored)
    only with `include: ["file_search_call.results"]`."""
    if item.get("type") != "file_search_call" or "file_search_call.results" in (include or ()):
        return item
    return {**item, "results": None}


def shown(response: dict[str, Any], include: list[str] | None) -> dict[str, Any]:
    """The response object with each output item `shown_item`."""
    return {**response, "output": [shown_item(item, include) for item in response["output"]]}


def effective_tools(tools: list[dict[str, Any]] | None, chat: ChatCompletionRequest) -> list[dict[str, Any]]:
    """The request's tools, plus the file_search a profile gave (it ran, so the response says so)."""
    tools = list(tools or ())
    if chat.file_search is not None and not any(t.get("type") == "file_search" for t in tools):
        tools.insert(0, {"type": "file_search", **chat.file_search.model_dump(exclude_none=True)})
    return tools


def response_error(exc: APIError) -> dict[str, str]:
    """A failed response's `error`: OpenAI's codes for it are few (`server_error`,
    `rate_limit_exceeded`, ...), so a busy engine is `rate_limit_exceeded` and the rest `server_error`;
    the message says what happened."""
    code = "rate_limit_exceeded" if exc.status in (429, 503) else "server_error"
    return {"code": code, "message": exc.message}


def responses_usage(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.total_tokens,
    }


def wire_logprobs(logprobs: ChoiceLogprobs | None) -> list[dict[str, Any]]:
    """Chat's logprobs as the Responses `output_text.logprobs` entries (the same token, logprob, bytes
    and top_logprobs)."""
    if logprobs is None or not logprobs.content:
        return []
    return [entry.model_dump() for entry in logprobs.content]


def echo_format(text_format: TextFormat | None) -> dict[str, Any]:
    """`text.format` as the response object echoes it: a json_schema format with every field OpenAI's and
    the Open Responses specification's has (`description` null and `strict` false when not given)."""
    if text_format is None or text_format.type != "json_schema":
        return {"type": text_format.type if text_format else "text"}
    return {
        "type": "json_schema",
        "name": text_format.name,
        "description": text_format.description,
        "schema": text_format.schema_,
        "strict": bool(text_format.strict),
    }


def echo_tools(
    tools: list[dict[str, Any]] | None, max_num_results: int, score_threshold: float
) -> list[dict[str, Any]]:
    """The tools as the response object echoes them: OpenAI's fields, with the values the answer used
    (`strict` false when not given, as the grammar applies it; the server's `rag_max_results` and
    `rag_score_threshold` for a file_search that leaves them out)."""
    out = []
    for tool in tools or ():
        if tool.get("type") == "function":
            out.append(
                {
                    "type": "function",
                    "name": tool.get("name"),
                    "description": tool.get("description"),
                    "parameters": tool.get("parameters"),
                    "strict": bool(tool.get("strict")),
                }
            )
        else:
            options = dict(tool.get("ranking_options") or {})
            options.setdefault("ranker", "auto")
            if options.get("score_threshold") is None:
                options["score_threshold"] = score_threshold
            out.append(
                {
                    "type": "file_search",
                    "vector_store_ids": tool.get("vector_store_ids"),
                    "filters": tool.get("filters"),
                    "max_num_results": tool.get("max_num_results") or max_num_results,
                    "ranking_options": options,
                }
            )
    return out
