"""Eval files: JSONL of {question, reference (text or list), optional reference_file_id, reference_quote}."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from common.text import lone_surrogate
from ingest.encoding import decode_text


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


def load_eval(path: Path, max_items: int = 5000) -> list[EvalItem]:
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
        question = record.get("question")
        if not isinstance(question, str) or not question.strip():
            raise EvalFileError("'question' must be a non-empty string", n)
        reference = record.get("reference", record.get("answer"))
        references = [reference] if isinstance(reference, str) else reference
        if (
            not isinstance(references, list)
            or not references
            or not all(isinstance(r, str) for r in references)
        ):
            raise EvalFileError("'reference' must be a string or a non-empty list of strings", n)
        items.append(
            EvalItem(
                question.strip(),
                references,
                record.get("reference_file_id"),
                record.get("reference_quote"),
                n,
            )
        )
        if len(items) > max_items:
            raise EvalFileError(f"at most {max_items} questions per comparison")
    if not items:
        raise EvalFileError("the eval file holds no questions")
    return items
