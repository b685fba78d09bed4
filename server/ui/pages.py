"""The UI's page paths: its navigation, and which paths are pages (`server/auth.py` lets a page GET in
with the key cookie)."""

from __future__ import annotations

NAV = (
    ("/", "chat"),
    ("/knowledge-bases", "knowledge_bases"),
    ("/fine-tuning", "fine_tuning"),
    ("/comparisons", "comparisons"),
    ("/models", "models"),
    ("/status", "status"),
)
"""The navigation: (path, nav key); the arena and the API docs are linked after these."""

PAGE_PATHS = (
    "/",
    "/login",
    "/knowledge-bases",
    "/fine-tuning",
    "/comparisons",
    "/models",
    "/status",
    "/arena",
)
"""Paths (and their sub-paths) that are UI pages: `server/auth.py` lets a page GET in with the key cookie."""


def is_page(path: str) -> bool:
    return path == "/" or any(path == p or path.startswith(p + "/") for p in PAGE_PATHS if p != "/")
