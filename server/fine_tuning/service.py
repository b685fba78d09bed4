"""Fine-tuning jobs as the API sees them: create (checked, then queued in SQLite), read, list, cancel;
and validate, a dry run of create that checks the files as the job would and creates nothing.

The training itself is the scheduler's (server/fine_tuning/scheduler.py); a job row holds what the
client asked for (`hyperparameters`, OpenAI's echo) and the run's `TrainConfig.to_dict()` (`config`).
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from finetune.config import TrainConfig, config_from_request
from server.catalog import ModelCatalog
from server.errors import APIError, bad_request
from server.files.service import FileService
from server.fine_tuning.jobs import TERMINAL, add_event, finish, job_row, model_name
from server.fine_tuning.protocol import (
    CreateJob,
    FileProblem,
    FileValidation,
    FineTuningJob,
    FineTuningJobCheckpoint,
    FineTuningJobEvent,
)
from server.fine_tuning.scheduler import FineTuningScheduler
from server.fine_tuning.validation import FileCheck, check_files
from server.protocol import ListPage, Page, paginate
from server.storage.db import Database, dumps, new_id, now

TRAINING_PURPOSES = ("fine-tune",)
MAX_REPORTED_ERRORS = 50
"""Invalid records a validation lists (a job stops at the first)."""


class FineTuningService:
    """The /v1/fine_tuning/jobs API over the job rows; `scheduler` is woken for new jobs and told to
    stop the worker of a cancelled one."""

    def __init__(
        self, db: Database, files: FileService, catalog: ModelCatalog, scheduler: FineTuningScheduler
    ) -> None:
        self.db = db
        self.files = files
        self.catalog = catalog
        self.scheduler = scheduler

    def create(self, body: CreateJob) -> FineTuningJob:
        """Check the request and queue the job in `validating_files`.

        Raises APIError 404 (unknown model or file), 400 (a fine-tuned model as base, a file of another
        purpose, a setting out of bounds, an engine that cannot serve the adapter)."""
        seed = body.seed if body.seed is not None else int.from_bytes(os.urandom(3), "big")
        requested, config = self._check_request(body, seed)
        job_id = new_id("ftjob-")
        with self.db.transaction() as tx:
            tx.execute(
                "INSERT INTO fine_tuning_jobs (id, model, training_file, validation_file, suffix, seed, "
                "config, hyperparameters, status, metadata, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    job_id,
                    body.model,
                    body.training_file,
                    body.validation_file,
                    body.suffix,
                    seed,
                    dumps(config.to_dict()),
                    dumps(requested),
                    "validating_files",
                    dumps(body.metadata or {}),
                    now(),
                ),
            )
        add_event(self.db, job_id, f"Validating training file: {body.training_file}")
        self.scheduler.wake()
        return self.get(job_id)

    async def validate(self, body: CreateJob) -> FileValidation:
        """A dry run of `create`: the same request checks (the same APIErrors), then the files checked as
        the scheduler checks a new job's (`check_files`, in a thread: tokenizing thousands of examples
        takes seconds), and no job. Invalid files are `valid` false with the job's error, up to
        MAX_REPORTED_ERRORS invalid records listed."""
        requested, config = self._check_request(body, body.seed if body.seed is not None else 0)
        validation = body.validation_file
        check = await asyncio.to_thread(
            check_files,
            self.files.path(body.training_file),
            self.files.path(validation) if validation else None,
            self.catalog.engine.tokenizer,
            requested,
            config,
            MAX_REPORTED_ERRORS,
            report_encoding=True,
        )
        return validation_object(check, config.max_length)

    def _check_request(self, body: CreateJob, seed: int) -> tuple[dict[str, Any], TrainConfig]:
        """The job's `(requested hyper-parameters, TrainConfig)` once the model, the files and the settings
        are checked. Raises the APIErrors `create` documents."""
        self._check_model(body.model)
        self.files.require(body.training_file, TRAINING_PURPOSES, "training_file")
        if body.validation_file is not None:
            self.files.require(body.validation_file, TRAINING_PURPOSES, "validation_file")
        try:
            requested, config = config_from_request(
                body.resolved_hyperparameters().model_dump(),
                body.lora.model_dump() if body.lora else None,
                body.training.model_dump() if body.training else None,
                seed,
            )
        except ValueError as exc:  # the request model checks the same bounds; kept for a new rule
            raise bad_request(str(exc), "training") from exc
        self._check_servable(config)
        return requested, config

    def _check_model(self, model: str) -> None:
        if model == self.catalog.chat_name:
            return
        if model in self.catalog.adapters:
            raise bad_request(
                "Fine-tuning a fine-tuned model is not supported; start from the base model.",
                "model",
                "model_not_supported",
            )
        if model in {card.id for card in self.catalog.cards()}:  # a profile or the embedding model
            raise bad_request(
                f"'{model}' is not a base chat model; fine-tune '{self.catalog.chat_name}'.",
                "model",
                "model_not_supported",
            )
        raise APIError(404, f"The model '{model}' does not exist.", param="model", code="model_not_found")

    def _check_servable(self, config: TrainConfig) -> None:
        """Refuse now what the engine could not serve after training (`Engine.max_lora_rank`)."""
        engine = self.catalog.engine
        if engine.max_lora_rank == 0:
            raise bad_request(
                "This server's engine serves no adapters (vLLM with RAGTUNE_MAX_LORAS=0), so a fine-tuned "
                "model could not be served; restart with RAGTUNE_MAX_LORAS of 1 or more.",
                "model",
                "model_not_supported",
            )
        if engine.max_lora_rank is not None and config.lora_r > engine.max_lora_rank:
            raise bad_request(
                f"LoRA rank {config.lora_r} is above the {engine.max_lora_rank} this server's {engine.name} "
                "engine can serve (RAGTUNE_MAX_LORA_RANK).",
                "lora.r",
            )

    def job_object(self, row: Any) -> FineTuningJob:
        """The wire object of a job row."""
        hyperparameters = json.loads(row["hyperparameters"])
        return FineTuningJob(
            id=row["id"],
            model=row["model"],
            created_at=row["created_at"],
            finished_at=row["finished_at"],
            fine_tuned_model=row["fine_tuned_model"],
            status=row["status"],
            validation_file=row["validation_file"],
            training_file=row["training_file"],
            hyperparameters=hyperparameters,
            method={"type": "supervised", "supervised": {"hyperparameters": hyperparameters}},
            trained_tokens=row["trained_tokens"],
            error=json.loads(row["error"]) if row["error"] else None,
            seed=row["seed"],
            estimated_finish=row["estimated_finish"],
            suffix=row["suffix"],
            metadata=json.loads(row["metadata"] or "{}"),
            training_config=json.loads(row["config"]),
            metrics=json.loads(row["metrics"]) if row["metrics"] else None,
        )

    def get(self, job_id: str) -> FineTuningJob:
        """Raises APIError 404 `job_not_found`."""
        return self.job_object(job_row(self.db, job_id))

    def list(self, page: Page) -> ListPage[FineTuningJob]:
        rows = self.db.query("SELECT * FROM fine_tuning_jobs ORDER BY created_at, rowid")
        return paginate([self.job_object(r) for r in rows], page)

    def events(self, job_id: str, page: Page) -> ListPage[FineTuningJobEvent]:
        """Raises APIError 404 `job_not_found`."""
        job_row(self.db, job_id)
        rows = self.db.query("SELECT * FROM fine_tuning_events WHERE job_id = ? ORDER BY id", (job_id,))
        events = [
            FineTuningJobEvent(
                id=f"ftevent-{r['id']}",
                created_at=r["created_at"],
                level=r["level"],
                message=r["message"],
                data=json.loads(r["data"] or "{}"),
                type=r["type"],
            )
            for r in rows
        ]
        return paginate(events, page)

    def checkpoints(self, job_id: str, page: Page) -> ListPage[FineTuningJobCheckpoint]:
        """Raises APIError 404 `job_not_found`."""
        job = job_row(self.db, job_id)
        rows = self.db.query(
            "SELECT * FROM fine_tuning_checkpoints WHERE job_id = ? ORDER BY step", (job_id,)
        )
        name = job["fine_tuned_model"] or model_name(job["model"], job["suffix"], job_id)
        checkpoints = [
            FineTuningJobCheckpoint(
                id=r["id"],
                created_at=r["created_at"],
                fine_tuned_model_checkpoint=f"{name}:ckpt-step-{r['step']}",
                fine_tuning_job_id=job_id,
                metrics=json.loads(r["metrics"]),
                step_number=r["step"],
            )
            for r in rows
        ]
        return paginate(checkpoints, page)

    def cancel(self, job_id: str) -> FineTuningJob:
        """Cancel a job that has not ended; a running worker stops within seconds, wherever it is (setup,
        generation, a step: SIGTERM, see finetune/worker.py).

        Raises APIError 404 `job_not_found`, 409 `job_not_cancellable` (it already ended)."""
        row = job_row(self.db, job_id)
        if row["status"] in TERMINAL:
            raise APIError(
                409,
                f"Job '{job_id}' has already {row['status']}; it cannot be cancelled.",
                param="fine_tuning_job_id",
                code="job_not_cancellable",
            )
        finish(self.db, job_id, "cancelled")
        add_event(self.db, job_id, "Job cancelled by request.")
        self.scheduler.interrupt(job_id)
        return self.get(job_id)


def validation_object(check: FileCheck, max_length: int) -> FileValidation:
    """The wire object of a files check (`max_length`: the job's, which the counts were taken with)."""
    stats = check.stats
    problems = [
        FileProblem(code=e.code, message=e.message, param=check.param, line=e.line) for e in check.errors
    ]
    return FileValidation(
        valid=not problems,
        error=problems[0] if problems else None,
        errors=problems,
        examples=stats.examples if stats else 0,
        tokens=stats.total_tokens if stats else 0,
        trained_tokens=stats.trained_tokens if stats else 0,
        longest=stats.max_tokens if stats else 0,
        truncated=stats.truncated if stats else 0,
        truncated_lines=stats.truncated_lines if stats else [],
        empty_lines=stats.empty_lines if stats else [],
        max_length=max_length,
        encoding=check.encoding,
        hyperparameters=check.hyperparameters,
        warnings=check.warnings(max_length),
        message=None if problems else check.message,
    )
