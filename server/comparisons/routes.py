"""HTTP routes of /v1/comparisons."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from server.comparisons.protocol import CreateComparison
from server.deps import ComparisonsDep

router = APIRouter(prefix="/v1/comparisons")


@router.post("")
async def create_comparison(body: CreateComparison, comparisons: ComparisonsDep) -> dict:
    return comparisons.create(body)


@router.get("")
def list_comparisons(comparisons: ComparisonsDep) -> dict:
    return comparisons.list()


@router.get("/{comparison_id}/report.html", response_class=HTMLResponse)
def comparison_report_page(comparison_id: str, comparisons: ComparisonsDep) -> HTMLResponse:
    return HTMLResponse(comparisons.report_html(comparison_id))


@router.get("/{comparison_id}")
def retrieve_comparison(comparison_id: str, comparisons: ComparisonsDep) -> dict:
    return comparisons.get(comparison_id)
