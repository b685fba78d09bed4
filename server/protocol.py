"""Wire types every endpoint family shares: OpenAI's list page, its cursor pagination, deletion receipts.

OpenAI's list endpoints (files, vector stores, vector store files, fine-tuning jobs, events,
checkpoints) answer `{"object": "list", "data": [...], "first_id", "last_id", "has_more"}` and take
`limit`, `order` (`asc`/`desc` by creation), `after` and `before` (an item id: the page starts after it,
or ends before it). One model and one dependency serve every list route of ragtune, ours included.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from fastapi import HTTPException, Query, Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict

from common.text import lone_surrogate

T = TypeVar("T")
Order = Literal["asc", "desc"]


def parse_int(digits: str) -> int | float:
    """A JSON integer. One longer than Python's int-parsing limit (4300 digits, `sys.int_info`) becomes a
    float (an infinity), so that the field it sits in refuses it by name, instead of the whole body
    failing to parse."""
    if len(digits) - digits.startswith("-") > sys.get_int_max_str_digits():
        return float(digits)
    return int(digits)


class InvalidText(HTTPException):
    """A request body holding text that is not valid Unicode: a 400 naming where (OpenAI's error shape
    through server.errors, which reads `param`)."""

    def __init__(self, param: str) -> None:
        super().__init__(400, f"'{param}' is not valid Unicode text (it holds a lone surrogate).")
        self.param = param


class WireRequest(Request):
    """A request whose JSON body is parsed with `parse_int` and whose every string is checked to be
    valid Unicode once, here at the boundary, for every route (InvalidText otherwise)."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = json.loads(await self.body(), parse_int=parse_int)
            if (where := lone_surrogate(body)) is not None:
                raise InvalidText(where)
            self._json = body
        return self._json


class WireRoute(APIRoute):
    """Every ragtune route (FastAPI's documented custom-route pattern): bodies parse as `WireRequest`."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def wire_handler(request: Request) -> Response:
            return await handler(WireRequest(request.scope, request.receive))

        return wire_handler


class WireModel(BaseModel):
    """A response object: extra fields pass through, so an extension added later is never dropped."""

    model_config = ConfigDict(extra="allow")


class ListPage(BaseModel, Generic[T]):
    """One page of a list (OpenAI's shape). `first_id`/`last_id` are the page's ends, `None` when empty;
    `has_more` says whether a page follows in the requested order."""

    object: Literal["list"] = "list"
    data: list[T]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class DeletedObject(BaseModel):
    """The receipt of a delete (`{"id", "object": "<type>.deleted" or "<type>", "deleted": true}`)."""

    id: str
    object: str
    deleted: bool = True


@dataclass(frozen=True)
class Page:
    """Cursor pagination parameters: at most `limit` items, `order` by creation (`desc` = newest first),
    starting after the id `after` and/or ending before the id `before`."""

    limit: int = 20
    order: Order = "desc"
    after: str | None = None
    before: str | None = None


def pagination(limit: int = 20, max_limit: int = 100, order: Order = "desc") -> Callable[..., Page]:
    """A FastAPI dependency reading `limit`, `order`, `after`, `before` from the query string, with the
    given defaults (OpenAI's are 20 of at most 100, newest first; its files list allows 10,000).
    A `limit` outside [1, max_limit] or an unknown `order` is a 400 naming the parameter."""

    # Defaults, not annotations, carry the bounds: this module's annotations are strings (PEP 563),
    # resolved later in module scope, where `max_limit` does not exist.
    def dependency(
        limit: int = Query(limit, ge=1, le=max_limit),
        order: Order = Query(order),
        after: str | None = Query(None),
        before: str | None = Query(None),
    ) -> Page:
        return Page(limit, order, after, before)

    return dependency


def paginate(items: Sequence[T], page: Page, id_of: Callable[[T], str] | None = None) -> ListPage[T]:
    """Cut one page out of `items` given oldest first, in `page.order`.

    Cursors as OpenAI's (and Stripe's `ending_before`): `after` gives the `limit` items right after that
    id, `before` the `limit` items right before it (the page adjacent to the cursor), both in the page's
    order; `has_more` says whether more items lie beyond the page in the direction it was cut. An `after`
    id that is not in the list gives an empty page (the cursor is past the end); a `before` id that is
    not in it is ignored."""
    key = id_of or _id
    rows = list(items)[::-1] if page.order == "desc" else list(items)
    if page.after is not None:
        ids = [key(r) for r in rows]
        rows = rows[ids.index(page.after) + 1 :] if page.after in ids else []
    ids = [key(r) for r in rows]
    if page.before is not None and page.before in ids:
        rows = rows[: ids.index(page.before)]
        data = rows[-page.limit :]
    else:
        data = rows[: page.limit]
    return ListPage[Any](
        data=data,
        first_id=key(data[0]) if data else None,
        last_id=key(data[-1]) if data else None,
        has_more=len(rows) > page.limit,
    )


def _id(item: Any) -> str:
    return item["id"] if isinstance(item, dict) else item.id


# ---- the small routes (server/routes.py) ------------------------------------------------------------


class Model(WireModel):
    """OpenAI's model object, plus ragtune's `parent`/`root` (as vLLM serves them for LoRA adapters) and
    `kind` (`chat`, `profile` or `embedding`)."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "ragtune"
    parent: str | None = None
    root: str | None = None
    kind: str


class Health(WireModel):
    """`GET /health`: the engine's name, the served model, where it runs (`device`, `dtype`, context
    length `max_model_len` in tokens), and the engine's queue (`running`, `waiting`)."""

    status: Literal["ok"] = "ok"
    engine: str
    model: str
    device: str | None = None
    dtype: str | None = None
    max_model_len: int | None = None
