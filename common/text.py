"""Text that is not valid Unicode: JSON allows a lone surrogate (`"\\ud800"`); no tokenizer, UTF-8
encoder or SQLite text column does. Every place that reads JSON from a user (request bodies, training
files, eval files) checks once with these and refuses such text by name, never passing it on."""

from __future__ import annotations

from typing import Any


def is_utf8(text: str) -> bool:
    """Whether `text` can be encoded as UTF-8 (it holds no lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def lone_surrogate(value: Any, path: str = "") -> str | None:
    """The path (`messages[0].content`, `query`) of the first string in parsed JSON that is not valid
    Unicode text, in a key or a value (a bad key reports its object's path); None when all are text;
    `"body"` when the bad string is the top level or a top-level key."""
    if isinstance(value, str):
        return None if is_utf8(value) else (path or "body")
    if isinstance(value, dict):
        for key, item in value.items():
            if not is_utf8(str(key)):
                return path or "body"
            found = lone_surrogate(item, f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = lone_surrogate(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None
