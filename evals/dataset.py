"""Eval files: JSONL of {question, reference (text or list), optional reference_file_id, reference_quote},
or of rows in OpenAI Evals' shape, {"item": {...}}; a file may mix both."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from common.encoding import decode_text
from common.text import lone_surrogate


@dataclass
class EvalItem:
    question: str
    references: list[str]
    reference_file_id: str | None = None
    reference_quote: str | None = None
    line: int = 0
    extra: dict = field(default_factory=dict)


class EvalFileError(ValueError):
    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(f"line {line}: {message}" if line else message)
        self.line = line


QUESTION_KEYS = ("question", "input", "prompt")
"""Where an OpenAI-shaped row's question is looked for in its item, first present first."""
REFERENCE_KEYS = ("reference", "ideal", "answer", "expected")
"""Where an OpenAI-shaped row's reference answer(s) are looked for in its item, first present first."""


def _is_item_row(record: dict) -> bool:
    """OpenAI's shape: an "item" key and no top-level "question" (a flat row keeps its meaning even
    with a field named "item")."""
    return "item" in record and "question" not in record


def _references(value: object, where: str, n: int) -> list[str]:
    references = [value] if isinstance(value, str) else value
    if not isinstance(references, list) or not references or not all(isinstance(r, str) for r in references):
        raise EvalFileError(f"{where} must be a string or a non-empty list of strings", n)
    return references


def _optional_text(record: dict, key: str, where: str, n: int) -> str | None:
    """`record[key]` when it is a string, None when absent or null; EvalFileError otherwise."""
    value = record.get(key)
    if value is not None and not isinstance(value, str):
        raise EvalFileError(f"'{where}{key}' must be a string (got {type(value).__name__})", n)
    return value


def _flat_row(record: dict, n: int) -> EvalItem:
    question = record.get("question")
    if not isinstance(question, str) or not question.strip():
        raise EvalFileError("'question' must be a non-empty string", n)
    references = _references(record.get("reference", record.get("answer")), "'reference'", n)
    # the row itself is the item graders read ({{item.reference}}), so flat rows mix with OpenAI's
    return EvalItem(
        question.strip(),
        references,
        _optional_text(record, "reference_file_id", "", n),
        _optional_text(record, "reference_quote", "", n),
        n,
        {"item": record},
    )


def _message_text(messages: list, where: str, n: int) -> str:
    """The text of a one-message chat list [{"role": "user", "content": str or text parts}]."""
    if len(messages) != 1:
        raise EvalFileError(
            f"{where} holds {len(messages)} chat messages; only single-question items (one user message) "
            "are supported for now",
            n,
        )
    message = messages[0]
    if not isinstance(message, dict) or message.get("role") != "user":
        role = message.get("role") if isinstance(message, dict) else None
        raise EvalFileError(f"the message in {where} must be an object with role 'user' (got {role!r})", n)
    content = message.get("content")
    if isinstance(content, list):
        kinds = [p.get("type") if isinstance(p, dict) else None for p in content]
        if not all(isinstance(p, dict) and isinstance(p.get("text"), str) for p in content):
            raise EvalFileError(
                f"the message in {where} holds a part that is not text ({kinds}); only text "
                "questions are supported",
                n,
            )
        content = "".join(p["text"] for p in content)
    if not isinstance(content, str):
        raise EvalFileError(f"the message in {where} must have a string 'content'", n)
    return content


def _item_row(record: dict, n: int, default_reference: Callable[[dict], list[str]] | None = None) -> EvalItem:
    item = record["item"]
    if not isinstance(item, dict):
        raise EvalFileError("'item' must be a JSON object", n)
    key = next((k for k in QUESTION_KEYS if k in item), None)
    if key is None:
        raise EvalFileError(
            "an 'item' row needs its question in 'item.question', 'item.input' or 'item.prompt'", n
        )
    question = item[key]
    if isinstance(question, list):
        question = _message_text(question, f"'item.{key}'", n)
    if not isinstance(question, str) or not question.strip():
        raise EvalFileError(f"'item.{key}' must be a non-empty string or a list of one user message", n)
    key = next((k for k in REFERENCE_KEYS if k in item), None)
    found = default_reference(item) if key is None and default_reference is not None else None
    if key is None and not found:
        raise EvalFileError(
            "an 'item' row needs its reference answer in 'item.reference', 'item.ideal', 'item.answer' or "
            "'item.expected'"
            + (" or in the item field that testing_criteria's reference reads" if default_reference else ""),
            n,
        )
    references = found or _references(item[key], f"'item.{key}'", n)
    extra = {"item": item} | ({"sample": record["sample"]} if "sample" in record else {})
    return EvalItem(
        question.strip(),
        references,
        _optional_text(item, "reference_file_id", "item.", n),
        _optional_text(item, "reference_quote", "item.", n),
        n,
        extra,
    )


def load_eval(
    path: Path, max_items: int = 5000, default_reference: Callable[[dict], list[str]] | None = None
) -> list[EvalItem]:
    """The questions of an eval file (JSONL), in order, at most `max_items`.

    A line is a flat row, {"question", "reference" (or "answer"): text or list of texts,
    "reference_file_id"?, "reference_quote"?}, or a row in OpenAI Evals' data-source shape, {"item": {...},
    "sample"?: {...}} without a top-level "question". For those the question is the item's first present
    of `QUESTION_KEYS` (a string, or a chat list of exactly one user message, whose text is taken), the
    references its first present of `REFERENCE_KEYS`. `EvalItem.extra["item"]` holds the item object
    (for a flat row, the row itself) for graders' `{{item.*}}` templates; a row's "sample" (OpenAI's
    stored answer) is kept in `extra["sample"]` and is not graded, since arms answer anew. An item with
    none of `REFERENCE_KEYS` takes `default_reference(item)` when that gives a non-empty list (a
    comparison's graders name where their reference is, e.g. `{{item.correct_label}}`).

    Raises EvalFileError with the line number: not JSON, not an object, lone surrogates, a missing or
    empty question or reference, a chat list of more or fewer than one user message, a non-text part;
    and without one for a file that is not text, holds no question or more than `max_items`."""
    items: list[EvalItem] = []
    text = decode_text(path.read_bytes())  # as knowledge-base and training files are decoded
    if text is None:
        raise EvalFileError("the eval file is not text in UTF-8 or an encoding that can be detected")
    for n, raw in enumerate(text.removeprefix("\ufeff").split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise EvalFileError(f"not valid JSON ({exc.msg})", n) from exc
        if not isinstance(record, dict):
            raise EvalFileError("each line must be a JSON object", n)
        if (where := lone_surrogate(record)) is not None:
            raise EvalFileError(f"{where} is not valid Unicode text (it holds a lone surrogate)", n)
        items.append(
            _item_row(record, n, default_reference) if _is_item_row(record) else _flat_row(record, n)
        )
        if len(items) > max_items:
            raise EvalFileError(f"at most {max_items} questions per comparison")
    if not items:
        raise EvalFileError("the eval file holds no questions")
    return items
