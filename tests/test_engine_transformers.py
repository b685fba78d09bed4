"""The transformers engine on the real default model: batching, sampling, stops, cancellation."""

from __future__ import annotations

import asyncio
import time

import pytest

from server.engines.base import SamplingParams
from server.provision import chat_model_path
from server.settings import Settings
from tests.conftest import MODELS_CACHE, ROOT
from tests.helpers import CAPITALS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def engine():
    from server.engines.transformers_engine import TransformersEngine

    settings = Settings(data_dir=ROOT / ".pytest_cache" / "engine-data", models_dir=MODELS_CACHE)
    eng = TransformersEngine(str(chat_model_path(settings)), max_batch_size=8)
    yield eng
    asyncio.run(eng.close())


def prompt(engine, question: str) -> list[int]:
    text = engine.tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
    )
    return engine.tokenizer.encode(text, add_special_tokens=False)


async def answer(engine, question: str, delay: float = 0.0, **params):
    await asyncio.sleep(delay)
    params.setdefault("max_tokens", 40)
    params.setdefault("temperature", 0.0)
    text, last = "", None
    async for delta in engine.generate(prompt(engine, question), SamplingParams(**params)):
        text += delta.text
        last = delta
    return text, last


def test_greedy_answer_and_usage(engine):
    text, last = asyncio.run(answer(engine, "What is the capital of France?"))
    assert "Paris" in text
    assert last.finish_reason == "stop"
    assert last.prompt_tokens == len(prompt(engine, "What is the capital of France?"))
    # Every generated token is counted: the text's tokens plus the end-of-turn token.
    assert last.completion_tokens == engine.count_tokens(text) + 1


def test_concurrent_requests_are_batched_and_correct(engine):
    async def run():
        questions = [f"What is the capital of {c}?" for c in CAPITALS]
        together = await asyncio.gather(*(answer(engine, q) for q in questions))
        staggered = await asyncio.gather(
            *(answer(engine, q, delay=0.15 * i) for i, q in enumerate(questions))
        )
        return together, staggered

    together, staggered = asyncio.run(run())
    for (text, _), (late_text, _), city in zip(together, staggered, CAPITALS.values(), strict=True):
        assert city in text
        assert city in late_text  # requests that joined a running batch mid-way


def test_seed_makes_sampling_repeatable(engine):
    async def run():
        kwargs = {"temperature": 1.0, "max_tokens": 30, "ignore_eos": True}
        a = await answer(engine, "Tell me a story.", seed=7, **kwargs)
        b = await answer(engine, "Tell me a story.", seed=7, **kwargs)
        c = await answer(engine, "Tell me a story.", seed=8, **kwargs)
        return a[0], b[0], c[0]

    a, b, c = asyncio.run(run())
    assert a == b
    assert a != c


def test_tiny_top_p_is_greedy(engine):
    greedy, _ = asyncio.run(answer(engine, "Name three colors."))
    nucleus, _ = asyncio.run(answer(engine, "Name three colors.", temperature=1.0, top_p=1e-6, seed=1))
    assert nucleus == greedy


def test_stop_and_length(engine):
    text, last = asyncio.run(answer(engine, "Count from 1 to 20, one number per line.", stop=["5"]))
    assert "4" in text and "5" not in text and last.finish_reason == "stop"
    text, last = asyncio.run(answer(engine, "Tell me a story.", max_tokens=12, ignore_eos=True))
    assert last.finish_reason == "length" and last.completion_tokens == 12


def test_chinese_output_is_whole_characters(engine):
    text, _ = asyncio.run(answer(engine, "请用中文介绍一下北京。", max_tokens=30))
    assert text and "\ufffd" not in text


def test_cancel_frees_the_batch(engine):
    async def run():
        stream = engine.generate(
            prompt(engine, "Tell me a long story."),
            SamplingParams(max_tokens=400, temperature=0.0, ignore_eos=True),
        )
        received = [await anext(stream) for _ in range(3)]
        assert engine.stats()["running"] == 1
        await stream.aclose()
        deadline = time.monotonic() + 5
        while engine.stats()["running"] and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return received

    assert len(asyncio.run(run())) == 3
    assert engine.stats() == {"running": 0, "waiting": 0}


def test_a_poisoned_request_fails_alone_beside_healthy_streams(engine):
    async def run():
        healthy = [answer(engine, f"What is the capital of {c}?") for c in list(CAPITALS)[:3]]
        # Legal values: a repetition_penalty whose division overflows to +inf (that row fails with a
        # clear error) and a temperature of 1e-40 (greedy, never a division).
        poisoned = answer(engine, "Tell me a story.", temperature=1.0, repetition_penalty=1e-45)
        tiny_t = answer(engine, "What is the capital of France?", temperature=1e-40)
        return await asyncio.gather(poisoned, tiny_t, *healthy, return_exceptions=True)

    failure, tiny_t, *healthy = asyncio.run(run())
    assert isinstance(failure, RuntimeError) and "not finite" in str(failure)
    assert "Paris" in tiny_t[0] and tiny_t[1].finish_reason == "stop"
    for (text, last), city in zip(healthy, list(CAPITALS.values())[:3], strict=True):
        assert city in text and last.finish_reason == "stop"
        assert last.completion_tokens == engine.count_tokens(text) + 1  # the whole answer came
    assert engine.stats() == {"running": 0, "waiting": 0}


def test_logprobs_travel_with_their_text_and_a_stop_string_takes_its_own_away(engine):
    """Each delta's logprobs are those of the tokens that made its text (held back with it while the
    text could start the stop string); the stop string's tokens, cut from the text, are not listed."""

    async def run():
        ids = prompt(engine, "Count from 1 to 20, one number per line.")
        params = SamplingParams(max_tokens=24, temperature=0.0, logprobs=2, stop=("\n5",))
        return [d async for d in engine.generate(ids, params)]

    deltas = asyncio.run(run())
    entries = [e for d in deltas for e in d.logprobs or ()]
    text = "".join(d.text for d in deltas)
    assert text.endswith("4. 4") and deltas[-1].finish_reason == "stop"
    assert any(d.text == "" and not d.logprobs for d in deltas)  # "\n" held back, and its logprob too
    assert engine.tokenizer.decode([e.token_id for e in entries]) == text
    assert len(entries) < deltas[-1].completion_tokens  # "\n5" was generated, then cut
    for delta in deltas:
        ids = [e.token_id for e in delta.logprobs or ()]
        assert engine.tokenizer.decode(ids) == delta.text
    for entry in entries:  # greedy: the chosen token is the most likely one
        assert len(entry.top) == 2 and entry.top[0] == (entry.token_id, pytest.approx(entry.logprob))
