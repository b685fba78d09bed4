"""Tools in a conversation, written as text every chat template can render: the Hermes tool-call format.

One format for every model, so that serving, constrained decoding (xgrammar's `qwen_3` structural tag
emits exactly `format_tool_call`'s text), parsing the answer, and fine-tuning on conversations with tool
calls all agree. It is the format of Qwen2.5's and Hermes' chat templates (the most common
"<tool_call>" format, parsed by vLLM's `hermes` tool parser):

- the tools are listed in the system message, after its own text, between `<tools></tools>` tags, with
  Qwen2.5's instruction on how to call them;
- an assistant message's `tool_calls` follow its text, one `<tool_call>{"name", "arguments"}</tool_call>`
  block each;
- `tool` (and legacy `function`) results become a user turn of `<tool_response>` blocks, consecutive
  results in one turn.

`flatten_tools` turns OpenAI-shaped messages (dicts) into plain `{"role", "content"}` messages;
`parse_tool_calls` reads the calls back out of an answer.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

TOOLS_PREAMBLE = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
)
TOOLS_INSTRUCTION = (
    "</tools>\n\nFor each function call, return a json object with function name and arguments within "
    '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": '
    "<args-json-object>}\n</tool_call>"
)
"""Qwen2.5's tool prompt (its chat template, Apache-2.0), word for word."""

CALL_OPEN = "<tool_call>"
CALL_CLOSE = "</tool_call>"
_CALL = re.compile(r"<tool_call>\s*(\{.*?\})\s*</tool_call>", re.DOTALL)


@dataclass(frozen=True)
class ToolCall:
    """A parsed call: the function's name and its arguments as JSON text (OpenAI's `arguments`)."""

    name: str
    arguments: str


def format_tool_call(name: str, arguments: str | dict) -> str:
    """`<tool_call>\\n{"name": "f", "arguments": {...}}\\n</tool_call>`; `arguments` is JSON text or a dict.
    Raises ValueError when the text is not a JSON object."""
    args = json.loads(arguments) if isinstance(arguments, str) else arguments
    if not isinstance(args, dict):
        raise ValueError("tool call arguments must be a JSON object")
    body = json.dumps({"name": name, "arguments": args}, ensure_ascii=False)
    return f"{CALL_OPEN}\n{body}\n{CALL_CLOSE}"


def tools_system_text(tools: list[dict]) -> str:
    """The tools block of the system message; `tools` are OpenAI's `{"type": "function", "function"}`."""
    lines = [json.dumps(tool, ensure_ascii=False) for tool in tools]
    return "\n".join([TOOLS_PREAMBLE, *lines, TOOLS_INSTRUCTION])


def flatten_tools(messages: list[dict], tools: list[dict] | None = None) -> list[dict]:
    """OpenAI-shaped messages (with `tool_calls`, `tool` and `function` roles, `function_call`) as plain
    `{"role", "content"}` messages in the Hermes format; `tools` (may be empty) go in the system message.
    Raises ValueError for tool-call arguments that are not a JSON object."""
    out: list[dict] = []
    for message in messages:
        role, content = message["role"], message.get("content") or ""
        if role in ("tool", "function"):
            block = f"<tool_response>\n{content}\n</tool_response>"
            if out and out[-1].get("_tool_results"):
                out[-1]["content"] += "\n" + block
            else:
                out.append({"role": "user", "content": block, "_tool_results": True})
            continue
        if role == "assistant":
            calls = [call.get("function", call) for call in message.get("tool_calls") or ()]
            if message.get("function_call"):
                calls.append(message["function_call"])
            blocks = [format_tool_call(c["name"], c.get("arguments") or "{}") for c in calls]
            content = "\n".join(([content] if content else []) + blocks)
        out.append({"role": role, "content": content})
    for message in out:
        message.pop("_tool_results", None)
    if tools:
        text = tools_system_text(tools)
        if out and out[0]["role"] == "system":
            out[0]["content"] = f"{out[0]['content']}\n\n{text}" if out[0]["content"] else text
        else:
            out.insert(0, {"role": "system", "content": text})
    return out


def parse_tool_calls(text: str) -> tuple[str, list[ToolCall]]:
    """The text before the first call (stripped) and the calls in `text`. A block whose JSON is not
    `{"name": str, "arguments": object}` is not a call; when none parses, the whole text is content."""
    calls = []
    for match in _CALL.finditer(text):
        try:
            body = json.loads(match.group(1))
        except ValueError:
            continue
        args = body.get("arguments", body.get("parameters")) if isinstance(body, dict) else None
        if isinstance(body.get("name") if isinstance(body, dict) else None, str) and isinstance(args, dict):
            calls.append(ToolCall(body["name"], json.dumps(args, ensure_ascii=False)))
    if not calls:
        return text, []
    return text[: text.index(CALL_OPEN)].strip(), calls
