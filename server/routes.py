"""Small routes: model list, health, Prometheus metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from server.catalog import ModelCatalog
from server.protocol import Health, ListPage, Model, Page, WireRoute, paginate, pagination

router = APIRouter(route_class=WireRoute)


def get_catalog(request: Request) -> ModelCatalog:
    return request.app.state.services.catalog


CatalogDep = Annotated[ModelCatalog, Depends(get_catalog)]
# OpenAI's model list has no pages; ours takes the common cursors, and by default gives every model in the
# catalog's order (base model, adapters, profiles, embedder).
ModelsPage = Annotated[Page, Depends(pagination(limit=10_000, max_limit=10_000, order="asc"))]


@router.get("/v1/models")
async def list_models(catalog: CatalogDep, page: ModelsPage) -> ListPage[Model]:
    return paginate([card.wire() for card in catalog.cards()], page)


@router.get("/v1/models/{model_id:path}")
async def retrieve_model(model_id: str, catalog: CatalogDep) -> Model:
    return Model(**catalog.card(model_id).wire())


@router.get("/health")
async def health(catalog: CatalogDep) -> Health:
    engine = catalog.engine
    info = engine.info
    return Health(
        engine=info.name,
        model=catalog.chat_name,
        device=info.device,
        dtype=info.dtype,
        max_model_len=info.max_model_len,
        **engine.stats(),
    )


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
