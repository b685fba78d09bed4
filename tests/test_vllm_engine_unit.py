"""VLLMEngine's mapping onto vLLM, against a scripted stand-in for `AsyncLLM` (fast; needs vLLM importable).

The real engine on the real model is tested by test_engine_conformance.py; these check the details that
are cheap to pin down here: sampling parameters, deltas and usage, aborts, adapters, overload, stats.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

import pytest

pytest.importorskip("vllm")

from server.engines.base import EngineOverloaded, SamplingParams  # noqa: E402
from server.engines.fake import CharTokenizer  # noqa: E402
from server.engines.vllm_engine import AdapterError, VLLMEngine, adapter_rank  # noqa: E402


@dataclass
class Out:
    text: str
    token_ids: list[int]
    finish_reason: str | None = None


@dataclass
class RequestOut:
    outputs: list[Out]
    finished: bool


@dataclass
class ScriptedLLM:
    """Streams `pieces` as DELTA outputs for every request; records calls, aborts and added LoRAs."""

    pieces: list[tuple[str, list[int]]]
    finish: str = "stop"
    calls: list = field(default_factory=list)
    aborted: list = field(default_factory=list)
    loras: list = field(default_factory=list)
    unfinished: int = 0

    async def generate(self, prompt, params, request_id, lora_request=None):
        self.calls.append((prompt, params, request_id, lora_request))
        self.unfinished += 1
        try:
            for i, (text, ids) in enumerate(self.pieces):
                last = i == len(self.pieces) - 1
                yield RequestOut([Out(text, ids, self.finish if last else None)], finished=last)
                await asyncio.sleep(0)
        except GeneratorExit:
            self.aborted.append(request_id)
            raise
        finally:
            self.unfinished -= 1

    async def add_lora(self, request) -> bool:
        self.loras.append(request)
        return True

    @property
    def output_processor(self):
        llm = self

        class Processor:
            def get_num_unfinished_requests(self) -> int:
                return llm.unfinished

        return Processor()


def engine(pieces, finish="stop", max_queue=8, max_lora_rank=16) -> VLLMEngine:
    eng = object.__new__(VLLMEngine)
    eng._init_state(max_queue, max_lora_rank)
    eng.tokenizer = CharTokenizer()
    eng.llm = ScriptedLLM(pieces, finish)
    return eng


async def collect(eng, params, adapter=None):
    return [d async for d in eng.generate([1, 2, 3], params, adapter)]


def test_sampling_params_and_prompt_ids_reach_vllm():
    from vllm.sampling_params import RequestOutputKind

    eng = engine([("Hi", [5]), ("", [0])])
    params = SamplingParams(
        max_tokens=7,
        temperature=0.5,
        top_p=0.9,
        stop=("x", "y"),
        seed=3,
        presence_penalty=0.1,
        frequency_penalty=0.2,
        ignore_eos=True,
    )
    asyncio.run(collect(eng, params))
    [(prompt, sp, _, lora)] = eng.llm.calls
    assert prompt["prompt_token_ids"] == [1, 2, 3] and prompt["type"] == "token"
    assert (sp.n, sp.max_tokens, sp.temperature, sp.top_p, sp.seed) == (1, 7, 0.5, 0.9, 3)
    assert sp.stop == ["x", "y"] and sp.ignore_eos and sp.output_kind == RequestOutputKind.DELTA
    assert (sp.presence_penalty, sp.frequency_penalty) == (0.1, 0.2) and lora is None


def test_deltas_skip_empty_pieces_and_the_last_carries_usage():
    eng = engine([("The", [1]), ("", [2]), (" end", [3, 4]), (".", [5])], finish="length")
    deltas = asyncio.run(collect(eng, SamplingParams(max_tokens=5)))
    assert [d.text for d in deltas] == ["The", " end", "."]
    last = deltas[-1]
    assert (last.finish_reason, last.prompt_tokens, last.completion_tokens) == ("length", 3, 5)
    assert all(d.finish_reason is None for d in deltas[:-1])
    assert eng.stats() == {"running": 0, "waiting": 0} and eng._inflight == 0


def test_closing_the_stream_aborts_the_vllm_request():
    async def run(eng):
        stream = eng.generate([1], SamplingParams(max_tokens=50))
        first = await anext(stream)
        assert eng.stats()["running"] == 1
        await stream.aclose()
        return first

    eng = engine([(f"w{i} ", [i]) for i in range(50)])
    assert asyncio.run(run(eng)).text == "w0 "
    assert len(eng.llm.aborted) == 1 and eng._inflight == 0
    assert eng.stats() == {"running": 0, "waiting": 0}


def test_overload_and_unknown_adapter_are_refused_before_vllm():
    eng = engine([("a", [1])], max_queue=1)
    eng._inflight = 1
    with pytest.raises(EngineOverloaded):
        asyncio.run(collect(eng, SamplingParams(max_tokens=1)))
    eng._inflight = 0
    with pytest.raises(NotImplementedError, match="not loaded"):
        asyncio.run(collect(eng, SamplingParams(max_tokens=1), adapter="nope"))
    assert eng.llm.calls == []


def test_adapters_get_their_own_lora_request(tmp_path):
    for name, rank in (("a", 8), ("b", 16), ("big", 64)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "adapter_config.json").write_text(json.dumps({"r": rank}))
    eng = engine([("x", [1])], max_lora_rank=16)
    asyncio.run(eng.add_adapter("a", str(tmp_path / "a")))
    asyncio.run(eng.add_adapter("b", str(tmp_path / "b")))
    asyncio.run(eng.add_adapter("a", str(tmp_path / "a")))  # again: nothing new
    assert [(r.lora_name, r.lora_int_id) for r in eng.llm.loras] == [("a", 1), ("b", 2)]
    with pytest.raises(AdapterError, match="RAGTUNE_MAX_LORA_RANK"):
        asyncio.run(eng.add_adapter("big", str(tmp_path / "big")))
    asyncio.run(collect(eng, SamplingParams(max_tokens=1), adapter="b"))
    assert eng.llm.calls[-1][3].lora_name == "b"


def test_adapter_rank_reads_rank_pattern(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 8, "rank_pattern": {"q_proj": 32}}))
    assert adapter_rank(tmp_path) == 32
    with pytest.raises(AdapterError, match="missing"):
        adapter_rank(tmp_path / "nowhere")


def test_stats_split_running_and_waiting_from_the_scheduler():
    eng = engine([("x", [1])])
    eng.llm.unfinished = 5
    eng._scheduled = (2, 3)
    assert eng.stats() == {"running": 2, "waiting": 3}
    eng._scheduled = (0, 9)  # stale scheduler numbers never exceed what vLLM still holds
    assert eng.stats() == {"running": 0, "waiting": 5}


def test_without_lora_no_adapter_is_taken(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 8}))
    eng = engine([("x", [1])], max_lora_rank=0)  # RAGTUNE_MAX_LORAS=0
    with pytest.raises(AdapterError, match="RAGTUNE_MAX_LORAS=0"):
        asyncio.run(eng.add_adapter("a", str(tmp_path)))
    assert eng.llm.loras == []
