"""HTTP routes of the arena: battles and votes. The page a person votes on is the UI's `/arena`
(server/ui/routes.py); the leaderboard is `/v1/comparisons/leaderboard` (server/comparisons/routes.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from server.arena.protocol import Battle, CreateBattle, Vote, VoteResult
from server.arena.service import ArenaService
from server.protocol import WireRoute

router = APIRouter(route_class=WireRoute)


def get_arena(request: Request) -> ArenaService:
    return request.app.state.services.arena


ArenaDep = Annotated[ArenaService, Depends(get_arena)]


@router.post("/v1/arena/battles")
async def create_battle(body: CreateBattle, arena: ArenaDep) -> Battle:
    return Battle(**await arena.battle(body))


@router.post("/v1/arena/battles/{battle_id}/vote")
def vote(battle_id: str, body: Vote, arena: ArenaDep) -> VoteResult:
    return VoteResult(**arena.vote(battle_id, body))
