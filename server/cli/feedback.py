"""`ragtune feedback export`: rated answers as an OpenAI chat JSONL file, ready for `ragtune finetune`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import httpx
import typer

from server.cli.client import DEFAULT_BASE_URL, ApiKey, BaseUrl, connect, out

feedback = typer.Typer(help="Thumbs up/down feedback on answers.", no_args_is_help=True)


@feedback.command("export")
def export(
    output: Annotated[Path, typer.Option("--out", help="JSONL file to write.")] = Path("feedback.jsonl"),
    base_url: BaseUrl = DEFAULT_BASE_URL,
    api_key: ApiKey = None,
) -> None:
    """Write liked answers, and disliked ones with their correction, as training conversations."""
    client = connect(base_url, api_key)
    response = httpx.get(
        f"{base_url.rstrip('/')}/feedback/export.jsonl",
        timeout=60,
        headers={"Authorization": f"Bearer {client.api_key}"},
    )
    response.raise_for_status()
    output.write_text(response.text, encoding="utf-8")
    out.print(f"wrote {len(response.text.splitlines())} conversations to {output}")
