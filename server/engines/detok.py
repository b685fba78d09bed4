"""Incremental detokenization with stop strings, shared by every engine that decodes token by token."""

from __future__ import annotations

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
        self.stopped = False

    def push(self, token_id: int) -> str:
        """Add one token; return the text that may be sent now (possibly empty)."""
        self.ids.append(token_id)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        hit = self._find_stop(text)
        if hit is not None:
            self.stopped = True
            return self._take(text[:hit])
        safe = len(text.rstrip(_REPLACEMENT)) if text.endswith(_REPLACEMENT) else len(text)
        safe -= self._held_for_stop(text[:safe])
        return self._take(text[:safe])

    def flush(self) -> str:
        """Everything not sent yet (at the end of the sequence)."""
        if self.stopped:
            return ""
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        return self._take(text)

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
