"""Wire types of /v1/feedback (ours: OpenAI has no equivalent)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from server.chat.protocol import ChatMessage
from server.protocol import WireModel


class CreateFeedback(BaseModel):
    """A rating of one chat answer; a thumbs-down with a `correction` becomes a training example."""

    model_config = ConfigDict(extra="forbid", strict=True)
    messages: list[ChatMessage] = Field(min_length=1, description="The conversation the answer replied to.")
    response: str = Field(description="The answer being rated.")
    rating: Literal["up", "down"]
    correction: str | None = Field(None, description="A better answer (makes a thumbs-down trainable).")
    model: str | None = None
    completion_id: str | None = None
    comment: str | None = Field(None, max_length=2000)


class Feedback(WireModel):
    """Stored feedback: the request's fields plus `id` (`fb_…`), `object` and `created_at` (unix s)."""

    id: str
    object: Literal["feedback"] = "feedback"
    created_at: int
    messages: list[dict]
    response: str
    rating: Literal["up", "down"]
