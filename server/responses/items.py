"""Responses input items and tools, read into the chat service's terms, and the output items built back.

- Input (`input`, and a conversation's earlier items): messages (a string, or `input_text` / `output_text`
  / `refusal` parts), `function_call` and `function_call_output` become chat messages; earlier
  `file_search_call` and `reasoning` items carry nothing the prompt needs and are skipped. Everything
  else gets a 400 naming the item or part (`input[2].content[0].type`).
- Tools: one `file_search` (becomes chat's `file_search`) and function tools (chat's `tools`, nested
  under `function`). Other hosted tools are OpenAI's (web search, code interpreter, ...): a 400.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from server.chat.rag import annotations
from server.errors import bad_request
from server.vector_stores.protocol import SearchHit

TEXT_PARTS = {"input_text": "text", "output_text": "text", "refusal": "refusal", "text": "text"}
"""Content part type -> the field holding its text (what a text-only model reads)."""
SKIPPED_ITEMS = ("file_search_call", "reasoning")
ROLES = ("user", "system", "developer", "assistant")


def item_id(prefix: str) -> str:
    """OpenAI-style item ids: `msg_`, `fc_` (function call), `fs_` (file search call), `resp_`."""
    return f"{prefix}_{uuid.uuid4().hex}"


def normalize_input(value: str | list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The request's `input` as stored input items, each with an `id` (a string is one user message).
    Raises APIError 400 for a missing or empty input, or an item that is not readable."""
    if value is None or (isinstance(value, str) and not value.strip()) or value == []:
        raise bad_request("'input' is required: a string or a non-empty list of input items.", "input")
    if isinstance(value, str):
        value = [{"type": "message", "role": "user", "content": value}]
    items = []
    for i, raw in enumerate(value):
        item = dict(raw)
        kind = item.setdefault("type", "message")
        if kind == "message":
            item.setdefault("id", item_id("msg"))
            item.setdefault("status", "completed")  # listed back as items: OpenAI's and the spec's fields
            content = item.get("content")
            if isinstance(content, str):
                part = "output_text" if item.get("role") == "assistant" else "input_text"
                content = [{"type": part, "text": content}]
            if isinstance(content, list):
                item["content"] = [
                    {"annotations": [], **p} if isinstance(p, dict) and p.get("type") == "output_text" else p
                    for p in content
                ]
        elif kind in ("function_call", "function_call_output"):
            item.setdefault("id", item_id("fc" if kind == "function_call" else "fco"))
            item.setdefault("status", "completed")
        items.append(item)
        to_messages([item], where=f"input[{i}]")  # checked now: a bad item is a 400 before any work
    return items


def to_messages(
    items: list[dict[str, Any]], where: str | None = None, origins: list[str] | None = None
) -> list[dict[str, Any]]:
    """Chat messages for `items` (oldest first); consecutive function calls join one assistant message.
    `where` names the item in errors (default `input[i]`); `origins`, when given, gets each message's
    item name appended (so an error the chat service names `messages[k]` can name the item)."""
    messages: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        at = where or f"input[{i}]"
        kind = item.get("type", "message")
        count = len(messages)
        if kind == "message":
            messages.append(_message(item, at))
        elif kind == "function_call":
            call = _function_call(item, at)
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":  # the calls of one answer: one message
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            if isinstance(output, list):
                output = "".join(_part_text(p, f"{at}.output[{j}]") for j, p in enumerate(output))
            if not isinstance(output, str) or not isinstance(item.get("call_id"), str):
                raise bad_request("A function_call_output needs its call_id and output text.", at)
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": output})
        elif kind in SKIPPED_ITEMS:
            continue
        elif kind == "item_reference":
            raise bad_request(
                "item_reference input items are not supported; send the items, or continue a stored "
                "conversation with previous_response_id.",
                f"{at}.type",
                "unsupported_parameter",
            )
        else:
            raise bad_request(
                f"Input items of type '{kind}' are not supported here: this server reads messages, "
                "function_call and function_call_output items.",
                f"{at}.type",
                "unsupported_parameter",
            )
        if origins is not None:
            origins.extend([at] * (len(messages) - count))
    return messages


def _message(item: dict[str, Any], at: str) -> dict[str, Any]:
    role = item.get("role")
    if role not in ROLES:
        raise bad_request(f"A message's role must be one of {', '.join(ROLES)}.", f"{at}.role")
    content = item.get("content")
    if isinstance(content, str):
        text = content
    elif isinstance(content, list) and content:
        text = "".join(_part_text(part, f"{at}.content[{j}]") for j, part in enumerate(content))
    else:
        raise bad_request(
            "A message needs its content: a string or a non-empty list of parts.", f"{at}.content"
        )
    return {"role": role, "content": text}


