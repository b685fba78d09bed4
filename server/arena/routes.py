"""HTTP routes of the arena: battles, votes, and the page a person votes on.

The leaderboard is served under `/v1/comparisons/leaderboard` by server/comparisons/routes.py."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from server.arena.protocol import Battle, CreateBattle, Vote, VoteResult
from server.arena.service import ArenaService
from server.protocol import WireRoute

router = APIRouter(route_class=WireRoute)
PAGE = Path(__file__).resolve().parents[1] / "web" / "arena.html"


def get_arena(request: Request) -> ArenaService:
    return request.app.state.services.arena


ArenaDep = Annotated[ArenaService, Depends(get_arena)]


@router.post("/v1/arena/battles")
async def create_battle(body: CreateBattle, arena: ArenaDep) -> Battle:
    return Battle(**await arena.battle(body))


@router.post("/v1/arena/battles/{battle_id}/vote")
def vote(battle_id: str, body: Vote, arena: ArenaDep) -> VoteResult:
    return VoteResult(**arena.vote(battle_id, body))


@router.get("/arena", response_class=HTMLResponse, include_in_schema=False)
def arena_page() -> HTMLResponse:
    return HTMLResponse(PAGE.read_text(encoding="utf-8"))
