"""The transformers engine's per-row sampling and isolation, fast: a tiny Llama built from a config (2
layers, hidden 64) with the real SmolLM2 tokenizer, and the sampler on hand-made logits."""

from __future__ import annotations

import asyncio
import math

import pytest
import torch

from server.engines.base import MAX_SEED, Delta, EngineOverloaded, SamplingParams
from server.engines.transformers_engine import SequenceFailed, TransformersEngine, _Seq


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory, smol_tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(smol_tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        eos_token_id=smol_tokenizer.eos_token_id,
    )
    path = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(path)
    smol_tokenizer.save_pretrained(path)
    return path


def make_engine(path, **kwargs) -> TransformersEngine:
    return TransformersEngine(str(path), dtype="float32", device="cpu", **kwargs)


async def collect(engine, ids: list[int], **params) -> tuple[str, Delta]:
    text, last = "", None
    async for delta in engine.generate(ids, SamplingParams(**params)):
        text += delta.text
        last = delta
    return text, last


PROMPTS = [[1, 504, 3458, 282, 4649, 30], [1, 2, 3, 4], [9, 8, 7, 6, 5, 4, 3], [42] * 10, [100, 200, 300]]


# ---- one request's failure stays that request's ---------------------------------------------------


def test_a_poisoned_row_fails_alone_beside_three_healthy_streams(tiny_model_dir):
    engine = make_engine(tiny_model_dir, max_batch_size=8)
    healthy = {"max_tokens": 24, "temperature": 0.0, "ignore_eos": True}

    async def run():
        alone = [await collect(engine, ids, **healthy) for ids in PROMPTS[:3]]
        # A legal repetition_penalty so small that dividing by it overflows: this row's scores are +inf.
        poisoned = collect(engine, PROMPTS[3], max_tokens=24, temperature=1.0, repetition_penalty=1e-45)
        # temperature 1e-40 is greedy, never a division.
        tiny_t = collect(engine, PROMPTS[4], max_tokens=24, temperature=1e-40, ignore_eos=True)
        together = await asyncio.gather(
            poisoned,
            tiny_t,
            *(collect(engine, ids, **healthy) for ids in PROMPTS[:3]),
            return_exceptions=True,
        )
        return alone, together

    try:
        alone, (failure, tiny_t, *together) = asyncio.run(run())
    finally:
        asyncio.run(engine.close())
    assert isinstance(failure, SequenceFailed) and "not finite" in str(failure)
    assert tiny_t[1].finish_reason == "length" and tiny_t[1].completion_tokens == 24
    for (text, last), (alone_text, _) in zip(together, alone, strict=True):
        assert last.finish_reason == "length" and last.completion_tokens == 24
        assert text and len(text) >= len(alone_text) // 2  # a whole answer, not a cut stream
    assert engine.stats() == {"running": 0, "waiting": 0}


@pytest.mark.parametrize("batch_invariant", [False, True])
def test_a_forward_failure_fails_only_its_row_in_prefill_and_decode(
    tiny_model_dir, monkeypatch, batch_invariant
):
    """An adapter (or any forward) error in one row: the batched prefill and the batched decode step are
    retried row by row, so only the row that raises fails; the others' answers are unchanged."""
    engine = make_engine(tiny_model_dir, max_batch_size=8, batch_invariant=batch_invariant)
    bad_prefill, bad_decode = [7, 7, 7, 7], [8, 8, 8, 8, 8]
    forward = engine._forward

    def flaky(seqs, **inputs):
        for seq in seqs:
            if seq.prompt_ids == bad_prefill or (seq.prompt_ids == bad_decode and len(seq.generated) >= 3):
                raise RuntimeError("adapter exploded")
        return forward(seqs, **inputs)

    params = {"max_tokens": 12, "temperature": 0.0, "ignore_eos": True}

    async def run():
        alone = [await collect(engine, ids, **params) for ids in PROMPTS[:3]]
        monkeypatch.setattr(engine, "_forward", flaky)
        together = await asyncio.gather(
            collect(engine, bad_prefill, **params),
            collect(engine, bad_decode, **params),
            *(collect(engine, ids, **params) for ids in PROMPTS[:3]),
            return_exceptions=True,
        )
        return alone, together

    try:
        alone, (prefill_failure, decode_failure, *together) = asyncio.run(run())
    finally:
        asyncio.run(engine.close())
    assert isinstance(prefill_failure, SequenceFailed) and "adapter exploded" in str(prefill_failure)
    assert isinstance(decode_failure, SequenceFailed) and "decode" in str(decode_failure)
    for (text, last), (alone_text, _) in zip(together, alone, strict=True):
        assert last.finish_reason == "length" and last.completion_tokens == 12
        if batch_invariant:
            assert text == alone_text


