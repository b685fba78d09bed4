"""HTTP routes of /v1/profiles."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from server.profiles.protocol import CreateProfile
from server.profiles.service import ProfileService

router = APIRouter(prefix="/v1/profiles")


def get_profiles(request: Request) -> ProfileService:
    return request.app.state.services.profiles


ProfilesDep = Annotated[ProfileService, Depends(get_profiles)]


@router.post("")
def create_profile(body: CreateProfile, profiles: ProfilesDep) -> dict:
    return profiles.create(body)


@router.get("")
def list_profiles(profiles: ProfilesDep) -> dict:
    return profiles.list()


@router.get("/{name}")
def retrieve_profile(name: str, profiles: ProfilesDep) -> dict:
    return profiles.get(name)


@router.delete("/{name}")
def delete_profile(name: str, profiles: ProfilesDep) -> dict:
    return profiles.delete(name)
