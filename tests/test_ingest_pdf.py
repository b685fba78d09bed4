"""ingest/read_pdf.py and ingest/ocr.py: PDF text in reading order (columns), and OCR of scanned pages.

PDFs are made here with fpdf2; a "scan" is a text page rendered to an image by pypdfium2 and embedded
alone in a new PDF, so it has no text layer. OCR runs the real RapidOCR models on the CPU (~1-3 s a page
here), so the scanned pages are small (A6) and the mixed document is read once for several tests."""

from __future__ import annotations

import importlib.util
import re
import sys
import time
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pypdfium2 as pdfium
import pytest
from fpdf import FPDF
from PIL import Image

import ingest.ocr
from ingest import Document, IngestError, parse
from ingest.detect import PDF
from ingest.ocr import OcrLine
from ingest.read_pdf import _ocr_text, read_pdf
from ingest.types import ParseReport

A6 = (105, 148)  # mm
TITLE = "A Study of Two Columns"
FOOTER = "Printed on recycled paper"
LEFT = [f"Left line {n} tells of alpha, beta and gamma rays." for n in range(1, 16)]
RIGHT = [f"Right line {n} counts one, two, three and four." for n in range(1, 16)]
TYPED = ["The office opens at eight in the morning.", "Expense reports are due on the fifth."]
SCANNED = ["Scanned policy memo", "Parking permits are issued", "at the front desk on Monday."]
CJK_SCANNED = ["员工每年享有十五天带薪年假", "加班按一点五倍工资计算"]


def squash(text: str) -> str:
    """Lower case, letters, digits and CJK only: what OCR must get right, spacing and punctuation aside."""
    return re.sub(r"[^0-9a-z\u4e00-\u9fff]", "", text.lower())


def pdfium_text(path: Path) -> list[str]:
    """What PDFium extracts from each page on its own: the text of a one-column page as it was."""
    pdf = pdfium.PdfDocument(path)
    try:
        return [page.get_textpage().get_text_bounded() for page in pdf]
    finally:
        pdf.close()


def lines_at(pdf: FPDF, y: float, cells: list[tuple[float, float, str]], height: float = 6) -> None:
    """One row: each cell (x, width, text) written at the same y, left to right, as layout tools do."""
    for x, width, text in cells:
        pdf.set_xy(x, y)
        pdf.cell(width, height, text)


def two_column_pdf(path: Path) -> Path:
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 10, TITLE, align="C")
    pdf.set_font("Helvetica", size=10)
    for row, (left, right) in enumerate(zip(LEFT, RIGHT, strict=True)):  # stored row by row
        lines_at(pdf, 30 + 6 * row, [(10, 90, left), (110, 90, right)])
    lines_at(pdf, 270, [(10, 190, FOOTER)])
    pdf.output(str(path))
    return path


def scan(source: Path, dpi: int = 150) -> Image.Image:
    """Page 1 of `source` as a greyscale image, as a scanner would give it."""
    pdf = pdfium.PdfDocument(source)
    try:
        return pdf[0].render(scale=dpi / 72).to_pil().convert("L")
    finally:
        pdf.close()


def add_image_page(pdf: FPDF, image: Image.Image, size: tuple[float, float] = A6) -> None:
    pdf.add_page(format=size)
    pdf.image(image, x=0, y=0, w=size[0], h=size[1])


def a6_text_page(path: Path, lines: list[str], font: Path | None = None) -> Path:
    pdf = FPDF(format=A6)
    pdf.add_page()
    if font:
        pdf.add_font("cjk", fname=str(font))
    pdf.set_font("cjk" if font else "Helvetica", size=14)
    for line in lines:
        pdf.multi_cell(0, 9, line, new_x="LMARGIN", new_y="NEXT")
    pdf.output(str(path))
    return path


# --- columns -------------------------------------------------------------------------------------


def test_two_columns_stored_row_by_row_read_column_after_column(tmp_path):
    document = parse(two_column_pdf(tmp_path / "columns.pdf"), PDF)
    assert document.pages[0].text == "\n".join([TITLE, *LEFT, *RIGHT, FOOTER])


def test_three_columns_read_left_to_right(tmp_path):
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=8)
    columns = [[f"Column {c} line {n} has a few more words." for n in range(1, 13)] for c in "ABC"]
    for row in range(12):
        lines_at(pdf, 20 + 5 * row, [(10 + 65 * c, 58, columns[c][row]) for c in range(3)], height=5)
    pdf.output(str(tmp_path / "three.pdf"))
    assert parse(tmp_path / "three.pdf", PDF).text == "\n".join(line for column in columns for line in column)