# ---- a finished request frees its place at once ----------------------------------------------------


def test_as_many_clients_as_max_queue_asking_again_at_once_are_never_refused(tiny_model_dir):
    engine = make_engine(tiny_model_dir, max_batch_size=8, max_queue=8)
    done: list[int] = []

    async def client(i: int) -> None:
        while len(done) < 100:
            _, last = await collect(engine, PROMPTS[i % len(PROMPTS)], max_tokens=1 + i % 3, temperature=0.0)
            assert last.finish_reason is not None
            done.append(i)  # asks again at once: no await between the last delta and the next request

    async def run():
        await asyncio.gather(*(client(i) for i in range(8)))

    try:
        asyncio.run(run())  # an EngineOverloaded here fails the test
    finally:
        asyncio.run(engine.close())
    assert len(done) >= 100
    assert engine.stats() == {"running": 0, "waiting": 0}


def test_the_queue_still_refuses_beyond_max_queue(tiny_model_dir):
    engine = make_engine(tiny_model_dir, max_batch_size=2, max_queue=3)

    async def run():
        params = SamplingParams(max_tokens=2000, temperature=0.0, ignore_eos=True)
        streams = [engine.generate(PROMPTS[0], params) for _ in range(4)]
        tasks = [asyncio.ensure_future(anext(s)) for s in streams]
        await asyncio.wait(tasks[:2])  # two run, one waits, the fourth is refused at once
        await asyncio.wait(tasks[3:])
        stats = engine.stats()
        firsts = [t.exception() or t.result() for t in tasks[:2] + tasks[3:]]
        tasks[2].cancel()
        await asyncio.gather(tasks[2], return_exceptions=True)
        for s in streams:
            await s.aclose()
        return firsts, stats

    try:
        firsts, stats = asyncio.run(run())
    finally:
        asyncio.run(engine.close())
    assert sum(isinstance(f, EngineOverloaded) for f in firsts) == 1
    assert stats == {"running": 2, "waiting": 1}


# ---- same text alone and under load, behind batch_invariant ---------------------------------------


def test_batch_invariant_answers_do_not_depend_on_the_batch(tiny_model_dir):
    engine = make_engine(tiny_model_dir, max_batch_size=8, batch_invariant=True)
    greedy = {"max_tokens": 32, "temperature": 0.0, "ignore_eos": True}
    seeded = {"max_tokens": 32, "temperature": 1.0, "seed": MAX_SEED, "ignore_eos": True}

    async def run():
        alone = [await collect(engine, PROMPTS[0], **greedy), await collect(engine, PROMPTS[1], **seeded)]
        others = [
            collect(engine, ids, max_tokens=40, temperature=1.0, seed=i) for i, ids in enumerate(PROMPTS)
        ]
        loaded = await asyncio.gather(
            collect(engine, PROMPTS[0], **greedy), collect(engine, PROMPTS[1], **seeded), *others
        )
        return alone, loaded[:2]

    try:
        alone, loaded = asyncio.run(run())
    finally:
        asyncio.run(engine.close())
    assert [t for t, _ in loaded] == [t for t, _ in alone]


# ---- the sampler, on hand-made logits --------------------------------------------------------------


@pytest.fixture
def sampler() -> TransformersEngine:
    engine = TransformersEngine.__new__(TransformersEngine)  # no model: only the sampling code runs
    engine._torch = torch
    engine.eos_ids = {9}
    return engine


def seq(prompt=(0,), generated=(), **params) -> _Seq:
    params.setdefault("max_tokens", 10)
    return _Seq(list(prompt), SamplingParams(**params), None, None, None, generated=list(generated))


