"""HTTP routes of /v1/files."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import FileResponse

from server.files.service import FileService

router = APIRouter()


def get_files(request: Request) -> FileService:
    return request.app.state.services.files


FilesDep = Annotated[FileService, Depends(get_files)]


@router.post("/v1/files")
async def upload_file(
    files: FilesDep, file: Annotated[UploadFile, File()], purpose: Annotated[str, Form()]
) -> dict:
    return await files.create(file, purpose)


@router.get("/v1/files")
async def list_files(
    files: FilesDep,
    purpose: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 10_000,
    order: Literal["asc", "desc"] = "desc",
    after: str | None = None,
) -> dict:
    return files.list(purpose, limit, order, after)


@router.get("/v1/files/{file_id}")
async def retrieve_file(file_id: str, files: FilesDep) -> dict:
    return files.get(file_id)


@router.delete("/v1/files/{file_id}")
def delete_file(file_id: str, files: FilesDep) -> dict:  # sync: runs in the threadpool
    return files.delete(file_id)


@router.get("/v1/files/{file_id}/content")
async def file_content(file_id: str, files: FilesDep) -> FileResponse:
    row = files.row(file_id)
    return FileResponse(files.path(file_id), media_type="application/octet-stream", filename=row["filename"])