def test_running_header_stays_above_the_columns(tmp_path):
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=10)
    lines_at(pdf, 10, [(10, 60, "ACME Journal of Examples"), (150, 50, "Page 3")])  # same row, far apart
    for row, (left, right) in enumerate(zip(LEFT, RIGHT, strict=True)):
        lines_at(pdf, 30 + 6 * row, [(10, 90, left), (110, 90, right)])
    pdf.output(str(tmp_path / "header.pdf"))
    lines = parse(tmp_path / "header.pdf", PDF).text.split("\n")
    assert lines == ["ACME Journal of Examples Page 3", *LEFT, *RIGHT]


def test_single_column_page_is_as_pdfium_reads_it(tmp_path):
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 14)
    pdf.cell(0, 10, "Staff handbook", align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=11)
    for n in range(12):
        pdf.multi_cell(0, 6, f"Rule {n}: " + "Each paragraph runs across the page. " * (1 + n % 4))
        pdf.cell(0, 6, f"Short line {n}", new_x="LMARGIN", new_y="NEXT")
    pdf.cell(0, 6, "Approved by the board", align="R")
    pdf.output(str(tmp_path / "single.pdf"))
    pages, _ = read_pdf(tmp_path / "single.pdf")
    assert pages == pdfium_text(tmp_path / "single.pdf")


def test_tables_are_not_torn_into_columns(tmp_path):
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=10)
    header = ["Item", "Quantity", "Unit price", "Total"]
    for row in range(30):  # a full page of short cells: wide, tall, empty gutters between them
        cells = (
            header if row == 0 else [f"Widget {row}", str(row * 3), f"{row * 1.5:.2f}", f"{row**2 * 4.5:.2f}"]
        )
        lines_at(pdf, 15 + 8 * row, [(15 + 45 * col, 40, text) for col, text in enumerate(cells)])
    pdf.add_page()  # labels beside sentences: the label column is too narrow to be a column of text
    for row in range(20):
        lines_at(
            pdf, 15 + 8 * row, [(15, 35, f"Policy {row}"), (60, 140, f"{LEFT[row % 15]} {RIGHT[row % 15]}")]
        )
    pdf.output(str(tmp_path / "tables.pdf"))
    pages, _ = read_pdf(tmp_path / "tables.pdf")
    assert pages == pdfium_text(tmp_path / "tables.pdf")
    assert "Widget 7 21 10.50 220.50" in pages[0]  # each row stays one line


def test_ocr_lines_in_two_columns_are_read_column_after_column():
    def line(text: str, x: float, y: float) -> OcrLine:
        return OcrLine(text, 0.9, (x, y, x + 400, y + 30))

    lines = [line(TITLE, 300, 20)]
    for row in range(12):
        lines += [line(f"right {row}", 560, 100 + 40 * row), line(f"left {row}", 60, 102 + 40 * row)]
    text = _ocr_text(lines)
    assert text.split("\n") == [TITLE] + [f"left {row}" for row in range(12)] + [
        f"right {row}" for row in range(12)
    ]


def test_ocr_lines_of_one_row_join_left_to_right():
    lines = [OcrLine("world", 0.9, (300, 12, 400, 40)), OcrLine("Hello", 0.9, (100, 10, 200, 38))]
    assert ingest.ocr.lines_to_text([*lines, OcrLine("Next row", 0.9, (100, 60, 300, 88))]) == (
        "Hello world\nNext row"
    )


# --- OCR -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> Document:
    """Page 1 typed (a text layer), page 2 a scan of SCANNED (an image only), page 3 a blank grey image."""
    folder = tmp_path_factory.mktemp("mixed")
    pdf = FPDF(format=A6)
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    for line in TYPED:
        pdf.multi_cell(0, 7, line, new_x="LMARGIN", new_y="NEXT")
    add_image_page(pdf, scan(a6_text_page(folder / "memo.pdf", SCANNED)))
    add_image_page(pdf, Image.new("L", (400, 560), 200))
    pdf.output(str(folder / "mixed.pdf"))
    return parse(folder / "mixed.pdf", PDF)


def test_scanned_page_is_read_by_ocr_in_line_order(mixed):
    text = squash(mixed.pages[1].text)
    positions = [text.find(squash(line)) for line in SCANNED]
    assert -1 not in positions, mixed.pages[1].text
    assert positions == sorted(positions)


