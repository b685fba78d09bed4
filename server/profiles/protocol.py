"""Wire types of /v1/profiles (ours: OpenAI has no equivalent)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from server.chat.protocol import FileSearch
from server.protocol import WireModel


class CreateProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
    model: str = Field(description="The base model or an ft: adapter.")
    file_search: FileSearch | None = None
    system: str | None = Field(None, max_length=20_000)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1)
    description: str | None = Field(None, max_length=512)


class Profile(WireModel):
    """A stored profile: the request's fields plus `object` and `created_at` (unix seconds). Its `name`
    is its id: it is listed in `/v1/models` with `kind: "profile"`."""

    object: Literal["profile"] = "profile"
    name: str
    model: str
    created_at: int