def _part_text(part: Any, at: str) -> str:
    kind = part.get("type") if isinstance(part, dict) else None
    field = TEXT_PARTS.get(kind or "")
    if field is None:
        raise bad_request(
            f"This model takes text only; content parts of type '{kind}' cannot be read. "
            "Send input_text parts.",
            f"{at}.type",
            "unsupported_content_type",
        )
    text = part.get(field)
    if not isinstance(text, str):
        raise bad_request(f"A '{kind}' part needs its '{field}' text.", f"{at}.{field}")
    return text


def _function_call(item: dict[str, Any], at: str) -> dict[str, Any]:
    call_id, name, arguments = item.get("call_id"), item.get("name"), item.get("arguments")
    if not all(isinstance(v, str) for v in (call_id, name, arguments)):
        raise bad_request("A function_call item needs its call_id, name and arguments.", at)
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


FILE_SEARCH_FIELDS = ("vector_store_ids", "max_num_results", "filters", "ranking_options", "prompt_format")
"""The file_search tool's fields (OpenAI's, and the `prompt_format` extension of chat's file_search)."""


@dataclass
class ToolSet:
    """A request's tools in chat's terms, with where each came from in `tools` (for error params)."""

    file_search: dict[str, Any] | None = None
    file_search_at: int | None = None
    functions: list[dict[str, Any]] = field(default_factory=list)
    functions_at: list[int] = field(default_factory=list)


def read_tools(tools: list[dict[str, Any]] | None) -> ToolSet:
    """Chat's `file_search` object and function `tools` for the request's `tools`. Raises APIError 400
    naming `tools[i]` for a hosted tool this server does not have, a second file_search, or a function
    tool without its name (Responses function tools are flat: `{type, name, parameters}`)."""
    found = ToolSet()
    for i, tool in enumerate(tools or ()):
        kind = tool.get("type")
        if kind == "file_search":
            if found.file_search is not None:
                raise bad_request(
                    "Give one file_search tool (it may name several vector stores).", f"tools[{i}]"
                )
            found.file_search = {k: tool[k] for k in FILE_SEARCH_FIELDS if tool.get(k) is not None}
            found.file_search_at = i
        elif kind == "function":
            if not isinstance(tool.get("name"), str):
                raise bad_request(
                    "A function tool needs its name. Responses function tools are flat "
                    "({'type': 'function', 'name': ..., 'parameters': ...}), not chat's {'function': {...}}.",
                    f"tools[{i}].name",
                )
            spec = {
                k: tool[k] for k in ("name", "description", "parameters", "strict") if tool.get(k) is not None
            }
            found.functions.append({"type": "function", "function": spec})
            found.functions_at.append(i)
        else:
            raise bad_request(
                f"Tools of type '{kind}' are not supported: this server offers file_search (over its vector "
                "stores) and function tools.",
                f"tools[{i}].type",
                "unsupported_parameter",
            )
    return found


def search_item(sources: list[SearchHit], query: str, status: str, id: str) -> dict[str, Any]:
    """The `file_search_call` output item, `results` (every source) once `completed`, else null; what a
    client sees of them follows its `include` (`server.responses.service.shown_item`)."""
    results = None
    if status == "completed":
        results = [
            {
                "file_id": hit.file_id,
                "filename": hit.filename,
                "score": round(hit.score, 6),
                "text": hit.text,
                "attributes": hit.attributes,
                "vector_store_id": hit.vector_store_id,
                "chunk_id": str(hit.chunk_id),
                "page": hit.page,
            }
            for hit in sources
        ]
    return {"id": id, "type": "file_search_call", "status": status, "queries": [query], "results": results}


def citations(sources: list[SearchHit], text: str) -> list[dict[str, Any]]:
    """Chat's `file_citation` annotations (server/chat/rag.py `annotations`: the same file, chunk, page,
    score and quote) for the sources the answer was given, one per file and place, with `index` where in
    `text` the citation belongs, as OpenAI's Responses annotations are character positions: at the
    model's first `[n]` for source n when it cited one, else the end of the text. Of several chunks of a
    file cited at one place, the best (the first) stands for the file; the `file_search_call` results
    keep every chunk."""
    out, seen = [], set()
    for n, note in enumerate(annotations(sources), start=1):
        marker = text.find(f"[{n}]")
        index = marker if marker >= 0 else len(text)
        if (note["file_id"], index) not in seen:
            seen.add((note["file_id"], index))
            out.append({**note, "index": index})
    return out
