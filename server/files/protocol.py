"""Wire types of /v1/files (OpenAI shapes)."""

from __future__ import annotations

from typing import Literal

from server.protocol import WireModel


class FileObject(WireModel):
    """An uploaded file: its size in `bytes`, the client's `filename` (metadata only: the bytes are
    stored under the id), its `purpose`, and `created_at` (unix seconds). Always `processed`: an upload
    is checked before it is answered."""

    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: Literal["uploaded", "processed", "error"] = "processed"
    expires_at: int | None = None
    status_details: str | None = None
