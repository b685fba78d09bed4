"""The serving-engine interface: prompt token ids in, text deltas out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

FinishReason = Literal["stop", "length", "abort"]


@dataclass(frozen=True)
class SamplingParams:
    """How one sequence is sampled; the chat service builds it from the request."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    ignore_eos: bool = False

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        if not 0.0 <= self.temperature <= 2.0:
            raise ValueError("temperature must be within [0, 2]")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError("top_p must be within (0, 1]")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass
class Delta:
    """New text of one sequence; the last one carries `finish_reason` and the token counts."""

    text: str
    finish_reason: FinishReason | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


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
