"""HTTP routes of chat completions: parse, call the service, return JSON or SSE."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from server.chat.protocol import ChatCompletion, ChatCompletionRequest
from server.deps import ChatServiceDep
from server.disconnect import unless_disconnected

router = APIRouter()


@router.post("/v1/chat/completions", response_model=None)
async def create_chat_completion(
    request: ChatCompletionRequest, chat: ChatServiceDep, http: Request
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
