"""Background fine-tuning: validate queued files, run one worker process at a time, follow its events,
serve the adapter it leaves.

Lifecycle: validating_files → queued → running → succeeded | failed | cancelled. The queue is the
`fine_tuning_jobs` rows themselves, so it survives a crash: a job whose worker died (or whose server
died) goes back to the queue and resumes from its last checkpoint; after three interrupted attempts it
fails. A job that fits its card's training share but not the memory free now (common/memory_plan.py)
goes back to the queue, says so once in its events, and is tried again WAIT_SECONDS later. On success
the adapter is registered and served at once. With `training_processes` > 1 the worker runs under
torchrun, one process per GPU (finetune/distributed.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from common.atomic import atomic_write_json
from finetune.config import TrainConfig
from finetune.worker import EXIT_FAILED, EXIT_OK, EXIT_WAIT
from server.catalog import ModelCatalog
from server.fine_tuning.jobs import add_event, fail, insert_event, job_row, model_name
from server.fine_tuning.protocol import job_error
from server.fine_tuning.validation import check_files
from server.storage.db import Database, dumps, now

log = logging.getLogger("ragtune.fine_tuning")

MAX_ATTEMPTS = 3
POLL_SECONDS = 0.5
WAIT_SECONDS = 30.0  # a job waiting for GPU memory (worker exit EXIT_WAIT) tries again this much later


class FineTuningScheduler:
    """Takes jobs off the SQLite queue and trains each in `python -m finetune.worker`, `max_running` at
    most at a time (0: jobs queue but never train, as on a serving-only replica; today at most 1)."""

    def __init__(
        self,
        db: Database,
        data_dir: Path,
        files: Any,
        catalog: ModelCatalog,
        model_dir: Path,
        max_running: int = 1,
        training_device: str = "auto",
        gpu_split: dict[str, Any] | None = None,
        training_processes: int = 1,
    ) -> None:
        self.db = db
        self.data_dir = data_dir
        self.files = files
        self.catalog = catalog
        self.model_dir = model_dir
        self.max_running = max_running
        self.training_device = training_device  # RAGTUNE_TRAINING_DEVICE, checked by the worker
        # RAGTUNE_TRAINING_PROCESSES: > 1 starts the worker under torchrun, one process per GPU
        self.training_processes = training_processes
        # job.json's `gpu_split` (finetune/worker.py plan_on_card): the serving engine's share and cards
        self.gpu_split = gpu_split or {}
        self._waiting: dict[str, float] = {}  # job id -> monotonic time it may try for GPU memory again
        self.runs = data_dir / "fine_tuning"
        self.adapters = data_dir / "adapters"
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._process: subprocess.Popen | None = None
        self._running_job: str | None = None

    # ---- called by the server and the API service -------------------------------------------------

    async def serve_registered(self) -> None:
        """Serve the adapter of every job that succeeded (a broken one is logged and skipped)."""
        for row in self.db.query("SELECT name, path FROM adapters ORDER BY created_at"):
            await self._serve(row["name"], row["path"])

    async def start(self) -> None:
        """Re-queue jobs a dead server left running, then start scheduling."""
        with self.db.transaction() as tx:  # a server that died left these mid-way: resume them
            tx.execute("UPDATE fine_tuning_jobs SET status = 'queued' WHERE status = 'running'")
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name="ragtune-fine-tuning")

    def wake(self) -> None:
        """There is new work; safe from any thread (the API's routes run in a thread pool)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def interrupt(self, job_id: str) -> None:
        """Ask the worker of `job_id`, if it is running, to stop now (SIGTERM; see finetune/worker.py)."""
        process = self._process
        if self._running_job == job_id and process and process.poll() is None:
            process.send_signal(signal.SIGTERM)

    async def stop(self) -> None:
        """Stop scheduling; a running worker is stopped and its job re-queued for the next start."""
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

    # ---- the loop ---------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            # Cleared before the tick, never after the wait: a wake during a tick is kept (as in the
            # ingestion worker), so a new job is taken at once rather than at the next poll.
            self._wake.clear()
            try:
                await self._tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # keep scheduling whatever one job did
                log.exception("fine-tuning scheduler error")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)

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
        if self.max_running <= 0:
            return
        clock = asyncio.get_running_loop().time()
        for job in self.db.query(
            "SELECT * FROM fine_tuning_jobs WHERE status = 'queued' ORDER BY created_at, rowid"
        ):  # the oldest job not waiting for GPU memory (a smaller job behind it may fit now)
            if self._waiting.get(job["id"], 0.0) <= clock:
                self._launch(job)
                return

    def _validate(self, job_id: str) -> None:
        """Check the files (`check_files`, as POST /v1/fine_tuning/validate does); then `auto` becomes
        numbers (it depends on the data's size) and it queues."""
        job = job_row(self.db, job_id)
        # rows written before the config carried the seed keep it in their own column
        base = TrainConfig.from_dict({"seed": job["seed"], **json.loads(job["config"])})
        validation = job["validation_file"]
        check = check_files(
            self.files.path(job["training_file"]),
            self.files.path(validation) if validation else None,
            self.catalog.engine.tokenizer,
            json.loads(job["hyperparameters"]),
            base,
        )
        if (error := check.error) is not None:
            fail(
                self.db,
                job_id,
                job_error(error.code, error.message, None if error.line is None else str(error.line)),
            )
            return
        stats, config = check.stats, check.config
        with self.db.transaction() as tx:
            tx.execute(
                "UPDATE fine_tuning_jobs SET status = 'queued', hyperparameters = ?, config = ? "
                "WHERE id = ? AND status = 'validating_files'",
                (dumps(check.hyperparameters), dumps(config.to_dict()), job_id),
            )
        add_event(
            self.db,
            job_id,
            check.message,
            {"examples": stats.examples, "tokens": stats.total_tokens, "truncated": stats.truncated},
        )
        add_event(self.db, job_id, "Job queued.")

    def _launch(self, job: Any) -> None:
        """Start the worker on `job.json`, whose `config` is the row's `TrainConfig.to_dict()` as it is."""
        job_id = job["id"]
        attempts = job["attempts"] + 1
        if attempts > MAX_ATTEMPTS:
            fail(
                self.db, job_id, job_error("server_error", f"Training was interrupted {MAX_ATTEMPTS} times.")
            )
            return
        run_dir = self.runs / job_id
        run_dir.mkdir(parents=True, exist_ok=True)
        validation = job["validation_file"]
        spec = {
            "job_id": job_id,
            "base_model": job["model"],
            "model_dir": str(self.model_dir),
            "training_file": str(self.files.path(job["training_file"])),
            "training_file_id": job["training_file"],
            "validation_file": str(self.files.path(validation)) if validation else None,
            "adapter_dir": str(self.adapters / job_id),
            "config": json.loads(job["config"]),
            "training_device": self.training_device,
            "gpu_split": self.gpu_split,
        }
        for outcome in ("wait.json", "error.json", "result.json"):  # a previous try's: only this one's count
            (run_dir / outcome).unlink(missing_ok=True)
        atomic_write_json(run_dir / "job.json", spec)
        with self.db.transaction() as tx:
            tx.execute(
                "UPDATE fine_tuning_jobs SET status = 'running', attempts = ? WHERE id = ?",
                (attempts, job_id),
            )
        if job_id not in self._waiting:  # a job trying again for GPU memory said so once, not each try
            add_event(
                self.db,
                job_id,
                "Fine-tuning job started."
                if attempts == 1
                else f"Fine-tuning job restarted (attempt {attempts}); resuming from the last checkpoint.",
            )
        log_file = open(run_dir / "worker.log", "ab")  # noqa: SIM115 - owned by the child process
        self._process = subprocess.Popen(
            self.worker_command(job_id),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        log_file.close()
        self._running_job = job_id

    def worker_command(self, job_id: str) -> list[str]:
        """The worker's argv: `python -m finetune.worker <job> --data-dir D`, or with
        `training_processes` N > 1 that module under torchrun on this machine alone (`--standalone`:
        a local rendezvous on a free port), N processes (finetune/distributed.py)."""
        worker = ["-m", "finetune.worker", job_id, "--data-dir", str(self.data_dir)]
        if self.training_processes <= 1:
            return [sys.executable, *worker]
        launcher = [
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={self.training_processes}",
        ]
        return [sys.executable, *launcher, *worker]

    # ---- following the worker ---------------------------------------------------------------------

    def _follow(self, job_id: str | None) -> None:
        """Copy new worker events into SQLite (the file is append-only; the offset is stored)."""
        if job_id is None:
            return
        path = self.runs / job_id / "events.jsonl"
        if not path.is_file():
            return
        job = job_row(self.db, job_id)
        with open(path, "rb") as f:
            f.seek(job["events_offset"])
            data = f.read()
        complete = data[: data.rfind(b"\n") + 1]
        if not complete:
            return
        records = [json.loads(line) for line in complete.decode("utf-8").splitlines() if line.strip()]
        with self.db.transaction() as tx:
            for record in records:
                self._insert_record(tx, job_id, record)
            tx.execute(
                "UPDATE fine_tuning_jobs SET events_offset = ? WHERE id = ?",
                (job["events_offset"] + len(complete), job_id),
            )

    def _insert_record(self, tx: Any, job_id: str, record: dict[str, Any]) -> None:
        """One worker event: a checkpoint also gets its row, metrics update the job's progress."""
        data = record.get("data") or {}
        kind = record.get("type", "message")
        # Only epoch ends are listed (as OpenAI lists them): each becomes a servable model when the job
        # succeeds. Periodic checkpoints are for resuming only and are deleted then.
        if kind == "checkpoint" and data.get("epoch_end", True):  # (older workers sent no epoch_end)
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
        if kind == "checkpoint":
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
        insert_event(
            tx, job_id, record["created_at"], record["message"], data, kind, record.get("level", "info")
        )

    async def _exited(self, job_id: str | None, code: int) -> None:
        """Act on the worker's exit `code` and the file it left (finetune/worker.py). Under torchrun
        (`training_processes` > 1) the code is torchrun's (1 when any rank failed, whatever the code), so
        the file rank 0 wrote decides: result.json succeeded, error.json failed, wait.json waits (the
        launch removed any earlier try's); none is a crash."""
        if job_id is None:
            return
        job = job_row(self.db, job_id)
        run_dir = self.runs / job_id
        if self.training_processes > 1:
            for outcome, worker_code in (
                ("result.json", EXIT_OK),
                ("error.json", EXIT_FAILED),
                ("wait.json", EXIT_WAIT),
            ):
                if (run_dir / outcome).is_file():
                    code = worker_code
                    break
        waited = self._waiting.pop(job_id, None) if code != EXIT_WAIT else self._waiting.get(job_id)
        if job["status"] == "cancelled":
            return
        if code == 0 and (run_dir / "result.json").is_file():
            await self._succeed(job, json.loads((run_dir / "result.json").read_text()))
        elif code == EXIT_FAILED and (run_dir / "error.json").is_file():
            fail(self.db, job_id, json.loads((run_dir / "error.json").read_text()))
        elif code == EXIT_WAIT and (run_dir / "wait.json").is_file():
            # Fits the card's training share, not its free memory now: queued again (this start was not
            # an attempt), tried again in WAIT_SECONDS; the reason is an event the first time only.
            message = json.loads((run_dir / "wait.json").read_text())["message"]
            if waited is None:
                add_event(self.db, job_id, message)
            self._waiting[job_id] = asyncio.get_running_loop().time() + WAIT_SECONDS
            self.db.execute(
                "UPDATE fine_tuning_jobs SET status = 'queued', attempts = attempts - 1 "
                "WHERE id = ? AND status = 'running'",
                (job_id,),
            )
        else:  # crashed or killed: back to the queue, to resume from its last checkpoint
            log.warning("worker of %s exited with %s; requeueing", job_id, code)
            add_event(self.db, job_id, f"Training process exited unexpectedly ({code}); the job will resume.")
            self.db.execute(
                "UPDATE fine_tuning_jobs SET status = 'queued' WHERE id = ? AND status = 'running'", (job_id,)
            )

    async def _succeed(self, job: Any, result: dict[str, Any]) -> None:
        name = model_name(job["model"], job["suffix"], job["id"])
        checkpoints = await self._serve(name, result["adapter_dir"])
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
        add_event(
            self.db,
            job["id"],
            f"New fine-tuned model created: {name}"
            + (f" (retention {retention:.2f})" if retention is not None else ""),
            result["metrics"],
            "metrics",
        )
        if checkpoints:
            steps = sorted(int(c.rsplit("-", 1)[1]) for c in checkpoints)
            add_event(
                self.db,
                job["id"],
                f"Each epoch's checkpoint is a model too: {name}:ckpt-step-<step> for step "
                + ", ".join(map(str, steps))
                + ".",
                {"checkpoint_models": [f"{name}:ckpt-step-{s}" for s in steps]},
            )
        add_event(self.db, job["id"], "The job has successfully completed.")

    async def _serve(self, name: str, path: str) -> list[str]:
        """Serve a job's adapter as `name`, and each epoch's adapter saved beside it (the recipe's
        `checkpoints/ckpt-step-<n>/`) as `<name>:ckpt-step-<n>`, loaded on its first request. Returns
        the checkpoint models registered."""
        try:
            await self.catalog.add_adapter(name, path)
        except Exception as exc:  # a missing or broken adapter must not stop the server
            log.error("cannot serve adapter %s from %s: %s", name, path, exc)
            return []
        registered = []
        root = Path(path) / "checkpoints"
        for directory in sorted(root.glob("ckpt-step-*")) if root.is_dir() else []:
            if (directory / "adapter_model.safetensors").is_file():
                registered.append(f"{name}:{directory.name}")
                self.catalog.add_lazy_adapter(registered[-1], str(directory))
        return registered


def _wait(process: subprocess.Popen, seconds: float) -> None:
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        process.kill()
