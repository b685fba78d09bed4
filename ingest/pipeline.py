"""ingest_file(): detect, parse and split one stored upload in a single call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .detect import detect_file
from .parse import parse
from .split import ChunkingStrategy, split
from .types import Chunk, Document


def ingest_file(
    path: Path, filename: str, strategy: ChunkingStrategy, tokenizer: Any
) -> tuple[str, Document, list[Chunk]]:
    """(MIME type, parsed document, chunks) of the file at `path`, uploaded as `filename`.

    Raises IngestError (or its subclass UnsupportedFileType) for any file that cannot be ingested.
    """
    mime = detect_file(path, filename)
    document = parse(path, mime)
    return mime, document, split(document, strategy, tokenizer)
