"""App factory: wiring only. Heavy objects (engine, embedder, stores) are created once in `lifespan`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from prometheus_fastapi_instrumentator import Instrumentator

from server.arena.routes import router as arena_router
from server.arena.service import ArenaService
from server.auth import APIKeyMiddleware
from server.catalog import ModelCatalog
from server.chat.routes import router as chat_router
from server.chat.service import ChatService
from server.comparisons.routes import router as comparisons_router
from server.comparisons.service import ComparisonService
from server.embeddings.routes import router as embeddings_router
from server.embeddings.service import EmbeddingService
from server.engines.base import Engine
from server.errors import install_error_handlers
from server.feedback.routes import router as feedback_router
from server.feedback.service import FeedbackService
from server.files.routes import router as files_router
from server.files.service import FileService
from server.fine_tuning.routes import router as fine_tuning_router
from server.fine_tuning.service import FineTuningService
from server.limits import UploadLimitMiddleware
from server.metrics import Metrics
from server.profiles.routes import router as profiles_router
from server.profiles.service import ProfileService
from server.routes import router as misc_router
from server.settings import Settings
from server.storage.db import Database
from server.vector_stores.indexes import IndexRegistry
from server.vector_stores.ingestion import IngestionWorker
from server.vector_stores.routes import router as vector_stores_router
from server.vector_stores.service import VectorStoreService

log = logging.getLogger("ragtune")


class StartupError(RuntimeError):
    """The server cannot start as configured (the message says which setting to fix)."""


def load_engine(settings: Settings) -> Engine:
    from server.engines import create_engine
    from server.provision import chat_model_path

    return create_engine(settings, str(chat_model_path(settings)))


def load_embedder(settings: Settings):
    from retrieval.embedder import Embedder
    from server.provision import embedding_model_path

    return Embedder(embedding_model_path(settings))


def build_app(settings: Settings, engine: Engine | None = None, embedder=None) -> FastAPI:
    """The ASGI app. Tests pass a FakeEngine (and optionally an embedder); `ragtune serve` passes none."""
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own_engine = engine is None
        app.state.engine = engine or load_engine(settings)
        emb = embedder or load_embedder(settings)
        db = Database(settings.data_dir / "ragtune.sqlite3")
        files = FileService(db, settings.data_dir / "files", settings.max_upload_bytes)
        indexes = IndexRegistry(db, settings.data_dir / "indexes", emb.dimension)
        stores = VectorStoreService(db, files, indexes, emb)
        worker = IngestionWorker(db, files, indexes, emb)
        stores.wake = worker.wake
        catalog = ModelCatalog(settings.served_model_name, app.state.engine, settings.served_embedding_name)
        app.state.catalog = catalog
        app.state.files = files
        app.state.vector_stores = stores
        app.state.chat = ChatService(
            catalog,
            metrics,
            settings.default_max_tokens,
            stores,
            settings.rag_max_results,
            settings.rag_score_threshold,
        )
        app.state.embeddings = EmbeddingService(emb, settings.served_embedding_name)
        metrics.watch_engine(app.state.engine.stats)
        model_dir = Path(getattr(app.state.engine.info, "model_path", "") or settings.data_dir)
        fine_tuning = FineTuningService(
            db, settings.data_dir, files, catalog, model_dir, settings.max_training_jobs
        )
        app.state.fine_tuning = fine_tuning
        app.state.profiles = ProfileService(db, catalog, stores)
        comparisons = ComparisonService(db, files, catalog, app.state.chat, stores)
        app.state.comparisons = comparisons
        app.state.feedback = FeedbackService(db)
        app.state.arena = ArenaService(db, catalog, app.state.chat)
        worker.start()
        for name, path in settings.adapters.items():  # RAGTUNE_LORA_MODULES: adapters trained elsewhere
            try:
                await catalog.add_adapter(name, path)
            except Exception as exc:
                raise StartupError(f"cannot serve adapter {name!r} from {path}: {exc}") from exc
        await fine_tuning.start()
        comparisons.start()
        info = app.state.engine.info
        log.info(
            "serving %s on the %s engine (%s, %s, context %d)",
            catalog.chat_name,
            info.name,
            info.device,
            info.dtype,
            info.max_model_len,
        )
        try:
            yield
        finally:
            await comparisons.stop()
            await fine_tuning.stop()
            await worker.stop()
            if own_engine:
                await app.state.engine.close()
            db.close()

    app = FastAPI(title="ragtune", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.metrics = metrics
    install_error_handlers(app)
    routers = (
        chat_router,
        embeddings_router,
        files_router,
        vector_stores_router,
        fine_tuning_router,
        profiles_router,
        arena_router,  # before comparisons: /v1/comparisons/leaderboard is not a comparison id
        comparisons_router,
        feedback_router,
        misc_router,
    )
    for router in routers:
        app.include_router(router)
    Instrumentator(registry=metrics.registry, excluded_handlers=["/metrics"]).instrument(app)
    app.add_middleware(UploadLimitMiddleware, max_bytes=settings.max_upload_bytes)
    if settings.api_keys:
        app.add_middleware(APIKeyMiddleware, keys=settings.api_keys)
    return app
