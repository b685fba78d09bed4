"""HTTP routes of /v1/comparisons (and the arena's leaderboard, which lives under it)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from server.arena.protocol import Leaderboard
from server.arena.routes import ArenaDep
from server.comparisons.protocol import Comparison, CreateComparison
from server.comparisons.service import ComparisonService
from server.protocol import ListPage, Page, WireRoute, paginate, pagination

router = APIRouter(prefix="/v1/comparisons", route_class=WireRoute)


def get_comparisons(request: Request) -> ComparisonService:
    return request.app.state.services.comparisons


ComparisonsDep = Annotated[ComparisonService, Depends(get_comparisons)]
# Everything, newest first, by default: as this list answered before it had pages.
ComparisonsPage = Annotated[Page, Depends(pagination(limit=10_000, max_limit=10_000))]


@router.post("")
async def create_comparison(body: CreateComparison, comparisons: ComparisonsDep) -> Comparison:
    return Comparison(**comparisons.create(body))


@router.get("")
def list_comparisons(comparisons: ComparisonsDep, page: ComparisonsPage) -> ListPage[Comparison]:
    return paginate(comparisons.all(), page)


# Declared before `/{comparison_id}` in this same file, so "leaderboard" is never taken for an id,
# whatever order the app includes its routers in.
@router.get("/leaderboard")
def leaderboard(arena: ArenaDep) -> Leaderboard:
    """The arena's Elo leaderboard over every voted battle."""
    return Leaderboard(**arena.leaderboard())


@router.get("/{comparison_id}/report.html", response_class=HTMLResponse)
def comparison_report_page(comparison_id: str, comparisons: ComparisonsDep) -> HTMLResponse:
    return HTMLResponse(comparisons.report_html(comparison_id))


@router.get("/{comparison_id}")
def retrieve_comparison(comparison_id: str, comparisons: ComparisonsDep) -> Comparison:
    return Comparison(**comparisons.get(comparison_id))
