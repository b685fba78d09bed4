"""Wiring in one place: every service of a server built from the settings, the engine and the embedder.

`build_app`'s lifespan and `ragtune chat --local` both call `init_services`; nothing else constructs
services. Every link between services is a constructor argument (no attribute set afterwards).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from retrieval.embedder import EmbedderRegistry
from server.arena.service import ArenaService
from server.catalog import ModelCatalog
from server.chat.service import ChatService
from server.comparisons.service import ComparisonService
from server.embeddings.service import EmbeddingService, served_embedding_names
from server.engines.base import Engine
from server.feedback.service import FeedbackService
from server.files.service import FileService
from server.fine_tuning.scheduler import FineTuningScheduler
from server.fine_tuning.service import FineTuningService
from server.metrics import Metrics
from server.profiles.service import ProfileService
from server.responses.service import ResponsesService
from server.responses.store import ResponseStore
from server.settings import Settings
from server.storage.db import Database
from server.vector_stores.indexes import IndexRegistry
from server.vector_stores.ingestion import IngestionWorker
from server.vector_stores.service import VectorStoreService
from server.vector_stores.store import detach_everywhere

log = logging.getLogger("ragtune")


class StartupError(RuntimeError):
    """The server cannot start as configured (the message says which setting to fix)."""


def load_engine(settings: Settings) -> Engine:
    """The chat engine the settings name (`RAGTUNE_ENGINE`), on the configured or embedded model."""
    from server.engines import create_engine
    from server.provision import chat_model_path

    return create_engine(settings, str(chat_model_path(settings)))


def load_embedder(settings: Settings) -> Any:
    """The default embedder the settings name (`RAGTUNE_EMBEDDING_MODEL`), loaded offline (the others
    load on first use)."""
    return embedder_registry(settings).get()


def embedder_registry(settings: Settings, default: Any = None) -> EmbedderRegistry:
    """Every embedder the server offers (built in, and a local directory the settings name); `default`,
    an embedder already loaded, is the default one (else the settings' `embedding_model`)."""
    from server.provision import embedder_specs

    return EmbedderRegistry(
        embedder_specs(settings), settings.embedding_name, settings.model_cache, default=default
    )


@dataclass
class Services:
    """Everything a running server holds; the routes reach these through `app.state.services`."""

    settings: Settings
    metrics: Metrics
    engine: Engine
    embedder: Any
    db: Database
    catalog: ModelCatalog
    files: FileService
    indexes: IndexRegistry
    ingestion: IngestionWorker
    vector_stores: VectorStoreService
    chat: ChatService
    embeddings: EmbeddingService
    fine_tuning: FineTuningService
    fine_tuning_scheduler: FineTuningScheduler
    profiles: ProfileService
    comparisons: ComparisonService
    feedback: FeedbackService
    arena: ArenaService
    responses: ResponsesService

    async def start(self) -> None:
        """Serve the adapters (`RAGTUNE_LORA_MODULES`, then those of finished jobs) and start the
        background workers (ingestion, fine-tuning scheduler, comparisons).

        Raises StartupError when an adapter named in `RAGTUNE_LORA_MODULES` cannot be served."""
        self.ingestion.start()
        await self.serve_adapters()
        await self.fine_tuning_scheduler.start()
        self.comparisons.start()
        self.responses.start()

    async def serve_adapters(self) -> None:
        """Serve the adapters of `RAGTUNE_LORA_MODULES` (trained elsewhere; StartupError when one cannot
        be served), then those of fine-tuning jobs that succeeded (a broken one is logged, not fatal)."""
        for name, path in self.settings.adapters.items():
            try:
                await self.catalog.add_adapter(name, path)
            except Exception as exc:
                raise StartupError(f"cannot serve adapter {name!r} from {path}: {exc}") from exc
        await self.fine_tuning_scheduler.serve_registered()

    async def stop(self) -> None:
        """Stop the background workers (a running training job is re-queued for the next start) and
        close the database. The engine is the caller's to close: it may have been passed in."""
        await self.responses.stop()
        await self.comparisons.stop()
        await self.fine_tuning_scheduler.stop()
        await self.ingestion.stop()
        self.db.close()


def serving_cards(device: str, tensor_parallel_size: int = 1) -> list[int]:
    """The CUDA indices the serving engine uses, from its `EngineInfo.device`: none on a CPU; `cuda:N`
    is card N; plain `cuda` is cards 0 to tensor_parallel_size - 1 (vLLM splits one model over them;
    the transformers engine uses card 0)."""
    if not device.startswith("cuda"):
        return []
    if ":" in device:
        return [int(device.split(":", 1)[1])]
    return list(range(tensor_parallel_size))


def warn_small_training_share(settings: Settings, cards: list[int]) -> str | None:
    """Log (and return) a warning when fine-tuning jobs will train on a card the serving engine uses
    (`cards`) with the default training share, and that share (what serving leaves, less HEADROOM) is
    under 0.25 of the card: with vLLM's default 0.9 it is 0.05, too little for any model but a small one,
    and every job would fail with insufficient_gpu_memory."""
    from common.memory_plan import HEADROOM

    device = settings.training_device
    if not cards or settings.training_memory_utilization is not None or device in ("cpu", "mps"):
        return None
    first = int(device[5:]) if device.startswith("cuda:") else 0
    shared = sorted(set(cards) & set(range(first, first + settings.training_processes)))
    share = 1 - HEADROOM - settings.gpu_memory_utilization
    if not shared or share >= 0.25:
        return None
    message = (
        f"Fine-tuning jobs train on cuda:{shared[0]}, which the serving engine also uses at "
        f"RAGTUNE_GPU_MEMORY_UTILIZATION={settings.gpu_memory_utilization:g}: they get "
        f"{max(share, 0):.2f} of the card. To train on this card, lower "
        "RAGTUNE_GPU_MEMORY_UTILIZATION (0.5 leaves training 0.45), or set RAGTUNE_TRAINING_DEVICE to "
        "another card (or cpu)."
    )
    log.warning(message)
    return message


def init_services(
    settings: Settings, engine: Engine, embedder: Any, metrics: Metrics | None = None
) -> Services:
    """Build every service over one data directory (`settings.data_dir`), in dependency order.

    Opens (and migrates) the SQLite metadata store; starts nothing: call `Services.start()`."""
    metrics = metrics or Metrics()
    data = settings.data_dir
    db = Database(data / "ragtune.sqlite3")
    embedders = embedder_registry(settings, default=embedder)
    alias = settings.embedding_model_name  # another id for the default embedder, when set
    aliases = {alias: embedder.name} if alias and alias != embedder.name else {}
    catalog = ModelCatalog(settings.served_model_name, engine, served_embedding_names(embedders, aliases))
    embeddings = EmbeddingService(embedders, aliases, catalog)
    indexes = IndexRegistry(db, data / "indexes")
    files = FileService(
        db, data / "files", settings.max_upload_bytes, on_delete=[partial(detach_everywhere, db, indexes)]
    )
    ingestion = IngestionWorker(db, files, indexes, embedders)
    vector_stores = VectorStoreService(db, files, indexes, embedders, wake=ingestion.wake)
    chat = ChatService(
        catalog,
        metrics,
        settings.default_max_tokens,
        vector_stores,
        settings.rag_max_results,
        settings.rag_score_threshold,
        settings.rag_prompt_format,
        settings.rag_empty_response,
    )
    metrics.watch_engine(engine.stats)
    model_dir = Path(getattr(engine.info, "model_path", "") or data)
    scheduler = FineTuningScheduler(
        db,
        data,
        files,
        catalog,
        model_dir,
        settings.max_training_jobs,
        training_device=settings.training_device,
        training_processes=settings.training_processes,
        gpu_split={
            "serving_share": settings.gpu_memory_utilization,
            "serving_cards": serving_cards(engine.info.device, settings.tensor_parallel_size),
            "training_share": settings.training_memory_utilization,
        },
    )
    warn_small_training_share(settings, serving_cards(engine.info.device, settings.tensor_parallel_size))
    responses = ResponsesService(chat, ResponseStore(db))
    return Services(
        settings=settings,
        metrics=metrics,
        engine=engine,
        embedder=embedder,
        db=db,
        catalog=catalog,
        files=files,
        indexes=indexes,
        ingestion=ingestion,
        vector_stores=vector_stores,
        chat=chat,
        embeddings=embeddings,
        fine_tuning=FineTuningService(db, files, catalog, scheduler),
        fine_tuning_scheduler=scheduler,
        profiles=ProfileService(db, catalog, vector_stores),
        comparisons=ComparisonService(db, files, catalog, chat, vector_stores, responses),
        feedback=FeedbackService(db),
        arena=ArenaService(db, catalog, chat),
        responses=responses,
    )
