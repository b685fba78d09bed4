"""PDF text per page: pypdfium2 in reading order (columns one after another), OCR for pages that are only
images, and pypdf when PDFium cannot read the file."""

from __future__ import annotations

import bisect
import logging
import math
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pypdf
import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from . import ocr
from .types import IngestError, ParseReport

log = logging.getLogger(__name__)

# PDFium reports a missing or wrong password, or a security handler it does not know, by these codes.
_LOCKED = {pdfium_c.FPDF_ERR_PASSWORD, pdfium_c.FPDF_ERR_SECURITY}
# PDFium is not thread-safe, not even across documents (pypdfium2 docs): one call at a time per process.
_PDFIUM_LOCK = threading.Lock()
_ENCRYPTED = "The PDF is password-protected; remove the password and upload it again."

# A page that shows an image and has fewer non-space characters than this in its text layer is a scan:
# about one line, room for a scanner's stamp ("Scanned with ...") or a header added to a scanned book.
SCAN_MAX_TEXT_CHARS = 50
# An image covering this share of the page is a page scan (behind a text layer, if any), not a figure.
_PAGE_IMAGE_SHARE = 0.5
# Pages are rendered for OCR at 200 dpi, MinerU's default for the same PP-OCR models, with the long side
# capped at RapidOCR's max_side_len (2000 px), to which it would shrink a larger image anyway: an A4 page
# becomes 1414 x 2000 px (171 dpi). At 144 dpi (PaddleOCR's 2x zoom) word recall on 10-11 pt Helvetica
# fell from 100% to 97.6% here, mostly words run together.
OCR_DPI = 200
OCR_MAX_SIDE_PX = 2000

# Columns (see _find_columns). Lengths are in em: the median height of the page's text lines (~font size).
GUTTER_MIN_EMS = 1.0  # LaTeX's default \columnsep is 10 pt at 10 pt type; a word space is ~0.3 em
GUTTER_MIN_HEIGHT = 0.5  # share of the page's text height the gutter must stay empty over
COLUMN_MIN_EMS = 12.0  # ~25 characters: anything narrower is table cells, labels or margin notes
COLUMN_MIN_FILL = 0.6  # median line width over column width: prose fills its column, table cells do not
COLUMN_MIN_LINES = 2
HEADER_GAP_EMS = 1.5  # a row this far above (below) the columns is a running header (footer), read full-width

Box = tuple[float, float, float, float]  # left, top, right, bottom, y growing downwards


@dataclass
class _TextLayer:
    pages: list[str]
    title: str | None
    scans: list[int] = field(default_factory=list)  # 0-based pages that are images without a text layer
    figures: int = 0  # images on pages with a text layer, whose content is not read


def read_pdf(path: Path, report: ParseReport | None = None) -> tuple[list[str], str | None]:
    """The raw text of every page (index i is page i + 1) and the title from the PDF metadata; `report`
    (when given) records what was read.

    Multi-column pages come out one column after another (see _find_columns). Pages that are images with
    no text layer are read by OCR (ingest.ocr) and listed in `report.ocr_pages`; one OCR cannot read is
    left as it was (empty, or its few characters) and reported in `report.dropped` and
    `report.images_without_text`. Raises IngestError("encrypted_file") for a password-protected file."""
    report = report if report is not None else ParseReport()
    try:
        with _PDFIUM_LOCK:
            report.parser = "pypdfium2"
            layer = _read_pdfium(path)
    except pdfium.PdfiumError as error:
        if getattr(error, "err_code", None) in _LOCKED:
            raise IngestError("encrypted_file", _ENCRYPTED) from error
        log.info("pypdfium2 could not read %s (%s); trying pypdf", path, error)
        report.parser = "pypdf"
        return _read_pypdf(path)
    report.images_without_text += layer.figures
    if layer.scans:
        _read_scans(path, layer, report)
    return layer.pages, layer.title


def _read_pdfium(path: Path) -> _TextLayer:
    pdf = pdfium.PdfDocument(path)
    try:
        layer = _TextLayer([], pdf.get_metadata_dict(skip_empty=True).get("Title"))
        for index, page in enumerate(pdf):
            textpage = page.get_textpage()
            text = _page_text(page, textpage)
            images = _image_shares(page)
            if images and sum(not char.isspace() for char in text) < SCAN_MAX_TEXT_CHARS:
                layer.scans.append(index)
            else:
                layer.figures += sum(share < _PAGE_IMAGE_SHARE for share in images)
            layer.pages.append(text)
            textpage.close()
            page.close()
        return layer
    finally:
        pdf.close()  # also closes pages left open by an error, here under the lock


