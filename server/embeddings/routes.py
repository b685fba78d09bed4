"""HTTP route of /v1/embeddings."""

from __future__ import annotations

from fastapi import APIRouter

from server.deps import EmbeddingServiceDep
from server.embeddings.protocol import EmbeddingRequest, EmbeddingResponse

router = APIRouter()


@router.post("/v1/embeddings")
async def create_embeddings(request: EmbeddingRequest, embeddings: EmbeddingServiceDep) -> EmbeddingResponse:
    return await embeddings.create(request)
