"""Fine-tuning data: read OpenAI chat, alpaca or ShareGPT files into validated conversations,
then tokenize them with the model's chat template and a loss mask on the assistant turns.

OpenAI chat records may carry tools as OpenAI's fine-tuning format allows (`tools` or the legacy
`functions`, assistant `tool_calls` / `function_call`, `tool` / `function` results). They are written
as text by `common.chat_format.flatten_tools`, the function the chat server renders requests with, so
a model is taught the very format the server constrains and parses: the tools in the system message,
each call as a `<tool_call>` block in its assistant turn (trained), the results as a user turn of
`<tool_response>` blocks (not trained)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from common.chat_format import flatten_tools
from common.encoding import decode_text
from common.text import lone_surrogate

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

ROLES = ("system", "user", "assistant")
IGNORE_INDEX = -100  # the label PyTorch's cross-entropy skips

# Keys an OpenAI fine-tuning message may carry; `name` is accepted and dropped (no template renders it),
# except on a legacy `function` result, where it names the function that answered.
_MESSAGE_KEYS = {"role", "content", "name", "weight", "tool_calls", "function_call", "tool_call_id"}
_RESULT_ROLES = ("tool", "function")  # tool results: a user turn of <tool_response> blocks
_TOOL_KEYS = {"type", "function"}
_CALL_KEYS = {"id", "type", "function"}
_FUNCTION_CALL_KEYS = {"name", "arguments"}
# A function definition's keys, in the order the chat server writes them into the prompt
# (server.chat.protocol.FunctionDefinition dumped without its None fields), so both render alike.
_FUNCTION_KEYS = ("name", "description", "parameters", "strict")
_FUNCTION_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")  # OpenAI's rule, as the chat server checks it
_SHAREGPT_ROLES = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
}


@dataclass
class Message:
    role: str  # "system" | "user" | "assistant"
    content: str
    weight: float = 1.0  # only meaningful for assistant messages: 1 = train on it, 0 = context only


@dataclass
class Conversation:
    messages: list[Message]
    line: int  # 1-based line number in a JSONL file, or 1-based record index in a JSON array


class DataError(ValueError):
    """Invalid training data; `code` is machine readable, `line` points at the record (None = whole file)."""

    def __init__(self, code: str, message: str, line: int | None = None):
        self.code = code
        self.message = message
        self.line = line
        # load_dataset(max_errors > 1) replaces this with every error it collected.
        self.errors: list[DataError] = [self]
        super().__init__(message if line is None else f"line {line}: {message}")

    def __reduce__(self):
        # The default would rebuild from the formatted text alone; jobs may pickle errors across processes.
        return (type(self), (self.code, self.message, self.line))


# ---------------------------------------------------------------- loading


def load_dataset(path: Path, max_errors: int = 1) -> list[Conversation]:
    """Read a JSONL file or a JSON array of records, each in OpenAI chat, alpaca or ShareGPT format.

    Stops at the first invalid record when `max_errors` is 1; otherwise collects up to `max_errors`
    errors and raises one DataError listing them (code and line of the first).
    """
    if max_errors < 1:
        raise ValueError(f"max_errors must be at least 1, got {max_errors}")
    conversations: list[Conversation] = []
    errors: list[DataError] = []
    for line, record in _read_records(Path(path)):
        try:
            if isinstance(record, DataError):
                raise record
            conversations.append(parse_record(record, line))
        except DataError as error:
            if max_errors == 1:
                raise
            errors.append(error)
            if len(errors) == max_errors:
                break
    if errors:
        raise _combine(errors, max_errors)
    if not conversations:
        raise DataError("empty_file", f"{Path(path).name} contains no records")
    return conversations


def parse_record(record: object, line: int) -> Conversation:
    """Validate one record, detecting its format from its keys, and return it as a Conversation."""
    if not isinstance(record, dict):
        raise DataError("not_an_object", f"expected a JSON object, got {_json_type(record)}", line)
    if (where := lone_surrogate(record)) is not None:
        raise DataError(
            "invalid_text", f"{where} is not valid Unicode text (it holds a lone surrogate)", line
        )
    numbers = None
    if "messages" in record:
        messages, numbers = _from_openai(record, line)
    elif "conversations" in record:
        messages = _from_sharegpt(record, line)
    elif "instruction" in record:
        messages = _from_alpaca(record, line)
    else:
        keys = ", ".join(repr(key) for key in record) or "no keys"
        raise DataError(
            "unknown_format",
            f"record has {keys}; expected 'messages' (OpenAI chat), 'instruction' and 'output' (alpaca) "
            "or 'conversations' (ShareGPT)",
            line,
        )
    _check_order(messages, line, numbers)
    return Conversation(messages, line)


def _read_records(path: Path) -> Iterator[tuple[int, object]]:
    """Yield (line, record); a JSONL line that does not parse comes as its DataError, so reading goes on."""
    # Decoded as knowledge-base files are (common/encoding.py): a BOM, UTF-8, or a detected encoding.
    text = decode_text(path.read_bytes())
    if text is None:
        raise DataError(
            "invalid_encoding",
            f"{path.name} is not text in UTF-8, UTF-16/32 with a BOM, or an encoding that can be detected",
        )
    text = text.removeprefix("\ufeff")
    if text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as error:
            raise DataError("invalid_json", f"{path.name} is not a valid JSON array: {error}") from None
        yield from enumerate(records, start=1)
        return
    # Split on "\n" only: str.splitlines() would also break on U+2028, which JSON allows inside strings.
    for number, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            yield number, json.loads(raw)
        except json.JSONDecodeError as error:
            yield number, DataError("invalid_json", f"not valid JSON: {error}", number)


def _combine(errors: list[DataError], max_errors: int) -> DataError:
    first = errors[0]
    listed = "; ".join(str(error) for error in errors)
    more = " (stopped there)" if len(errors) == max_errors else ""
    combined = DataError(first.code, f"{len(errors)} invalid records{more}: {listed}", first.line)
    combined.errors = errors
    return combined


def _from_openai(record: dict, line: int) -> tuple[list[Message], list[int | None]]:
    """The record's messages as `flatten_tools` writes them (tools, calls and results as text), and the
    1-based number in `messages` of each one's source (None: the system message added for the tools).

    Raises DataError for a message, tool definition, call or result that cannot be read faithfully:
    codes `invalid_tools` (the record's `tools` / `functions`), `invalid_tool_call` (a call, its
    arguments, a function not among the tools), `invalid_tool_result` (a result answering no call, a
    call left unanswered before the conversation goes on), besides those of plain messages.
    """
    raw_messages = record["messages"]
    if not isinstance(raw_messages, list) or not raw_messages:
        raise DataError("invalid_message", "'messages' must be a non-empty list", line)
    tools = _tools(record, line)
    parallel = record.get("parallel_tool_calls", True)
    if not isinstance(parallel, bool):
        raise DataError(
            "invalid_tools", f"'parallel_tool_calls' must be true or false, got {parallel!r}", line
        )
    parsed = [_openai_message(raw, f"messages[{index}]", line) for index, raw in enumerate(raw_messages)]
    wire = [message for message, _ in parsed]
    _check_tool_flow(wire, {tool["function"]["name"] for tool in tools}, parallel, line)
    try:
        flat = flatten_tools(wire, tools)
    except ValueError as error:  # arguments were checked above; kept so that no record slips through
        raise DataError("invalid_tool_call", f"a tool call cannot be written: {error}", line) from None
    # flatten_tools keeps the order, merges consecutive results into one user turn and may add a system
    # message in front: find each flattened message's source, for its weight and for error messages.
    sources = [
        index
        for index, message in enumerate(wire)
        if not (index and message["role"] in _RESULT_ROLES and wire[index - 1]["role"] in _RESULT_ROLES)
    ]
    added = len(flat) - len(sources)
    roles = ["user" if wire[i]["role"] in _RESULT_ROLES else wire[i]["role"] for i in sources]
    if added not in (0, 1) or [m["role"] for m in flat[added:]] != roles:
        raise RuntimeError("flatten_tools returned messages that do not follow the record's")
    numbers: list[int | None] = [None] * added + [index + 1 for index in sources]
    messages = [
        Message(m["role"], m["content"], 1.0 if number is None else parsed[number - 1][1])
        for m, number in zip(flat, numbers, strict=True)
    ]
    return messages, numbers


def _openai_message(raw: object, where: str, line: int) -> tuple[dict, float]:
    """One message, validated, as `flatten_tools` takes it (OpenAI's shape), and its weight."""
    if not isinstance(raw, dict):
        raise DataError("invalid_message", f"{where} must be an object, got {_json_type(raw)}", line)
    if extra := sorted(raw.keys() - _MESSAGE_KEYS):
        allowed = ", ".join(sorted(_MESSAGE_KEYS))
        raise DataError("invalid_message", f"{where} has unknown keys {extra}; allowed: {allowed}", line)
    role = raw.get("role")
    if role not in ROLES + _RESULT_ROLES:
        expected = ", ".join(ROLES + _RESULT_ROLES)
        raise DataError("invalid_role", f"{where} has role {role!r}; expected one of {expected}", line)
    for key in ("tool_calls", "function_call"):
        if raw.get(key) is not None and role != "assistant":
            raise DataError(
                "invalid_tool_call", f"{where} is a {role} message: only assistant messages carry {key}", line
            )
    if raw.get("tool_call_id") is not None and role != "tool":
        raise DataError(
            "invalid_tool_result", f"{where} is a {role} message: only tool messages carry tool_call_id", line
        )
    message: dict = {"role": role}
    if role == "assistant":
        calls = _calls(raw, where, line)
        message.update(calls)
        content = raw.get("content")
        if calls and (content is None or (isinstance(content, str) and not content.strip())):
            message["content"] = ""  # calls only
        elif content is None:
            raise DataError("empty_content", f"{where} has neither content nor tool_calls", line)
        else:
            message["content"] = _content(content, where, line)
    else:
        message["content"] = _content(raw.get("content"), where, line)
    # A result names what it answers: the call's id (tool) or the function's name (legacy function).
    answers = {
        "tool": ("tool_call_id", "of the call it answers"),
        "function": ("name", "of the function that answered"),
    }
    if role in answers:
        key, what = answers[role]
        value = raw.get(key)
        if not isinstance(value, str) or not value.strip():
            raise DataError("invalid_tool_result", f"{where} needs the {key} (a string) {what}", line)
        message[key] = value
    return message, _weight(raw, role, where, line)


def _calls(raw: dict, where: str, line: int) -> dict:
    """An assistant message's `tool_calls` or legacy `function_call`, validated; {} when it has none."""
    tool_calls, function_call = raw.get("tool_calls"), raw.get("function_call")
    if tool_calls is not None and function_call is not None:
        raise DataError("invalid_tool_call", f"{where} has both tool_calls and function_call", line)
    if function_call is not None:
        return {"function_call": _function_call(function_call, f"{where}.function_call", line)}
    if tool_calls is None:
        return {}
    if not isinstance(tool_calls, list) or not tool_calls:
        raise DataError("invalid_tool_call", f"{where}.tool_calls must be a non-empty list of calls", line)
    calls = []
    for index, call in enumerate(tool_calls):
        at = f"{where}.tool_calls[{index}]"
        if not isinstance(call, dict):
            raise DataError("invalid_tool_call", f"{at} must be an object, got {_json_type(call)}", line)
        if extra := sorted(call.keys() - _CALL_KEYS):
            raise DataError(
                "invalid_tool_call", f"{at} has unknown keys {extra}; allowed: function, id, type", line
            )
        if call.get("type", "function") != "function":
            raise DataError("invalid_tool_call", f"{at}.type must be 'function', got {call['type']!r}", line)
        call_id = call.get("id")
        if not isinstance(call_id, str) or not call_id.strip():
            raise DataError("invalid_tool_call", f"{at} needs an id (a string) for its result to name", line)
        function = _function_call(call.get("function"), f"{at}.function", line)
        calls.append({"id": call_id, "type": "function", "function": function})
    return {"tool_calls": calls}


def _function_call(value: object, at: str, line: int) -> dict:
    """A call's `{"name", "arguments"}`; the arguments must be the text of a JSON object."""
    if not isinstance(value, dict):
        raise DataError("invalid_tool_call", f"{at} must be an object with name and arguments", line)
    if extra := sorted(value.keys() - _FUNCTION_CALL_KEYS):
        raise DataError("invalid_tool_call", f"{at} has unknown keys {extra}; allowed: arguments, name", line)
    name, arguments = value.get("name"), value.get("arguments")
    if not isinstance(name, str) or not name:
        raise DataError("invalid_tool_call", f"{at}.name must be the function's name, got {name!r}", line)
    if not isinstance(arguments, str):
        raise DataError(
            "invalid_tool_call",
            f"{at}.arguments must be JSON text (a string), got {_json_type(arguments)}",
            line,
        )
    try:
        parsed = json.loads(arguments)
    except json.JSONDecodeError as error:
        raise DataError("invalid_tool_call", f"{at}.arguments is not valid JSON: {error}", line) from None
    if not isinstance(parsed, dict):
        raise DataError(
            "invalid_tool_call", f"{at}.arguments must be a JSON object, got {_json_type(parsed)}", line
        )
    return {"name": name, "arguments": arguments}


def _tools(record: dict, line: int) -> list[dict]:
    """The record's `tools` (or legacy `functions`) as the chat server renders them:
    `{"type": "function", "function": {name, description, parameters, strict}}`; [] when none."""
    given = [key for key in ("tools", "functions") if record.get(key) is not None]
    if len(given) == 2:
        raise DataError("invalid_tools", "give 'tools' or the legacy 'functions', not both", line)
    if not given:
        return []
    key = given[0]
    if not isinstance(record[key], list):
        raise DataError("invalid_tools", f"'{key}' must be a list, got {_json_type(record[key])}", line)
    tools: list[dict] = []
    for index, item in enumerate(record[key]):
        at = f"{key}[{index}]"
        if key == "tools":
            if not isinstance(item, dict):
                raise DataError("invalid_tools", f"{at} must be an object, got {_json_type(item)}", line)
            if extra := sorted(item.keys() - _TOOL_KEYS):
                raise DataError(
                    "invalid_tools", f"{at} has unknown keys {extra}; allowed: function, type", line
                )
            if item.get("type") != "function":
                raise DataError(
                    "invalid_tools", f"{at}.type must be 'function', got {item.get('type')!r}", line
                )
            item, at = item.get("function"), f"{at}.function"
        function = _function(item, at, line)
        if any(tool["function"]["name"] == function["name"] for tool in tools):
            raise DataError("invalid_tools", f"{at}.name {function['name']!r} is given twice", line)
        tools.append({"type": "function", "function": function})
    return tools


def _function(value: object, at: str, line: int) -> dict:
    """A function definition, validated, its keys in the chat server's order."""
    if not isinstance(value, dict):
        raise DataError("invalid_tools", f"{at} must be a function definition (an object)", line)
    if extra := sorted(value.keys() - set(_FUNCTION_KEYS)):
        allowed = ", ".join(sorted(_FUNCTION_KEYS))
        raise DataError("invalid_tools", f"{at} has unknown keys {extra}; allowed: {allowed}", line)
    name = value.get("name")
    if not isinstance(name, str) or not _FUNCTION_NAME.fullmatch(name):
        raise DataError(
            "invalid_tools",
            f"{at}.name must be a function name (1 to 64 letters, digits, _ or -), got {name!r}",
            line,
        )
    for key, kind, expected in (("description", str, "a string"), ("parameters", dict, "an object")):
        if value.get(key) is not None and not isinstance(value[key], kind):
            raise DataError(
                "invalid_tools", f"{at}.{key} must be {expected}, got {_json_type(value[key])}", line
            )
    if value.get("strict") is not None and not isinstance(value["strict"], bool):
        raise DataError("invalid_tools", f"{at}.strict must be true or false, got {value['strict']!r}", line)
    return {key: value[key] for key in _FUNCTION_KEYS if value.get(key) is not None}


def _check_tool_flow(messages: list[dict], tools: set[str], parallel: bool, line: int) -> None:
    """Every call names one of the record's tools and has a unique id; every result answers a call of
    the assistant message before it; the conversation goes on only once every call has its result
    (it may end on calls). One call per message when `parallel_tool_calls` is false."""
    pending: dict[tuple[str, str], str] = {}  # ("tool", id) or ("function", name) -> where the call is
    ids: set[str] = set()
    for index, message in enumerate(messages):
        where, role = f"messages[{index}]", message["role"]
        if role in _RESULT_ROLES:
            key = (role, message["tool_call_id"] if role == "tool" else message["name"])
            if pending.pop(key, None) is None:
                answered = f"tool_call_id {key[1]!r}" if role == "tool" else f"function {key[1]!r}"
                raise DataError(
                    "invalid_tool_result",
                    f"{where} answers {answered}, which is no unanswered call of the assistant message "
                    "before it",
                    line,
                )
            continue
        if pending:
            raise DataError(
                "invalid_tool_result",
                f"{where} comes before the result of {next(iter(pending.values()))}",
                line,
            )
        calls = [
            (f"{where}.tool_calls[{i}]", ("tool", call["id"]), call["function"]["name"])
            for i, call in enumerate(message.get("tool_calls", ()))
        ]
        if "function_call" in message:
            name = message["function_call"]["name"]
            calls.append((f"{where}.function_call", ("function", name), name))
        if len(calls) > 1 and not parallel:
            raise DataError(
                "invalid_tool_call", f"{where} has {len(calls)} calls but parallel_tool_calls is false", line
            )
        for at, key, name in calls:
            if name not in tools:
                among = "the record has no tools" if not tools else "it is not among the record's tools"
                raise DataError("invalid_tool_call", f"{at} calls {name!r}, but {among}", line)
            if key[0] == "tool":
                if key[1] in ids:
                    raise DataError(
                        "invalid_tool_call", f"{at}.id {key[1]!r} is used by an earlier call", line
                    )
                ids.add(key[1])
            pending[key] = at


def _content(value: object, where: str, line: int) -> str:
    """A message's text: a string, or OpenAI content parts joined as the chat server joins them."""
    if isinstance(value, list):
        texts = []
        for index, part in enumerate(value):
            if not isinstance(part, dict) or "type" not in part:
                raise DataError("invalid_message", f"{where}.content[{index}] must be a content part", line)
            if part["type"] != "text":
                raise DataError(
                    "unsupported_feature", f"{where}.content[{index}] is {part['type']!r}; only text is", line
                )
            texts.append(_text(part.get("text"), f"{where}.content[{index}].text", line, blank_ok=True))
        value = "".join(texts)
    return _text(value, f"{where}.content", line)


def _text(value: object, where: str, line: int, blank_ok: bool = False) -> str:
    if value is None:
        raise DataError("empty_content", f"{where} is missing", line)
    if not isinstance(value, str):
        raise DataError("invalid_message", f"{where} must be a string, got {_json_type(value)}", line)
    if not blank_ok and not value.strip():
        raise DataError("empty_content", f"{where} is empty", line)
    return value


def _weight(raw: dict, role: str, where: str, line: int) -> float:
    if "weight" not in raw:
        return 1.0
    weight = raw["weight"]
    if role != "assistant":
        raise DataError("invalid_weight", f"{where}: weight is only allowed on assistant messages", line)
    # bool is an int in Python, but `true` in the file is a mistake, not a weight.
    if isinstance(weight, bool) or weight not in (0, 1):
        raise DataError("invalid_weight", f"{where}.weight must be 0 or 1, got {weight!r}", line)
    return float(weight)


def _from_alpaca(record: dict, line: int) -> list[Message]:
    messages = _system(record, line)
    history = record.get("history") or []
    if not isinstance(history, list):
        raise DataError("invalid_message", "'history' must be a list of [question, answer] pairs", line)
    for index, pair in enumerate(history):
        if not isinstance(pair, list) or len(pair) != 2:
            raise DataError("invalid_message", f"history[{index}] must be a [question, answer] pair", line)
        messages.append(Message("user", _text(pair[0], f"history[{index}][0]", line)))
        messages.append(Message("assistant", _text(pair[1], f"history[{index}][1]", line)))
    instruction = _text(record.get("instruction"), "instruction", line, blank_ok=True)
    extra = _text(record.get("input") or "", "input", line, blank_ok=True)
    # An alpaca record may carry everything in `input`; joining only non-blank parts avoids a leading "\n".
    prompt = "\n".join(part for part in (instruction, extra) if part.strip())
    if not prompt:
        raise DataError("empty_content", "instruction and input are both empty", line)
    messages.append(Message("user", prompt))
    messages.append(Message("assistant", _text(record.get("output"), "output", line)))
    return messages


def _from_sharegpt(record: dict, line: int) -> list[Message]:
    turns = record["conversations"]
    if not isinstance(turns, list) or not turns:
        raise DataError("invalid_message", "'conversations' must be a non-empty list", line)
    messages = _system(record, line)
    for index, turn in enumerate(turns):
        where = f"conversations[{index}]"
        if not isinstance(turn, dict):
            raise DataError("invalid_message", f"{where} must be an object, got {_json_type(turn)}", line)
        speaker = turn.get("from", turn.get("role"))
        role = _SHAREGPT_ROLES.get(speaker) if isinstance(speaker, str) else None
        if role is None:
            expected = ", ".join(_SHAREGPT_ROLES)
            raise DataError("invalid_role", f"{where} is from {speaker!r}; expected one of {expected}", line)
        messages.append(Message(role, _content(turn.get("value", turn.get("content")), where, line)))
    return messages


def _system(record: dict, line: int) -> list[Message]:
    """The optional top-level `system` of alpaca and ShareGPT records; blank means none."""
    system = _text(record.get("system") or "", "system", line, blank_ok=True)
    return [Message("system", system)] if system.strip() else []


def _check_order(messages: list[Message], line: int, numbers: list[int | None] | None = None) -> None:
    """Optional system messages, then user and assistant alternating, with an assistant turn to train.
    `numbers` are the messages' numbers in the record when they differ from their positions (tool
    results flattened into one turn); errors name those."""
    expected = "user"
    started = False
    for position, message in enumerate(messages, start=1):
        number = numbers[position - 1] if numbers else position
        if message.role == "system":
            if started:
                raise DataError(
                    "invalid_order",
                    f"message {number} is a system message after the conversation began",
                    line,
                )
            continue
        if message.role != expected:
            raise DataError(
                "invalid_order",
                f"message {number} is {message.role} where {expected} was expected: after optional system "
                "messages, user and assistant must alternate, starting with user",
                line,
            )
        started = True
        expected = "assistant" if expected == "user" else "user"
    if not any(message.role == "assistant" and message.weight == 1 for message in messages):
        raise DataError("no_assistant_message", "no assistant message to train on (with weight 1)", line)


def _json_type(value: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


# ---------------------------------------------------------------- tokenizing


@dataclass
class Example:
    input_ids: list[int]
    labels: list[int]  # -100 where no loss is taken
    line: int
    truncated: bool


@dataclass
class TokenStats:
    examples: int
    total_tokens: int  # sum of len(input_ids) after truncation
    trained_tokens: int  # tokens with a label != -100
    max_tokens: int  # longest example before truncation
    truncated: int  # examples cut to max_length
    empty_after_truncation: int = 0  # examples left with no trained token; kept, the caller decides
    truncated_lines: list[int] = field(default_factory=list)  # the file lines of the truncated examples
    empty_lines: list[int] = field(default_factory=list)  # the file lines of examples with nothing to train


def tokenize(
    conversations: list[Conversation],
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    train_on_prompts: bool = False,
) -> tuple[list[Example], TokenStats]:
    """Render each conversation with the tokenizer's chat template and label the tokens to train on.

    By default only assistant turns with weight 1 are trained: their content and the end-of-turn marker
    the template writes after it (so the model learns to stop), not the role header nor any whitespace
    after the marker. `train_on_prompts` trains every token. An example longer than `max_length` tokens
    keeps its answer: its prompt is cut in the middle (`fit`), as LLaMA-Factory truncates the source
    before the target; `stats` lists the lines of the truncated examples and of those left with nothing
    to train on (see `check_trainable`).
    """
    if max_length < 1:
        raise ValueError(f"max_length must be at least 1, got {max_length}")
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("the tokenizer has no chat template")
    rendered = [_render(conversation, tokenizer) for conversation in conversations]
    stats = TokenStats(0, 0, 0, 0, 0, 0)
    if not rendered:
        return [], stats
    # One batched call: fast tokenizers encode a batch in parallel.
    encodings = tokenizer(
        [text for text, _ in rendered], return_offsets_mapping=True, add_special_tokens=False
    )
    examples = []
    for conversation, (_, spans), ids, offsets in zip(
        conversations, rendered, encodings["input_ids"], encodings["offset_mapping"], strict=True
    ):
        labels = list(ids) if train_on_prompts else _labels(ids, offsets, spans)
        truncated = len(ids) > max_length
        keep = fit(labels, max_length)
        example = Example([ids[i] for i in keep], [labels[i] for i in keep], conversation.line, truncated)
        examples.append(example)
        trained = sum(label != IGNORE_INDEX for label in example.labels)
        stats.examples += 1
        stats.total_tokens += len(example.input_ids)
        stats.trained_tokens += trained
        stats.max_tokens = max(stats.max_tokens, len(ids))
        stats.truncated += truncated
        stats.empty_after_truncation += trained == 0
        if truncated:
            stats.truncated_lines.append(conversation.line)
        if trained == 0:
            stats.empty_lines.append(conversation.line)
    return examples, stats


ANSWER_CONTEXT = 32
"""Prompt tokens kept right before the first trained token when an example is cut (its role header and
the end of the question), besides the prompt's start."""
MAX_EMPTY_SHARE = 0.5
"""The largest share of examples that may be left with nothing to train on before a file is refused."""


def fit(labels: list[int], max_length: int) -> list[int]:
    """The token positions an example keeps within `max_length`: all of them when it fits; else the
    prompt's start, the `ANSWER_CONTEXT` tokens before the first trained token, and everything from
    there on (the answer), dropping the middle of the prompt. When the trained part alone does not fit,
    the window starts `ANSWER_CONTEXT` tokens before it and the answer's end is cut."""
    n = len(labels)
    if n <= max_length:
        return list(range(n))
    first = next((i for i, label in enumerate(labels) if label != IGNORE_INDEX), None)
    if first is None:  # nothing to train on: keep the start (reported by check_trainable)
        return list(range(max_length))
    start = max(0, first - min(ANSWER_CONTEXT, max_length // 4))  # the answer is at least 3/4 of the window
    tail = n - start
    if tail >= max_length:
        return list(range(start, start + max_length))
    head = max_length - tail
    return list(range(head)) + list(range(start, n))


def check_trainable(stats: TokenStats) -> None:
    """Raise DataError when the file would train on nothing: no example keeps a trained token
    (`no_trained_tokens`), or more than MAX_EMPTY_SHARE of them keep none (`too_many_empty_examples`);
    `line` is the first such example's."""
    if not stats.examples:
        return
    lines = ", ".join(map(str, stats.empty_lines[:10])) + (" …" if len(stats.empty_lines) > 10 else "")
    if stats.trained_tokens == 0:
        raise DataError(
            "no_trained_tokens",
            "no example has a token to train on (an assistant answer with weight 1, within max_length); "
            f"lines {lines}",
            stats.empty_lines[0] if stats.empty_lines else None,
        )
    if len(stats.empty_lines) > MAX_EMPTY_SHARE * stats.examples:
        raise DataError(
            "too_many_empty_examples",
            f"{len(stats.empty_lines)} of {stats.examples} examples have nothing to train on "
            f"(more than {MAX_EMPTY_SHARE:.0%}); lines {lines}",
            stats.empty_lines[0],
        )


def describe(stats: TokenStats, max_length: int) -> str:
    """One line for a job's log, e.g. '3729 examples, 245,120 tokens (188,002 trained); 12 longer ...'."""
    text = (
        f"{_count(stats.examples, 'example')}, {stats.total_tokens:,} tokens "
        f"({stats.trained_tokens:,} trained), longest {stats.max_tokens:,}"
    )
    if stats.truncated:
        verb = "was" if stats.truncated == 1 else "were"
        text += f"; {stats.truncated} longer than {max_length} tokens {verb} truncated"
    else:
        text += f"; none longer than {max_length} tokens"
    if stats.empty_after_truncation:
        text += f"; {_count(stats.empty_after_truncation, 'example')} with nothing left to train on"
    return text


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _render(
    conversation: Conversation, tokenizer: PreTrainedTokenizerBase
) -> tuple[str, list[tuple[int, int]]]:
    """The full rendering and the character spans to train on (see tokenize)."""
    chat = [{"role": message.role, "content": message.content} for message in conversation.messages]
    full = _apply(tokenizer, chat, conversation.line)
    trained = [
        index
        for index, message in enumerate(conversation.messages)
        if message.role == "assistant" and message.weight == 1
    ]
    spans = _prefix_spans(tokenizer, chat, full, trained, conversation.line)
    if spans is None:
        spans = _search_spans(tokenizer, conversation, full, trained)
    return full, spans


def _prefix_spans(
    tokenizer: PreTrainedTokenizerBase, chat: list[dict], full: str, trained: list[int], line: int
) -> list[tuple[int, int]] | None:
    """Spans from incremental rendering; None when the template does not render prefixes as prefixes.

    The turn is what rendering it adds after the generation prompt: content plus end-of-turn marker.
    Trailing whitespace (ChatML's "\\n" after <|im_end|>) is left out: generation stops at the marker,
    so the model never has to produce it, and it belongs as much to the next turn.
    """
    spans = []
    for index in trained:
        before = _apply(tokenizer, chat[:index], line, add_generation_prompt=True)
        through = _apply(tokenizer, chat[: index + 1], line)
        if not (through.startswith(before) and full.startswith(through)):
            return None
        spans.append((len(before), len(before) + len(through[len(before) :].rstrip())))
    return spans


def _search_spans(
    tokenizer: PreTrainedTokenizerBase, conversation: Conversation, full: str, trained: list[int]
) -> list[tuple[int, int]]:
    """Fallback for templates whose renderings of a prefix differ from the start of the full rendering
    (e.g. one that writes the number of messages up front, or marks only the last turn).

    Tokens cannot help there (the token sequences differ the same way), so each message's content is
    found in order in the full text, and a trained turn extends over the tokenizer's EOS token when that
    follows (after spaces) as its end-of-turn marker.
    """
    eos = getattr(tokenizer, "eos_token", None)
    spans = []
    cursor = 0
    for index, message in enumerate(conversation.messages):
        needle = message.content if message.content in full[cursor:] else message.content.strip()
        start = full.find(needle, cursor)
        if start < 0:
            raise DataError(
                "template_mismatch",
                f"message {index + 1} does not appear in the chat template's rendering",
                conversation.line,
            )
        cursor = start + len(needle)
        if index in trained:
            end = cursor
            if eos and (marker := re.match(r"[ \t]*" + re.escape(eos), full[end:])):
                end += marker.end()
            spans.append((start, end))
    return spans


def _apply(tokenizer: PreTrainedTokenizerBase, chat: list[dict], line: int, **kwargs) -> str:
    from jinja2 import TemplateError

    try:
        return tokenizer.apply_chat_template(chat, tokenize=False, **kwargs)
    except TemplateError as error:  # templates refuse some conversations with raise_exception(...)
        raise DataError(
            "template_error", f"the chat template refused this conversation: {error}", line
        ) from None


def _labels(ids: list[int], offsets: list[tuple[int, int]], spans: list[tuple[int, int]]) -> list[int]:
    """Label a token when its characters overlap a trained span; a token that straddles the role header
    and the content (SentencePiece's "▁word") is then trained, which costs less than missing a word."""
    labels = []
    for token, (start, end) in zip(ids, offsets, strict=True):
        end = max(end, start + 1)  # a zero-width offset still has a position
        inside = any(start < span_end and end > span_start for span_start, span_end in spans)
        labels.append(token if inside else IGNORE_INDEX)
    return labels