def _page_text(page: pdfium.PdfPage, textpage: pdfium.PdfTextPage) -> str:
    """PDFium's text of the page; on a page with columns, the text of each region in reading order."""
    text = textpage.get_text_bounded()
    if page.get_rotation() % 360:
        return text  # columns would run across the page's own axes: left as PDFium orders them
    left, bottom, right, top = bbox = page.get_bbox()
    boxes = []
    for index in range(textpage.count_rects()):
        x0, y0, x1, y1 = textpage.get_rect(index)
        if x1 > x0 and y1 > y0 and left <= (x0 + x1) / 2 <= right and bottom <= (y0 + y1) / 2 <= top:
            boxes.append((x0, -y1, x1, -y0))  # PDF space has y upwards
    columns = _find_columns(boxes)
    if columns is None:
        return text
    parts = (textpage.get_text_bounded(*region) for region in columns.pdf_regions(bbox))
    return "\r\n".join(part for part in parts if part.strip())


def _image_shares(page: pdfium.PdfPage) -> list[float]:
    """The share of the page's area each image object on it covers (forms included)."""
    width, height = page.get_size()
    shares = []
    for image in page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE]):
        left, bottom, right, top = image.get_bounds()
        shares.append(max(0.0, right - left) * max(0.0, top - bottom) / max(width * height, 1.0))
    return shares


# --- OCR of scanned pages ------------------------------------------------------------------------


def _read_scans(path: Path, layer: _TextLayer, report: ParseReport) -> None:
    """Replace the text of each scanned page by what OCR reads on it, and report what it could not."""
    scores: list[float] = []
    for position, index in enumerate(layer.scans):
        try:
            with _PDFIUM_LOCK:
                image = _render(path, index)
            started = time.monotonic()
            lines = ocr.ocr_image(image)  # outside the lock: seconds of CPU that PDFium need not wait for
            log.info(
                "OCR of page %d of %s: %d lines in %.1f s",
                index + 1,
                path,
                len(lines),
                time.monotonic() - started,
            )
        except ocr.OcrUnavailable as error:
            log.warning("%s", error)
            _unread(layer, report, layer.scans[position:], "no text layer, and OCR is not available")
            report.warn("Pages that are images were not read: OCR is not available on this server.")
            break
        except pdfium.PdfiumError as error:
            log.warning("page %d of %s could not be rendered for OCR: %s", index + 1, path, error)
            _unread(layer, report, [index], "could not be rendered for OCR")
            continue
        read = [line for line in lines if line.score >= ocr.MIN_LINE_SCORE]
        if not read:
            floor = f"OCR read nothing with confidence {ocr.MIN_LINE_SCORE} or more"
            _unread(layer, report, [index], floor if lines else "OCR found no text")
            continue
        layer.pages[index] = _ocr_text(read)
        report.ocr_pages.append(index + 1)
        scores.extend(line.score for line in read)
    if scores:
        report.parser = "pypdfium2+rapidocr"
        report.ocr_mean_score = round(statistics.fmean(scores), 3)
        count = len(report.ocr_pages)
        report.warn(
            f"{count} page{'s' if count > 1 else ''} had no text layer and {'were' if count > 1 else 'was'} "
            f"read by OCR (mean confidence {report.ocr_mean_score:.2f}); expect some misread characters."
        )


def _unread(layer: _TextLayer, report: ParseReport, indexes: list[int], reason: str) -> None:
    for index in indexes:
        report.images_without_text += 1
        if not layer.pages[index].strip():  # a page that keeps a few characters is not dropped
            report.drop(f"page {index + 1}", reason)


def _render(path: Path, index: int) -> np.ndarray:
    """Page `index` as an RGB array at OCR_DPI, its long side at most OCR_MAX_SIDE_PX; under the lock."""
    pdf = pdfium.PdfDocument(path)
    try:
        page = pdf[index]
        scale = min(OCR_DPI / 72, OCR_MAX_SIDE_PX / max(*page.get_size(), 1.0))
        bitmap = page.render(scale=scale, rev_byteorder=True)
        image = bitmap.to_numpy()[..., :3].copy()  # a copy: the array shares the bitmap's buffer
        bitmap.close()
        return image
    finally:
        pdf.close()


def _ocr_text(lines: list[ocr.OcrLine]) -> str:
    """OCR lines as page text: column after column when the page has columns, rows in each."""
    columns = _find_columns([line.box for line in lines])
    if columns is None:
        return ocr.lines_to_text(lines)
    regions: list[list[ocr.OcrLine]] = [[] for _ in range(len(columns.cuts) + 3)]
    for line in lines:
        regions[columns.region_of(line.box)].append(line)
    return "\n".join(ocr.lines_to_text(region) for region in regions if region)


