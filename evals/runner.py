"""Run every arm on every question through a caller-supplied `ask` (the server's chat service)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from evals.dataset import EvalItem
from evals.report import build_report, score

# ask(arm, question) -> {"text", "sources": list | None, "latency_ms", "completion_tokens"}; each source a
# citation dict with the chunk's full `text` (scored on, then dropped from the report)
Ask = Callable[[dict[str, Any], str], Awaitable[dict[str, Any]]]
# judge(question, references, answer) -> 1.0 if a judge model calls the answer correct, else 0.0
Judge = Callable[[str, list[str], str], Awaitable[float]]


async def run_comparison(
    items: list[EvalItem],
    arms: list[dict[str, Any]],
    ask: Ask,
    k: int = 4,
    concurrency: int = 4,
    on_progress: Callable[[int, int], None] | None = None,
    judge: Judge | None = None,
) -> dict:
    """Every (arm, question) answered, scored, and summarised into the report."""
    total, done = len(items) * len(arms), 0
    limit = asyncio.Semaphore(concurrency)
    answers: dict[str, list[dict[str, Any]]] = {arm["name"]: [{}] * len(items) for arm in arms}

    async def one(arm: dict[str, Any], i: int) -> None:
        nonlocal done
        async with limit:
            result = await ask(arm, items[i].question)
        sources = result.get("sources")
        result["metrics"] = score(items[i], result["text"], sources, k)
        if judge is not None:
            async with limit:
                result["metrics"]["judge"] = await judge(
                    items[i].question, items[i].references, result["text"]
                )
        # Scored on the chunks' full text; the report keeps the citations (their 400-character quotes).
        result["sources"] = [{k: v for k, v in s.items() if k != "text"} for s in sources or []]
        answers[arm["name"]][i] = result
        done += 1
        if on_progress:
            on_progress(done, total)

    await asyncio.gather(*(one(arm, i) for arm in arms for i in range(len(items))))
    return build_report(items, [arm["name"] for arm in arms], answers)
