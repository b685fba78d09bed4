"""The `fine_tuning_jobs` rows and their events, as the API service and the scheduler both write them."""

from __future__ import annotations

from typing import Any

from server.errors import not_found
from server.storage.db import Database, dumps, now

TERMINAL = ("succeeded", "failed", "cancelled")


def job_row(db: Database, job_id: str) -> Any:
    """The job's row. Raises APIError 404 `job_not_found` on `fine_tuning_job_id`."""
    row = db.one("SELECT * FROM fine_tuning_jobs WHERE id = ?", (job_id,))
    if row is None:
        raise not_found(
            f"No fine-tuning job found with id '{job_id}'.", "fine_tuning_job_id", "job_not_found"
        )
    return row


def add_event(
    db: Database,
    job_id: str,
    message: str,
    data: dict[str, Any] | None = None,
    kind: str = "message",
    level: str = "info",
) -> None:
    """Append one event (`kind` `message` or `metrics`) to the job's log, stamped now."""
    insert_event(db, job_id, now(), message, data, kind, level)


def insert_event(
    tx: Any,
    job_id: str,
    created_at: int,
    message: str,
    data: dict[str, Any] | None = None,
    kind: str = "message",
    level: str = "info",
) -> None:
    """Append one event through `tx` (a Database or an open transaction)."""
    tx.execute(
        "INSERT INTO fine_tuning_events (job_id, created_at, level, message, data, type) "
        "VALUES (?,?,?,?,?,?)",
        (job_id, created_at, level, message, dumps(data or {}), kind),
    )


def finish(db: Database, job_id: str, status: str) -> None:
    """Set a final status (and `finished_at`)."""
    db.execute(
        "UPDATE fine_tuning_jobs SET status = ?, finished_at = ?, estimated_finish = NULL WHERE id = ?",
        (status, now(), job_id),
    )


def fail(db: Database, job_id: str, error: dict[str, Any]) -> None:
    """Mark the job failed with `error` (`protocol.job_error`), unless it already ended otherwise."""
    with db.transaction() as tx:
        tx.execute(
            "UPDATE fine_tuning_jobs SET status = 'failed', error = ?, finished_at = ?, "
            "estimated_finish = NULL WHERE id = ? AND status NOT IN ('cancelled', 'succeeded')",
            (dumps(error), now(), job_id),
        )
    add_event(db, job_id, f"Job failed: {error['message']}", {"error": error}, level="error")


def model_name(base: str, suffix: str | None, job_id: str) -> str:
    """The served name of a job's adapter: `ft:<base>:<suffix or ragtune>:<8 characters of the id>`."""
    return f"ft:{base}:{suffix or 'ragtune'}:{job_id.removeprefix('ftjob-')[:8]}"
