"""Bearer-key check as pure ASGI middleware; it reads scope["path"], so no route can slip past it.

The API needs `Authorization: Bearer <key>`. A browser cannot send that header when it loads a page, so
a GET of a UI page (`server.ui.pages.is_page`, the API docs) is also let in with the key in the
`ragtune_key` cookie the login page sets; without it, the page GET is sent to `/login`. The cookie is
never accepted for the API: a request another site makes the browser send cannot act on the data.
Open without a key: `/health`, the login page and static files (scripts and styles, no data)."""

from __future__ import annotations

import hmac
from http.cookies import SimpleCookie
from urllib.parse import quote, unquote

from starlette.responses import RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from server.errors import APIError
from server.ui.pages import is_page

OPEN_PATHS = frozenset({"/health", "/login"})
OPEN_PREFIXES = ("/static/",)
COOKIE_PATHS = frozenset({"/docs", "/openapi.json"})
"""Besides the UI pages: what a browser loads for the API docs page."""
DATA_PATHS = frozenset({"/metrics"})
"""Routes outside `/v1/` that answer data: the bearer header only, whatever the client accepts."""


def is_report(path: str) -> bool:
    """A comparison's HTML report, which the UI links to (`/v1/comparisons/{id}/report.html`)."""
    return path.startswith("/v1/comparisons/") and path.endswith("/report.html")


class APIKeyMiddleware:
    def __init__(self, app: ASGIApp, keys: list[str]) -> None:
        self.app = app
        self.keys = [k.encode() for k in keys]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            await self.app(scope, receive, send)
            return
        page = scope["method"] == "GET" and (
            is_page(path) or path in COOKIE_PATHS or is_report(path) or self._browser_elsewhere(scope)
        )
        if self._authorized(scope) or (page and self._cookie_authorized(scope)):
            await self.app(scope, receive, send)
            return
        if page and path != "/openapi.json":
            query = scope.get("query_string", b"").decode("latin-1")
            target = path + (f"?{query}" if query else "")
            await RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)(
                scope, receive, send
            )
            return
        error = APIError(
            401,
            "Missing or invalid API key. Send 'Authorization: Bearer <key>'.",
            code="invalid_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )
        await error.response()(scope, receive, send)

    @staticmethod
    def _browser_elsewhere(scope: Scope) -> bool:
        """A browser's GET (Accept: text/html) of a path outside the API that is no page: the key prompt
        first, then the 404 page (`server/errors.py`). `/v1/` and `/metrics` hold data: never by cookie."""
        path = scope.get("path", "")
        if path.startswith("/v1/") or path in DATA_PATHS:
            return False
        return b"text/html" in dict(scope.get("headers") or []).get(b"accept", b"")

    def _matches(self, token: bytes) -> bool:
        token = token.strip()
        return bool(token) and any(hmac.compare_digest(token, key) for key in self.keys)

    def _authorized(self, scope: Scope) -> bool:
        header = dict(scope.get("headers") or []).get(b"authorization", b"")
        scheme, _, token = header.partition(b" ")
        return scheme.lower() == b"bearer" and self._matches(token)

    def _cookie_authorized(self, scope: Scope) -> bool:
        header = dict(scope.get("headers") or []).get(b"cookie", b"").decode("latin-1")
        cookie = SimpleCookie()
        try:
            cookie.load(header)
        except Exception:  # a malformed Cookie header is no key
            return False
        morsel = cookie.get("ragtune_key")
        return morsel is not None and self._matches(unquote(morsel.value).encode())
