"""`ragtune serve`, `ragtune chat`, `ragtune models`; the sub-command families register at the end."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from server.cli.client import DEFAULT_BASE_URL, make_client, server_up
from server.settings import Settings

app = typer.Typer(
    help="ragtune: OpenAI-compatible chat server with RAG, LoRA fine-tuning and A/B comparison.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment plus command-line overrides; a bad value exits with a clear message."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        for error in exc.errors():
            field = ".".join(str(p) for p in error["loc"]) or "settings"
            err.print(
                f"[red]invalid setting[/red] RAGTUNE_{field.upper()}: "
                f"{error['msg'].removeprefix('Value error, ')}"
            )
        raise typer.Exit(2) from None


def check_data_dir(settings: Settings) -> None:
    """Refuse a data directory written by a newer ragtune (exit 2), before any model loads."""
    from server.storage.migrations import SchemaTooNew, check_schema

    try:
        check_schema(settings.data_dir / "ragtune.sqlite3")
    except SchemaTooNew as exc:
        err.print(f"[red]RAGTUNE_DATA_DIR: {escape(str(exc))}[/red]", soft_wrap=True)
        raise typer.Exit(2) from None


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (RAGTUNE_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (RAGTUNE_PORT).")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Data directory (RAGTUNE_DATA_DIR).")] = None,
    model: Annotated[str | None, typer.Option(help="Default model name or local HF model directory.")] = None,
    model_name: Annotated[str | None, typer.Option(help="Id to serve the chat model under.")] = None,
    engine: Annotated[str | None, typer.Option(help="auto | transformers | vllm (RAGTUNE_ENGINE).")] = None,
) -> None:
    """Start the OpenAI-compatible HTTP server."""
    import uvicorn

    from server.app import build_app
    from server.engines import resolve_engine_name

    settings = load_settings(
        host=host, port=port, data_dir=data_dir, model=model, model_name=model_name, engine=engine
    )
    check_data_dir(settings)
    try:
        engine_name = resolve_engine_name(settings.engine)
    except ValueError as exc:
        err.print(f"[red]RAGTUNE_ENGINE: {exc}[/red]")
        raise typer.Exit(2) from exc
    if engine_name == "vllm":  # what vLLM would refuse only after its ~30 s start
        from server.engines.vllm_engine import AdapterError, check_adapter

        for name, path in settings.adapters.items():
            try:
                check_adapter(name, path, settings.max_lora_rank if settings.max_loras else 0)
            except AdapterError as exc:
                err.print(f"[red]RAGTUNE_LORA_MODULES: {exc}[/red]")
                raise typer.Exit(2) from exc
    logging.basicConfig(level=settings.log_level.upper(), format="%(levelname)s:     %(name)s: %(message)s")
    uvicorn.run(
        build_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        timeout_graceful_shutdown=5,
    )


@app.command()
def chat(
    question: Annotated[str, typer.Argument(help="What to ask.")],
    model: Annotated[str | None, typer.Option(help="Model id; default the server's base model.")] = None,
    system: Annotated[str | None, typer.Option(help="System prompt.")] = None,
    base_url: Annotated[str, typer.Option(help="Server to ask.")] = DEFAULT_BASE_URL,
    api_key: Annotated[str | None, typer.Option(help="Bearer key (default RAGTUNE_API_KEY).")] = None,
    local: Annotated[bool, typer.Option("--local", help="Answer in this process, without a server.")] = False,
    max_tokens: Annotated[int, typer.Option(help="Longest answer in tokens.")] = 256,
    temperature: Annotated[float, typer.Option(help="Sampling temperature (0 = greedy).")] = 0.0,
) -> None:
    """Ask one question: of a running server, or in-process when none answers (or with --local)."""
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": question}
    ]
    if not local and server_up(base_url):
        from openai import OpenAIError

        client = make_client(base_url, api_key)
        try:
            name = model or client.models.list().data[0].id
            stream = client.chat.completions.create(
                model=name, messages=messages, max_tokens=max_tokens, temperature=temperature, stream=True
            )
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    sys.stdout.write(chunk.choices[0].delta.content)
                    sys.stdout.flush()
        except OpenAIError as exc:
            err.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from None
        sys.stdout.write("\n")
        return
    if not local:
        err.print(f"[dim]no server at {base_url}; answering in-process[/dim]")
    settings = load_settings()
    check_data_dir(settings)
    print(asyncio.run(_chat_in_process(settings, messages, model, max_tokens, temperature)))


async def _chat_in_process(
    settings: Settings, messages: list[dict], model: str | None, max_tokens: int, temperature: float
) -> str:
    """One answer from services built as `ragtune serve` builds them (profiles and fine-tuned models of
    the data directory included), without HTTP and without starting the background workers."""
    from server.chat.protocol import ChatCompletionRequest
    from server.errors import APIError
    from server.state import init_services, load_embedder, load_engine

    engine = load_engine(settings)
    services = init_services(settings, engine, load_embedder(settings))
    try:
        await services.serve_adapters()
        request = ChatCompletionRequest(
            model=model or settings.served_model_name,
            messages=messages,
            max_tokens=max_tokens,
            temperature=temperature,
        )
        try:
            chat = services.chat
            answer = await chat.complete(await chat.prepare(request))
        except APIError as exc:
            err.print(f"[red]error:[/red] {exc.message}")
            raise typer.Exit(1) from None
        return answer.choices[0].message.content
    finally:
        services.db.close()
        await engine.close()


@app.command()
def models(
    base_url: Annotated[str, typer.Option(help="Server to ask.")] = DEFAULT_BASE_URL,
    api_key: Annotated[str | None, typer.Option(help="Bearer key (default RAGTUNE_API_KEY).")] = None,
) -> None:
    """List the models a running server serves (with none running: what this configuration serves)."""
    if server_up(base_url):
        for card in make_client(base_url, api_key).models.list().data:
            kind = getattr(card, "kind", None) or ""
            print(f"{card.id}\t{kind}")
        return
    settings = load_settings()
    err.print(f"[dim]no server at {base_url}; showing this configuration[/dim]")
    print(f"{settings.served_model_name}\tchat")
    from server.provision import embedder_specs

    names = [settings.served_embedding_name] + [
        n for n in embedder_specs(settings) if n != settings.served_embedding_name
    ]
    for name in names:
        print(f"{name}\tembedding")


def _register_subcommands() -> None:
    from server.cli.compare import compare
    from server.cli.feedback import feedback
    from server.cli.finetune import finetune, jobs
    from server.cli.kb import kb

    app.add_typer(kb, name="kb")
    app.add_typer(jobs, name="jobs")
    app.command("finetune")(finetune)
    app.command("compare")(compare)
    app.add_typer(feedback, name="feedback")


_register_subcommands()

if __name__ == "__main__":
    app()
