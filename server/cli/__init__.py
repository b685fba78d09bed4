"""The `ragtune` command (typer): `serve`, `chat`, `models` in `main.py`; one module per sub-command family
(`kb`, `finetune`/`jobs`, `compare`, `feedback`), each talking to a running server through `client.py`."""

from server.cli.main import app

__all__ = ["app"]
