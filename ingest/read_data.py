"""CSV, JSON and JSONL as text where every row or record stands alone, so retrieval finds it whole."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from .types import IngestError

_SNIFF_BYTES = 64 * 1024


def read_csv(text: str) -> str:
    """One line per row: `header1: value1; header2: value2`, leaving out empty values."""
    try:
        dialect: Any = csv.Sniffer().sniff(text[:_SNIFF_BYTES], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel  # the sniffer gives up on one-column files
    rows = csv.reader(io.StringIO(text), dialect)
    header = [name.strip() for name in next(rows, [])]
    lines = []
    for row in rows:
        pairs = [f"{_column(header, i)}: {value.strip()}" for i, value in enumerate(row) if value.strip()]
        if pairs:
            lines.append("; ".join(pairs))
    return "\n".join(lines)


def _column(header: list[str], i: int) -> str:
    return header[i] if i < len(header) and header[i] else f"column {i + 1}"


def read_json(text: str) -> str:
    """Objects flattened into `key.sub: value` lines; a top-level list gives one block per element."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        message = f"The file is not valid JSON ({error.msg} at line {error.lineno})."
        raise IngestError("parse_error", message) from None
    records = data if isinstance(data, list) else [data]
    return "\n\n".join(_block(record) for record in records)


def read_jsonl(text: str) -> str:
    """One block per line, each flattened as in `read_json`."""
    blocks = []
    # Not splitlines(): U+2028 and friends may stand unescaped inside JSON strings.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            blocks.append(_block(json.loads(line)))
        except json.JSONDecodeError:
            raise IngestError("parse_error", f"line {number} is not valid JSON") from None
    return "\n\n".join(blocks)


def _block(value: Any) -> str:
    return "\n".join(f"{key}: {scalar}" if key else scalar for key, scalar in _flatten(value, ""))


def _flatten(value: Any, key: str) -> list[tuple[str, str]]:
    if isinstance(value, dict):
        return [pair for k, v in value.items() for pair in _flatten(v, f"{key}.{k}" if key else str(k))]
    if isinstance(value, list):
        return [pair for i, v in enumerate(value) for pair in _flatten(v, f"{key}[{i}]")]
    if isinstance(value, str):
        return [(key, value)] if value.strip() else []
    # json.dumps writes true/false/null as the file did, not Python's True/False/None.
    return [(key, json.dumps(value))]
