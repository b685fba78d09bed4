"""Files: stream an upload to disk (size-limited, hashed), check its type, register it; list, delete."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fastapi import UploadFile

from ingest.detect import SUPPORTED_EXTENSIONS, detect_file
from ingest.types import UnsupportedFileType
from server.errors import APIError, bad_request, not_found
from server.files.protocol import FileObject
from server.protocol import DeletedObject, ListPage, Page, paginate
from server.storage.db import Database, new_id, now

log = logging.getLogger("ragtune.files")

PURPOSES = ("assistants", "user_data", "fine-tune", "evals", "batch")
DOCUMENT_PURPOSES = ("assistants", "user_data")
JSON_PURPOSES = ("fine-tune", "evals", "batch")
_COPY_CHUNK = 1 << 20


def too_large(limit: int) -> APIError:
    return APIError(
        413, f"The file exceeds the upload limit of {limit} bytes.", param="file", code="file_too_large"
    )


def check_filename(name: str | None) -> str:
    """The client's file name is metadata only (bytes are stored by id), but a path in it is refused."""
    if not name or not name.strip():
        raise bad_request("The upload has no file name.", "file", "invalid_filename")
    if "/" in name or "\\" in name or "\x00" in name or name in (".", "..") or len(name) > 255:
        raise bad_request(
            f"Invalid file name {name!r}: give a plain name without a path.", "file", "invalid_filename"
        )
    return name


def file_object(row: Any) -> FileObject:
    return FileObject(
        id=row["id"],
        bytes=row["bytes"],
        created_at=row["created_at"],
        filename=row["filename"],
        purpose=row["purpose"],
    )


class FileService:
    def __init__(
        self,
        db: Database,
        directory: Path,
        max_bytes: int,
        on_delete: Sequence[Callable[[str], None]] = (),
    ) -> None:
        """`on_delete` hooks run with a file's id before it is deleted (e.g. detach it from knowledge
        bases); an exception in one aborts the delete."""
        self.db = db
        self.directory = directory
        self.max_bytes = max_bytes
        self.on_delete = tuple(on_delete)
        directory.mkdir(parents=True, exist_ok=True)
        self._remove_orphans()

    def path(self, file_id: str) -> Path:
        return self.directory / file_id

    async def create(self, upload: UploadFile, purpose: str) -> FileObject:
        if purpose not in PURPOSES:
            raise bad_request(
                f"Invalid purpose {purpose!r}; expected one of {', '.join(PURPOSES)}.", "purpose"
            )
        filename = check_filename(upload.filename)
        file_id = new_id("file-")
        tmp = self.directory / f".upload-{file_id}"
        try:
            size, sha256 = await self._copy(upload, tmp)
            if size == 0:
                raise bad_request("The file is empty.", "file", "empty_file")
            mime = self._check_type(tmp, filename, purpose)
            os.replace(tmp, self.path(file_id))
        finally:
            tmp.unlink(missing_ok=True)
        try:
            with self.db.transaction() as tx:
                tx.execute(
                    "INSERT INTO files (id, filename, purpose, bytes, sha256, mime, "
                    "created_at) VALUES (?,?,?,?,?,?,?)",
                    (file_id, filename, purpose, size, sha256, mime, now()),
                )
        except BaseException:
            self.path(file_id).unlink(missing_ok=True)
            raise
        return self.get(file_id)

    async def _copy(self, upload: UploadFile, target: Path) -> tuple[int, str]:
        digest, size = hashlib.sha256(), 0
        with open(target, "wb") as out:
            while block := await upload.read(_COPY_CHUNK):
                size += len(block)
                if size > self.max_bytes:
                    raise too_large(self.max_bytes)
                digest.update(block)
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        return size, digest.hexdigest()

    def _check_type(self, path: Path, filename: str, purpose: str) -> str | None:
        suffix = Path(filename).suffix.lower()
        if purpose in JSON_PURPOSES and suffix not in (".jsonl", ".json"):
            raise APIError(
                415,
                f"Files for purpose '{purpose}' must be .jsonl or .json, not {suffix or 'no extension'}.",
                param="file",
                code="unsupported_file",
            )
        try:
            return detect_file(path, filename)
        except UnsupportedFileType as exc:
            supported = ", ".join(sorted(SUPPORTED_EXTENSIONS))
            raise APIError(
                415,
                f"{exc} (detected type: {exc.detected}). Supported: {supported}.",
                param="file",
                code="unsupported_file",
            ) from exc

    def row(self, file_id: str) -> Any:
        row = self.db.one("SELECT * FROM files WHERE id = ?", (file_id,))
        if row is None:
            raise not_found(f"No such file: '{file_id}'.", "file_id", "file_not_found")
        return row

    def require(self, file_id: str, purposes: Sequence[str], param: str) -> Any:
        """The row of an uploaded file that one of `purposes` may use.

        Raises APIError 404 `file_not_found` (unknown id) or 400 `invalid_file` (another purpose), both
        naming `param` (the request field that held the id, e.g. `training_file` or `file_ids`)."""
        row = self.db.one("SELECT * FROM files WHERE id = ?", (file_id,))
        if row is None:
            raise not_found(f"No such file: '{file_id}'.", param, "file_not_found")
        if row["purpose"] not in purposes:
            wanted = " or ".join(f"'{p}'" for p in purposes)
            raise bad_request(
                f"File '{file_id}' was uploaded with purpose '{row['purpose']}'; this needs a file uploaded "
                f"with purpose {wanted}.",
                param,
                "invalid_file",
            )
        return row

    def get(self, file_id: str) -> FileObject:
        """Raises 404 `file_id` for an unknown id."""
        return file_object(self.row(file_id))

    def list(self, purpose: str | None, page: Page) -> ListPage[FileObject]:
        """Uploaded files, of one purpose if given."""
        sql, params = "SELECT * FROM files", []
        if purpose:
            sql += " WHERE purpose = ?"
            params.append(purpose)
        return paginate(
            [file_object(r) for r in self.db.query(sql + " ORDER BY created_at, rowid", params)], page
        )

    def delete(self, file_id: str) -> DeletedObject:
        self.row(file_id)
        for hook in self.on_delete:
            hook(file_id)
        with self.db.transaction() as tx:
            tx.execute("DELETE FROM files WHERE id = ?", (file_id,))
        self.path(file_id).unlink(missing_ok=True)
        return DeletedObject(id=file_id, object="file")

    def _remove_orphans(self) -> None:
        """Bytes without a row (a crash between rename and insert) and stale partial uploads."""
        known = {r["id"] for r in self.db.query("SELECT id FROM files")}
        for path in self.directory.iterdir():
            if path.name not in known:
                log.info("removing orphaned upload %s", path.name)
                path.unlink(missing_ok=True)