def test_only_pages_without_a_text_layer_are_ocred(mixed):
    assert [page.number for page in mixed.pages] == [1, 2]
    assert mixed.pages[0].text == "\n".join(TYPED)
    report = mixed.report
    assert report.ocr_pages == [2]
    assert report.parser == "pypdfium2+rapidocr"
    assert ingest.ocr.MIN_LINE_SCORE <= report.ocr_mean_score <= 1
    assert any("read by OCR" in warning for warning in report.warnings)


def test_blank_image_page_is_reported_not_silently_empty(mixed):
    assert mixed.report.dropped == [{"part": "page 3", "reason": "OCR found no text", "count": 1}]
    assert mixed.report.images_without_text == 1
    assert mixed.metadata["page_count"] == 3


def cjk_font() -> Path | None:
    spec = importlib.util.find_spec("cvttf_NotoSansCJK_Regular")  # Noto Sans CJK, a dev dependency
    return Path(spec.origin).parent / "NotoSansCJKtc-Regular.otf" if spec else None


@pytest.mark.skipif(cjk_font() is None, reason="no CJK font installed (cvttf-notosanscjk-regular)")
def test_scanned_chinese_page_is_read_by_ocr(tmp_path):
    pdf = FPDF()
    add_image_page(pdf, scan(a6_text_page(tmp_path / "cjk.pdf", CJK_SCANNED, font=cjk_font())))
    pdf.output(str(tmp_path / "scan.pdf"))
    document = parse(tmp_path / "scan.pdf", PDF)
    assert document.report.ocr_pages == [1]
    for line in CJK_SCANNED:
        assert squash(line) in squash(document.text), document.text


@pytest.fixture
def ocr_not_installed(monkeypatch):
    """The OCR package cannot be imported, and no engine was loaded before."""
    monkeypatch.setitem(sys.modules, ingest.ocr.PACKAGE, None)  # `import` raises ImportError
    monkeypatch.setattr(ingest.ocr, "_engine", None)
    monkeypatch.setattr(ingest.ocr, "_load_error", None)
    monkeypatch.setattr(ingest.ocr, "ocr_available", lambda: False)


def test_without_ocr_a_scanned_page_is_reported_not_a_crash(tmp_path, ocr_not_installed):
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.cell(0, 10, TYPED[0])
    add_image_page(pdf, Image.new("L", (100, 140), 255))
    pdf.output(str(tmp_path / "mixed.pdf"))
    report = ParseReport()
    pages, _ = read_pdf(tmp_path / "mixed.pdf", report)
    assert pages == [TYPED[0], ""]
    assert report.dropped == [
        {"part": "page 2", "reason": "no text layer, and OCR is not available", "count": 1}
    ]
    assert report.images_without_text == 1 and report.ocr_pages == []
    assert report.warnings == ["Pages that are images were not read: OCR is not available on this server."]
    with pytest.raises(ingest.ocr.OcrUnavailable, match="could not be loaded"):
        ingest.ocr.ocr_image(np.zeros((10, 10, 3), dtype=np.uint8))


def test_without_ocr_a_scan_only_pdf_says_so(tmp_path, ocr_not_installed):
    pdf = FPDF()
    add_image_page(pdf, Image.new("L", (100, 140), 255))
    pdf.output(str(tmp_path / "scan.pdf"))
    with pytest.raises(IngestError) as caught:
        parse(tmp_path / "scan.pdf", PDF)
    assert caught.value.code == "empty_file"
    assert "OCR" in caught.value.message and "not available" in caught.value.message


def test_ocr_engine_is_loaded_once_across_threads(monkeypatch):
    loads = []

    class SlowEngine:
        def __init__(self, **settings):
            loads.append(settings)
            time.sleep(0.2)  # long enough for every thread to be waiting on the loader

        def __call__(self, image):
            return [[[[1, 2], [30, 2], [30, 12], [1, 12]], " hello ", 0.97]], [0.0]

    monkeypatch.setitem(sys.modules, ingest.ocr.PACKAGE, types.SimpleNamespace(RapidOCR=SlowEngine))
    monkeypatch.setattr(ingest.ocr, "_engine", None)
    monkeypatch.setattr(ingest.ocr, "_load_error", None)
    image = np.full((20, 40, 3), 255, dtype=np.uint8)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: ingest.ocr.ocr_image(image), range(4)))
    assert len(loads) == 1 and loads[0]["use_cls"] is False
    assert results == [[OcrLine("hello", 0.97, (1, 2, 30, 12))]] * 4
