"""Profiles live in SQLite and are mirrored into the model catalog: any client picks an arm by name."""

from __future__ import annotations

import json
from typing import Any

from server.catalog import ModelCatalog
from server.errors import APIError, not_found
from server.profiles.protocol import CreateProfile
from server.storage.db import Database, dumps, now


class ProfileService:
    def __init__(self, db: Database, catalog: ModelCatalog, stores: Any) -> None:
        self.db = db
        self.catalog = catalog
        self.stores = stores
        for row in db.query("SELECT body FROM profiles ORDER BY created_at"):
            profile = json.loads(row["body"])
            catalog.profiles[profile["name"]] = profile

    def create(self, body: CreateProfile) -> dict[str, Any]:
        taken = {card.id for card in self.catalog.cards()}
        if body.name in taken:
            raise APIError(
                409, f"'{body.name}' is already a model or profile name.", param="name", code="name_taken"
            )
        target = self.catalog.chat_target(body.model)  # 404 for an unknown model
        if target.profile is not None:
            raise APIError(400, "A profile must name a model or adapter, not another profile.", param="model")
        if body.file_search:
            self.stores.check(body.file_search.vector_store_ids, body.file_search.ranker, "file_search")
        profile = {"object": "profile", **body.model_dump(exclude_none=True), "created_at": now()}
        with self.db.transaction() as tx:
            tx.execute(
                "INSERT INTO profiles (name, body, created_at) VALUES (?,?,?)",
                (body.name, dumps(profile), profile["created_at"]),
            )
        self.catalog.profiles[body.name] = profile
        return profile

    def get(self, name: str) -> dict[str, Any]:
        if name not in self.catalog.profiles:
            raise not_found(f"No profile named '{name}'.", "name", "profile_not_found")
        return self.catalog.profiles[name]

    def all(self) -> list[dict[str, Any]]:
        """Every profile, oldest first."""
        return list(self.catalog.profiles.values())

    def delete(self, name: str) -> dict[str, Any]:
        self.get(name)
        with self.db.transaction() as tx:
            tx.execute("DELETE FROM profiles WHERE name = ?", (name,))
        del self.catalog.profiles[name]
        return {"id": name, "object": "profile.deleted", "deleted": True}
