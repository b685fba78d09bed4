"""VLLMEngine's mapping onto vLLM, against a scripted stand-in for `AsyncLLM` (fast; needs vLLM importable).

The real engine on the real model is tested by test_engine_conformance.py; these check the details that
are cheap to pin down here: sampling parameters, deltas and usage, logprobs, finish reasons, aborts,
adapters, overload, stats.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass, field

import pytest

pytest.importorskip("vllm")

from vllm.logprobs import Logprob  # noqa: E402

from server.engines.base import (  # noqa: E402
    LOGPROB_FLOOR,
    MAX_SEED,
    EngineOverloaded,
    SamplingParams,
    TokenLogprob,
)
from server.engines.fake import CharTokenizer  # noqa: E402
from server.engines.vllm_engine import (  # noqa: E402
    AdapterError,
    SequenceAborted,
    VLLMEngine,
    adapter_rank,
    require_batch_invariance,
    vllm_sampling_params,
)


@dataclass
class Out:
    text: str
    token_ids: list[int]
    finish_reason: str | None = None
    logprobs: list[dict[int, Logprob]] | None = None


@dataclass
class RequestOut:
    outputs: list[Out]
    finished: bool


@dataclass
class ScriptedLLM:
    """Streams `pieces` as DELTA outputs for every request; records calls, aborts and added LoRAs."""

    pieces: list[tuple[str, list[int]]]
    finish: str | None = "stop"
    logprobs: list[list[dict[int, Logprob]]] | None = None
    """Per piece, vLLM's per-token {token id: Logprob} dicts (given only when the request asks)."""
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
                logprobs = self.logprobs[i] if self.logprobs and params.logprobs is not None else None
                yield RequestOut([Out(text, ids, self.finish if last else None, logprobs)], finished=last)
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


def engine(pieces, finish="stop", max_queue=8, max_lora_rank=16, logprobs=None) -> VLLMEngine:
    eng = object.__new__(VLLMEngine)
    eng._init_state(max_queue, max_lora_rank)
    eng.tokenizer = CharTokenizer()
    eng.llm = ScriptedLLM(pieces, finish, logprobs)
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
    assert (sp.top_k, sp.min_p, sp.repetition_penalty) == (0, 0.0, 1.0)
    assert sp.logit_bias is None and sp.logprobs is None


def test_vllm_extensions_logit_bias_and_logprobs_reach_vllm():
    sp = vllm_sampling_params(
        SamplingParams(
            max_tokens=4,
            temperature=0.7,
            top_k=5,
            min_p=0.1,
            repetition_penalty=1.3,
            logit_bias=((17, -100.0), (3, 2.5)),
            logprobs=3,
        )
    )
    assert (sp.temperature, sp.top_k, sp.min_p, sp.repetition_penalty) == (0.7, 5, 0.1, 1.3)
    assert sp.logit_bias == {17: -100.0, 3: 2.5} and sp.logprobs == 3
    assert vllm_sampling_params(SamplingParams(max_tokens=1, logprobs=0)).logprobs == 0
    assert vllm_sampling_params(SamplingParams(max_tokens=1, logit_bias=())).logit_bias is None


@pytest.mark.parametrize(
    "greedy",
    [{"temperature": 0.0}, {"temperature": 1e-40}, {"temperature": 9e-6}, {"top_p": 0.0}, {"top_k": 1}],
)
def test_every_greedy_request_is_temperature_zero_for_vllm(greedy):
    """vLLM raises a temperature in (0, 1e-2) to 1e-2 and samples at it, and refuses top_p 0: greedy must
    reach it as temperature 0 (argmax), whatever made the request greedy."""
    from vllm.sampling_params import SamplingType

    sp = vllm_sampling_params(SamplingParams(**{"max_tokens": 3, "top_k": 7, "min_p": 0.2, **greedy}))
    assert sp.temperature == 0.0 and sp.sampling_type == SamplingType.GREEDY
    assert (sp.top_p, sp.top_k, sp.min_p) == (1.0, 0, 0.0)
    hot = vllm_sampling_params(SamplingParams(max_tokens=3, temperature=1e-5, seed=1))
    assert hot.temperature == 1e-2 and hot.sampling_type == SamplingType.RANDOM_SEED  # vLLM's own floor


