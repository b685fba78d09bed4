"""Refuse an upload whose declared size is over the limit before reading a byte of it."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from server.files.service import too_large

MULTIPART_OVERHEAD = 64 * 1024  # boundaries and the other form fields


class UploadLimitMiddleware:
    """413 for `POST /v1/files` with a Content-Length over the limit (the file service enforces it again
    while copying, for clients that send no length)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == "/v1/files":
            length = dict(scope.get("headers") or []).get(b"content-length")
            if length and length.isdigit() and int(length) > self.max_bytes + MULTIPART_OVERHEAD:
                await too_large(self.max_bytes).response()(scope, receive, send)
                return
        await self.app(scope, receive, send)
