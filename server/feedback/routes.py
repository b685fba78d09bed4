"""HTTP routes of /v1/feedback."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse

from server.feedback.service import CreateFeedback, FeedbackService

router = APIRouter(prefix="/v1/feedback")


def get_feedback(request: Request) -> FeedbackService:
    return request.app.state.services.feedback


FeedbackDep = Annotated[FeedbackService, Depends(get_feedback)]


@router.post("")
def create_feedback(body: CreateFeedback, feedback: FeedbackDep) -> dict:
    return feedback.create(body)


@router.get("")
def list_feedback(feedback: FeedbackDep) -> dict:
    return feedback.list()


@router.get("/export.jsonl", response_class=PlainTextResponse)
def export_feedback(feedback: FeedbackDep) -> PlainTextResponse:
    return PlainTextResponse(feedback.export_jsonl(), media_type="application/jsonl")