# --- columns -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Columns:
    """A page read as: the rows above `top`, the columns between `top` and `bottom` split at `cuts`
    (x of each gutter's middle, left to right), then the rows below `bottom`. Units of the boxes."""

    top: float
    bottom: float
    cuts: tuple[float, ...]

    def region_of(self, box: Box) -> int:
        """0 above, 1..len(cuts)+1 the columns, len(cuts)+2 below: by the box's centre."""
        x, y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        if y < self.top:
            return 0
        if y > self.bottom:
            return len(self.cuts) + 2
        return 1 + bisect.bisect(self.cuts, x)

    def pdf_regions(self, bbox: tuple[float, float, float, float]) -> list[tuple[float, float, float, float]]:
        """The regions in reading order as PDF rectangles (left, bottom, right, top) within the page's
        `bbox`; boxes were made from PDF coordinates by negating y."""
        left, bottom, right, top = bbox
        xs = [left, *self.cuts, right]
        columns = [(xs[i], -self.bottom, xs[i + 1], -self.top) for i in range(len(xs) - 1)]
        return [(left, -self.top, right, top), *columns, (left, bottom, right, -self.bottom)]


def _find_columns(boxes: list[Box]) -> _Columns | None:
    """The page's columns, or None when it is read as one column (then its text is left as it is).

    Conservative on purpose, as a table torn into columns is worse than two columns read row by row:
    a gutter is an empty vertical strip at least GUTTER_MIN_EMS wide, with text on both sides, empty over
    at least GUTTER_MIN_HEIGHT of the page's text height (full-width rows above and below it, a title or
    a footer, stay where they are); rows set apart from the columns by HEADER_GAP_EMS are read full-width
    (running headers, footers). Each column must be COLUMN_MIN_EMS wide, have COLUMN_MIN_LINES lines
    whose median width is COLUMN_MIN_FILL of the column's; if one is not, the page is one column.
    The search runs on an occupancy grid of the boxes, a quarter em per cell."""
    if len(boxes) < 2 * COLUMN_MIN_LINES:
        return None
    array = np.array(boxes, dtype=float)
    em = statistics.median(bottom - top for top, bottom, _, _ in _rows(array))  # rows: boxes may be glyphs
    if em <= 0:
        return None
    left, top = array[:, 0].min(), array[:, 1].min()
    width, height = array[:, 2].max() - left, array[:, 3].max() - top
    cell = max(em / 4, width / 1000, height / 1000)
    grid = _occupancy(array, left, top, cell)
    gutter = max(1, math.ceil(GUTTER_MIN_EMS * em / cell))
    run = _tallest_gutter(grid, gutter)
    if run is None or (run[1] - run[0]) * cell < GUTTER_MIN_HEIGHT * height:
        return None
    zone_top, zone_bottom = top + run[0] * cell, top + run[1] * cell
    centres = (array[:, 1] + array[:, 3]) / 2
    inside = array[(centres >= zone_top) & (centres <= zone_bottom)]
    inside, above, below = _set_apart_headers(inside, em)
    above = np.concatenate([above, array[centres < zone_top]])
    below = np.concatenate([below, array[centres > zone_bottom]])
    if len(inside) == 0:
        return None
    first, last = inside[:, 1].min(), inside[:, 3].max()
    if (len(above) and above[:, 3].max() >= first) or (len(below) and below[:, 1].min() <= last):
        return None  # rows that overlap the columns' first or last line: no clean cut between them
    cuts = [left + x * cell for x in _gutters(inside, left, cell, gutter)]
    if not cuts:
        return None
    members = [[] for _ in range(len(cuts) + 1)]
    for box in inside:
        members[bisect.bisect(cuts, (box[0] + box[2]) / 2)].append(box)
    if not all(_is_prose_column(np.array(column), em) for column in members):
        return None
    return _Columns(
        top=float((above[:, 3].max() + first) / 2 if len(above) else first - em / 2),
        bottom=float((below[:, 1].min() + last) / 2 if len(below) else last + em / 2),
        cuts=tuple(float(cut) for cut in cuts),
    )


def _occupancy(array: np.ndarray, left: float, top: float, cell: float) -> np.ndarray:
    """grid[row, col] is True where a box covers any part of that cell."""
    x0 = np.floor((array[:, 0] - left) / cell).astype(int)
    y0 = np.floor((array[:, 1] - top) / cell).astype(int)
    x1 = np.maximum(np.ceil((array[:, 2] - left) / cell).astype(int), x0 + 1)
    y1 = np.maximum(np.ceil((array[:, 3] - top) / cell).astype(int), y0 + 1)
    grid = np.zeros((y1.max() + 1, x1.max() + 1), dtype=bool)
    for a, b, c, d in zip(y0, y1, x0, x1, strict=True):
        grid[a:b, c:d] = True
    return grid


