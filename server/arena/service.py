"""Battles between two randomly drawn arms, votes, and an Elo leaderboard with bootstrap intervals."""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import Any

import numpy as np

from server.arena.protocol import CreateBattle, Vote
from server.catalog import ModelCatalog
from server.chat.protocol import ChatCompletionRequest
from server.chat.service import ChatService
from server.errors import APIError, not_found
from server.storage.db import Database, dumps, new_id, now

ELO_K, ELO_BASE, BOOTSTRAP = 32.0, 1000.0, 200
SCORES = {"a": 1.0, "b": 0.0, "tie": 0.5, "both_bad": 0.5}


class ArenaService:
    def __init__(self, db: Database, catalog: ModelCatalog, chat: ChatService) -> None:
        self.db = db
        self.catalog = catalog
        self.chat = chat

    def arms(self) -> list[str]:
        return [c.id for c in self.catalog.cards() if c.kind in ("chat", "profile")]

    async def battle(self, body: CreateBattle) -> dict[str, Any]:
        pool = body.arms or self.arms()
        for name in pool:
            self.catalog.chat_target(name)  # 404 for an unknown arm
        if len(set(pool)) < 2:
            raise APIError(
                409,
                "The arena needs at least two arms (models, adapters or profiles).",
                param="arms",
                code="not_enough_arms",
            )
        a, b = random.sample(sorted(set(pool)), 2)
        answers = await asyncio.gather(*(self._answer(arm, body) for arm in (a, b)))
        battle = {
            "id": new_id("battle_"),
            "question": body.question,
            "arm_a": a,
            "arm_b": b,
            "answer_a": answers[0]["text"],
            "answer_b": answers[1]["text"],
            "latency_ms_a": answers[0]["latency_ms"],
            "latency_ms_b": answers[1]["latency_ms"],
        }
        with self.db.transaction() as tx:
            tx.execute(
                "INSERT INTO battles (id, body, created_at) VALUES (?,?,?)",
                (battle["id"], dumps(battle), now()),
            )
        return {
            "id": battle["id"],
            "object": "arena.battle",
            "question": body.question,
            "answer_a": battle["answer_a"],
            "answer_b": battle["answer_b"],
        }  # names stay hidden until the vote

    async def _answer(self, arm: str, body: CreateBattle) -> dict[str, Any]:
        request = ChatCompletionRequest(
            model=arm,
            messages=[{"role": "user", "content": body.question}],
            temperature=0,
            max_tokens=body.max_tokens,
        )
        start = time.perf_counter()
        answer = await self.chat.complete(await self.chat.prepare(request))
        return {"text": answer.choices[0].message.content, "latency_ms": (time.perf_counter() - start) * 1000}

    def vote(self, battle_id: str, vote: Vote) -> dict[str, Any]:
        row = self.db.one("SELECT * FROM battles WHERE id = ?", (battle_id,))
        if row is None:
            raise not_found(f"No battle '{battle_id}'.", "battle_id", "battle_not_found")
        if row["winner"] is not None:
            raise APIError(409, "This battle already has a vote.", param="battle_id", code="already_voted")
        self.db.execute("UPDATE battles SET winner = ? WHERE id = ?", (vote.winner, battle_id))
        battle = json.loads(row["body"])
        return {
            "id": battle_id,
            "object": "arena.vote",
            "winner": vote.winner,
            "arm_a": battle["arm_a"],
            "arm_b": battle["arm_b"],
        }

    def leaderboard(self) -> dict[str, Any]:
        battles = [
            (json.loads(r["body"]), r["winner"])
            for r in self.db.query(
                "SELECT body, winner FROM battles WHERE winner IS NOT NULL ORDER BY created_at, rowid"
            )
        ]
        games = [(b["arm_a"], b["arm_b"], SCORES[w]) for b, w in battles]
        arms = sorted({a for g in games for a in g[:2]})
        ratings = elo(games, arms)
        rng = np.random.default_rng(0)
        samples = [
            elo([games[i] for i in rng.integers(0, len(games), len(games))], arms) for _ in range(BOOTSTRAP)
        ]
        data = []
        for arm in arms:
            mine = [g for g in games if arm in g[:2]]
            wins = sum(1 for a, b, s in mine if (a == arm and s == 1.0) or (b == arm and s == 0.0))
            ties = sum(1 for _, _, s in mine if s == 0.5)
            low, high = np.percentile([s[arm] for s in samples], [2.5, 97.5])
            data.append(
                {
                    "arm": arm,
                    "rating": round(ratings[arm], 1),
                    "ci_low": round(float(low), 1),
                    "ci_high": round(float(high), 1),
                    "battles": len(mine),
                    "wins": wins,
                    "ties": ties,
                    "losses": len(mine) - wins - ties,
                }
            )
        data.sort(key=lambda d: -d["rating"])
        return {"object": "list", "method": "elo", "data": data, "votes": len(games)}


def elo(games: list[tuple[str, str, float]], arms: list[str]) -> dict[str, float]:
    """Sequential Elo (K = 32, start 1000); score is arm a's result: 1 win, 0.5 tie, 0 loss."""
    rating = dict.fromkeys(arms, ELO_BASE)
    for a, b, score in games:
        expected = 1 / (1 + 10 ** ((rating[b] - rating[a]) / 400))
        rating[a] += ELO_K * (score - expected)
        rating[b] -= ELO_K * (score - expected)
    return rating
