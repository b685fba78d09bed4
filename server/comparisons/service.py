"""Comparison runs in the background; answers come from the same chat service every client uses."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from evals.dataset import EvalFileError, EvalItem, load_eval
from evals.openai_evals import (
    CriteriaError,
    Grader,
    check_templates,
    criteria_metrics,
    parse_testing_criteria,
    render,
)
from evals.report import METRICS
from evals.runner import run_comparison
from server.catalog import ModelCatalog
from server.chat.protocol import ChatCompletionRequest
from server.chat.rag import QUOTE_CHARS
from server.chat.service import ChatService
from server.comparisons.protocol import Arm, CreateComparison
from server.engines.base import SAMPLING_EPS
from server.errors import APIError, bad_request, not_found
from server.responses.protocol import MIN_OUTPUT_TOKENS, ResponsesRequest
from server.responses.service import ResponsesService
from server.storage.db import Database, dumps, new_id, now

log = logging.getLogger("ragtune.comparisons")


def parse_pair_verdict(text: str) -> str:
    """A pairwise judge's reply as "A", "B" or "tie": its first word, without punctuation or case ("A.",
    "b", "Answer A" count; anything else is a tie, so an unusable reply favours neither side)."""
    words = [w.strip(".,:;!\"'()*[]").lower() for w in text.split()]
    words = [w for w in words if w and w != "answer"]
    first = words[0] if words else ""
    return {"a": "A", "b": "B"}.get(first, "tie")


class ComparisonService:
    def __init__(
        self,
        db: Database,
        files: Any,
        catalog: ModelCatalog,
        chat: ChatService,
        stores: Any,
        responses: ResponsesService | None = None,
    ) -> None:
        self.db = db
        self.files = files
        self.catalog = catalog
        self.chat = chat
        self.stores = stores
        self.responses = responses  # for arms with api 'responses'
        self._tasks: dict[str, asyncio.Task] = {}

    def arms(self, body: CreateComparison) -> list[dict[str, Any]]:
        if body.arms:
            arms = [Arm(name=a, model=a) if isinstance(a, str) else a for a in body.arms]
        elif body.vector_store_id and body.fine_tuned_model:
            search = {"vector_store_ids": [body.vector_store_id], "max_num_results": body.max_num_results}
            base = self.catalog.chat_name
            arms = [
                Arm(name="base", model=base),
                Arm(name="rag", model=base, file_search=search),
                Arm(name="ft", model=body.fine_tuned_model),
                Arm(name="rag+ft", model=body.fine_tuned_model, file_search=search),
            ]
        else:
            raise bad_request(
                "Give 'arms', or 'vector_store_id' and 'fine_tuned_model' for the four default arms.", "arms"
            )
        if len({a.name for a in arms}) != len(arms):
            raise bad_request("Arm names must be unique.", "arms")
        for i, arm in enumerate(arms):
            sampled = (arm.temperature or 0) >= SAMPLING_EPS  # below it chat decodes greedily
            if arm.n > 1 and not sampled:
                raise bad_request(
                    f"Arm '{arm.name}' asks n={arm.n} answers per question but does not sample: greedy "
                    f"answers repeat exactly. Give it a temperature of at least {SAMPLING_EPS:g}.",
                    f"arms[{i}].n",
                )
            if arm.api == "responses" and arm.n > 1:
                raise bad_request(
                    f"Arm '{arm.name}' goes through the Responses API, which gives one answer per request: "
                    "use n=1, or api 'chat.completions'.",
                    f"arms[{i}].n",
                )
            if arm.api == "responses" and body.max_tokens < MIN_OUTPUT_TOKENS:
                raise bad_request(
                    f"Arm '{arm.name}' goes through the Responses API, whose max_output_tokens is at least "
                    f"{MIN_OUTPUT_TOKENS}.",
                    "max_tokens",
                )
            if sampled and arm.seed is None:
                arm.seed = 0  # recorded with the arm: a sampled comparison is reproducible by default
            if not sampled:
                arm.seed = None
            try:
                self.catalog.chat_target(arm.model)
            except APIError as exc:
                exc.param = f"arms[{i}].model"
                raise
            if arm.file_search:
                where = f"arms[{i}].file_search"
                self.stores.check(arm.file_search.vector_store_ids, arm.file_search.ranker, where)
        return [a.model_dump(exclude_none=True) for a in arms]

    def _graders(self, body: CreateComparison) -> list[Grader]:
        """The request's OpenAI Evals graders, parsed; a 400 on `testing_criteria` naming what is wrong."""
        if not body.testing_criteria:
            return []
        try:
            return parse_testing_criteria(body.testing_criteria, reserved=METRICS)
        except CriteriaError as exc:
            raise bad_request(f"Invalid testing_criteria: {exc}", "testing_criteria") from exc

    def _items(self, body: CreateComparison, graders: list[Grader]) -> list[EvalItem]:
        """The eval file's questions; an OpenAI item without a reference field takes the first grader's
        rendered `reference` (when it reads only the item). Raises EvalFileError."""

        def reference(item: dict) -> list[str]:
            for grader in graders:
                if "sample.output_text" not in grader.reference:
                    with contextlib.suppress(KeyError, ValueError):
                        return [text] if (text := render(grader.reference, item, "")) else []
            return []

        items = load_eval(
            self.files.path(body.eval_file_id), default_reference=reference if graders else None
        )
        check_templates(graders, items)
        return items

    def create(self, body: CreateComparison) -> dict[str, Any]:
        self.files.require(body.eval_file_id, ("evals",), "eval_file_id")
        graders = self._graders(body)
        try:
            items = self._items(body, graders)
        except EvalFileError as exc:
            raise bad_request(f"Invalid eval file: {exc}", "eval_file_id", "invalid_file") from exc
        arms = self.arms(body)
        if body.judge_model:
            try:
                self.catalog.chat_target(body.judge_model)
            except APIError as exc:
                exc.param = "judge_model"
                raise
        total = len(items) * len(arms)  # answers, then one pairwise judgement per question and pair
        if body.judge_model and body.judge_mode == "pairwise":
            total += len(items) * len(arms) * (len(arms) - 1) // 2
        comparison_id = new_id("cmp_")
        with self.db.transaction() as tx:
            tx.execute(
                "INSERT INTO comparisons (id, body, arms, status, total, created_at) VALUES (?,?,?,?,?,?)",
                (comparison_id, body.model_dump_json(), dumps(arms), "queued", total, now()),
            )
        self._start(comparison_id)
        return self.get(comparison_id)

    def _start(self, comparison_id: str) -> None:
        self._tasks[comparison_id] = asyncio.get_running_loop().create_task(self._run(comparison_id))

    def start(self) -> None:
        """Runs that a restart interrupted are run again (greedy answers: the same report)."""
        for row in self.db.query("SELECT id FROM comparisons WHERE status IN ('queued', 'running')"):
            self._start(row["id"])

    async def stop(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def _run(self, comparison_id: str) -> None:
        row = self.db.one("SELECT * FROM comparisons WHERE id = ?", (comparison_id,))
        body = CreateComparison.model_validate_json(row["body"])
        arms = json.loads(row["arms"])
        self.db.execute("UPDATE comparisons SET status = 'running', done = 0 WHERE id = ?", (comparison_id,))
        try:
            graders = self._graders(body)
            items = self._items(body, graders)

            async def ask(arm: dict[str, Any], question: str, seed: int | None) -> dict[str, Any]:
                if arm.get("api") == "responses":
                    return await self._ask_responses(arm, question, seed, body.max_tokens)
                request = ChatCompletionRequest(
                    model=arm["model"],
                    temperature=arm.get("temperature") or 0,
                    top_p=arm.get("top_p"),
                    n=arm.get("n", 1),
                    seed=seed,
                    max_tokens=body.max_tokens,
                    messages=[{"role": "user", "content": question}],
                    file_search=arm.get("file_search"),
                )
                start = time.perf_counter()
                prepared = await self.chat.prepare(request)
                answer = await self.chat.complete(prepared)
                message = answer.choices[0].message
                return {
                    "texts": [choice.message.content or "" for choice in answer.choices],
                    "latency_ms": (time.perf_counter() - start) * 1000,
                    "completion_tokens": answer.usage.completion_tokens,
                    "sources": [
                        {**citation, "text": hit.text}
                        for citation, hit in zip(message.annotations or [], prepared.sources, strict=False)
                    ]
                    if prepared.file_search
                    else None,
                }

            def progress(done: int, total: int) -> None:
                self.db.execute("UPDATE comparisons SET done = ? WHERE id = ?", (done, comparison_id))

            pointwise = body.judge_model and body.judge_mode == "pointwise"
            pairwise = body.judge_model and body.judge_mode == "pairwise"
            report = await run_comparison(
                items,
                arms,
                ask,
                k=body.max_num_results,
                concurrency=body.concurrency,
                on_progress=progress,
                judge=self._judge(body.judge_model) if pointwise else None,
                pair_judge=self._pair_judge(body.judge_model) if pairwise else None,
                extra_metrics=(
                    (lambda item, text: criteria_metrics(graders, item.extra.get("item", {}), text))
                    if graders
                    else None
                ),
            )
            report["engine"] = {
                "name": self.catalog.engine.name,
                "batch_invariant": bool(getattr(self.catalog.engine, "batch_invariant", False)),
            }
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("comparison %s failed", comparison_id)
            message = exc.message if isinstance(exc, APIError) else str(exc)
            self.db.execute(
                "UPDATE comparisons SET status = 'failed', error = ? WHERE id = ?",
                (dumps({"code": "comparison_failed", "message": message}), comparison_id),
            )
            return
        self.db.execute(
            "UPDATE comparisons SET status = 'completed', report = ? WHERE id = ?",
            (dumps(report), comparison_id),
        )

    async def _ask_responses(
        self, arm: dict[str, Any], question: str, seed: int | None, max_tokens: int
    ) -> dict[str, Any]:
        """One answer through the Responses API (not stored), in the shape `ask` returns: its text,
        latency, output tokens, and the sources it was given (with `file_search`)."""
        search = arm.get("file_search")
        request = ResponsesRequest(
            model=arm["model"],
            input=question,
            temperature=arm.get("temperature") or 0.0,
            top_p=arm.get("top_p"),
            seed=seed,
            max_output_tokens=max_tokens,
            store=False,
            tools=[{"type": "file_search", **search}] if search else None,
            include=["file_search_call.results"] if search else None,
        )
        if self.responses is None:
            raise RuntimeError("this server was built without the Responses API")
        start = time.perf_counter()
        response = await self.responses.create(request)
        assert isinstance(response, dict)  # not streamed
        if response["status"] == "failed":
            raise RuntimeError(response["error"]["message"])
        texts = [
            part["text"]
            for item in response["output"]
            if item["type"] == "message"
            for part in item["content"]
            if part["type"] == "output_text"
        ]
        results = next((i["results"] for i in response["output"] if i["type"] == "file_search_call"), None)
        sources = None
        if search:
            sources = [
                {"type": "file_citation", "index": n, "quote": hit["text"][:QUOTE_CHARS], **hit}
                for n, hit in enumerate(results or [])
            ]
        return {
            "texts": ["".join(texts)],
            "latency_ms": (time.perf_counter() - start) * 1000,
            "completion_tokens": response["usage"]["output_tokens"],
            "sources": sources,
        }

    def _judge(self, model: str):
        async def judge(question: str, references: list[str], answer: str) -> float:
            prompt = (
                f"You grade answers.\nQuestion: {question}\nReference answer: {' | '.join(references)}\n"
                f"Candidate answer: {answer}\nIs the candidate answer correct and consistent with the "
                "reference? Reply with only yes or no."
            )
            request = ChatCompletionRequest(
                model=model, temperature=0, max_tokens=3, messages=[{"role": "user", "content": prompt}]
            )
            verdict = await self.chat.complete(await self.chat.prepare(request))
            return float(verdict.choices[0].message.content.strip().lower().startswith("yes"))

        return judge

    def _pair_judge(self, model: str):
        async def judge(question: str, references: list[str], first: str, second: str) -> str:
            prompt = (
                f"You compare two answers to a question.\nQuestion: {question}\n"
                f"Reference answer: {' | '.join(references)}\nAnswer A: {first}\nAnswer B: {second}\n"
                "Which answer is correct and closer to the reference? Reply with only A or B, or tie if "
                "they are equally good."
            )
            request = ChatCompletionRequest(
                model=model, temperature=0, max_tokens=4, messages=[{"role": "user", "content": prompt}]
            )
            verdict = await self.chat.complete(await self.chat.prepare(request))
            return parse_pair_verdict(verdict.choices[0].message.content or "")

        return judge

    def _object(self, row: Any, with_report: bool = True) -> dict[str, Any]:
        return {
            "id": row["id"],
            "object": "comparison",
            "created_at": row["created_at"],
            "status": row["status"],
            "progress": {"done": row["done"], "total": row["total"]},
            "arms": json.loads(row["arms"]),
            "error": json.loads(row["error"]) if row["error"] else None,
            "report": json.loads(row["report"]) if with_report and row["report"] else None,
        }

    def get(self, comparison_id: str) -> dict[str, Any]:
        row = self.db.one("SELECT * FROM comparisons WHERE id = ?", (comparison_id,))
        if row is None:
            raise not_found(f"No comparison '{comparison_id}'.", "comparison_id", "comparison_not_found")
        return self._object(row)

    def report_html(self, comparison_id: str) -> str:
        from evals.html import render_report

        comparison = self.get(comparison_id)
        if comparison["report"] is None:
            raise APIError(
                409,
                f"Comparison '{comparison_id}' failed and has no report (see its error)."
                if comparison["status"] == "failed"
                else f"Comparison '{comparison_id}' is {comparison['status']}; its report is not ready.",
                param="comparison_id",
                code="report_not_ready",
            )
        return render_report(comparison_id, comparison["report"])

    def all(self) -> list[dict[str, Any]]:
        """Every comparison without its report, oldest first."""
        rows = self.db.query("SELECT * FROM comparisons ORDER BY created_at, rowid")
        return [self._object(r, with_report=False) for r in rows]
