"""Named dependencies: routes ask for services by type, the app keeps them on `app.state`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from server.arena.service import ArenaService
from server.catalog import ModelCatalog
from server.chat.service import ChatService
from server.comparisons.service import ComparisonService
from server.embeddings.service import EmbeddingService
from server.errors import APIError
from server.feedback.service import FeedbackService
from server.files.service import FileService
from server.fine_tuning.service import FineTuningService
from server.profiles.service import ProfileService
from server.vector_stores.service import VectorStoreService


def get_chat_service(request: Request) -> ChatService:
    return request.app.state.chat


def get_catalog(request: Request) -> ModelCatalog:
    return request.app.state.catalog


def get_embedding_service(request: Request) -> EmbeddingService:
    service = request.app.state.embeddings
    if service is None:
        raise APIError(
            404, "No embedding model is configured on this server.", param="model", code="model_not_found"
        )
    return service


def get_files(request: Request) -> FileService:
    return request.app.state.files


def get_vector_stores(request: Request) -> VectorStoreService:
    return request.app.state.vector_stores


def get_fine_tuning(request: Request) -> FineTuningService:
    return request.app.state.fine_tuning


def get_profiles(request: Request) -> ProfileService:
    return request.app.state.profiles


ProfilesDep = Annotated[ProfileService, Depends(get_profiles)]


def get_comparisons(request: Request) -> ComparisonService:
    return request.app.state.comparisons


ComparisonsDep = Annotated[ComparisonService, Depends(get_comparisons)]


def get_feedback(request: Request) -> FeedbackService:
    return request.app.state.feedback


FeedbackDep = Annotated[FeedbackService, Depends(get_feedback)]


def get_arena(request: Request) -> ArenaService:
    return request.app.state.arena


ArenaDep = Annotated[ArenaService, Depends(get_arena)]
FineTuningDep = Annotated[FineTuningService, Depends(get_fine_tuning)]
FilesDep = Annotated[FileService, Depends(get_files)]
VectorStoresDep = Annotated[VectorStoreService, Depends(get_vector_stores)]
ChatServiceDep = Annotated[ChatService, Depends(get_chat_service)]
CatalogDep = Annotated[ModelCatalog, Depends(get_catalog)]
EmbeddingServiceDep = Annotated[EmbeddingService, Depends(get_embedding_service)]