LOGITS = torch.tensor([2.0, -1.0, 1.0, 0.5, 0.0, -2.0, 3.0, 0.1, -0.5, 0.2])


def test_logit_bias_is_added_and_empty_is_the_fast_path(sampler):
    assert seq(temperature=0.0).plain and seq(temperature=0.0, logit_bias=()).plain
    token, _ = sampler._pick(seq(temperature=0.0, logit_bias=((4, 10.0),)), LOGITS)
    assert token == 4
    token, _ = sampler._pick(seq(temperature=0.0, logit_bias=((6, -100.0),)), LOGITS)
    assert token == 0
    with pytest.raises(SequenceFailed, match="outside the vocabulary"):
        sampler._pick(seq(temperature=0.0, logit_bias=((10, 1.0),)), LOGITS)


def processed(sampler, row: _Seq) -> list[float]:
    """The processed scores, up to a constant: every token's logprob (logprobs=k covers the vocabulary)."""
    _, logprob = sampler._pick(row, LOGITS)
    by_id = dict(logprob.top)
    return [by_id[i] for i in range(len(LOGITS))]


def test_repetition_penalty_divides_positive_and_multiplies_negative_seen_logits(sampler):
    row = seq(prompt=(0,), generated=(1,), temperature=0.0, repetition_penalty=2.0, logprobs=10)
    scores = processed(sampler, row)
    expected = LOGITS.clone()
    expected[0], expected[1] = 1.0, -2.0  # 2/2 (prompt), -1*2 (answer); the rest untouched
    reference = torch.log_softmax(expected, -1).tolist()
    assert scores == pytest.approx(reference, abs=1e-6)


def test_logprobs_are_of_the_processed_scores_before_temperature(sampler):
    row = seq(temperature=0.7, seed=1, logprobs=3, presence_penalty=1.0, generated=(6,))
    token, logprob = sampler._pick(row, LOGITS)
    expected = LOGITS.clone()
    expected[6] -= 1.0
    reference = torch.log_softmax(expected, -1)
    assert logprob.token_id == token and logprob.logprob == pytest.approx(float(reference[token]), abs=1e-6)
    assert [i for i, _ in logprob.top] == reference.topk(3).indices.tolist()
    assert [v for _, v in logprob.top] == sorted((v for _, v in logprob.top), reverse=True)
    _, logprob = sampler._pick(seq(temperature=0.0, logprobs=0), LOGITS)
    assert logprob.top == () and logprob.token_id == 6


def test_top_k_and_min_p_keep_only_their_candidates(sampler):
    top2 = {sampler._pick(seq(temperature=2.0, top_k=2, seed=s), LOGITS)[0] for s in range(60)}
    assert top2 == {6, 0}
    # min_p 0.3 keeps tokens with at least 0.3 × the top probability: logits within ln(1/0.3) ≈ 1.2 of 3.
    kept = {sampler._pick(seq(temperature=1.0, min_p=0.3, seed=s), LOGITS)[0] for s in range(60)}
    assert kept == {6, 0}
    assert seq(temperature=1.0, top_k=1).params.greedy


def test_tiny_temperature_is_greedy_and_non_finite_rows_fail_alone(sampler):
    rows = [seq(temperature=1e-40), seq(temperature=1e-40, logprobs=1), seq(temperature=1.0, seed=3)]
    logits = torch.stack([LOGITS, LOGITS, LOGITS.clone().fill_(math.nan)])
    first, second, third = sampler._sample(rows, logits)
    assert first == (6, None) and second[0] == 6 and math.isfinite(second[1].logprob)
    assert isinstance(third, SequenceFailed)
    # +inf after a penalty would make softmax NaN: that row fails with a clear error, not a torch crash.
    overflow = seq(temperature=1.0, repetition_penalty=1e-45, prompt=(6,))
    (failure,) = sampler._sample([overflow], LOGITS[None])
    assert isinstance(failure, SequenceFailed) and "not finite" in str(failure)


def test_the_largest_seed_seeds_a_generator():
    # SamplingParams allows [0, 2**63); torch.Generator.manual_seed takes up to 2**64 - 1.
    draws = [torch.rand(3, generator=torch.Generator().manual_seed(MAX_SEED)) for _ in range(2)]
    assert torch.equal(*draws)
