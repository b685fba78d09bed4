"""Wire types of the arena: battles, votes and the leaderboard (ours: OpenAI has no equivalent)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from server.protocol import WireModel


class CreateBattle(BaseModel):
    """Ask one question of two arms drawn at random (their names stay hidden until the vote)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    question: str = Field(min_length=1, max_length=8000)
    arms: list[str] | None = Field(None, min_length=2, description="Draw from these; default every chat arm.")
    max_tokens: int = Field(256, ge=1, le=2048)


class Vote(BaseModel):
    """Which answer was better: `a`, `b`, `tie` or `both_bad` (the last two count as a draw)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    winner: Literal["a", "b", "tie", "both_bad"]


class Battle(WireModel):
    """A battle as the voter sees it: the question and two anonymous answers."""

    id: str
    object: Literal["arena.battle"] = "arena.battle"
    question: str
    answer_a: str
    answer_b: str


class VoteResult(WireModel):
    """The recorded vote, with the arms revealed."""

    id: str
    object: Literal["arena.vote"] = "arena.vote"
    winner: Literal["a", "b", "tie", "both_bad"]
    arm_a: str
    arm_b: str


class LeaderboardRow(BaseModel):
    """One arm's Elo rating (start 1000, K = 32) with its 95% bootstrap interval and its record."""

    arm: str
    rating: float
    ci_low: float
    ci_high: float
    battles: int
    wins: int
    ties: int
    losses: int


class Leaderboard(WireModel):
    """Every arm that has a voted battle, best first; `votes` counts the voted battles."""

    object: Literal["list"] = "list"
    method: Literal["elo"] = "elo"
    data: list[LeaderboardRow]
    votes: int
