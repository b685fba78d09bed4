"""HTTP routes of /v1/fine_tuning/jobs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from server.fine_tuning.protocol import CreateJob, FineTuningJob, FineTuningJobCheckpoint, FineTuningJobEvent
from server.fine_tuning.service import FineTuningService
from server.protocol import ListPage, Page, WireRoute, pagination

router = APIRouter(prefix="/v1/fine_tuning/jobs", route_class=WireRoute)


def get_fine_tuning(request: Request) -> FineTuningService:
    return request.app.state.services.fine_tuning


FineTuningDep = Annotated[FineTuningService, Depends(get_fine_tuning)]
PageDep = Annotated[Page, Depends(pagination(limit=20))]
CheckpointPageDep = Annotated[Page, Depends(pagination(limit=10))]


@router.post("")
def create_job(body: CreateJob, jobs: FineTuningDep) -> FineTuningJob:
    return jobs.create(body)


@router.get("")
def list_jobs(jobs: FineTuningDep, page: PageDep) -> ListPage[FineTuningJob]:
    return jobs.list(page)


@router.get("/{job_id}")
def retrieve_job(job_id: str, jobs: FineTuningDep) -> FineTuningJob:
    return jobs.get(job_id)


@router.post("/{job_id}/cancel")
def cancel_job(job_id: str, jobs: FineTuningDep) -> FineTuningJob:
    return jobs.cancel(job_id)


@router.get("/{job_id}/events")
def list_events(job_id: str, jobs: FineTuningDep, page: PageDep) -> ListPage[FineTuningJobEvent]:
    return jobs.events(job_id, page)


@router.get("/{job_id}/checkpoints")
def list_checkpoints(
    job_id: str, jobs: FineTuningDep, page: CheckpointPageDep
) -> ListPage[FineTuningJobCheckpoint]:
    return jobs.checkpoints(job_id, page)
