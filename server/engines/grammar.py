"""Grammar-constrained decoding with xgrammar (vLLM's own structured-output backend).

A `StructuredOutput` (server.engines.base) names one constraint: a JSON schema, any JSON object, or an
xgrammar structural tag (the tool-call format, see server.chat.tools). JSON answers are compact
(`{"a": 1, "b": [2]}`: xgrammar's `any_whitespace=False`, vLLM's `disable_any_whitespace`): with free
whitespace a small model can fill an object with newlines until max_tokens. `check_structured` compiles it
without a tokenizer, so a request whose schema xgrammar cannot compile is refused (400) before any
engine sees it. `GrammarRuntime` is the transformers engine's per-model compiler: one
`xgrammar.GrammarMatcher` per sequence, whose token bitmask is applied to that row's logits only, so
one row's grammar never constrains another's. The vLLM engine hands the same constraint to vLLM's
`StructuredOutputsParams` instead, which compiles it with the same library.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from server.engines.base import StructuredOutput


class GrammarError(ValueError):
    """The constraint cannot be compiled (an unsupported or malformed schema); the message says why."""


def _xgrammar():
    import xgrammar

    return xgrammar


@lru_cache(maxsize=256)
def check_structured(structured: StructuredOutput) -> None:
    """Compile `structured` once without a tokenizer (cached); raise GrammarError naming the problem."""
    xgr = _xgrammar()
    try:
        if structured.kind == "json_schema":
            xgr.Grammar.from_json_schema(structured.spec, strict_mode=structured.strict, any_whitespace=False)
        elif structured.kind == "structural_tag":
            xgr.Grammar.from_structural_tag(structured.spec)
    except Exception as exc:  # xgrammar raises RuntimeError/ValueError/InvalidJSONError with its reason
        raise GrammarError(_reason(exc)) from exc


def _reason(exc: Exception) -> str:
    """xgrammar's message without its C++ source location (`[12:00:00] /project/cpp/x.cc:12: ...`)."""
    text = str(exc).strip()
    head, sep, tail = text.partition(": ")
    if sep and ".cc:" in head:
        text = tail
    return text.splitlines()[0] if text else type(exc).__name__


class GrammarRuntime:
    """xgrammar's tokenizer info and compiler for one model (compiled grammars cached by the compiler).

    `vocab_size` is the width of the model's logits (the embedding rows, which may exceed the
    tokenizer's length); `stop_ids` end a sequence, so a grammar accepts them only where it may end."""

    def __init__(self, tokenizer: Any, vocab_size: int, stop_ids: list[int]) -> None:
        xgr = _xgrammar()
        self.xgr = xgr
        self.vocab_size = vocab_size
        info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size, stop_token_ids=stop_ids)
        self.compiler = xgr.GrammarCompiler(info, max_threads=1)

    def matcher(self, structured: StructuredOutput) -> Any:
        """A fresh `xgrammar.GrammarMatcher` for one sequence. Raises GrammarError."""
        try:
            if structured.kind == "json_object":  # an object, not any JSON value (OpenAI's json_object)
                compiled = self.compiler.compile_json_schema(
                    '{"type": "object"}', strict_mode=False, any_whitespace=False
                )
            elif structured.kind == "json_schema":
                compiled = self.compiler.compile_json_schema(
                    structured.spec, strict_mode=structured.strict, any_whitespace=False
                )
            else:
                compiled = self.compiler.compile_structural_tag(structured.spec)
        except Exception as exc:
            raise GrammarError(_reason(exc)) from exc
        return self.xgr.GrammarMatcher(compiled)

    def mask(self, matcher: Any, scores: Any) -> None:
        """Set to -inf, in place, every token `matcher` does not allow next in `scores` (one row, [V])."""
        bitmask = self.xgr.allocate_token_bitmask(1, self.vocab_size)
        matcher.fill_next_token_bitmask(bitmask, 0)
        row = scores.view(1, -1)
        self.xgr.apply_token_bitmask_inplace(row, bitmask.to(scores.device), vocab_size=self.vocab_size)


def structured_json(structured: StructuredOutput) -> dict:
    """The constraint as vLLM's `StructuredOutputsParams` keyword arguments."""
    if structured.kind == "json_object":  # vLLM's json_object admits any JSON value; OpenAI's is an object
        return {"json": {"type": "object"}, "disable_any_whitespace": True}
    if structured.kind == "json_schema":
        return {
            "json": json.loads(structured.spec),
            "disable_additional_properties": structured.strict,
            "disable_any_whitespace": True,
        }
    return {"structural_tag": structured.spec}
