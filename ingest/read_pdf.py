"""PDF text per page: pypdfium2 first, pypdf when PDFium cannot read the file."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pypdf
import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from .types import IngestError, ParseReport

log = logging.getLogger(__name__)

# PDFium reports a missing or wrong password, or a security handler it does not know, by these codes.
_LOCKED = {pdfium_c.FPDF_ERR_PASSWORD, pdfium_c.FPDF_ERR_SECURITY}
# PDFium is not thread-safe, not even across documents (pypdfium2 docs): one call at a time per process.
_PDFIUM_LOCK = threading.Lock()
_ENCRYPTED = "The PDF is password-protected; remove the password and upload it again."


def read_pdf(path: Path, report: ParseReport | None = None) -> tuple[list[str], str | None]:
    """The raw text of every page (index i is page i + 1) and the title from the PDF metadata; `report`
    (when given) records what was read."""
    report = report if report is not None else ParseReport()
    try:
        with _PDFIUM_LOCK:
            report.parser = "pypdfium2"
            return _read_pdfium(path)
    except pdfium.PdfiumError as error:
        if getattr(error, "err_code", None) in _LOCKED:
            raise IngestError("encrypted_file", _ENCRYPTED) from error
        log.info("pypdfium2 could not read %s (%s); trying pypdf", path, error)
    report.parser = "pypdf"
    return _read_pypdf(path)


def _read_pdfium(path: Path) -> tuple[list[str], str | None]:
    pdf = pdfium.PdfDocument(path)
    try:
        pages = []
        for page in pdf:
            textpage = page.get_textpage()
            pages.append(textpage.get_text_bounded())
            textpage.close()
            page.close()
        return pages, pdf.get_metadata_dict(skip_empty=True).get("Title")
    finally:
        pdf.close()  # also closes pages left open by an error, here under the lock


def _read_pypdf(path: Path) -> tuple[list[str], str | None]:
    reader = pypdf.PdfReader(path)
    # An empty user password only restricts permissions; the text can still be read.
    if reader.is_encrypted and not reader.decrypt(""):
        raise IngestError("encrypted_file", _ENCRYPTED)
    title = reader.metadata.title if reader.metadata else None
    return [page.extract_text() or "" for page in reader.pages], title or None
