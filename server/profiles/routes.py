"""HTTP routes of /v1/profiles."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from server.profiles.protocol import CreateProfile, Profile
from server.profiles.service import ProfileService
from server.protocol import DeletedObject, ListPage, Page, WireRoute, paginate, pagination

router = APIRouter(prefix="/v1/profiles", route_class=WireRoute)


def get_profiles(request: Request) -> ProfileService:
    return request.app.state.services.profiles


ProfilesDep = Annotated[ProfileService, Depends(get_profiles)]
# Everything, oldest first, by default: as this list answered before it had pages. A profile's id is its name.
ProfilesPage = Annotated[Page, Depends(pagination(limit=10_000, max_limit=10_000, order="asc"))]


@router.post("")
def create_profile(body: CreateProfile, profiles: ProfilesDep) -> Profile:
    return Profile(**profiles.create(body))


@router.get("")
def list_profiles(profiles: ProfilesDep, page: ProfilesPage) -> ListPage[Profile]:
    return paginate(profiles.all(), page, id_of=lambda p: p["name"])


@router.get("/{name}")
def retrieve_profile(name: str, profiles: ProfilesDep) -> Profile:
    return Profile(**profiles.get(name))


@router.delete("/{name}")
def delete_profile(name: str, profiles: ProfilesDep) -> DeletedObject:
    return DeletedObject(**profiles.delete(name))
