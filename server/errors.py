"""OpenAI-shaped errors: `{"error": {"message", "type", "param", "code"}}` with the right status,
never a trace."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

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
    parts = [str(p) for i, p in enumerate(loc) if not (i == 0 and p in ("body", "query", "path"))]
    parts = [p for p in parts if not _is_type_tag(p)]
    if not parts:
        return None
    out = parts[0]
    for p in parts[1:]:
        out += f"[{p}]" if p.isdigit() else f".{p}"
    return out


def validation_error(exc: RequestValidationError) -> APIError:
    errors = exc.errors()
    first = errors[0] if errors else {}
    if first.get("type") == "json_invalid":
        return bad_request(f"The body is not valid JSON: {first.get('ctx', {}).get('error', 'parse error')}")
    param = _param_of(tuple(first.get("loc", ())))
    if first.get("type") == "missing" and param:
        return bad_request(
            f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
        )
    msg = str(first.get("msg", "Invalid request"))
    if first.get("type", "").startswith("model_attributes") or msg.startswith(
        "Input should be a valid dictionary"
    ):
        return bad_request("The body must be a JSON object.", param=param)
    return bad_request(
        f"Invalid value for '{param}': {msg}" if param else msg, param=param, code="invalid_value"
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_error(exc).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "Request failed"
        if exc.status_code == 404 and message == "Not Found":
            message = "Unknown route."
        return APIError(exc.status_code, message, headers=getattr(exc, "headers", None)).response()

    @app.exception_handler(ClientDisconnected)
    async def _gone(request: Request, _: ClientDisconnected) -> Response:
        log.info(
            "client left before the answer to %s %s; generation cancelled", request.method, request.url.path
        )
        return Response(status_code=499)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return APIError(
            500, "The server had an error while processing your request.", type="server_error"
        ).response()
