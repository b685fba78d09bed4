"""Feedback becomes a fine-tuning file: liked answers as they were, disliked ones with their correction."""

from __future__ import annotations

import json

from finetune.data import load_dataset
from tests.helpers import assert_error


def test_feedback_export_is_valid_training_data(client, tmp_path):
    question = [{"role": "user", "content": "What is the capital of France?"}]
    liked = client.post(
        "/v1/feedback",
        json={"messages": question, "response": "Paris.", "rating": "up", "model": "smollm2-135m-instruct"},
    ).json()
    assert liked["object"] == "feedback" and liked["id"].startswith("fb_")
    client.post(
        "/v1/feedback",
        json={
            "messages": question,
            "response": "Lyon.",
            "rating": "down",
            "correction": "The capital of France is Paris.",
        },
    )
    client.post("/v1/feedback", json={"messages": question, "response": "Nice.", "rating": "down"})
    assert len(client.get("/v1/feedback").json()["data"]) == 3
    exported = client.get("/v1/feedback/export.jsonl").text.splitlines()
    assert [json.loads(line)["messages"][-1]["content"] for line in exported] == [
        "Paris.",
        "The capital of France is Paris.",
    ]
    path = tmp_path / "feedback.jsonl"
    path.write_text("\n".join(exported) + "\n")
    assert len(load_dataset(path)) == 2  # the fine-tuning loader accepts it as it is
    assert_error(
        client.post("/v1/feedback", json={"messages": question, "response": "x", "rating": "meh"}),
        400,
        "rating",
    )
    assert_error(
        client.post("/v1/feedback", json={"messages": [], "response": "x", "rating": "up"}), 400, "messages"
    )
