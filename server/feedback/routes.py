"""HTTP routes of /v1/feedback."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse

from server.feedback.protocol import CreateFeedback, Feedback
from server.feedback.service import FeedbackService
from server.protocol import ListPage, Page, WireRoute, paginate, pagination

router = APIRouter(prefix="/v1/feedback", route_class=WireRoute)


def get_feedback(request: Request) -> FeedbackService:
    return request.app.state.services.feedback


FeedbackDep = Annotated[FeedbackService, Depends(get_feedback)]
# Everything, oldest first, by default: as this list answered before it had pages.
FeedbackPage = Annotated[Page, Depends(pagination(limit=10_000, max_limit=10_000, order="asc"))]


@router.post("")
def create_feedback(body: CreateFeedback, feedback: FeedbackDep) -> Feedback:
    return Feedback(**feedback.create(body))


@router.get("")
def list_feedback(feedback: FeedbackDep, page: FeedbackPage) -> ListPage[Feedback]:
    return paginate(feedback.all(), page)


@router.get("/export.jsonl", response_class=PlainTextResponse)
def export_feedback(feedback: FeedbackDep) -> PlainTextResponse:
    return PlainTextResponse(feedback.export_jsonl(), media_type="application/jsonl")
