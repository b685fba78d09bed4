"""HTTP routes of the arena: battles, votes, the leaderboard, and the page a person votes on."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from server.arena.service import ArenaService, CreateBattle, Vote

router = APIRouter()


def get_arena(request: Request) -> ArenaService:
    return request.app.state.services.arena


ArenaDep = Annotated[ArenaService, Depends(get_arena)]
PAGE = Path(__file__).resolve().parents[1] / "web" / "arena.html"


@router.post("/v1/arena/battles")
async def create_battle(body: CreateBattle, arena: ArenaDep) -> dict:
    return await arena.battle(body)


@router.post("/v1/arena/battles/{battle_id}/vote")
def vote(battle_id: str, body: Vote, arena: ArenaDep) -> dict:
    return arena.vote(battle_id, body)


@router.get("/arena", response_class=HTMLResponse, include_in_schema=False)
def arena_page() -> HTMLResponse:
    return HTMLResponse(PAGE.read_text(encoding="utf-8"))
