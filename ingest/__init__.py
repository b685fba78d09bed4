"""Ingestion: uploaded files become clean text chunks (detect the type, parse, clean, split).

The names below are loaded on first use (PEP 562), so a module that needs one light part, such as
`ingest.encoding` for fine-tuning files, does not import every parser (and a GPU machine that has only
torch, transformers and peft can run the training recipe)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "clean": ".clean",
    "detect_file": ".detect",
    "detect_type": ".detect",
    "parse": ".parse",
    "ingest_file": ".pipeline",
    "ChunkingStrategy": ".split",
    "resolve_chunking": ".split",
    "split": ".split",
    "Chunk": ".types",
    "Document": ".types",
    "IngestError": ".types",
    "Page": ".types",
    "ParseReport": ".types",
    "UnsupportedFileType": ".types",
}
__all__ = [
    "Chunk",
    "ChunkingStrategy",
    "Document",
    "IngestError",
    "Page",
    "ParseReport",
    "UnsupportedFileType",
    "clean",
    "detect_file",
    "detect_type",
    "ingest_file",
    "parse",
    "resolve_chunking",
    "split",
]

if TYPE_CHECKING:
    from .clean import clean
    from .detect import detect_file, detect_type
    from .parse import parse
    from .pipeline import ingest_file
    from .split import ChunkingStrategy, resolve_chunking, split
    from .types import Chunk, Document, IngestError, Page, ParseReport, UnsupportedFileType


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ingest' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
