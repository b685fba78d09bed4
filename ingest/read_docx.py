"""DOCX as Markdown (headings, lists, tables in document order), after a check against zip bombs."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import docx
from docx.table import Table
from docx.text.paragraph import Paragraph

from .types import IngestError, ParseReport

MAX_UNCOMPRESSED_BYTES = 200 * 1024 * 1024
MAX_MEMBERS = 10_000
MAX_RATIO = 100
# Small members compress far beyond 100:1 legitimately (XML of repeated styles); only big ones matter.
RATIO_CHECK_MIN_BYTES = 10 * 1024 * 1024

_HEADING = re.compile(r"heading ([1-6])", re.IGNORECASE)


def check_zip(path: Path) -> None:
    """Refuse archives that would expand into too much data (zip bombs) before anything unpacks them.

    zipfile stops reading a member at its declared size, so checking the declared sizes is enough.
    """
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
    if len(members) > MAX_MEMBERS:
        raise IngestError("unsafe_file", f"The document holds {len(members)} parts (limit {MAX_MEMBERS}).")
    total = sum(m.file_size for m in members)
    if total > MAX_UNCOMPRESSED_BYTES:
        raise IngestError(
            "unsafe_file",
            f"The document expands to {total // 2**20} MB (limit {MAX_UNCOMPRESSED_BYTES // 2**20} MB).",
        )
    for m in members:
        if m.file_size > RATIO_CHECK_MIN_BYTES and m.file_size > MAX_RATIO * max(m.compress_size, 1):
            message = f"The document part {m.filename} expands {m.file_size // max(m.compress_size, 1)}-fold."
            raise IngestError("unsafe_file", message)


def read_docx(path: Path, report: ParseReport | None = None) -> tuple[str, str | None]:
    """The document body as Markdown, and its title (core properties, else the first top-level heading);
    `report` (when given) records what was read."""
    report = report if report is not None else ParseReport()
    report.parser = "python-docx"
    check_zip(path)
    document = docx.Document(str(path))
    blocks: list[str] = []
    title = document.core_properties.title or None
    for item in document.iter_inner_content():
        if isinstance(item, Table):
            blocks.append(_table(item))
            continue
        text = item.text.strip()
        if not text:
            continue
        prefix = _prefix(item)
        if title is None and prefix == "# ":
            title = text
        blocks.append(prefix + text)
    return "\n\n".join(blocks), title


def _prefix(paragraph: Paragraph) -> str:
    style = paragraph.style.name if paragraph.style is not None else ""
    if style == "Title":
        return "# "
    if match := _HEADING.fullmatch(style):
        return "#" * int(match.group(1)) + " "
    if style.startswith("List Bullet"):
        return "- "
    if style.startswith("List Number"):
        return "1. "
    return ""


def _table(table: Table) -> str:
    rows = [[_cell(cell.text) for cell in row.cells] for row in table.rows]
    rows = [row for row in rows if any(row)]
    if not rows:
        return ""
    width = max(len(row) for row in rows)
    rows = [row + [""] * (width - len(row)) for row in rows]
    lines = ["| " + " | ".join(row) + " |" for row in rows]
    lines.insert(1, "|" + " --- |" * width)
    return "\n".join(lines)


def _cell(text: str) -> str:
    # A Markdown table row must stay on one line, and a literal | would split the cell.
    return " ".join(text.split()).replace("|", "\\|")
