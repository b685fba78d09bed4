"""Feedback on chat answers, stored in SQLite and exported as an OpenAI chat fine-tuning JSONL file."""

from __future__ import annotations

import json
from typing import Any

from server.feedback.protocol import CreateFeedback
from server.storage.db import Database, dumps, new_id, now


class FeedbackService:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, body: CreateFeedback) -> dict[str, Any]:
        item = {
            "id": new_id("fb_"),
            "object": "feedback",
            "created_at": now(),
            **body.model_dump(exclude_none=True),
        }
        with self.db.transaction() as tx:
            tx.execute(
                "INSERT INTO feedback (id, body, created_at) VALUES (?,?,?)",
                (item["id"], dumps(item), item["created_at"]),
            )
        return item

    def all(self) -> list[dict[str, Any]]:
        """Every feedback item, oldest first."""
        rows = self.db.query("SELECT body FROM feedback ORDER BY created_at, rowid")
        return [json.loads(r["body"]) for r in rows]

    def export_jsonl(self) -> str:
        """Liked answers as they were, disliked ones with their correction (without one: left out)."""
        lines = []
        for item in self.all():
            answer = item.get("correction") if item["rating"] == "down" else item["response"]
            if not answer:
                continue
            messages = [
                {
                    "role": m["role"],
                    "content": m["content"]
                    if isinstance(m["content"], str)
                    else "".join(p["text"] for p in m["content"]),
                }
                for m in item["messages"]
            ]
            lines.append(
                json.dumps(
                    {"messages": [*messages, {"role": "assistant", "content": answer}]}, ensure_ascii=False
                )
            )
        return "\n".join(lines) + ("\n" if lines else "")
