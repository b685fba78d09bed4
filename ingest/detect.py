"""Detection of an upload's type from its content and its name; anything unsupported is refused."""

from __future__ import annotations

import zipfile
from pathlib import Path

import filetype

from .encoding import decode_text
from .types import IngestError, UnsupportedFileType

PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
HTML = "text/html"
MARKDOWN = "text/markdown"
TEXT = "text/plain"
CSV = "text/csv"
JSON = "application/json"
JSONL = "application/jsonl"

SUPPORTED_EXTENSIONS: dict[str, str] = {
    ".pdf": PDF,
    ".docx": DOCX,
    ".html": HTML,
    ".htm": HTML,
    ".md": MARKDOWN,
    ".markdown": MARKDOWN,
    ".txt": TEXT,
    ".text": TEXT,
    ".csv": CSV,
    ".json": JSON,
    ".jsonl": JSONL,
}
SUPPORTED_TYPES = frozenset(SUPPORTED_EXTENSIONS.values())
HEAD_SIZE = 8192

_ZIP = "application/zip"
_BINARY = "application/octet-stream"
_ENCODINGS = "UTF-8, UTF-16/32 with a BOM, or a detected encoding (GB18030, Big5, Shift-JIS, Windows-1252, …)"


def detect_type(head: bytes, filename: str) -> str:
    """The supported MIME type of a file from its first bytes and its name, or UnsupportedFileType.

    A ZIP named .docx is taken as DOCX here; `detect_file` also checks what the archive holds.
    """
    head = head[:HEAD_SIZE]
    ext = Path(filename).suffix.lower()
    expected = SUPPORTED_EXTENSIONS.get(ext)
    if expected is None:
        kind = filetype.guess(head)
        supported = ", ".join(SUPPORTED_EXTENSIONS)
        what = f"'{ext}' files are" if ext else "files without an extension are"
        raise UnsupportedFileType(
            f"'{filename}': {what} not supported (supported: {supported}).",
            kind.mime if kind else (ext or _BINARY),
        )
    if not head:
        raise IngestError("empty_file", f"'{filename}' is empty.")
    # Some producers put a few bytes before the PDF header; elsewhere only a real prefix counts.
    if head.startswith(b"%PDF-") or (expected == PDF and b"%PDF-" in head[:1024]):
        return PDF
    # Text first: magic numbers are short and text can start like one ("BM…" reads as a bitmap).
    if expected not in (PDF, DOCX) and decode_text(head, partial=True) is not None:
        return expected
    kind = filetype.guess(head)
    detected = kind.mime if kind else _describe_unknown(head)
    if detected == DOCX or (detected == _ZIP and expected == DOCX):
        return DOCX
    if detected == _BINARY and expected not in (PDF, DOCX):
        raise UnsupportedFileType(f"'{filename}' is not readable text (expected {_ENCODINGS}).", detected)
    raise UnsupportedFileType(
        f"'{filename}' is not a valid {ext} file: its content looks like {detected}.", detected
    )


def detect_file(path: Path, filename: str) -> str:
    """`detect_type` on a stored file, also checking that a DOCX is a ZIP holding word/document.xml."""
    with open(path, "rb") as f:
        head = f.read(HEAD_SIZE)
    mime = detect_type(head, filename)
    if mime == DOCX and not _holds_word_document(path):
        message = f"'{filename}' is not a Word document (a ZIP without word/document.xml)."
        raise UnsupportedFileType(message, _ZIP)
    return mime


def _describe_unknown(head: bytes) -> str:
    return TEXT if decode_text(head, partial=True) is not None else _BINARY


def _holds_word_document(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return "word/document.xml" in archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
