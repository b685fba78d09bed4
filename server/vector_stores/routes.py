"""HTTP routes of /v1/vector_stores. Blocking service calls are plain `def` routes (threadpool)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from server.protocol import DeletedObject, ListPage, Page, WireRoute, pagination
from server.vector_stores.protocol import (
    AttachFile,
    CreateFileBatch,
    CreateVectorStore,
    SearchRequest,
    UpdateFileAttributes,
    UpdateVectorStore,
    VectorStore,
    VectorStoreFile,
    VectorStoreFileBatch,
    VectorStoreFileContentPage,
    VectorStoreSearchResultsPage,
)
from server.vector_stores.service import VectorStoreService

router = APIRouter(prefix="/v1/vector_stores", route_class=WireRoute)


def get_vector_stores(request: Request) -> VectorStoreService:
    return request.app.state.services.vector_stores


VectorStoresDep = Annotated[VectorStoreService, Depends(get_vector_stores)]
PageDep = Annotated[Page, Depends(pagination(limit=20, max_limit=100))]


@router.post("")
def create_vector_store(body: CreateVectorStore, stores: VectorStoresDep) -> VectorStore:
    return stores.create(body)


@router.get("")
def list_vector_stores(stores: VectorStoresDep, page: PageDep) -> ListPage[VectorStore]:
    return stores.list(page)


@router.get("/{store_id}")
def retrieve_vector_store(store_id: str, stores: VectorStoresDep) -> VectorStore:
    return stores.get(store_id)


@router.post("/{store_id}")
def modify_vector_store(store_id: str, body: UpdateVectorStore, stores: VectorStoresDep) -> VectorStore:
    return stores.update(store_id, body)


@router.delete("/{store_id}")
def delete_vector_store(store_id: str, stores: VectorStoresDep) -> DeletedObject:
    return stores.delete(store_id)


@router.post("/{store_id}/search")
def search_vector_store(
    store_id: str, body: SearchRequest, stores: VectorStoresDep
) -> VectorStoreSearchResultsPage:
    hits = stores.search([store_id], body.as_query())
    return VectorStoreSearchResultsPage(search_query=body.text, data=[h.wire() for h in hits])


@router.post("/{store_id}/files")
def attach_file(store_id: str, body: AttachFile, stores: VectorStoresDep) -> VectorStoreFile:
    return stores.attach(store_id, body)


@router.get("/{store_id}/files")
def list_vector_store_files(
    store_id: str, stores: VectorStoresDep, page: PageDep, filter: str | None = None
) -> ListPage[VectorStoreFile]:
    return stores.list_files(store_id, filter, page)


@router.get("/{store_id}/files/{file_id}")
def retrieve_vector_store_file(store_id: str, file_id: str, stores: VectorStoresDep) -> VectorStoreFile:
    return stores.get_file(store_id, file_id)


@router.post("/{store_id}/files/{file_id}")
def update_vector_store_file(
    store_id: str, file_id: str, body: UpdateFileAttributes, stores: VectorStoresDep
) -> VectorStoreFile:
    return stores.update_file(store_id, file_id, body)


@router.delete("/{store_id}/files/{file_id}")
def detach_file(store_id: str, file_id: str, stores: VectorStoresDep) -> DeletedObject:
    return stores.detach(store_id, file_id)


@router.get("/{store_id}/files/{file_id}/content")
def vector_store_file_content(
    store_id: str, file_id: str, stores: VectorStoresDep
) -> VectorStoreFileContentPage:
    return stores.file_content(store_id, file_id)


@router.post("/{store_id}/file_batches")
def create_file_batch(store_id: str, body: CreateFileBatch, stores: VectorStoresDep) -> VectorStoreFileBatch:
    return stores.create_batch(store_id, body)


@router.get("/{store_id}/file_batches/{batch_id}")
def retrieve_file_batch(store_id: str, batch_id: str, stores: VectorStoresDep) -> VectorStoreFileBatch:
    return stores.get_batch(store_id, batch_id)


@router.post("/{store_id}/file_batches/{batch_id}/cancel")
def cancel_file_batch(store_id: str, batch_id: str, stores: VectorStoresDep) -> VectorStoreFileBatch:
    return stores.cancel_batch(store_id, batch_id)


@router.get("/{store_id}/file_batches/{batch_id}/files")
def list_file_batch_files(
    store_id: str, batch_id: str, stores: VectorStoresDep, page: PageDep, filter: str | None = None
) -> ListPage[VectorStoreFile]:
    stores.get_batch(store_id, batch_id)
    return stores.list_files(store_id, filter, page, batch_id)
