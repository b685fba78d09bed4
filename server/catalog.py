"""Which model ids this server answers to, and what each one is (base model, adapters, profiles, embedder)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from server.engines.base import Engine
from server.errors import APIError


@dataclass(frozen=True)
class ModelCard:
    id: str
    kind: str  # "chat" | "profile" | "embedding"
    created: int
    parent: str | None = None
    root: str | None = None

    def wire(self) -> dict:
        return {
            "id": self.id,
            "object": "model",
            "created": self.created,
            "owned_by": "ragtune",
            "parent": self.parent,
            "root": self.root or self.id,
            "kind": self.kind,
        }


@dataclass(frozen=True)
class ChatTarget:
    """What a chat request's `model` resolves to."""

    name: str
    engine: Engine
    adapter: str | None = None
    profile: dict[str, Any] | None = None  # a named arm's defaults (system prompt, file_search, sampling)


class ModelCatalog:
    def __init__(self, chat_name: str, engine: Engine, embedding_names: list[str] | None = None) -> None:
        """`embedding_names`: the ids /v1/embeddings answers to (listed as `embedding` models)."""
        self.chat_name = chat_name
        self.engine = engine
        self.embedding_names = list(embedding_names or [])
        self.started = int(time.time())
        self.adapters: dict[str, tuple[str, int]] = {}  # name -> (path, created)
        # Served by name, loaded into the engine on first use (a job's per-epoch checkpoints: ten epochs
        # loaded at start-up would cost ten adapter loads for models rarely asked).
        self.lazy_adapters: dict[str, tuple[str, int]] = {}  # name -> (path, created)
        self._loading = asyncio.Lock()
        self.profiles: dict[str, dict[str, Any]] = {}  # name -> profile object (see server/profiles)

    async def add_adapter(self, name: str, path: str) -> None:
        """Serve a LoRA adapter of the base model under `name`, from now on (no restart)."""
        if name == self.chat_name or name in self.embedding_names:
            raise ValueError(f"adapter name {name!r} is already the name of a served model")
        await self.engine.add_adapter(name, path)
        self.adapters[name] = (path, int(time.time()))

    def add_lazy_adapter(self, name: str, path: str) -> None:
        """Serve the LoRA adapter in `path` as `name`, loading it into the engine on its first request
        (`ensure_loaded`). Raises ValueError when `name` is taken."""
        if name == self.chat_name or name in self.embedding_names or name in self.adapters:
            raise ValueError(f"adapter name {name!r} is already the name of a served model")
        self.lazy_adapters[name] = (path, int(time.time()))

    async def ensure_loaded(self, target: ChatTarget) -> None:
        """Load `target`'s adapter into the engine if it is a lazy one not loaded yet. Raises APIError
        500 `model_load_failed` when its files cannot be loaded (the model stays listed; others serve)."""
        name = target.adapter
        if name is None or name not in self.lazy_adapters:
            return
        async with self._loading:  # two first requests for one checkpoint load it once
            if name not in self.lazy_adapters:
                return
            path, created = self.lazy_adapters[name]
            try:
                await self.engine.add_adapter(name, path)
            except Exception as exc:
                raise APIError(
                    500,
                    f"The model '{name}' could not be loaded: {exc}",
                    param="model",
                    code="model_load_failed",
                    type="server_error",
                ) from exc
            del self.lazy_adapters[name]
            self.adapters[name] = (path, created)

    def cards(self) -> list[ModelCard]:
        cards = [ModelCard(self.chat_name, "chat", self.started)]
        cards += [
            ModelCard(name, "chat", created, parent=self.chat_name, root=self.chat_name)
            for name, (_, created) in sorted(
                {**self.adapters, **self.lazy_adapters}.items(), key=lambda item: item[1][1]
            )
        ]
        cards += [
            ModelCard(name, "profile", p["created_at"], parent=p["model"], root=self.chat_name)
            for name, p in self.profiles.items()
        ]
        cards += [ModelCard(name, "embedding", self.started) for name in self.embedding_names]
        return cards

    def card(self, model_id: str) -> ModelCard:
        for card in self.cards():
            if card.id == model_id:
                return card
        raise model_not_found(model_id)

    def chat_target(self, model_id: str) -> ChatTarget:
        if model_id == self.chat_name:
            return ChatTarget(model_id, self.engine)
        if model_id in self.adapters or model_id in self.lazy_adapters:
            return ChatTarget(model_id, self.engine, adapter=model_id)
        if model_id in self.profiles:
            profile = self.profiles[model_id]
            base = self.chat_target(profile["model"])
            return ChatTarget(model_id, self.engine, adapter=base.adapter, profile=profile)
        if model_id in self.embedding_names:
            raise APIError(
                400,
                f"'{model_id}' is an embedding model; it cannot chat.",
                param="model",
                code="model_not_supported",
            )
        raise model_not_found(model_id)


def model_not_found(model_id: str) -> APIError:
    return APIError(404, f"The model '{model_id}' does not exist.", param="model", code="model_not_found")
