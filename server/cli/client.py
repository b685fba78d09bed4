"""The CLI's way to a running server: the official `openai` client, a liveness probe, shared options."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

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
