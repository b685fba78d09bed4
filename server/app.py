"""App factory: the routers, the middleware, and a lifespan that builds the services once (`server.state`)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from prometheus_fastapi_instrumentator import Instrumentator

from server.arena.routes import router as arena_router
from server.auth import APIKeyMiddleware
from server.chat.routes import router as chat_router
from server.comparisons.routes import router as comparisons_router
from server.embeddings.routes import router as embeddings_router
from server.engines.base import Engine
from server.errors import UnexpectedErrorMiddleware, document_errors, install_error_handlers
from server.feedback.routes import router as feedback_router
from server.files.routes import router as files_router
from server.fine_tuning.routes import router as fine_tuning_router
from server.limits import UploadLimitMiddleware
from server.metrics import Metrics
from server.profiles.routes import router as profiles_router
from server.responses.routes import router as responses_router
from server.routes import router as misc_router
from server.settings import Settings
from server.state import StartupError, init_services, load_embedder, load_engine
from server.ui.routes import not_found_page
from server.ui.routes import router as ui_router
from server.vector_stores.routes import router as vector_stores_router

__all__ = ["StartupError", "build_app", "load_embedder", "load_engine"]

log = logging.getLogger("ragtune")
SWAGGER_UI = Path(__file__).resolve().parent / "web" / "swagger-ui"
DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ragtune API</title>
<link rel="stylesheet" href="/static/swagger-ui/swagger-ui.css">
<link rel="icon" href="/static/swagger-ui/favicon-32x32.png"></head>
<body><div id="swagger-ui"></div>
<script src="/static/swagger-ui/swagger-ui-bundle.js"></script>
<script>
const ui = SwaggerUIBundle({
  url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true, showExtensions: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  layout: "BaseLayout",
  // "Try it out" with the key the UI keeps (server/web/static/app.js): the API takes only a bearer token.
  onComplete: () => {
    const key = localStorage.getItem("ragtune.key");
    if (key) ui.preauthorizeApiKey("bearer", key);
  },
});
</script></body></html>
"""
UI_STATIC = Path(__file__).resolve().parent / "web" / "static"

ROUTERS = (
    chat_router,
    responses_router,
    embeddings_router,
    files_router,
    vector_stores_router,
    fine_tuning_router,
    profiles_router,
    comparisons_router,
    arena_router,
    feedback_router,
    misc_router,
    ui_router,
)


def build_app(settings: Settings, engine: Engine | None = None, embedder=None) -> FastAPI:
    """The ASGI app. Tests pass a FakeEngine (and optionally an embedder); `ragtune serve` passes none,
    and the lifespan loads the configured ones (and closes the engine it loaded)."""
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own_engine = engine is None
        services = init_services(
            settings, engine or load_engine(settings), embedder or load_embedder(settings), metrics
        )
        app.state.services = services
        try:
            await services.start()
            info = services.engine.info
            log.info(
                "serving %s on the %s engine (%s, %s, context %d)",
                services.catalog.chat_name,
                info.name,
                info.device,
                info.dtype,
                info.max_model_len,
            )
            yield
        finally:
            await services.stop()
            if own_engine:
                await services.engine.close()

    # /docs is served from vendored Swagger UI files (server/web/swagger-ui): FastAPI's default page
    # loads them from a CDN, which shows a blank page on an offline machine. ReDoc has no local copy.
    app = FastAPI(title="ragtune", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.mount("/static/swagger-ui", StaticFiles(directory=SWAGGER_UI), name="swagger-ui")
    app.mount("/static/ui", StaticFiles(directory=UI_STATIC), name="ui")

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return HTMLResponse(DOCS_PAGE)

    def openapi() -> dict:
        if app.openapi_schema is None:
            document = document_errors(FastAPI.openapi(app))
            # OpenAI's scheme: `Authorization: Bearer <key>` (Swagger UI's Authorize button needs it said)
            document.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer", "description": "RAGTUNE_API_KEY, when set"}
            }
            document["security"] = [{"bearer": []}]
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.state.settings = settings
    app.state.metrics = metrics
    install_error_handlers(app, not_found_page)
    for router in ROUTERS:
        app.include_router(router)
    Instrumentator(registry=metrics.registry, excluded_handlers=["/metrics"]).instrument(app)
    app.add_middleware(UploadLimitMiddleware, max_bytes=settings.max_upload_bytes)
    if settings.api_keys:
        app.add_middleware(APIKeyMiddleware, keys=settings.api_keys)
    # Added last, so it is the outermost of ours: every unexpected error ends here as a clean 500.
    app.add_middleware(UnexpectedErrorMiddleware)
    return app
