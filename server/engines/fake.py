"""A scripted engine for fast tests: replies from a queue, records every call, streams char by char."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from server.engines.base import Delta, Engine, EngineInfo, EngineOverloaded, SamplingParams, TokenLogprob
from server.engines.detok import LogprobAligner, StreamDecoder


class CharTokenizer:
    """One token per character; enough of the Hugging Face tokenizer surface for the service layer."""

    eos_token_id = 0
    model_max_length = 512
    vocab_size = 0x110000  # every Unicode code point is a token id

    def __len__(self) -> int:
        return self.vocab_size

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [ord(c) for c in text]

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return "".join(chr(i) for i in ids if i)

    def apply_chat_template(
        self,
        messages: list[dict[str, Any]],
        tokenize: bool = False,
        add_generation_prompt: bool = True,
        continue_final_message: bool = False,
        **_: Any,
    ) -> str:
        text = "".join(f"<{m['role']}>{m['content']}\n" for m in messages)
        if continue_final_message:  # as Hugging Face does: the last message stays open
            return text.removesuffix("\n")
        return text + ("<assistant>" if add_generation_prompt else "")


def fake_logprobs(token: int, k: int) -> TokenLogprob:
    """Deterministic log-probabilities: the chosen token -0.5, then k alternatives (the chosen token
    first, then the next code points) at -0.5, -1.5, -2.5, ..."""
    top = tuple((token + j, -0.5 - j) for j in range(k))
    return TokenLogprob(token, -0.5, top)


@dataclass
class FakeCall:
    prompt_ids: list[int]
    params: SamplingParams
    adapter: str | None

    @property
    def prompt(self) -> str:
        return CharTokenizer().decode(self.prompt_ids)


def _positional_count(function: Any) -> int:
    import inspect

    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(p.kind in kinds for p in inspect.signature(function).parameters.values())


class FakeEngine(Engine):
    name = "fake"
    max_lora_rank: int | None = None  # tests set a limit to play a vLLM engine

    def __init__(
        self,
        replies: list[str] | None = None,
        max_model_len: int = 512,
        delay: float = 0.0,
        max_queue: int = 1000,
        tokenizer: Any = None,
        respond: Any = None,
    ) -> None:
        # optional: (prompt text) or (prompt text, SamplingParams) -> reply, for tests whose answer
        # depends on the prompt (and on the sampling settings: temperature, seed)
        self.respond = respond
        self._respond_takes_params = respond is not None and _positional_count(respond) >= 2
        self.tokenizer = tokenizer or CharTokenizer()
        self.info = EngineInfo("fake", "fake", "float32", "cpu", max_model_len)
        self.replies: deque[str] = deque(replies or [])
        self.default_reply = "Hello from the fake engine."
        self.calls: list[FakeCall] = []
        self.adapters: dict[str, str] = {}
        self.delay = delay
        self.max_queue = max_queue
        self.running = 0
        self.cancelled = 0

    def enqueue(self, *replies: str) -> None:
        self.replies.extend(replies)

    async def add_adapter(self, name: str, path: str) -> None:
        self.adapters[name] = path

    def stats(self) -> dict[str, int]:
        return {"running": self.running, "waiting": 0}

    async def generate(
        self, prompt_ids: list[int], params: SamplingParams, adapter: str | None = None
    ) -> AsyncIterator[Delta]:
        if self.running >= self.max_queue:
            raise EngineOverloaded("fake engine queue is full")
        self.calls.append(FakeCall(list(prompt_ids), params, adapter))
        if self.replies:
            reply = self.replies.popleft()
        elif self.respond is not None:
            text = self.tokenizer.decode(list(prompt_ids))
            reply = self.respond(text, params) if self._respond_takes_params else self.respond(text)
        else:
            reply = self.default_reply
        decoder = StreamDecoder(self.tokenizer, params.stop)
        self.running += 1
        done = False
        n = 0
        aligner = None if params.logprobs is None else LogprobAligner(self.tokenizer)

        def due() -> list[TokenLogprob] | None:
            return None if aligner is None else aligner.take(decoder.sent)

        try:
            for n, token in enumerate(self.tokenizer.encode(reply), start=1):
                if self.delay:
                    await asyncio.sleep(self.delay)
                text = decoder.push(token)
                if aligner is not None:
                    aligner.add([fake_logprobs(token, params.logprobs or 0)], end=decoder.length)
                if decoder.stopped or n == params.max_tokens:
                    reason = "stop" if decoder.stopped else "length"
                    done = True
                    text += decoder.flush()
                    yield Delta(text, reason, len(prompt_ids), n, due())
                    return
                logprobs = due()
                if text or logprobs:
                    yield Delta(text, logprobs=logprobs)
            done = True
            text = decoder.flush()
            yield Delta(text, "stop", len(prompt_ids), n, due())
        finally:
            self.running -= 1
            if not done:
                self.cancelled += 1
