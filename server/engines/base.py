"""The serving-engine interface: prompt token ids in, text deltas out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

FinishReason = Literal["stop", "length"]
"""How a sequence ended, in OpenAI's words. An engine that gives up on a sequence (vLLM's `abort`)
raises instead, so the client gets an error, never a finish reason OpenAI does not define."""

SAMPLING_EPS = 1e-5
"""A temperature below this is greedy: dividing logits by it overflows (vLLM's `_SAMPLING_EPS`)."""
MAX_LOGPROBS = 20
"""The most alternatives per token (`top_logprobs`), as OpenAI allows."""
LOGPROB_FLOOR = -9999.0
"""What OpenAI (and vLLM's server) report for a token that cannot be picked (masked by a grammar, or
-inf after logit_bias): -inf and NaN are not JSON."""
MAX_SEED = 2**63 - 1
"""Seeds are int64 in OpenAI's API; choice `i` of `n` uses `(seed + i) % 2**63` (see `choice_seed`)."""


def floor_logprob(logprob: float) -> float:
    """`logprob`, or LOGPROB_FLOOR when it is below it, -inf or NaN (written as a comparison so that NaN
    lands on the floor too)."""
    return logprob if logprob > LOGPROB_FLOOR else LOGPROB_FLOOR


def choice_seed(seed: int | None, i: int) -> int | None:
    """The seed of choice `i` of a request seeded `seed` (int64, possibly negative): `(seed + i)` wrapped
    into [0, 2**63), so every engine's generator accepts it and `n > 1` never overflows."""
    return None if seed is None else (seed + i) % (MAX_SEED + 1)


@dataclass(frozen=True)
class StructuredOutput:
    """A constraint on the whole answer, enforced token by token with xgrammar (server.engines.grammar).

    `kind`: `json_schema` (`spec` is the schema as JSON text; `strict`: properties not in the schema are
    refused, OpenAI's strict mode), `json_object` (any JSON object; `spec` unused), or `structural_tag`
    (`spec` is an xgrammar structural tag as JSON text: free text with constrained tool calls)."""

    kind: Literal["json_schema", "json_object", "structural_tag"]
    spec: str = ""
    strict: bool = False


@dataclass(frozen=True)
class SamplingParams:
    """How one sequence is sampled; the chat service builds it from the request (already validated:
    a ValueError here is a server bug, not bad input).

    Applied in vLLM's order: logit_bias → repetition/presence/frequency penalties → temperature →
    top-k → top-p → min-p. Log-probabilities are those of the model's distribution after the bias and
    penalties, before temperature and truncation (vLLM's `processed_logprobs` without temperature is the
    same; OpenAI does not say)."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    ignore_eos: bool = False
    top_k: int = 0
    """Keep the k most likely tokens (0 = all; vLLM's extension, where -1 also means all)."""
    min_p: float = 0.0
    """Drop tokens below min_p × the top token's probability (vLLM's extension; 0 = off)."""
    repetition_penalty: float = 1.0
    """Divide positive (multiply negative) logits of tokens in the prompt or the answer (vLLM's
    extension, from CTRL; 1 = off)."""
    logit_bias: tuple[tuple[int, float], ...] = ()
    """(token id, bias in [-100, 100]) added to the logits before sampling (OpenAI's `logit_bias`)."""
    logprobs: int | None = None
    """None: no log-probabilities. k in [0, 20]: each generated token's logprob and its k most likely
    alternatives (OpenAI's `logprobs: true` with `top_logprobs: k`)."""
    structured: StructuredOutput | None = None
    """Constrain the answer to a grammar (response_format or tools); None: free text."""

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        if not 0.0 <= self.temperature <= 2.0:
            raise ValueError("temperature must be within [0, 2]")
        if not 0.0 <= self.top_p <= 1.0:
            raise ValueError("top_p must be within [0, 1]")
        if self.seed is not None and not 0 <= self.seed <= MAX_SEED:
            raise ValueError("seed must be within [0, 2**63)")
        if self.top_k < 0 or not 0.0 <= self.min_p <= 1.0 or self.repetition_penalty <= 0.0:
            raise ValueError("top_k >= 0, min_p in [0, 1], repetition_penalty > 0")
        if self.logprobs is not None and not 0 <= self.logprobs <= MAX_LOGPROBS:
            raise ValueError(f"logprobs must be within [0, {MAX_LOGPROBS}]")
        if any(not -100.0 <= bias <= 100.0 for _, bias in self.logit_bias):
            raise ValueError("logit_bias values must be within [-100, 100]")

    @property
    def greedy(self) -> bool:
        """Argmax decoding: temperature below SAMPLING_EPS, or top_p 0 / top_k 1 (one candidate left)."""
        return self.temperature < SAMPLING_EPS or self.top_p == 0.0 or self.top_k == 1


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token's log-probability (natural log) and the `top` most likely alternatives at
    its position, as (token id, logprob), most likely first."""

    token_id: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()


@dataclass
class Delta:
    """New text of one sequence; the last one carries `finish_reason` and the token counts.

    `logprobs` holds one entry per token generated since the previous delta when the request asked for
    them (the text of those tokens may still be held back by the stop-string check, so a delta can carry
    logprobs with empty `text`)."""

    text: str
    finish_reason: FinishReason | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    logprobs: list[TokenLogprob] | None = None


class EngineOverloaded(RuntimeError):
    """The engine's queue is full; the client should retry later."""


@dataclass
class EngineInfo:
    name: str
    model_path: str
    dtype: str
    device: str
    max_model_len: int
    extra: dict[str, Any] = field(default_factory=dict)


class Engine(ABC):
    """A loaded base model that generates text for prompt token ids, optionally through a LoRA adapter.

    The chat template is rendered once in the service layer with `tokenizer`, so every engine gets the
    same prompt ids. Optional abilities raise NotImplementedError.
    """

    name: str = "engine"
    max_lora_rank: int | None = 0
    """The largest LoRA rank `add_adapter` accepts: 0 = this engine serves no adapters (the default, as
    `add_adapter` is optional), None = any rank."""
    tokenizer: Any
    info: EngineInfo

    @abstractmethod
    def generate(
        self, prompt_ids: list[int], params: SamplingParams, adapter: str | None = None
    ) -> AsyncIterator[Delta]:
        """Stream the answer; closing the iterator early cancels the sequence."""

    async def add_adapter(self, name: str, path: str) -> None:
        """Serve the PEFT LoRA adapter in `path` as `name` from now on, without a restart."""
        raise NotImplementedError(f"the {self.name} engine does not serve adapters")

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    @property
    def max_model_len(self) -> int:
        return self.info.max_model_len

    def stats(self) -> dict[str, int]:
        """Running/waiting sequence counts for /metrics and /health."""
        return {"running": 0, "waiting": 0}

    async def close(self) -> None:
        return None
