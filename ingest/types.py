"""Data types shared by the ingest steps: parsed documents, their chunks, and ingest errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Page:
    number: int | None  # 1-based page number for PDFs, None otherwise
    text: str


@dataclass
class ParseReport:
    """What the parser saw in one file, so a user can tell a faithful parse from a lossy one without
    reading chunks. It becomes the vector-store file object's `parse` extension (a ragtune field; OpenAI's
    object has none).

    Readers fill it as they go: `parser` names the library that read the file; `encoding` is the detected
    text encoding (text formats only); `pages` counts PDF pages; `tables` counts tables read;
    `images_without_text` counts images that gave no text (figures, pages OCR could not read);
    `ocr_pages` lists the 1-based pages whose text came from OCR and `ocr_mean_score` the mean recognition
    confidence of their lines (0..1); `dropped` lists parts not indexed, each
    `{"part": str, "reason": str, "count": int}`; `warnings` are sentences for users.
    """

    parser: str = ""
    encoding: str | None = None
    pages: int | None = None
    tables: int = 0
    images_without_text: int = 0
    ocr_pages: list[int] = field(default_factory=list)
    ocr_mean_score: float | None = None
    dropped: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def drop(self, part: str, reason: str, count: int = 1) -> None:
        """Record `count` parts of kind `part` (e.g. "script", "page 3") left out, and why; the same
        (part, reason) pair is counted once, with counts added."""
        for entry in self.dropped:
            if entry["part"] == part and entry["reason"] == reason:
                entry["count"] += count
                return
        self.dropped.append({"part": part, "reason": reason, "count": count})

    def warn(self, message: str) -> None:
        """Record a sentence for users about something read imperfectly (each message once)."""
        if message not in self.warnings:
            self.warnings.append(message)

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data, None fields left out."""
        data = {
            "parser": self.parser,
            "encoding": self.encoding,
            "pages": self.pages,
            "tables": self.tables,
            "images_without_text": self.images_without_text,
            "ocr_pages": list(self.ocr_pages),
            "ocr_mean_score": self.ocr_mean_score,
            "dropped": [dict(entry) for entry in self.dropped],
            "warnings": list(self.warnings),
        }
        return {key: value for key, value in data.items() if value is not None}


@dataclass
class Document:
    text: str  # whole cleaned text, pages joined with "\n\n"
    pages: list[Page]  # non-paged formats: one Page(number=None, text=text)
    metadata: dict[str, Any] = field(default_factory=dict)  # at least "mime" and "title"
    report: ParseReport = field(default_factory=ParseReport)  # what the parser saw


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
