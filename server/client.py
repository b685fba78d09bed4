"""The CLI's way to a running server: the official `openai` client, and a quick liveness probe."""

from __future__ import annotations

import os

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"


def make_client(base_url: str, api_key: str | None):
    from openai import OpenAI

    key = api_key or (os.environ.get("RAGTUNE_API_KEY") or "none").split(",")[0].strip()
    return OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=600)


def server_up(base_url: str) -> bool:
    import httpx

    try:
        httpx.get(base_url.rstrip("/").removesuffix("/v1") + "/health", timeout=2)
        return True
    except httpx.HTTPError:
        return False
