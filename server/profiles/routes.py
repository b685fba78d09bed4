"""HTTP routes of /v1/profiles."""

from __future__ import annotations

from fastapi import APIRouter

from server.deps import ProfilesDep
from server.profiles.protocol import CreateProfile

router = APIRouter(prefix="/v1/profiles")


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
