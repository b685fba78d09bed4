"""Fine-tuning jobs: validate data, queue in SQLite, run one worker process at a time, follow its events.

Lifecycle: validating_files → queued → running → succeeded | failed | cancelled. A job whose worker
died (or whose server died) goes back to the queue and resumes from its last checkpoint; after three
interrupted attempts it fails. On success the adapter is registered and served at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from common.atomic import atomic_write_json
from finetune.config import TrainConfig
from finetune.data import DataError, describe, load_dataset, tokenize
from server.catalog import ModelCatalog
from server.errors import APIError, bad_request, not_found
from server.fine_tuning.protocol import CreateJob, job_error
from server.storage.db import Database, dumps, new_id, now

log = logging.getLogger("ragtune.fine_tuning")

BASE_LEARNING_RATE = 1e-3  # TrainConfig.learning_rate; the multiplier scales it
MAX_ATTEMPTS = 3
POLL_SECONDS = 0.5
TERMINAL = ("succeeded", "failed", "cancelled")


class FineTuningService:
    def __init__(
        self,
        db: Database,
        data_dir: Path,
        files: Any,
        catalog: ModelCatalog,
        model_dir: Path,
        max_running: int = 1,
    ) -> None:
        self.max_running = max_running  # 0: jobs queue but never train (a serving-only replica)
        self.db = db
        self.data_dir = data_dir
        self.files = files
        self.catalog = catalog
        self.model_dir = model_dir
        self.runs = data_dir / "fine_tuning"
        self.adapters = data_dir / "adapters"
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._process: subprocess.Popen | None = None
        self._running_job: str | None = None

    # ---- API --------------------------------------------------------------------------------------

    def _training_file(self, file_id: str | None, param: str) -> Any:
        if file_id is None:
            return None
        row = self.db.one("SELECT * FROM files WHERE id = ?", (file_id,))
        if row is None:
            raise not_found(f"No such file: '{file_id}'.", param, "file_not_found")
        if row["purpose"] != "fine-tune":
            raise bad_request(
                f"File '{file_id}' has purpose '{row['purpose']}'; upload training data with "
                "purpose 'fine-tune'.",
                param,
                "invalid_file",
            )
        return row

    def create(self, body: CreateJob) -> dict[str, Any]:
        if body.model != self.catalog.chat_name:
            if body.model in self.catalog.adapters:
                raise bad_request(
                    "Fine-tuning a fine-tuned model is not supported; start from the base model.",
                    "model",
                    "model_not_supported",
                )
            raise APIError(
                404, f"The model '{body.model}' does not exist.", param="model", code="model_not_found"
            )
        self._training_file(body.training_file, "training_file")
        self._training_file(body.validation_file, "validation_file")
        hp = body.resolved_hyperparameters()
        job_id = new_id("ftjob-")
        seed = body.seed if body.seed is not None else int.from_bytes(os.urandom(3), "big")
        options = {
            "lora_r": body.lora.r if body.lora else None,
            "lora_alpha": body.lora.alpha if body.lora else None,
            "lora_dropout": body.lora.dropout if body.lora else None,
            "target_modules": body.lora.target_modules if body.lora else None,
            **(body.training.model_dump(exclude_none=True) if body.training else {}),
        }
        try:
            config = TrainConfig.from_dict({k: v for k, v in options.items() if v is not None})
        except ValueError as exc:
            raise bad_request(str(exc), "training") from exc
        limit = self.catalog.engine.max_lora_rank
        if limit == 0:
            raise bad_request(
                "This server's engine serves no adapters (vLLM with RAGTUNE_MAX_LORAS=0), so a fine-tuned "
                "model could not be served; restart with RAGTUNE_MAX_LORAS of 1 or more.",
                "model",
                "model_not_supported",
            )
        if limit is not None and config.lora_r > limit:  # refuse now rather than fail to serve it later
            raise bad_request(
                f"LoRA rank {config.lora_r} is above the {limit} this server's {self.catalog.engine.name} "
                "engine can serve (RAGTUNE_MAX_LORA_RANK).",
                "lora.r",
            )
        requested = {
            "n_epochs": hp.n_epochs,
            "batch_size": hp.batch_size,
            "learning_rate_multiplier": hp.learning_rate_multiplier,
        }
        with self.db.transaction() as tx:
            tx.execute(
                "INSERT INTO fine_tuning_jobs (id, model, training_file, validation_file, suffix, seed, "
                "config, "
                "hyperparameters, status, metadata, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    job_id,
                    body.model,
                    body.training_file,
                    body.validation_file,
                    body.suffix,
                    seed,
                    dumps({k: v for k, v in options.items() if v is not None}),
                    dumps(requested),
                    "validating_files",
                    dumps(body.metadata or {}),
                    now(),
                ),
            )
        self._event(job_id, f"Validating training file: {body.training_file}")
        self._wake.set()
        return self.get(job_id)

    def _row(self, job_id: str) -> Any:
        row = self.db.one("SELECT * FROM fine_tuning_jobs WHERE id = ?", (job_id,))
        if row is None:
            raise not_found(
                f"No fine-tuning job found with id '{job_id}'.", "fine_tuning_job_id", "job_not_found"
            )
        return row

    def job_object(self, row: Any) -> dict[str, Any]:
        hp = json.loads(row["hyperparameters"])
        return {
            "object": "fine_tuning.job",
            "id": row["id"],
            "model": row["model"],
            "created_at": row["created_at"],
            "finished_at": row["finished_at"],
            "fine_tuned_model": row["fine_tuned_model"],
            "organization_id": "ragtune",
            "result_files": [],
            "status": row["status"],
            "validation_file": row["validation_file"],
            "training_file": row["training_file"],
            "hyperparameters": hp,
            "method": {"type": "supervised", "supervised": {"hyperparameters": hp}},
            "trained_tokens": row["trained_tokens"],
            "error": json.loads(row["error"]) if row["error"] else None,
            "seed": row["seed"],
            "estimated_finish": row["estimated_finish"],
            "integrations": [],
            "suffix": row["suffix"],
            "metadata": json.loads(row["metadata"] or "{}"),
            "training_config": json.loads(row["config"]),
            "metrics": json.loads(row["metrics"]) if row["metrics"] else None,
        }

    def get(self, job_id: str) -> dict[str, Any]:
        return self.job_object(self._row(job_id))

    def list(self, after: str | None, limit: int) -> dict[str, Any]:
        rows = self.db.query("SELECT * FROM fine_tuning_jobs ORDER BY created_at DESC, rowid DESC")
        return _page([self.job_object(r) for r in rows], after, limit)

    def events(self, job_id: str, after: str | None, limit: int) -> dict[str, Any]:
        self._row(job_id)
        rows = self.db.query("SELECT * FROM fine_tuning_events WHERE job_id = ? ORDER BY id DESC", (job_id,))
        events = [
            {
                "object": "fine_tuning.job.event",
                "id": f"ftevent-{r['id']}",
                "created_at": r["created_at"],
                "level": r["level"],
                "message": r["message"],
                "data": json.loads(r["data"] or "{}"),
                "type": r["type"],
            }
            for r in rows
        ]
        return _page(events, after, limit)

    def checkpoints(self, job_id: str, after: str | None, limit: int) -> dict[str, Any]:
        job = self._row(job_id)
        rows = self.db.query(
            "SELECT * FROM fine_tuning_checkpoints WHERE job_id = ? ORDER BY step DESC", (job_id,)
        )
        name = job["fine_tuned_model"] or model_name(job["model"], job["suffix"], job_id)
        items = [
            {
                "object": "fine_tuning.job.checkpoint",
                "id": r["id"],
                "created_at": r["created_at"],
                "fine_tuned_model_checkpoint": f"{name}:ckpt-step-{r['step']}",
                "fine_tuning_job_id": job_id,
                "metrics": json.loads(r["metrics"]),
                "step_number": r["step"],
            }
            for r in rows
        ]
        return _page(items, after, limit)

    def cancel(self, job_id: str) -> dict[str, Any]:
        row = self._row(job_id)
        if row["status"] in TERMINAL:
            raise APIError(
                409,
                f"Job '{job_id}' has already {row['status']}; it cannot be cancelled.",
                param="fine_tuning_job_id",
                code="job_not_cancellable",
            )
        self._finish(job_id, "cancelled")
        self._event(job_id, "Job cancelled by request.")
        if self._running_job == job_id and self._process and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)  # the worker stops at its next step
        return self.get(job_id)

    # ---- the scheduler ----------------------------------------------------------------------------

    async def serve_registered(self) -> None:
        """Serve the adapter of every job that succeeded (a broken one is logged and skipped)."""
        for row in self.db.query("SELECT name, path FROM adapters ORDER BY created_at"):
            await self._serve(row["name"], row["path"])

    async def start(self) -> None:
        """Re-queue jobs a dead server left running, then start scheduling."""
        with self.db.transaction() as tx:  # a server that died left these mid-way: resume them
            tx.execute("UPDATE fine_tuning_jobs SET status = 'queued' WHERE status = 'running'")
        self._task = asyncio.create_task(self._run(), name="ragtune-fine-tuning")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        process = self._process
        if process and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            await asyncio.to_thread(_wait, process, 30)
            if self._running_job:  # interrupted by shutdown, not by the user: resume on next start
                self.db.execute(
                    "UPDATE fine_tuning_jobs SET status = 'queued' WHERE id = ? AND status = 'running'",
                    (self._running_job,),
                )

    async def _run(self) -> None:
        while True:
            try:
                await self._tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # keep scheduling whatever one job did
                log.exception("fine-tuning scheduler error")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)
            self._wake.clear()

    async def _tick(self) -> None:
        for row in self.db.query("SELECT id FROM fine_tuning_jobs WHERE status = 'validating_files'"):
            await asyncio.to_thread(self._validate, row["id"])
        if self._process is not None:
            self._follow(self._running_job)
            if self._process.poll() is None:
                return
            self._follow(self._running_job)
            await self._exited(self._running_job, self._process.returncode)
            self._process, self._running_job = None, None
        job = self.db.one(
            "SELECT * FROM fine_tuning_jobs WHERE status = 'queued' ORDER BY created_at, rowid LIMIT 1"
        )
        if job is not None and self.max_running > 0:
            self._launch(job)

    def _validate(self, job_id: str) -> None:
        job = self._row(job_id)
        config = self._config(job)
        try:
            conversations = load_dataset(self.files.path(job["training_file"]))
            if job["validation_file"]:
                load_dataset(self.files.path(job["validation_file"]))
        except DataError as exc:
            self._fail(job_id, job_error(exc.code, exc.message, None if exc.line is None else str(exc.line)))
            return
        try:
            _, stats = tokenize(
                conversations, self.catalog.engine.tokenizer, config.max_length, config.train_on_prompts
            )
            resolved = self._resolve(job, len(conversations))
        except (DataError, ValueError) as exc:
            self._fail(job_id, job_error(getattr(exc, "code", "invalid_training_file"), str(exc)))
            return
        with self.db.transaction() as tx:
            tx.execute(
                "UPDATE fine_tuning_jobs SET status = 'queued', hyperparameters = ?, config = ? "
                "WHERE id = ? AND status = 'validating_files'",
                (dumps(resolved["hyperparameters"]), dumps(resolved["config"].to_dict()), job_id),
            )
        self._event(
            job_id,
            f"Files validated: {describe(stats, config.max_length)}.",
            {"examples": stats.examples, "tokens": stats.total_tokens, "truncated": stats.truncated},
        )
        self._event(job_id, "Job queued.")

    def _config(self, job: Any) -> TrainConfig:
        return TrainConfig.from_dict({**json.loads(job["config"]), "seed": job["seed"]})

    def _resolve(self, job: Any, n_examples: int) -> dict[str, Any]:
        """Turn `auto` into numbers (small data sets get more epochs, as OpenAI's auto does)."""
        hp = json.loads(job["hyperparameters"])
        epochs = (
            hp["n_epochs"]
            if hp["n_epochs"] != "auto"
            else min(10, max(3, math.ceil(200 / max(n_examples, 1))))
        )
        batch = hp["batch_size"] if hp["batch_size"] != "auto" else max(1, min(8, n_examples // 8 or 1))
        multiplier = hp["learning_rate_multiplier"]
        multiplier = 1.0 if multiplier == "auto" else float(multiplier)
        # replace() re-runs TrainConfig's checks (and caps micro_batch_size at batch_size)
        config = dataclasses.replace(
            self._config(job),
            n_epochs=int(epochs),
            batch_size=int(batch),
            learning_rate=BASE_LEARNING_RATE * multiplier,
        )
        return {
            "hyperparameters": {
                "n_epochs": int(epochs),
                "batch_size": int(batch),
                "learning_rate_multiplier": multiplier,
            },
            "config": config,
        }

    def _launch(self, job: Any) -> None:
        job_id = job["id"]
        attempts = job["attempts"] + 1
        if attempts > MAX_ATTEMPTS:
            self._fail(job_id, job_error("server_error", f"Training was interrupted {MAX_ATTEMPTS} times."))
            return
        run_dir = self.runs / job_id
        run_dir.mkdir(parents=True, exist_ok=True)
        spec = {
            "job_id": job_id,
            "base_model": job["model"],
            "model_dir": str(self.model_dir),
            "training_file": str(self.files.path(job["training_file"])),
            "training_file_id": job["training_file"],
            "validation_file": str(self.files.path(job["validation_file"]))
            if job["validation_file"]
            else None,
            "adapter_dir": str(self.adapters / job_id),
            "config": json.loads(job["config"]),
        }
        atomic_write_json(run_dir / "job.json", spec)
        with self.db.transaction() as tx:
            tx.execute(
                "UPDATE fine_tuning_jobs SET status = 'running', attempts = ? WHERE id = ?",
                (attempts, job_id),
            )
        self._event(
            job_id,
            "Fine-tuning job started."
            if attempts == 1
            else f"Fine-tuning job restarted (attempt {attempts}); resuming from the last checkpoint.",
        )
        log_file = open(run_dir / "worker.log", "ab")  # noqa: SIM115 - owned by the child process
        self._process = subprocess.Popen(
            [sys.executable, "-m", "finetune.worker", job_id, "--data-dir", str(self.data_dir)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        log_file.close()
        self._running_job = job_id

    def _follow(self, job_id: str | None) -> None:
        """Copy new worker events into SQLite (the file is append-only; the offset is stored)."""
        if job_id is None:
            return
        path = self.runs / job_id / "events.jsonl"
        if not path.is_file():
            return
        job = self._row(job_id)
        with open(path, "rb") as f:
            f.seek(job["events_offset"])
            data = f.read()
        complete = data[: data.rfind(b"\n") + 1]
        if not complete:
            return
        records = [json.loads(line) for line in complete.decode("utf-8").splitlines() if line.strip()]
        with self.db.transaction() as tx:
            for record in records:
                self._insert_event(tx, job_id, record)
            tx.execute(
                "UPDATE fine_tuning_jobs SET events_offset = ? WHERE id = ?",
                (job["events_offset"] + len(complete), job_id),
            )

    def _insert_event(self, tx: Any, job_id: str, record: dict[str, Any]) -> None:
        data = record.get("data") or {}
        kind = record.get("type", "message")
        if kind == "checkpoint":
            tx.execute(
                "INSERT OR REPLACE INTO fine_tuning_checkpoints (id, job_id, step, metrics, created_at) "
                "VALUES (?,?,?,?,?)",
                (
                    f"ftckpt_{job_id[-12:]}_{data['step']}",
                    job_id,
                    data["step"],
                    dumps(data.get("metrics", {})),
                    record["created_at"],
                ),
            )
            kind = "message"
        if kind == "metrics" and "tokens_seen" in data:
            remaining = max(data.get("total_steps", 0) - data["step"], 0)
            rate = data.get("tokens_per_second") or 0
            per_step = data["tokens_seen"] / max(data["step"], 1)
            finish = now() + int(remaining * per_step / rate) if rate else None
            tx.execute(
                "UPDATE fine_tuning_jobs SET trained_tokens = ?, estimated_finish = ? WHERE id = ?",
                (data["tokens_seen"], finish, job_id),
            )
        tx.execute(
            "INSERT INTO fine_tuning_events (job_id, created_at, level, message, data, type) "
            "VALUES (?,?,?,?,?,?)",
            (job_id, record["created_at"], record.get("level", "info"), record["message"], dumps(data), kind),
        )

    async def _exited(self, job_id: str | None, code: int) -> None:
        if job_id is None:
            return
        job = self._row(job_id)
        run_dir = self.runs / job_id
        if job["status"] == "cancelled":
            return
        if code == 0 and (run_dir / "result.json").is_file():
            await self._succeed(job, json.loads((run_dir / "result.json").read_text()))
        elif code == 2 and (run_dir / "error.json").is_file():
            self._fail(job_id, json.loads((run_dir / "error.json").read_text()))
        else:  # crashed or killed: back to the queue, to resume from its last checkpoint
            log.warning("worker of %s exited with %s; requeueing", job_id, code)
            self._event(job_id, f"Training process exited unexpectedly ({code}); the job will resume.")
            self.db.execute(
                "UPDATE fine_tuning_jobs SET status = 'queued' WHERE id = ? AND status = 'running'", (job_id,)
            )

    async def _succeed(self, job: Any, result: dict[str, Any]) -> None:
        name = model_name(job["model"], job["suffix"], job["id"])
        await self._serve(name, result["adapter_dir"])
        with self.db.transaction() as tx:
            tx.execute(
                "INSERT OR REPLACE INTO adapters (name, job_id, base, path, created_at) VALUES (?,?,?,?,?)",
                (name, job["id"], job["model"], result["adapter_dir"], now()),
            )
            tx.execute(
                "UPDATE fine_tuning_jobs SET status = 'succeeded', fine_tuned_model = ?, finished_at = ?, "
                "metrics = ?, estimated_finish = NULL WHERE id = ?",
                (name, now(), dumps(result["metrics"]), job["id"]),
            )
        retention = result["metrics"].get("retention")
        self._event(
            job["id"],
            f"New fine-tuned model created: {name}"
            + (f" (retention {retention:.2f})" if retention is not None else ""),
            result["metrics"],
            "metrics",
        )
        self._event(job["id"], "The job has successfully completed.")

    async def _serve(self, name: str, path: str) -> None:
        try:
            await self.catalog.add_adapter(name, path)
        except Exception as exc:  # a missing or broken adapter must not stop the server
            log.error("cannot serve adapter %s from %s: %s", name, path, exc)

    def _fail(self, job_id: str, error: dict[str, Any]) -> None:
        with self.db.transaction() as tx:
            tx.execute(
                "UPDATE fine_tuning_jobs SET status = 'failed', error = ?, finished_at = ?, "
                "estimated_finish = NULL WHERE id = ? AND status NOT IN ('cancelled', 'succeeded')",
                (dumps(error), now(), job_id),
            )
        self._event(job_id, f"Job failed: {error['message']}", {"error": error}, level="error")

    def _finish(self, job_id: str, status: str) -> None:
        self.db.execute(
            "UPDATE fine_tuning_jobs SET status = ?, finished_at = ?, estimated_finish = NULL WHERE id = ?",
            (status, now(), job_id),
        )

    def _event(
        self,
        job_id: str,
        message: str,
        data: dict[str, Any] | None = None,
        kind: str = "message",
        level: str = "info",
    ) -> None:
        with self.db.transaction() as tx:
            tx.execute(
                "INSERT INTO fine_tuning_events (job_id, created_at, level, message, data, type) "
                "VALUES (?,?,?,?,?,?)",
                (job_id, now(), level, message, dumps(data or {}), kind),
            )


def model_name(base: str, suffix: str | None, job_id: str) -> str:
    return f"ft:{base}:{suffix or 'ragtune'}:{job_id.removeprefix('ftjob-')[:8]}"


def _page(items: list[dict[str, Any]], after: str | None, limit: int) -> dict[str, Any]:
    ids = [i["id"] for i in items]
    if after is not None:
        items = items[ids.index(after) + 1 :] if after in ids else []
    return {"object": "list", "data": items[:limit], "has_more": len(items) > limit}


def _wait(process: subprocess.Popen, seconds: float) -> None:
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        process.kill()
