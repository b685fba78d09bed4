"""The blind arena: battles hide the arms until the vote; the leaderboard ranks arms with intervals."""

from __future__ import annotations

from server.arena.service import elo
from server.engines.fake import FakeEngine
from tests.helpers import MODEL, assert_error


def test_battle_vote_and_leaderboard(make_client):
    client = make_client(
        FakeEngine(respond=lambda prompt: "terse" if "One word." in prompt else "a long answer")
    )
    client.post("/v1/profiles", json={"name": "terse", "model": MODEL, "system": "One word."})
    for _ in range(6):
        battle = client.post("/v1/arena/battles", json={"question": "Hi?", "arms": [MODEL, "terse"]}).json()
        assert battle["object"] == "arena.battle" and "arm_a" not in battle  # blind
        assert {battle["answer_a"], battle["answer_b"]} == {"terse", "a long answer"}
        winner = "a" if battle["answer_a"] == "terse" else "b"
        result = client.post(f"/v1/arena/battles/{battle['id']}/vote", json={"winner": winner}).json()
        assert {result["arm_a"], result["arm_b"]} == {MODEL, "terse"}
        assert_error(client.post(f"/v1/arena/battles/{battle['id']}/vote", json={"winner": "a"}), 409)
    board = client.get("/v1/comparisons/leaderboard").json()
    assert [row["arm"] for row in board["data"]] == ["terse", MODEL] and board["votes"] == 6
    top = board["data"][0]
    assert top["wins"] == 6 and top["losses"] == 0 and top["ci_low"] <= top["rating"] <= top["ci_high"]
    page = client.get("/arena")
    assert page.status_code == 200 and 'id="leaderboard"' in page.text and "/static/ui/arena.js" in page.text


def test_arena_errors(client):
    assert_error(client.post("/v1/arena/battles", json={"question": "x"}), 409, "arms", "not_enough_arms")
    assert_error(
        client.post("/v1/arena/battles", json={"question": "x", "arms": [MODEL, "nope"]}), 404, "model"
    )
    assert_error(client.post("/v1/arena/battles/battle_x/vote", json={"winner": "a"}), 404, "battle_id")
    assert_error(client.post("/v1/arena/battles/battle_x/vote", json={"winner": "maybe"}), 400, "winner")


def test_elo_known_values():
    ratings = elo([("x", "y", 1.0)], ["x", "y"])
    assert ratings == {"x": 1016.0, "y": 984.0}  # equal ratings: expected 0.5, K = 32
    assert elo([("x", "y", 0.5)], ["x", "y"]) == {"x": 1000.0, "y": 1000.0}