def _tallest_gutter(grid: np.ndarray, width: int) -> tuple[int, int] | None:
    """Rows [start, end) of the tallest run of `width` empty cells side by side with text on both sides."""
    n_rows, n_cols = grid.shape
    if n_cols < width + 2:
        return None
    counts = np.concatenate([np.zeros((n_rows, 1), dtype=int), np.cumsum(grid, axis=1)], axis=1)
    empty = counts[:, width:] - counts[:, :-width] == 0  # empty[r, x]: cells x .. x+width-1 of row r
    run = np.zeros(empty.shape[1], dtype=int)
    best, best_end = run.copy(), run.copy()
    for row in range(n_rows):
        run = np.where(empty[row], run + 1, 0)
        longer = run > best
        best[longer], best_end[longer] = run[longer], row + 1
    has_text = grid.any(axis=1)
    first = np.where(has_text, grid.argmax(axis=1), n_cols)
    last = np.where(has_text, n_cols - 1 - grid[:, ::-1].argmax(axis=1), -1)
    for x in np.argsort(-best, kind="stable"):
        start, end = best_end[x] - best[x], best_end[x]
        if best[x] == 0:
            break
        if first[start:end].min() < x and last[start:end].max() >= x + width:
            return int(start), int(end)
    return None


def _gutters(boxes: np.ndarray, left: float, cell: float, width: int) -> list[float]:
    """Middles (in cells from `left`) of the vertical strips at least `width` cells wide that no box
    covers, between boxes."""
    filled = _occupancy(boxes, left, boxes[:, 1].min(), cell).any(axis=0)
    occupied = np.flatnonzero(filled)
    if len(occupied) == 0:
        return []
    middles, start = [], None
    for x in range(occupied[0], occupied[-1] + 1):
        if not filled[x] and start is None:
            start = x
        elif filled[x] and start is not None:
            if x - start >= width:
                middles.append((start + x) / 2)
            start = None
    return middles


def _set_apart_headers(inside: np.ndarray, em: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split off the first (last) rows of the column zone when a gap of HEADER_GAP_EMS or more separates
    them from the rest: (columns, header rows, footer rows)."""
    if len(inside) == 0:
        return inside, inside, inside
    bands = _rows(inside)
    start, end = 0, len(bands)
    while end - start > 1 and bands[start + 1][0] - bands[start][1] >= HEADER_GAP_EMS * em:
        start += 1
    while end - start > 1 and bands[end - 1][0] - bands[end - 2][1] >= HEADER_GAP_EMS * em:
        end -= 1
    centres = (inside[:, 1] + inside[:, 3]) / 2
    upper = bands[start][0] if start else -math.inf
    lower = bands[end - 1][1] if end < len(bands) else math.inf
    return (
        inside[(centres >= upper) & (centres <= lower)],
        inside[centres < upper],
        inside[centres > lower],
    )


def _rows(boxes: np.ndarray) -> list[tuple[float, float, float, float]]:
    """Boxes merged into rows, a box joining the row above when its vertical centre is above that row's
    bottom: (top, bottom, left, right) of each row, top to bottom."""
    rows: list[list[float]] = []
    for x0, y0, x1, y1 in sorted(boxes.tolist(), key=lambda box: box[1]):
        if rows and (y0 + y1) / 2 < rows[-1][1]:
            row = rows[-1]
            row[1], row[2], row[3] = max(row[1], y1), min(row[2], x0), max(row[3], x1)
        else:
            rows.append([y0, y1, x0, x1])
    return [tuple(row) for row in rows]


def _is_prose_column(column: np.ndarray, em: float) -> bool:
    if len(column) == 0:
        return False
    rows = _rows(column)
    width = column[:, 2].max() - column[:, 0].min()
    fill = statistics.median(right - left for _, _, left, right in rows)
    return len(rows) >= COLUMN_MIN_LINES and width >= COLUMN_MIN_EMS * em and fill >= COLUMN_MIN_FILL * width


# --- pypdf ---------------------------------------------------------------------------------------


def _read_pypdf(path: Path) -> tuple[list[str], str | None]:
    reader = pypdf.PdfReader(path)
    # An empty user password only restricts permissions; the text can still be read.
    if reader.is_encrypted and not reader.decrypt(""):
        raise IngestError("encrypted_file", _ENCRYPTED)
    title = reader.metadata.title if reader.metadata else None
    return [page.extract_text() or "" for page in reader.pages], title or None
