"""HTTP routes of chat completions: parse, call the service, return JSON or SSE."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from server.chat.protocol import ChatCompletion, ChatCompletionRequest
from server.deps import ChatServiceDep

router = APIRouter()


@router.post("/v1/chat/completions", response_model=None)
async def create_chat_completion(
    request: ChatCompletionRequest, chat: ChatServiceDep
) -> ChatCompletion | StreamingResponse:
    prepared = chat.prepare(request)
    if request.stream:
        events = await chat.stream(prepared)
        return StreamingResponse(
            events,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    return await chat.complete(prepared)
