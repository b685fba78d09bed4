"""`python -m server.cli` is `ragtune`."""

from server.cli.main import app

app()
