"""Decoding of uploaded text: UTF-8 (with or without BOM), UTF-16 with a BOM, or GB18030 (a GBK superset)."""

from __future__ import annotations

import codecs
import re

# Control characters that do not occur in real text (tab, newline, form feed and carriage return do).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
# Some text files carry a few stray control characters (terminal colours in logs); binary has many.
_MAX_CONTROL_RATIO = 0.05


def _encodings(data: bytes) -> list[str]:
    if data.startswith(codecs.BOM_UTF8):
        return ["utf-8-sig"]
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return ["utf-16"]
    # UTF-8 first: GBK-encoded Chinese is almost never valid UTF-8, while the reverse is not true.
    return ["utf-8", "gb18030"]


def looks_binary(text: str) -> bool:
    controls = _CONTROL.findall(text)
    return "\x00" in controls or len(controls) > _MAX_CONTROL_RATIO * max(len(text), 1)


def decode_text(data: bytes, *, partial: bool = False) -> str | None:
    """Decode `data` as text; None when it is not text in a supported encoding.

    `partial` says `data` is the head of a longer file, so its last character may be cut in half.
    """
    for encoding in _encodings(data):
        try:
            text = codecs.getincrementaldecoder(encoding)().decode(data, final=not partial)
        except UnicodeDecodeError:
            continue
        return None if looks_binary(text) else text
    return None
