"""Data types shared by the ingest steps: parsed documents, their chunks, and ingest errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Page:
    number: int | None  # 1-based page number for PDFs, None otherwise
    text: str


@dataclass
class Document:
    text: str  # whole cleaned text, pages joined with "\n\n"
    pages: list[Page]  # non-paged formats: one Page(number=None, text=text)
    metadata: dict[str, Any] = field(default_factory=dict)  # at least "mime" and "title"


@dataclass
class Chunk:
    text: str
    index: int  # 0-based order within the document
    page: int | None  # page the chunk comes from (PDF), else None
    tokens: int  # token count by the embedding tokenizer, without special tokens
    metadata: dict[str, Any] = field(default_factory=dict)  # e.g. {"headings": "Title > Section"}


class IngestError(Exception):
    """A document that cannot be ingested; `code` is machine-readable, the message is for users."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class UnsupportedFileType(IngestError):
    """A file whose name or content is not one of the supported types; `detected` says what it is."""

    def __init__(self, message: str, detected: str) -> None:
        super().__init__("unsupported_file", message)
        self.detected = detected
