"""Stored responses (`store: true`): the response object and its own input items, one SQLite row each.

A conversation continued with `previous_response_id` is the chain of rows its links name; each row keeps
only its own input, so a long conversation costs its length once, not its square.
"""

from __future__ import annotations

import json
from typing import Any

from server.errors import APIError
from server.storage.db import Database, dumps

MAX_CHAIN = 10_000
"""Most responses one `previous_response_id` chain may hold (a guard against a cycle in the links)."""
RUNNING = ("queued", "in_progress")
STOPPED = "The server stopped before this response was finished; create it again."


class ResponseStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def save(self, response: dict[str, Any], input_items: list[dict[str, Any]] | None = None) -> None:
        """Insert the response (with its input items) or, given none, update its object and status."""
        with self.db.transaction() as tx:
            if input_items is None:
                tx.execute(
                    "UPDATE responses SET body = ?, status = ? WHERE id = ?",
                    (dumps(response), response["status"], response["id"]),
                )
                return
            tx.execute(
                "INSERT OR REPLACE INTO responses (id, created_at, status, previous_response_id, "
                "input_items, body) VALUES (?,?,?,?,?,?)",
                (
                    response["id"],
                    response["created_at"],
                    response["status"],
                    response.get("previous_response_id"),
                    dumps(input_items),
                    dumps(response),
                ),
            )

    def get(self, response_id: str) -> dict[str, Any] | None:
        row = self.db.one("SELECT body FROM responses WHERE id = ?", (response_id,))
        return json.loads(row["body"]) if row else None

    def input_items(self, response_id: str) -> list[dict[str, Any]] | None:
        row = self.db.one("SELECT input_items FROM responses WHERE id = ?", (response_id,))
        return json.loads(row["input_items"]) if row else None

    def delete(self, response_id: str) -> bool:
        with self.db.transaction() as tx:
            return tx.execute("DELETE FROM responses WHERE id = ?", (response_id,)).rowcount > 0

    def history(self, response_id: str) -> list[dict[str, Any]]:
        """The conversation up to and including `response_id`, oldest first: each response's input items
        then its output items. Raises APIError 404 when a response of the chain is gone, 400 when the
        response named is still running or failed (it has no answer to continue from)."""
        chain: list[tuple[list[dict], dict]] = []
        current: str | None = response_id
        while current is not None:
            row = self.db.one("SELECT input_items, body FROM responses WHERE id = ?", (current,))
            if row is None or len(chain) >= MAX_CHAIN:
                named = "" if current == response_id else f" (it continues '{current}', which is gone)"
                raise APIError(
                    404,
                    f"Previous response with id '{response_id}' not found{named}.",
                    param="previous_response_id",
                    code="previous_response_not_found",
                )
            body = json.loads(row["body"])
            if not chain and body["status"] not in ("completed", "incomplete"):
                raise APIError(
                    400,
                    f"Previous response '{response_id}' is {body['status']}: only a completed or incomplete "
                    "response can be continued.",
                    param="previous_response_id",
                )
            chain.append((json.loads(row["input_items"]), body))
            current = body.get("previous_response_id")
        items: list[dict[str, Any]] = []
        for inputs, body in reversed(chain):
            items.extend(inputs)
            items.extend(body["output"])
        return items

    def fail_interrupted(self) -> int:
        """At start-up: responses left queued or in progress by a stopped server are failed, with an
        error saying so. Returns how many."""
        rows = self.db.query(
            f"SELECT body FROM responses WHERE status IN ({','.join('?' * len(RUNNING))})", RUNNING
        )
        for row in rows:
            body = json.loads(row["body"])
            body["status"] = "failed"
            body["error"] = {"code": "server_error", "message": STOPPED}
            body["completed_at"] = None
            self.save(body)
        return len(rows)
