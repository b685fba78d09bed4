"""HTTP routes of /v1/vector_stores. Blocking service calls are plain `def` routes (threadpool)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from server.vector_stores.protocol import (
    AttachFile,
    CreateFileBatch,
    CreateVectorStore,
    Order,
    SearchRequest,
    UpdateFileAttributes,
    UpdateVectorStore,
)
from server.vector_stores.service import VectorStoreService

router = APIRouter(prefix="/v1/vector_stores")


def get_vector_stores(request: Request) -> VectorStoreService:
    return request.app.state.services.vector_stores


VectorStoresDep = Annotated[VectorStoreService, Depends(get_vector_stores)]


@dataclass
class Page:
    """OpenAI's cursor pagination parameters."""

    limit: Annotated[int, Query(ge=1, le=100)] = 20
    order: Order = "desc"
    after: str | None = None
    before: str | None = None


PageDep = Annotated[Page, Depends()]


@router.post("")
def create_vector_store(body: CreateVectorStore, stores: VectorStoresDep) -> dict:
    return stores.create(body)


@router.get("")
def list_vector_stores(stores: VectorStoresDep, page: PageDep) -> dict:
    return stores.list(page.limit, page.order, page.after, page.before)


@router.get("/{store_id}")
def retrieve_vector_store(store_id: str, stores: VectorStoresDep) -> dict:
    return stores.get(store_id)


@router.post("/{store_id}")
def modify_vector_store(store_id: str, body: UpdateVectorStore, stores: VectorStoresDep) -> dict:
    return stores.update(store_id, body)


@router.delete("/{store_id}")
def delete_vector_store(store_id: str, stores: VectorStoresDep) -> dict:
    return stores.delete(store_id)


@router.post("/{store_id}/search")
def search_vector_store(store_id: str, body: SearchRequest, stores: VectorStoresDep) -> dict:
    return stores.search(store_id, body)


@router.post("/{store_id}/files")
def attach_file(store_id: str, body: AttachFile, stores: VectorStoresDep) -> dict:
    return stores.attach(store_id, body)


@router.get("/{store_id}/files")
def list_vector_store_files(
    store_id: str,
    stores: VectorStoresDep,
    page: PageDep,
    filter: str | None = None,
) -> dict:
    return stores.list_files(store_id, filter, page.limit, page.order, page.after, page.before)


@router.get("/{store_id}/files/{file_id}")
def retrieve_vector_store_file(store_id: str, file_id: str, stores: VectorStoresDep) -> dict:
    return stores.get_file(store_id, file_id)


@router.post("/{store_id}/files/{file_id}")
def update_vector_store_file(
    store_id: str, file_id: str, body: UpdateFileAttributes, stores: VectorStoresDep
) -> dict:
    return stores.update_file(store_id, file_id, body)


@router.delete("/{store_id}/files/{file_id}")
def detach_file(store_id: str, file_id: str, stores: VectorStoresDep) -> dict:
    return stores.detach(store_id, file_id)


@router.get("/{store_id}/files/{file_id}/content")
def vector_store_file_content(store_id: str, file_id: str, stores: VectorStoresDep) -> dict:
    return stores.file_content(store_id, file_id)


@router.post("/{store_id}/file_batches")
def create_file_batch(store_id: str, body: CreateFileBatch, stores: VectorStoresDep) -> dict:
    return stores.create_batch(store_id, body)


@router.get("/{store_id}/file_batches/{batch_id}")
def retrieve_file_batch(store_id: str, batch_id: str, stores: VectorStoresDep) -> dict:
    return stores.get_batch(store_id, batch_id)


@router.post("/{store_id}/file_batches/{batch_id}/cancel")
def cancel_file_batch(store_id: str, batch_id: str, stores: VectorStoresDep) -> dict:
    return stores.cancel_batch(store_id, batch_id)


@router.get("/{store_id}/file_batches/{batch_id}/files")
def list_file_batch_files(
    store_id: str,
    batch_id: str,
    stores: VectorStoresDep,
    page: PageDep,
    filter: str | None = None,
) -> dict:
    stores.get_batch(store_id, batch_id)
    return stores.list_files(store_id, filter, page.limit, page.order, page.after, page.before, batch_id)
