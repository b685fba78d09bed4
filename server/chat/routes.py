"""HTTP routes of chat completions: parse, call the service, return JSON or SSE."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from server.chat.protocol import ChatCompletion, ChatCompletionRequest
from server.chat.service import ChatService
from server.disconnect import unless_disconnected
from server.protocol import WireRoute

router = APIRouter(route_class=WireRoute)


def get_chat(request: Request) -> ChatService:
    return request.app.state.services.chat


ChatDep = Annotated[ChatService, Depends(get_chat)]


# The answer is a ChatCompletion, or with `stream` an SSE stream of ChatCompletionChunk events ending in
# `data: [DONE]`; `responses` documents both without re-validating what the service already built.
STREAM_DOC = "Server-sent events: `data: <ChatCompletionChunk JSON>` lines, then `data: [DONE]`."


@router.post(
    "/v1/chat/completions",
    response_model=None,
    responses={
        200: {
            "model": ChatCompletion,
            "content": {"text/event-stream": {"schema": {"type": "string", "description": STREAM_DOC}}},
        }
    },
)
async def create_chat_completion(
    request: ChatCompletionRequest, chat: ChatDep, http: Request
) -> ChatCompletion | StreamingResponse:
    prepared = await chat.prepare(request)
    if request.stream:
        events = await chat.stream(prepared)
        return StreamingResponse(
            events,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    return await unless_disconnected(http, chat.complete(prepared))
