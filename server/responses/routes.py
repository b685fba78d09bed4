"""HTTP routes of the Responses API: parse, call the service, return JSON or SSE."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from server.disconnect import unless_disconnected
from server.errors import bad_request
from server.protocol import WireRoute
from server.responses.protocol import DeletedResponse, InputItemList, ResponseObject, ResponsesRequest
from server.responses.service import ResponsesService

router = APIRouter(route_class=WireRoute, tags=["responses"])


def get_responses(request: Request) -> ResponsesService:
    return request.app.state.services.responses


ResponsesDep = Annotated[ResponsesService, Depends(get_responses)]
RESPONSE_DOC = "OpenAI's Response object (see the Responses API reference)."
STREAM_DOC = (
    "Server-sent events (`event: <type>` and `data: <JSON>` with `type` and `sequence_number`): "
    "response.created, response.in_progress, output items and their parts, response.completed / "
    "response.incomplete / response.failed."
)


@router.post(
    "/v1/responses",
    response_model=None,
    responses={
        200: {
            "model": ResponseObject,
            "description": RESPONSE_DOC,
            "content": {"text/event-stream": {"schema": {"type": "string", "description": STREAM_DOC}}},
        }
    },
)
async def create_response(
    request: ResponsesRequest, responses: ResponsesDep, http: Request
) -> dict[str, Any] | StreamingResponse:
    if request.stream:
        events = await responses.create(request)
        return StreamingResponse(
            events,  # type: ignore[arg-type]
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    return await unless_disconnected(http, responses.create(request))  # type: ignore[return-value]


@router.get("/v1/responses/{response_id}", response_model=None, responses={200: {"model": ResponseObject}})
def get_response(
    response_id: str,
    responses: ResponsesDep,
    include: Annotated[list[str] | None, Query()] = None,
    stream: bool = False,
) -> dict[str, Any]:
    if stream:
        raise bad_request(
            "Streaming a stored response again is not supported: GET it without stream (it holds the "
            "whole output), or stream it when you create it.",
            "stream",
            "unsupported_parameter",
        )
    return responses.get(response_id, include)


@router.delete("/v1/responses/{response_id}", response_model=DeletedResponse)
async def delete_response(response_id: str, responses: ResponsesDep) -> dict[str, Any]:
    return await responses.delete(response_id)


@router.post(
    "/v1/responses/{response_id}/cancel", response_model=None, responses={200: {"model": ResponseObject}}
)
async def cancel_response(response_id: str, responses: ResponsesDep) -> dict[str, Any]:
    return await responses.cancel(response_id)


@router.get("/v1/responses/{response_id}/input_items", response_model=InputItemList)
def list_input_items(
    response_id: str,
    responses: ResponsesDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    order: Literal["asc", "desc"] = "desc",
    after: str | None = None,
) -> InputItemList:
    return responses.input_items(response_id, limit, order, after)
