"""HTTP route of /v1/embeddings."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from server.embeddings.protocol import EmbeddingRequest, EmbeddingResponse
from server.embeddings.service import EmbeddingService
from server.protocol import WireRoute

router = APIRouter(route_class=WireRoute)


def get_embeddings(request: Request) -> EmbeddingService:
    return request.app.state.services.embeddings


EmbeddingsDep = Annotated[EmbeddingService, Depends(get_embeddings)]


@router.post("/v1/embeddings")
async def create_embeddings(request: EmbeddingRequest, embeddings: EmbeddingsDep) -> EmbeddingResponse:
    return await embeddings.create(request)
