"""HTTP routes of /v1/fine_tuning/jobs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from server.fine_tuning.protocol import CreateJob
from server.fine_tuning.service import FineTuningService

router = APIRouter(prefix="/v1/fine_tuning/jobs")


def get_fine_tuning(request: Request) -> FineTuningService:
    return request.app.state.services.fine_tuning


FineTuningDep = Annotated[FineTuningService, Depends(get_fine_tuning)]
Limit = Annotated[int, Query(ge=1, le=100)]


@router.post("")
def create_job(body: CreateJob, jobs: FineTuningDep) -> dict:
    return jobs.create(body)


@router.get("")
def list_jobs(jobs: FineTuningDep, after: str | None = None, limit: Limit = 20) -> dict:
    return jobs.list(after, limit)


@router.get("/{job_id}")
def retrieve_job(job_id: str, jobs: FineTuningDep) -> dict:
    return jobs.get(job_id)


@router.post("/{job_id}/cancel")
def cancel_job(job_id: str, jobs: FineTuningDep) -> dict:
    return jobs.cancel(job_id)


@router.get("/{job_id}/events")
def list_events(job_id: str, jobs: FineTuningDep, after: str | None = None, limit: Limit = 20) -> dict:
    return jobs.events(job_id, after, limit)


@router.get("/{job_id}/checkpoints")
def list_checkpoints(job_id: str, jobs: FineTuningDep, after: str | None = None, limit: Limit = 10) -> dict:
    return jobs.checkpoints(job_id, after, limit)
