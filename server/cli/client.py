"""The CLI's way to a running server: the official `openai` client, a liveness probe, shared options."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn


def default_base_url() -> str:
    """Where the CLI finds the server: `RAGTUNE_BASE_URL`, else the `RAGTUNE_HOST`/`RAGTUNE_PORT` that
    `ragtune serve` listens on (127.0.0.1:8000 by default; a wildcard host is reached on 127.0.0.1)."""
    if url := os.environ.get("RAGTUNE_BASE_URL"):
        return url
    host = os.environ.get("RAGTUNE_HOST", "127.0.0.1")
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"http://{host}:{os.environ.get('RAGTUNE_PORT', '8000')}/v1"


DEFAULT_BASE_URL = default_base_url()


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


# ---- shared by the CLI sub-commands that talk to a running server ---------------------------------

out = Console(width=None if sys.stdout.isatty() else 200)  # piped: don't cut ids to 80 columns
err = Console(stderr=True)
BaseUrl = Annotated[str, typer.Option(help="Server to talk to.")]
ApiKey = Annotated[str | None, typer.Option(help="Bearer key (default RAGTUNE_API_KEY).")]
PROGRESS_COLUMNS = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())


def connect(base_url: str, api_key: str | None):
    """A client for a server that answers, or a clear message and exit 1."""
    if not server_up(base_url):
        err.print(f"[red]no ragtune server answers at {base_url}[/red]: start one with `make run`")
        raise typer.Exit(1)
    return make_client(base_url, api_key)
