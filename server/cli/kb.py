"""`ragtune kb ...`: knowledge bases through the HTTP API of a running server, as any client would."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import openai
import typer
from rich.progress import Progress
from rich.table import Table

from ingest.detect import SUPPORTED_EXTENSIONS
from server.cli.client import DEFAULT_BASE_URL, PROGRESS_COLUMNS, ApiKey, BaseUrl, connect, err, out

kb = typer.Typer(
    help="Knowledge bases (vector stores): create, add documents, search, list.", no_args_is_help=True
)


def _store_id(client, name: str) -> str:
    """A store by id, or by name (the newest of that name)."""
    stores = list(client.vector_stores.list(limit=100, order="desc"))
    for store in stores:
        if name in (store.id, store.name):
            return store.id
    err.print(f"[red]no knowledge base named {name!r}[/red] (see `ragtune kb ls`)")
    raise typer.Exit(1)


def _documents(paths: list[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_EXTENSIONS
            )
        elif path.is_file():
            found.append(path)
        else:
            err.print(f"[yellow]skipping {path}: no such file or directory[/yellow]")
    return found


@kb.command("create")
def create(
    name: str,
    embedding_model: Annotated[
        str | None,
        typer.Option(
            help="Embedder of its vectors: all-minilm-l6-v2 or multilingual-e5-small (default: the server's)."
        ),
    ] = None,
    base_url: BaseUrl = DEFAULT_BASE_URL,
    api_key: ApiKey = None,
) -> None:
    """Create a knowledge base."""
    extra = {"embedding_model": embedding_model} if embedding_model else None
    try:
        store = connect(base_url, api_key).vector_stores.create(name=name, extra_body=extra)
    except openai.APIStatusError as exc:
        err.print(f"[red]{exc.message}[/red]")
        raise typer.Exit(1) from exc
    embedder = (store.model_extra or {}).get("embedding_model", "")
    out.print(f"created {store.id} ({name}; embedder {embedder})")


@kb.command("ls")
def ls(base_url: BaseUrl = DEFAULT_BASE_URL, api_key: ApiKey = None) -> None:
    """List knowledge bases with their file counts."""
    table = Table("id", "name", "files", "completed", "in progress", "failed", "bytes")
    for s in connect(base_url, api_key).vector_stores.list(limit=100):
        c = s.file_counts
        table.add_row(
            s.id,
            s.name or "",
            str(c.total),
            str(c.completed),
            str(c.in_progress),
            str(c.failed),
            str(s.usage_bytes),
        )
    out.print(table)


@kb.command("add")
def add(
    name: str,
    paths: Annotated[list[Path], typer.Argument(help="Files or directories (searched recursively).")],
    base_url: BaseUrl = DEFAULT_BASE_URL,
    api_key: ApiKey = None,
    wait: Annotated[bool, typer.Option(help="Wait until every file is indexed.")] = True,
) -> None:
    """Upload documents into a knowledge base and index them."""
    import openai

    client = connect(base_url, api_key)
    store_id = _store_id(client, name)
    documents = _documents(paths)
    if not documents:
        err.print("[red]no supported documents found[/red] (" + ", ".join(sorted(SUPPORTED_EXTENSIONS)) + ")")
        raise typer.Exit(1)
    attached: dict[str, Path] = {}
    with Progress(*PROGRESS_COLUMNS, console=err) as progress:
        task = progress.add_task("uploading", total=len(documents))
        for path in documents:
            try:
                with open(path, "rb") as f:
                    file = client.files.create(file=(path.name, f), purpose="assistants")
                client.vector_stores.files.create(vector_store_id=store_id, file_id=file.id)
                attached[file.id] = path
            except openai.APIStatusError as exc:
                message = exc.body.get("message") if isinstance(exc.body, dict) else str(exc)
                err.print(f"[yellow]{path}: {message}[/yellow]")
            progress.advance(task)
        if not wait:
            return
        task = progress.add_task("indexing", total=len(attached))
        pending = set(attached)
        while pending:
            for file_id in list(pending):
                vs_file = client.vector_stores.files.retrieve(file_id=file_id, vector_store_id=store_id)
                if vs_file.status != "in_progress":
                    pending.discard(file_id)
                    progress.advance(task)
                    if vs_file.status == "failed":
                        reason = vs_file.last_error.message if vs_file.last_error else "unknown error"
                        err.print(f"[yellow]{attached[file_id]}: failed: {reason}[/yellow]")
            time.sleep(0.5 if pending else 0)
    store = client.vector_stores.retrieve(store_id)
    out.print(f"{store.name}: {store.file_counts.completed} completed, {store.file_counts.failed} failed")


@kb.command("search")
def search(
    name: str,
    query: str,
    base_url: BaseUrl = DEFAULT_BASE_URL,
    api_key: ApiKey = None,
    k: Annotated[int, typer.Option("-k", help="Number of results.")] = 5,
) -> None:
    """Search a knowledge base (hybrid dense + BM25)."""
    client = connect(base_url, api_key)
    results = client.vector_stores.search(_store_id(client, name), query=query, max_num_results=k)
    for n, hit in enumerate(results, start=1):
        text = " ".join(part.text for part in hit.content).replace("\n", " ")
        out.print(f"[bold]{n}. {hit.filename}[/bold]  score {hit.score:.3f}")
        out.print(f"   {text[:300]}")
