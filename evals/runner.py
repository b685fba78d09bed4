"""Run every arm on every question through a caller-supplied `ask` (the server's chat service), score
each answer, optionally ask a judge model (per answer, or per pair of arms in both orders), and build the
report (evals/report.py)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from itertools import combinations
from typing import Any

from evals.dataset import EvalItem
from evals.report import build_report, mean_metrics, score

# ask(arm, question, seed) -> {"texts": [one per sample], "sources": list | None, "latency_ms",
# "completion_tokens"}; each source a citation dict with the chunk's full `text` (scored on, then dropped
# from the report). `seed` is None for greedy arms.
Ask = Callable[[dict[str, Any], str, int | None], Awaitable[dict[str, Any]]]
# judge(question, references, answer) -> 1.0 if a judge model calls the answer correct, else 0.0
Judge = Callable[[str, list[str], str], Awaitable[float]]
# pair_judge(question, references, answer_a, answer_b) -> "A", "B" or "tie": which answer, in the order
# shown to the judge, is better
PairJudge = Callable[[str, list[str], str, str], Awaitable[str]]
# extra_metrics(item, answer text) -> {metric name: value} (the eval's own graders, e.g. OpenAI's)
ExtraMetrics = Callable[[EvalItem, str], dict[str, float]]

MAX_SEED = 2**63 - 1


def question_seed(arm_seed: int, question: str) -> int:
    """The seed of one question of a sampled arm: derived from the arm's seed and the question's text (not
    its position), so a run is reproducible and reordering or adding questions leaves the others' samples
    as they were. Sample j of the question uses `seed + j` (server/engines/base.py `choice_seed`)."""
    digest = hashlib.sha256(f"{arm_seed}\0{question}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & MAX_SEED


async def run_comparison(
    items: list[EvalItem],
    arms: list[dict[str, Any]],
    ask: Ask,
    k: int = 4,
    concurrency: int = 4,
    on_progress: Callable[[int, int], None] | None = None,
    judge: Judge | None = None,
    pair_judge: PairJudge | None = None,
    extra_metrics: ExtraMetrics | None = None,
) -> dict:
    """Every (arm, question) answered (an arm with `n` > 1 is sampled `n` times per question, seeded by
    `question_seed`), scored (metrics averaged over the samples), and summarised into the report.
    hit@k's k is the arm's `file_search.max_num_results`, else `k`; the report gives it per arm. A
    pairwise judge compares each arm's first answer to a question.

    `on_progress(done, total)` counts answers, then pairwise judgements when `pair_judge` is given.
    """
    pairs = list(combinations(range(len(arms)), 2)) if pair_judge else []
    total, done = len(items) * len(arms) + len(pairs) * len(items), 0
    limit = asyncio.Semaphore(concurrency)
    answers: dict[str, list[dict[str, Any]]] = {arm["name"]: [{}] * len(items) for arm in arms}

    def tick() -> None:
        nonlocal done
        done += 1
        if on_progress:
            on_progress(done, total)

    def arm_k(arm: dict[str, Any]) -> int:  # hit@k's k: the sources this arm asks for
        return (arm.get("file_search") or {}).get("max_num_results") or k

    async def one(arm: dict[str, Any], i: int) -> None:
        item = items[i]
        seed = question_seed(arm["seed"], item.question) if arm.get("seed") is not None else None
        async with limit:
            result = await ask(arm, item.question, seed)
        texts, sources = result.pop("texts"), result.get("sources")
        samples = []
        for text in texts:
            metrics = score(item, text, sources, arm_k(arm))
            if extra_metrics is not None:
                metrics.update(extra_metrics(item, text))
            if judge is not None:
                async with limit:
                    metrics["judge"] = await judge(item.question, item.references, text)
            samples.append({"text": text, "metrics": metrics})
        result["text"], result["metrics"] = texts[0], mean_metrics([s["metrics"] for s in samples])
        result["completion_tokens"] = result.get("completion_tokens", 0) / len(texts)  # per answer
        if len(samples) > 1:
            result["samples"] = samples
        # Scored on the chunks' full text; the report keeps the citations (their 400-character quotes).
        result["sources"] = [{k: v for k, v in s.items() if k != "text"} for s in sources or []]
        answers[arm["name"]][i] = result
        tick()

    await asyncio.gather(*(one(arm, i) for arm in arms for i in range(len(items))))
    verdicts: dict[tuple[str, str], list[dict[str, str]]] = {}
    if pair_judge is not None:

        async def both_orders(a: str, b: str, i: int) -> None:
            item = items[i]
            first, second = answers[a][i]["text"], answers[b][i]["text"]
            async with limit:
                shown_ab = await pair_judge(item.question, item.references, first, second)
            async with limit:
                shown_ba = await pair_judge(item.question, item.references, second, first)
            verdicts[(a, b)][i] = {"a_first": shown_ab, "b_first": shown_ba}
            tick()

        jobs = []
        for x, y in pairs:
            a, b = arms[x]["name"], arms[y]["name"]
            verdicts[(a, b)] = [{}] * len(items)
            jobs += [both_orders(a, b, i) for i in range(len(items))]
        await asyncio.gather(*jobs)
    report = build_report(items, [arm["name"] for arm in arms], answers, verdicts)
    for arm in arms:
        if arm.get("file_search"):
            report["arms"][arm["name"]]["k"] = arm_k(arm)  # hit@k counts the first k retrieved
    return report
