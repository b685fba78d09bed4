"""OpenAI-shaped errors: `{"error": {"message", "type", "param", "code"}}` with the right status,
never a trace."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("ragtune")

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "service_unavailable_error",
}


class APIError(Exception):
    """An error a route returns to the client as it is."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type or _TYPES.get(status, "invalid_request_error")
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


class ClientDisconnected(Exception):
    """The client closed the connection before the answer was ready; nobody is left to answer."""


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def not_found(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(404, message, param=param, code=code)


def overloaded(message: str, retry_after: int = 1) -> APIError:
    return APIError(503, message, code="overloaded", headers={"Retry-After": str(retry_after)})


# pydantic puts the union member it tried into `loc` (e.g. "str", "list[str]", "function-after[...]")
_TYPE_TAGS = ("str", "int", "float", "bool", "list", "dict", "none", "literal")


def _is_type_tag(part: str) -> bool:
    """A member of a union that pydantic puts in an error's location (`str`, `Arm`, `list[...]`), not a
    field: OpenAI's field names are lower-case, model class names are not."""
    return part in _TYPE_TAGS or "[" in part or part.startswith("function-") or part[:1].isupper()


def _param_of(loc: tuple[Any, ...]) -> str | None:
    """`messages[0].content` from pydantic's location: list indexes (ints) in brackets, names and dict
    keys (`logit_bias.50256`) after dots."""
    parts = [p for i, p in enumerate(loc) if not (i == 0 and p in ("body", "query", "path"))]
    parts = [p for p in parts if isinstance(p, int) or not _is_type_tag(str(p))]
    if not parts:
        return None
    out = str(parts[0])
    for p in parts[1:]:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


def validation_error(exc: RequestValidationError) -> APIError:
    errors = exc.errors()
    first = errors[0] if errors else {}
    # A union field reports one error per member (`content` as a string, then as a list of parts): the
    # deepest error under the same field names what is wrong (`messages[0].content[1].type`).
    head = _param_of(tuple(first.get("loc", ()))) or ""
    same_field = [e for e in errors if (_param_of(tuple(e.get("loc", ()))) or "").startswith(head)]
    first = max(same_field, key=lambda e: len(_param_of(tuple(e.get("loc", ()))) or ""), default=first)
    if first.get("type") == "json_invalid":
        return bad_request(f"The body is not valid JSON: {first.get('ctx', {}).get('error', 'parse error')}")
    param = _param_of(tuple(first.get("loc", ())))
    if first.get("type") == "extra_forbidden" and param:  # OpenAI's wording for an unknown argument
        return bad_request(
            f"Unrecognized request argument supplied: '{param}'.", param=param, code="unknown_parameter"
        )
    if first.get("type") == "missing" and param:
        return bad_request(
            f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
        )
    msg = str(first.get("msg", "Invalid request"))
    if first.get("type", "").startswith("model_attributes") or msg.startswith(
        "Input should be a valid dictionary"
    ):
        if param:
            return bad_request(f"Invalid value for '{param}': it must be a JSON object.", param=param)
        return bad_request("The body must be a JSON object.", param=param)
    return bad_request(
        f"Invalid value for '{param}': {msg}" if param else msg, param=param, code="invalid_value"
    )


def install_error_handlers(app: FastAPI, not_found_page: Callable[[Request], Response] | None = None) -> None:
    """OpenAI-shaped JSON errors for every exception a request can raise. `not_found_page`, when given,
    answers a browser's GET of an unknown path outside `/v1/` (Accept: text/html) with a page instead."""

    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_error(exc).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        message = exc.detail if isinstance(exc.detail, str) else "Request failed"
        if exc.status_code == 404 and message == "Not Found":
            if (
                not_found_page is not None
                and request.method == "GET"
                and not request.url.path.startswith("/v1/")
                and "text/html" in request.headers.get("accept", "")
            ):
                return not_found_page(request)
            message = "Unknown route."
        param = getattr(exc, "param", None)  # server.protocol.InvalidText names the field
        headers = getattr(exc, "headers", None)
        return APIError(exc.status_code, message, param=param, headers=headers).response()

    @app.exception_handler(ClientDisconnected)
    async def _gone(request: Request, _: ClientDisconnected) -> Response:
        log.info(
            "client left before the answer to %s %s; generation cancelled", request.method, request.url.path
        )
        return Response(status_code=499)


INTERNAL_ERROR = "The server had an error while processing your request."


class UnexpectedErrorMiddleware:
    """Turns an unexpected exception into OpenAI's 500 body and keeps the connection usable.

    Not an `exception_handler(Exception)`: Starlette hands that one to its ServerErrorMiddleware, which
    answers and then re-raises, and uvicorn then drops the kept-alive socket without `Connection: close`,
    so the client's next request on it fails too. Here the exception ends in this middleware (the trace
    goes to the log only). If the response had already started there is no clean answer left: the
    exception goes on, and the server closes the connection, as it must for a truncated response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception:
            log.exception("internal error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            response = APIError(500, INTERNAL_ERROR, type="server_error").response()
            await response(scope, receive, send)


ERROR_SCHEMA = {
    "title": "ErrorResponse",
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}
"""OpenAI's error body, as `/openapi.json` documents it."""


def document_errors(schema: dict) -> dict:
    """Rewrite FastAPI's generated OpenAPI document so it says what the server answers: a request that
    fails validation is a 400 with OpenAI's error body (`validation_error`), never FastAPI's 422
    `HTTPValidationError`. Returns `schema`, changed in place."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["ErrorResponse"] = ERROR_SCHEMA
    for key in ("HTTPValidationError", "ValidationError"):
        components.pop(key, None)
    body = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            if responses.pop("422", None) is not None or "requestBody" in operation:
                responses.setdefault("400", {"description": "Invalid request", "content": body})
    return schema
