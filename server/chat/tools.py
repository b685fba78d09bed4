"""Structured output and tools for chat: what the request asks for, as one grammar and one answer shape.

- `response_format` `json_object` / `json_schema` become a `StructuredOutput` the engines enforce with
  xgrammar (vLLM's own backend).
- `tools` with `tool_choice` `auto` / `required` / a named function become xgrammar's `qwen_3`
  structural tag: `<tool_call>\\n{"name": ..., "arguments": ...}\\n</tool_call>` blocks whose arguments
  are constrained to each function's JSON schema; under `auto` the model may also answer in text, and
  once it opens a call, the call is constrained. The tools are written into the prompt in the same
  format (common.chat_format), and the answer is parsed back with `parse_tool_calls`.
- `tool_choice: "none"` renders no tools and constrains nothing (the answer is text).
- Legacy `functions` / `function_call` are tools with one call at most, answered as `function_call`.
- `auto` with a `response_format` JSON answer: either tool calls or the JSON answer.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from common.chat_format import CALL_OPEN, ToolCall, parse_tool_calls
from server.chat.protocol import (
    ChatCompletionRequest,
    ChunkFunction,
    ChunkToolCall,
    FunctionCall,
    FunctionName,
    MessageToolCall,
)
from server.engines.base import StructuredOutput
from server.engines.grammar import GrammarError, check_structured
from server.errors import bad_request

TOOL_FORMAT = "qwen_3"
"""xgrammar's name of the Hermes `<tool_call>` format (`xgrammar.get_model_structural_tag`)."""


@dataclass
class ToolPlan:
    """How a request's tools are answered. `tools` are rendered into the prompt (OpenAI's dicts);
    `choice` is `auto`, `required` or a function's name; `legacy` answers with `function_call`."""

    tools: list[dict] = field(default_factory=list)
    choice: str = "auto"
    parallel: bool = True
    legacy: bool = False

    @property
    def active(self) -> bool:
        return bool(self.tools)


def plan_tools(request: ChatCompletionRequest) -> ToolPlan:
    """The request's tools (or legacy functions) and choice; an inactive plan when there are none or
    the choice is `none`. Raises APIError (400) for a choice naming no given tool."""
    if request.functions:
        tools = [{"type": "function", "function": f.model_dump(exclude_none=True)} for f in request.functions]
        choice = request.function_call
        param, legacy, parallel = "function_call", True, False
    elif request.tools:
        tools = [t.model_dump(exclude_none=True) for t in request.tools]
        choice = request.tool_choice
        param, legacy = "tool_choice", False
        parallel = request.parallel_tool_calls is not False
    else:
        return ToolPlan()
    names = [t["function"]["name"] for t in tools]
    if len(set(names)) < len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise bad_request(f"The function '{twice}' is given twice.", "functions" if legacy else "tools")
    if choice == "none":
        return ToolPlan()
    for tool in tools:  # no parameters: the arguments are an empty object (OpenAI's reading)
        tool["function"].setdefault("parameters", {"type": "object", "properties": {}})
    if choice is None:
        name = "auto"
    elif isinstance(choice, str):
        name = choice
    else:
        name = choice.name if isinstance(choice, FunctionName) else choice.function.name
        if name not in {t["function"]["name"] for t in tools}:
            raise bad_request(f"{param} names the function '{name}', which is not among the tools.", param)
    return ToolPlan(tools=tools, choice=name, parallel=parallel, legacy=legacy)


def plan_structured(request: ChatCompletionRequest, plan: ToolPlan) -> StructuredOutput | None:
    """The grammar the answer must follow, checked (compiled) now: a schema xgrammar cannot compile is
    a 400 naming the problem."""
    fmt = request.response_format
    answer: dict | None = None  # the JSON schema of a structured answer, if any
    strict = False
    param = "response_format"
    if fmt is not None and fmt.type == "json_object":
        answer = {"type": "object"}
    elif fmt is not None and fmt.type == "json_schema":
        spec = fmt.json_schema
        answer = spec.schema_ if spec.schema_ is not None else {"type": "object"}
        strict = bool(spec.strict)
        param = "response_format.json_schema.schema"
    if plan.active:
        structured = StructuredOutput("structural_tag", _tool_tag(plan, answer), strict)
        param = "functions" if plan.legacy else "tools"
    elif answer is not None:
        if fmt is not None and fmt.type == "json_object":
            structured = StructuredOutput("json_object")
        else:
            structured = StructuredOutput("json_schema", json.dumps(answer), strict)
    else:
        return None
    try:
        check_structured(structured)
    except GrammarError as exc:
        raise bad_request(f"The schema cannot be used for constrained decoding: {exc}", param) from exc
    return structured


