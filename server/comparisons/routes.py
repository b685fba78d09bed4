"""HTTP routes of /v1/comparisons."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from server.arena.routes import ArenaDep
from server.comparisons.protocol import CreateComparison
from server.comparisons.service import ComparisonService

router = APIRouter(prefix="/v1/comparisons")


def get_comparisons(request: Request) -> ComparisonService:
    return request.app.state.services.comparisons


ComparisonsDep = Annotated[ComparisonService, Depends(get_comparisons)]


@router.post("")
async def create_comparison(body: CreateComparison, comparisons: ComparisonsDep) -> dict:
    return comparisons.create(body)


@router.get("")
def list_comparisons(comparisons: ComparisonsDep) -> dict:
    return comparisons.list()


# Declared before `/{comparison_id}` in this same file, so "leaderboard" is never taken for an id.
@router.get("/leaderboard")
def leaderboard(arena: ArenaDep) -> dict:
    """The arena's Elo leaderboard over every voted battle."""
    return arena.leaderboard()


@router.get("/{comparison_id}/report.html", response_class=HTMLResponse)
def comparison_report_page(comparison_id: str, comparisons: ComparisonsDep) -> HTMLResponse:
    return HTMLResponse(comparisons.report_html(comparison_id))


@router.get("/{comparison_id}")
def retrieve_comparison(comparison_id: str, comparisons: ComparisonsDep) -> dict:
    return comparisons.get(comparison_id)