def test_the_largest_seed_reaches_vllm_unchanged():
    assert vllm_sampling_params(SamplingParams(max_tokens=1, seed=MAX_SEED)).seed == MAX_SEED
    assert vllm_sampling_params(SamplingParams(max_tokens=1, seed=0)).seed == 0


def lp(logprob: float, rank: int) -> Logprob:
    return Logprob(logprob, rank, None)


def test_logprobs_become_token_logprobs_with_sorted_alternatives():
    # vLLM's DELTA output: per new token, the sampled token plus the top-k, in no promised order; a sampled
    # token below the top k is there too (rank > k), and a token cut off by top-k/top-p is -inf.
    pieces = [("Hi", [5]), ("", [6]), (" you", [7, 8])]
    logprobs = [
        [{9: lp(-2.0, 2), 5: lp(-0.5, 1), 4: lp(-3.0, 3)}],
        [{6: lp(-4.0, 7), 1: lp(-0.1, 1), 2: lp(-2.5, 2), 3: lp(-float("inf"), 3)}],
        [{7: lp(-0.2, 1), 8: lp(-1.0, 2), 0: lp(-5.0, 3)}, {8: lp(0.0, 1), 2: lp(-9.0, 2), 3: lp(-9.5, 3)}],
    ]
    eng = engine(pieces, finish="stop", logprobs=logprobs)
    deltas = asyncio.run(collect(eng, SamplingParams(max_tokens=4, temperature=0.5, logprobs=2)))
    # A delta whose text is held back (stop-string check) still carries its tokens' logprobs.
    assert [d.text for d in deltas] == ["Hi", "", " you"]
    assert deltas[0].logprobs == [TokenLogprob(5, -0.5, ((5, -0.5), (9, -2.0)))]
    assert deltas[1].logprobs == [TokenLogprob(6, -4.0, ((1, -0.1), (2, -2.5)))]
    assert deltas[2].logprobs == [
        TokenLogprob(7, -0.2, ((7, -0.2), (8, -1.0))),
        TokenLogprob(8, 0.0, ((8, 0.0), (2, -9.0))),
    ]
    assert deltas[2].completion_tokens == 4
    sp = eng.llm.calls[0][1]
    assert sp.logprobs == 2


def test_logprobs_floor_is_openais_and_zero_alternatives_keep_the_chosen_token():
    logprobs = [[{5: lp(-float("inf"), 3), 1: lp(-0.1, 1)}], [{6: lp(float("nan"), 1)}]]
    eng = engine([("a", [5]), ("b", [6])], logprobs=logprobs)
    deltas = asyncio.run(collect(eng, SamplingParams(max_tokens=2, logprobs=0)))
    assert deltas[0].logprobs == [TokenLogprob(5, LOGPROB_FLOOR, ())]
    assert deltas[1].logprobs == [TokenLogprob(6, LOGPROB_FLOOR, ())]


def test_no_logprobs_unless_asked():
    eng = engine([("a", [5])], logprobs=[[{5: lp(-0.1, 1)}]])
    assert asyncio.run(collect(eng, SamplingParams(max_tokens=1)))[0].logprobs is None


@pytest.mark.parametrize("reason", ["abort", "error", "repetition", None])
def test_a_sequence_vllm_gives_up_on_raises_instead_of_an_unknown_finish_reason(reason):
    eng = engine([("partial", [1]), (" more", [2])], finish=reason)
    with pytest.raises(SequenceAborted, match=str(reason)) as raised:
        asyncio.run(collect(eng, SamplingParams(max_tokens=5)))
    assert isinstance(raised.value, RuntimeError)
    assert eng._inflight == 0 and eng.stats() == {"running": 0, "waiting": 0}


def test_batch_invariance_is_refused_without_a_gpu(monkeypatch):
    monkeypatch.delenv("VLLM_BATCH_INVARIANT", raising=False)
    with pytest.raises(ValueError, match="RAGTUNE_BATCH_INVARIANT"):
        require_batch_invariance(on_gpu=False)
    assert "VLLM_BATCH_INVARIANT" not in os.environ
    require_batch_invariance(on_gpu=True)
    assert os.environ["VLLM_BATCH_INVARIANT"] == "1"


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