def _tool_tag(plan: ToolPlan, answer: dict | None) -> str:
    """xgrammar's structural tag for the plan (as JSON text). `auto`: free text in which each opened call
    is constrained. `required` (and the tool side of `auto` with a JSON answer): calls only, one per
    line, at least one. A named function: that call only."""
    import xgrammar as xgr
    from xgrammar.structural_tag import (
        JSONSchemaFormat,
        OrFormat,
        StructuralTag,
        TagsWithSeparatorFormat,
    )

    choice: Any = plan.choice
    if choice not in ("auto", "required"):
        choice = {"type": "function", "function": {"name": choice}}
    try:
        tag = xgr.get_model_structural_tag(
            TOOL_FORMAT,
            tools=plan.tools,
            tool_choice="auto" if choice == "required" else choice,
            reasoning="disabled",
            parallel_tool_calls=plan.parallel,
            max_whitespace_cnt=1,  # one whitespace character at a time: no newline loops in arguments
        )
    except (ValueError, TypeError) as exc:  # a malformed function definition
        raise bad_request(f"The tools cannot be used: {exc}", "tools") from exc
    if choice == "required" or (choice == "auto" and answer is not None):
        # Calls and nothing else (xgrammar's own `required` allows text around the calls).
        calls = TagsWithSeparatorFormat(
            tags=tag.format.tags, separator="\n", at_least_one=True, stop_after_first=not plan.parallel
        )
        tag = StructuralTag(format=calls)
        if answer is not None and choice == "auto":
            tag = StructuralTag(format=OrFormat(elements=[JSONSchemaFormat(json_schema=answer), calls]))
    return tag.model_dump_json()


def call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


@dataclass
class ToolAnswer:
    """An answer read for tool calls: its text (None when it is only calls) and its calls."""

    content: str | None
    tool_calls: list[MessageToolCall] | None = None
    function_call: FunctionCall | None = None

    @property
    def finish_reason(self) -> str | None:
        """`tool_calls` / `function_call` when the answer calls; None leaves the engine's reason."""
        if self.tool_calls:
            return "tool_calls"
        return "function_call" if self.function_call else None


def finish_reason(engine_reason: str, call_reason: str | None) -> str:
    """A choice's finish reason: `length` when max_tokens cut the answer (even one holding complete
    calls), else `tool_calls` / `function_call` when it calls, else the engine's."""
    return engine_reason if engine_reason == "length" else call_reason or engine_reason


def read_answer(text: str, plan: ToolPlan) -> ToolAnswer:
    """Split a finished answer into content and calls (no plan: all content)."""
    if not plan.active:
        return ToolAnswer(text)
    content, calls = parse_tool_calls(text)
    if not calls:
        # A forced call cut by max_tokens is no call and no content (its markup is not an answer).
        return ToolAnswer(text if plan.choice == "auto" else None)
    if plan.legacy:
        first = calls[0]
        return ToolAnswer(
            content or None, function_call=FunctionCall(name=first.name, arguments=first.arguments)
        )
    if not plan.parallel:
        calls = calls[:1]
    wire = [
        MessageToolCall(id=call_id(), function=FunctionCall(name=c.name, arguments=c.arguments))
        for c in calls
    ]
    return ToolAnswer(content or None, tool_calls=wire)


class ToolStream:
    """Streams an answer that may call tools: text before the first `<tool_call>` goes out as content as
    it comes (a tail that may be the start of `<tool_call>` is held back); each call goes out whole, as
    OpenAI's tool-call delta (id, type, name and arguments in one delta), as soon as it is complete."""

    def __init__(self, plan: ToolPlan) -> None:
        self.plan = plan
        self.text = ""
        self.sent = 0  # characters of content handed out
        self.calls_at: int | None = None  # where the first call opens
        self.calls: list[ToolCall] = []

    def feed(self, delta: str) -> tuple[str, list[ChunkToolCall] | ChunkFunction | None]:
        """New content to send, and the calls completed by `delta`."""
        self.text += delta
        if not self.plan.active:
            return self._release(len(self.text)), None
        if self.calls_at is None:
            at = self.text.find(CALL_OPEN, max(0, self.sent - len(CALL_OPEN)))
            if at < 0:
                return self._release(len(self.text) - _held(self.text)), None
            self.calls_at = at
            content = self._release(at)
        else:
            content = ""
        return content, self._new_calls(final=False)

    def finish(self) -> tuple[str, list[ChunkToolCall] | ChunkFunction | None, str | None]:
        """What is left at the end: content, calls, and the finish reason the calls imply (or None)."""
        if self.plan.active and self.plan.choice != "auto" and self.calls_at is None:
            return "", None, None  # a forced call cut before it opened ("<tool")
        if self.calls_at is not None:
            calls = self._new_calls(final=True)
            if self.calls:
                return "", calls, "function_call" if self.plan.legacy else "tool_calls"
            if self.plan.choice != "auto":  # a forced call cut short: neither a call nor content
                return "", None, None
            return self._release(len(self.text), force=True), None, None  # an unfinished call is text
        return self._release(len(self.text)), None, None

    def _release(self, end: int, force: bool = False) -> str:
        if force:
            out, self.sent = self.text[self.sent :], len(self.text)
            return out
        if end <= self.sent:
            return ""
        out, self.sent = self.text[self.sent : end], end
        return out

    def _new_calls(self, final: bool) -> list[ChunkToolCall] | ChunkFunction | None:
        _, calls = parse_tool_calls(self.text[self.calls_at :])
        limit = 1 if (self.plan.legacy or not self.plan.parallel) else len(calls)
        new = calls[len(self.calls) : limit]
        if not new:
            return None
        start = len(self.calls)
        self.calls.extend(new)
        if self.plan.legacy:
            return ChunkFunction(name=new[0].name, arguments=new[0].arguments)
        return [
            ChunkToolCall(
                index=start + i,
                id=call_id(),
                type="function",
                function=ChunkFunction(name=c.name, arguments=c.arguments),
            )
            for i, c in enumerate(new)
        ]


def _held(text: str) -> int:
    """Length of the longest tail of `text` that is a proper prefix of `<tool_call>`."""
    for n in range(min(len(CALL_OPEN) - 1, len(text)), 0, -1):
        if text.endswith(CALL_OPEN[:n]):
            return n
    return 0
