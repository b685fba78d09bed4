"""HTTP routes of /v1/fine_tuning/jobs (OpenAI's) and /v1/fine_tuning/validate (ragtune's dry run of a job's
file check)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from server.fine_tuning.protocol import (
    CreateJob,
    FileValidation,
    FineTuningJob,
    FineTuningJobCheckpoint,
    FineTuningJobEvent,
)
from server.fine_tuning.service import FineTuningService
from server.protocol import ListPage, Page, WireRoute, pagination

router = APIRouter(prefix="/v1/fine_tuning", route_class=WireRoute)


def get_fine_tuning(request: Request) -> FineTuningService:
    return request.app.state.services.fine_tuning


FineTuningDep = Annotated[FineTuningService, Depends(get_fine_tuning)]
PageDep = Annotated[Page, Depends(pagination(limit=20))]
CheckpointPageDep = Annotated[Page, Depends(pagination(limit=10))]


@router.post("/jobs")
def create_job(body: CreateJob, jobs: FineTuningDep) -> FineTuningJob:
    return jobs.create(body)


@router.post("/validate")
async def validate_files(body: CreateJob, jobs: FineTuningDep) -> FileValidation:
    """Check a job's files as creating the job would (the same request errors), without creating it."""
    return await jobs.validate(body)


@router.get("/jobs")
def list_jobs(jobs: FineTuningDep, page: PageDep) -> ListPage[FineTuningJob]:
    return jobs.list(page)


@router.get("/jobs/{job_id}")
def retrieve_job(job_id: str, jobs: FineTuningDep) -> FineTuningJob:
    return jobs.get(job_id)


@router.post("/jobs/{job_id}/cancel")
def cancel_job(job_id: str, jobs: FineTuningDep) -> FineTuningJob:
    return jobs.cancel(job_id)


@router.get("/jobs/{job_id}/events")
def list_events(job_id: str, jobs: FineTuningDep, page: PageDep) -> ListPage[FineTuningJobEvent]:
    return jobs.events(job_id, page)


@router.get("/jobs/{job_id}/checkpoints")
def list_checkpoints(
    job_id: str, jobs: FineTuningDep, page: CheckpointPageDep
) -> ListPage[FineTuningJobCheckpoint]:
    return jobs.checkpoints(job_id, page)
