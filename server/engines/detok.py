"""Incremental detokenization with stop strings, shared by every engine that decodes token by token."""

from __future__ import annotations

import json
import re
from typing import Any

_REPLACEMENT = "\ufffd"


class StreamDecoder:
    """Turns a growing list of token ids into safe-to-send text increments.

    Holds back a trailing partial UTF-8 character (decoded as U+FFFD) and any tail that could still
    become a stop string, so a client never sees half a character or the start of a stop string.
    """

    def __init__(self, tokenizer: Any, stop: tuple[str, ...] = ()) -> None:
        self.tokenizer = tokenizer
        self.stop = tuple(s for s in stop if s)
        self.ids: list[int] = []
        self.sent = 0  # characters of the decoded text already handed out
        self.length = 0  # characters of the whole decoded text (LogprobAligner's offsets)
        self.stopped = False

    def push(self, token_id: int) -> str:
        """Add one token; return the text that may be sent now (possibly empty)."""
        self.ids.append(token_id)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        self.length = len(text)
        hit = self._find_stop(text)
        if hit is not None:
            self.stopped = True
            return self._take(text[:hit])
        safe = len(text.rstrip(_REPLACEMENT)) if text.endswith(_REPLACEMENT) else len(text)
        safe -= self._held_for_stop(text[:safe])
        return self._take(text[:safe])

    def flush(self) -> str:
        """Everything not sent yet (at the end of the sequence), but never a partial character: an answer
        cut by max_tokens in the middle of one ends before it, as vLLM's does (not with U+FFFD)."""
        if self.stopped:
            return ""
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        return self._take(text.rstrip(_REPLACEMENT) if text.endswith(_REPLACEMENT) else text)

    def _take(self, text: str) -> str:
        if len(text) <= self.sent:
            return ""
        out, self.sent = text[self.sent :], len(text)
        return out

    def _find_stop(self, text: str) -> int | None:
        if not self.stop:
            return None
        start = max(0, self.sent - max(len(s) for s in self.stop))
        hits = [i for s in self.stop if (i := text.find(s, start)) != -1]
        return min(hits) if hits else None

    def _held_for_stop(self, text: str) -> int:
        """Length of the longest tail of `text` that is a proper prefix of a stop string."""
        best = 0
        for s in self.stop:
            for n in range(min(len(s) - 1, len(text)), best, -1):
                if text.endswith(s[:n]):
                    best = n
                    break
        return best


class LogprobAligner:
    """Hands out each token's logprob entry once the text that token produced has been sent, and never
    the entries of tokens a stop string cut away: a client's logprobs are those of the content it got.

    `add` takes entries as tokens are generated; `take(sent)` returns the entries now due, where `sent`
    is the number of characters of text handed out so far: a token is due when its text ends within
    `sent`. A token that straddles a stop-string cut (part content, part stop string, as " Paris" after
    "is" with stop "Paris") never is, so no entry shows text of the stop string. Tokens without text
    (special tokens, such as end-of-sequence) are due only with a later token that has text, so a
    trailing end-of-sequence token, which is not content, never is. A token that only continues a
    character (the third byte of an emoji) adds no characters but is content: it is due with the
    character. Offsets come from decoding the growing id list with `skip_special_tokens=True`, as
    `StreamDecoder` and vLLM's detokenizer do."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.entries: list[Any] = []
        self.ends: list[int] = []
        self.released = 0
        self.special = set(getattr(tokenizer, "all_special_ids", ()) or ())

    def add(self, entries: Any, end: int | None = None) -> None:
        """Take the entries of newly generated tokens. `end`, for a single entry, is the length of the
        whole text decoded through it when the caller has it already (`StreamDecoder.length`), so the
        ids are not decoded twice per token; otherwise they are decoded here."""
        for entry in entries or ():
            self.ids.append(entry.token_id)
            self.entries.append(entry)
            if end is None:
                self.ends.append(len(self.tokenizer.decode(self.ids, skip_special_tokens=True)))
            else:
                self.ends.append(end)

    def take(self, sent: int) -> list[Any]:
        n = last = self.released
        while n < len(self.entries):
            start = self.ends[n - 1] if n else 0
            if self.ends[n] > sent:
                break
            n += 1
            if self.ends[n - 1] > start or self.ids[n - 1] not in self.special:
                last = n  # a content token: it and the special tokens before it are due
        out, self.released = self.entries[self.released : last], last
        return out


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte-level BPE alphabet: each byte 0-255 as the printable character that stands for it
    in the vocabulary (OpenAI's gpt-2 `encoder.py`, MIT; the `tokenizers` ByteLevel decoder's table)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars), strict=True))


_BYTE_DECODER = {char: byte for byte, char in _bytes_to_unicode().items()}
_BYTE_FALLBACK = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def _uses_byte_level(tokenizer: Any) -> bool:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return False
    try:
        decoder = json.loads(backend.to_str()).get("decoder") or {}
    except (AttributeError, TypeError, ValueError):
        return False
    pending = [decoder]
    while pending:
        node = pending.pop()
        if node.get("type") == "ByteLevel":
            return True
        pending.extend(node.get("decoders") or ())
    return False


class TokenBytes:
    """A token's raw bytes and its OpenAI display string (`token` / `bytes` in `logprobs`).

    Byte-level BPE tokens (GPT-2, SmolLM, Llama 3, Qwen) map back through the byte alphabet; SentencePiece
    byte-fallback tokens (`<0xE6>`) are that byte; anything else is its decoded text. A token holding part
    of a UTF-8 character gets those bytes, so joining the `bytes` of a whole answer rebuilds its text; its
    string is OpenAI's `bytes:\\xe4\\xbd` form, as decoding it alone would give U+FFFD."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.byte_level = _uses_byte_level(tokenizer)
        added = getattr(tokenizer, "added_tokens_decoder", None) or {}
        self.added = set(added) if isinstance(added, dict) else set()
        self.cache: dict[int, tuple[str, list[int]]] = {}

    def __call__(self, token_id: int) -> tuple[str, list[int]]:
        hit = self.cache.get(token_id)
        if hit is None:
            raw = self._raw(token_id)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = "bytes:" + "".join(f"\\x{b:02x}" for b in raw)
            hit = self.cache[token_id] = (text, list(raw))
        return hit

    def _raw(self, token_id: int) -> bytes:
        if token_id not in self.added and hasattr(self.tokenizer, "convert_ids_to_tokens"):
            piece = self.tokenizer.convert_ids_to_tokens(token_id)
            if isinstance(piece, str):
                if self.byte_level and piece and all(c in _BYTE_DECODER for c in piece):
                    return bytes(_BYTE_DECODER[c] for c in piece)
                if match := _BYTE_FALLBACK.fullmatch(piece):
                    return bytes([int(match.group(1), 16)])
        return self.tokenizer.decode([token_id], skip_special_tokens=False).encode("utf-8")
