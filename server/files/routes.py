"""HTTP routes of /v1/files."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import FileResponse

from server.files.protocol import FileObject
from server.files.service import FileService
from server.protocol import DeletedObject, ListPage, Page, WireRoute, pagination

router = APIRouter(route_class=WireRoute)


def get_files(request: Request) -> FileService:
    return request.app.state.services.files


FilesDep = Annotated[FileService, Depends(get_files)]
# OpenAI's files list returns up to 10,000 files by default.
PageDep = Annotated[Page, Depends(pagination(limit=10_000, max_limit=10_000))]


@router.post("/v1/files")
async def upload_file(
    files: FilesDep, file: Annotated[UploadFile, File()], purpose: Annotated[str, Form()]
) -> FileObject:
    return await files.create(file, purpose)


@router.get("/v1/files")
async def list_files(files: FilesDep, page: PageDep, purpose: str | None = None) -> ListPage[FileObject]:
    return files.list(purpose, page)


@router.get("/v1/files/{file_id}")
async def retrieve_file(file_id: str, files: FilesDep) -> FileObject:
    return files.get(file_id)


@router.delete("/v1/files/{file_id}")
def delete_file(file_id: str, files: FilesDep) -> DeletedObject:  # sync: runs in the threadpool
    return files.delete(file_id)


BYTES = {"description": "The uploaded bytes, as uploaded.", "content": {"application/octet-stream": {}}}


@router.get("/v1/files/{file_id}/content", response_class=FileResponse, responses={200: BYTES})
async def file_content(file_id: str, files: FilesDep) -> FileResponse:
    row = files.row(file_id)
    return FileResponse(files.path(file_id), media_type="application/octet-stream", filename=row["filename"])
