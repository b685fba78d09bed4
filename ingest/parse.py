"""parse(): a stored file of a detected type becomes a cleaned Document (text, pages, metadata)."""

from __future__ import annotations

import re
from pathlib import Path

from .clean import clean, drop_repeated_lines
from .detect import CSV, DOCX, HTML, JSON, JSONL, MARKDOWN, PDF, SUPPORTED_TYPES, TEXT
from .encoding import decode_with_encoding
from .read_data import read_csv, read_json, read_jsonl
from .read_docx import read_docx
from .read_html import read_html
from .read_pdf import read_pdf
from .split import count_tables
from .types import Document, IngestError, Page, ParseReport, UnsupportedFileType

_LABELS = {PDF: "PDF", DOCX: "Word", HTML: "HTML", MARKDOWN: "Markdown", TEXT: "text", CSV: "CSV"}
_MARKDOWN_TITLE = re.compile(r"^#[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
_MAX_DETAIL_CHARS = 200


def parse(path: Path, mime: str) -> Document:
    """Read, clean and check a file; every problem with its content is raised as an IngestError.

    The Document's `report` says what the reader saw (see ParseReport)."""
    if mime not in SUPPORTED_TYPES:
        raise UnsupportedFileType(f"Files of type {mime} are not supported.", mime)
    report = ParseReport()
    try:
        raw_pages, title = _read(Path(path), mime, report)
    except IngestError:
        raise
    except Exception as error:  # a library failing on a malformed file is the file's fault, not ours
        detail = str(error)[:_MAX_DETAIL_CHARS] or type(error).__name__
        label = _LABELS.get(mime, mime.split("/")[-1].upper())
        raise IngestError("parse_error", f"The file could not be read as {label}: {detail}") from error
    texts = [clean(text) for text in raw_pages]
    if mime == PDF:
        lines_before = sum(_lines(text) for text in texts)
        texts = [clean(text) for text in drop_repeated_lines(texts)]
        removed = lines_before - sum(_lines(text) for text in texts)
        if removed > 0:
            report.drop("page header/footer line", "repeated on most pages, or a page number", removed)
        pages = [Page(number, text) for number, text in enumerate(texts, start=1) if text]
    else:
        pages = [Page(None, texts[0])] if texts[0] else []
    if not pages:
        raise IngestError("empty_file", _empty_message(mime))
    metadata = {"mime": mime, "title": (clean(title) or None) if title else None}
    if mime == PDF:
        metadata["page_count"] = len(raw_pages)
        report.pages = len(raw_pages)
    return Document(
        text="\n\n".join(page.text for page in pages), pages=pages, metadata=metadata, report=report
    )


def _read(path: Path, mime: str, report: ParseReport) -> tuple[list[str], str | None]:
    if mime == PDF:
        return read_pdf(path, report)
    if mime == DOCX:
        text, title = read_docx(path, report)
        return [text], title
    text, report.encoding = decode_with_encoding(path.read_bytes())
    report.parser = "text"  # read_html names its own
    if text is None:
        raise IngestError(
            "parse_error",
            "The file's text encoding could not be determined (not UTF-8, no BOM, and no common encoding "
            "reads it cleanly): save it as UTF-8.",
        )
    if mime == HTML:
        markdown, title = read_html(text, report)
        return [markdown], title
    if mime == MARKDOWN:
        report.tables = count_tables(text)
        match = _MARKDOWN_TITLE.search(text)
        return [text], match.group(1) if match else None
    readers = {TEXT: str, CSV: read_csv, JSON: read_json, JSONL: read_jsonl}
    return [readers[mime](text)], None


def _lines(text: str) -> int:
    return sum(1 for line in text.split("\n") if line.strip())


def _empty_message(mime: str) -> str:
    from .ocr import ocr_available  # cheap: looks the package up without importing it

    if mime == PDF and not ocr_available():
        return "The PDF has no extractable text, and OCR (to read scanned pages) is not available."
    if mime == PDF:
        return "The PDF has no extractable text: it has no text layer, and OCR found no text on its pages."
    return "The file contains no text."
