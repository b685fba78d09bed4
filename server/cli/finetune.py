"""`ragtune finetune FILE` and `ragtune jobs ...`: fine-tuning through a running server's OpenAI API."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import Progress
from rich.table import Table

from finetune.config import BOUNDS, TrainConfig, request_fields
from server.cli.client import DEFAULT_BASE_URL, PROGRESS_COLUMNS, ApiKey, BaseUrl, connect, err, out

jobs = typer.Typer(help="Fine-tuning jobs: list them, read their events.", no_args_is_help=True)


def setting(name: str, help: str, default: str = "auto") -> Any:
    """A typer option for the job setting `name`, refused outside its bound in `finetune.config.BOUNDS`
    (the server's own, so a bad value fails here rather than after the upload)."""
    bound = BOUNDS[name]

    def check(value: float | None) -> float | None:
        if value is not None and not bound.contains(value):
            raise typer.BadParameter(f"must be {bound.describe()}")
        return value

    return typer.Option(help=f"{help} ({bound.describe()}; default {default}).", callback=check)


def finetune(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Training data (JSONL or JSON).")],
    model: Annotated[str | None, typer.Option(help="Base model; default the server's.")] = None,
    suffix: Annotated[str | None, typer.Option(help="Name part of the fine-tuned model.")] = None,
    epochs: Annotated[int | None, setting("n_epochs", "Passes over the data")] = None,
    lr_mult: Annotated[float | None, setting("learning_rate_multiplier", "Scales the learning rate")] = None,
    batch_size: Annotated[int | None, setting("batch_size", "Examples per step")] = None,
    rank: Annotated[int | None, setting("lora_r", "LoRA rank", str(TrainConfig.lora_r))] = None,
    validation_file: Annotated[Path | None, typer.Option(exists=True, dir_okay=False)] = None,
    follow: Annotated[bool, typer.Option("--follow/--no-follow", help="Show progress until it ends.")] = True,
    base_url: BaseUrl = DEFAULT_BASE_URL,
    api_key: ApiKey = None,
) -> None:
    """Upload FILE and fine-tune a LoRA adapter on it."""
    import openai

    client = connect(base_url, api_key)
    fields = request_fields(
        {"n_epochs": epochs, "learning_rate_multiplier": lr_mult, "batch_size": batch_size, "lora_r": rank}
    )
    extensions = {k: v for k, v in fields.items() if k != "hyperparameters"}
    try:
        with open(file, "rb") as f:
            training = client.files.create(file=(file.name, f), purpose="fine-tune")
        validation = None
        if validation_file:
            with open(validation_file, "rb") as f:
                validation = client.files.create(file=(validation_file.name, f), purpose="fine-tune").id
        job = client.fine_tuning.jobs.create(
            model=model or client.models.list().data[0].id,
            training_file=training.id,
            validation_file=validation,
            suffix=suffix,
            hyperparameters=fields.get("hyperparameters"),
            extra_body=extensions or None,
        )
    except openai.APIStatusError as exc:
        err.print(f"[red]error:[/red] {exc.body.get('message') if isinstance(exc.body, dict) else exc}")
        raise typer.Exit(1) from None
    out.print(f"created {job.id}")
    if follow:
        _follow(client, job.id)


def _follow(client, job_id: str) -> None:
    seen: set[str] = set()
    with Progress(*PROGRESS_COLUMNS, console=err) as progress:
        task = progress.add_task("validating", total=None)
        while True:
            job = client.fine_tuning.jobs.retrieve(job_id)
            for event in reversed(client.fine_tuning.jobs.list_events(job_id, limit=50).data):
                if event.id in seen:
                    continue
                seen.add(event.id)
                data = event.data or {}
                if event.type == "metrics" and "total_steps" in data:
                    progress.update(
                        task,
                        total=data["total_steps"],
                        completed=data["step"],
                        description=f"training  loss {data['train_loss']:.3f}",
                    )
                else:
                    progress.console.print(f"  {event.message}")
            if job.status in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(1)
    if job.status == "succeeded":
        out.print(f"[green]succeeded[/green]: chat with model [bold]{job.fine_tuned_model}[/bold]")
    else:
        out.print(f"[red]{job.status}[/red]: {job.error.message if job.error else ''}")
        raise typer.Exit(1)


@jobs.command("ls")
def ls(base_url: BaseUrl = DEFAULT_BASE_URL, api_key: ApiKey = None) -> None:
    """List fine-tuning jobs, newest first."""
    table = Table("id", "status", "model", "fine-tuned model", "trained tokens")
    for job in connect(base_url, api_key).fine_tuning.jobs.list(limit=100).data:
        table.add_row(
            job.id, job.status, job.model, job.fine_tuned_model or "", str(job.trained_tokens or "")
        )
    out.print(table)


@jobs.command("events")
def events(
    job_id: str,
    base_url: BaseUrl = DEFAULT_BASE_URL,
    api_key: ApiKey = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 50,
) -> None:
    """Show a job's events (losses, retention, checkpoints)."""
    for event in reversed(connect(base_url, api_key).fine_tuning.jobs.list_events(job_id, limit=limit).data):
        out.print(f"{time.strftime('%H:%M:%S', time.localtime(event.created_at))}  {event.message}")


@jobs.command("follow")
def follow_job(job_id: str, base_url: BaseUrl = DEFAULT_BASE_URL, api_key: ApiKey = None) -> None:
    """Show a job's progress until it ends."""
    _follow(connect(base_url, api_key), job_id)
