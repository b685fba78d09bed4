"""Ingestion: uploaded files become clean text chunks (detect the type, parse, clean, split)."""

from .clean import clean
from .detect import detect_file, detect_type
from .parse import parse
from .pipeline import ingest_file
from .split import ChunkingStrategy, resolve_chunking, split
from .types import Chunk, Document, IngestError, Page, ParseReport, UnsupportedFileType

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
