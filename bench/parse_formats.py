"""Parse throughput per format: ragtune's readers (`ingest.parse`) vs LangChain's document loaders.

Each format gets a generated document of realistic size, parsed `repeats` times on each side (best
time kept, the machines are noisy). Peers: PyPDFLoader (pypdf) for PDF, Docx2txtLoader (docx2txt) for
Word, BSHTMLLoader (BeautifulSoup get_text) for HTML, TextLoader for Markdown and text. ragtune does
more per file (reading order, tables as Markdown, furniture removal, encoding detection, clean-up), so
the ratio is the price of that fidelity, not a like-for-like race. OCR is measured on image-only pages
(pages/s); its peer is the OCR engine alone on the same rendered page images, so the ratio is the
overhead of rendering, ordering and reporting.
"""

from __future__ import annotations

import io
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

SENTENCES = [
    "The maintenance window for the billing cluster starts at 02:00 UTC on Sundays.",
    "Part P-{i:04d} costs {price:.2f} euros and ships from warehouse {w}.",
    "Employees submit travel claims within thirty days; approvals come from the line manager.",
    "员工每年享有二十八天带薪年假，报销必须在三十天内提交。",
]


def _paragraph(i: int) -> str:
    return " ".join(s.format(i=i, price=1 + i * 0.37, w=i % 7) for s in SENTENCES)


def make_pdf(path: Path, pages: int) -> Path:
    """A text PDF of `pages` A4 pages (Latin text: fpdf2's core fonts have no CJK)."""
    from fpdf import FPDF

    doc = FPDF()
    doc.set_font("helvetica", size=11)
    for p in range(pages):
        doc.add_page()
        for i in range(6):
            doc.multi_cell(0, 6, _paragraph(p * 6 + i).split("员工")[0])
            doc.ln(2)
    doc.output(str(path))
    return path


def make_scanned_pdf(path: Path, source: Path, pages: int, scale: float = 2.0) -> Path:
    """An image-only PDF: the first `pages` pages of `source` rendered at `scale` × 72 dpi and embedded
    as pictures, no text layer (what a scanner gives)."""
    import pypdfium2 as pdfium
    from fpdf import FPDF

    pdf = pdfium.PdfDocument(source)
    doc = FPDF()
    for n in range(pages):
        image = pdf[n].render(scale=scale).to_pil()
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        doc.add_page()
        doc.image(buffer, x=0, y=0, w=doc.w, h=doc.h)
    pdf.close()
    doc.output(str(path))
    return path


def make_docx(path: Path, paragraphs: int) -> Path:
    import docx

    document = docx.Document()
    for i in range(paragraphs):
        if i % 20 == 0:
            document.add_heading(f"Section {i // 20 + 1}", level=1)
        document.add_paragraph(_paragraph(i))
        if i % 50 == 49:
            table = document.add_table(rows=6, cols=3)
            for r in range(6):
                for c in range(3):
                    table.cell(r, c).text = "Part" if r == 0 and c == 0 else f"P-{i:04d}-{r}{c}"
    document.save(str(path))
    return path


def make_html(path: Path, paragraphs: int) -> Path:
    body = []
    for i in range(paragraphs):
        if i % 20 == 0:
            body.append(f"<h2>Section {i // 20 + 1}</h2>")
        body.append(f"<p>{_paragraph(i)}</p>")
    page = (
        "<html><head><title>Handbook</title><script>var tracking = 1;</script><style>p{}</style></head>"
        "<body><nav><a href='/'>Home</a> | <a href='/about'>About</a></nav><main>"
        + "".join(body)
        + "</main><footer>Copyright</footer></body></html>"
    )
    path.write_text(page, encoding="utf-8")
    return path


def make_text(path: Path, paragraphs: int, markdown: bool) -> Path:
    blocks = []
    for i in range(paragraphs):
        if markdown and i % 20 == 0:
            blocks.append(f"## Section {i // 20 + 1}")
        blocks.append(_paragraph(i))
    path.write_text("\n\n".join(blocks), encoding="utf-8")
    return path


def _best(fn: Callable[[], Any], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def run(workdir: Path, repeats: int = 3, ocr_pages: int = 3) -> dict[str, Any]:
    """Seconds per file on both sides for each format, with MB/s and pages/s; OCR pages/s."""
    from langchain_community.document_loaders import (
        BSHTMLLoader,
        Docx2txtLoader,
        PyPDFLoader,
        TextLoader,
    )

    from ingest import detect_file, parse

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    pdf = make_pdf(workdir / "handbook.pdf", 40)
    files = {
        "pdf": (pdf, lambda p: PyPDFLoader(str(p)).load(), 40),
        "docx": (make_docx(workdir / "handbook.docx", 400), lambda p: Docx2txtLoader(str(p)).load(), None),
        "html": (
            make_html(workdir / "handbook.html", 400),
            lambda p: BSHTMLLoader(str(p), open_encoding="utf-8").load(),
            None,
        ),
        "md": (make_text(workdir / "handbook.md", 400, True), lambda p: TextLoader(str(p)).load(), None),
        "txt": (make_text(workdir / "handbook.txt", 400, False), lambda p: TextLoader(str(p)).load(), None),
    }
    results: dict[str, Any] = {}
    for name, (path, peer, pages) in files.items():
        mime = detect_file(path, path.name)
        ours = _best(lambda path=path, mime=mime: parse(path, mime), repeats)
        theirs = _best(lambda path=path, peer=peer: peer(path), repeats)
        megabytes = path.stat().st_size / 2**20
        results[name] = {
            "bytes": path.stat().st_size,
            "pages": pages,
            "ragtune_s": ours,
            "peer_s": theirs,
            "ragtune_mb_per_s": megabytes / ours,
            "peer_mb_per_s": megabytes / theirs,
            "ragtune_pages_per_s": pages / ours if pages else None,
            "ratio_ragtune_over_peer": theirs / ours,  # > 1: ragtune faster
        }
    results["ocr"] = _ocr(workdir, pdf, ocr_pages)
    return results


def _ocr(workdir: Path, source: Path, pages: int) -> dict[str, Any]:
    """OCR pages/s through `parse` on an image-only PDF, and the OCR engine alone on the same images."""
    try:
        from ingest import ocr
    except ImportError as error:  # OCR not installed: say so in the report rather than fail the bench
        return {"error": f"OCR unavailable: {error}"}
    import numpy as np
    import pypdfium2 as pdfium

    from ingest import detect_file, parse

    scanned = make_scanned_pdf(workdir / "scanned.pdf", source, pages)
    engine_call = getattr(ocr, "ocr_image", None)
    images = []
    document = pdfium.PdfDocument(scanned)
    for n in range(pages):
        images.append(
            np.asarray(document[n].render(scale=getattr(ocr, "RENDER_SCALE", 2.0)).to_pil().convert("RGB"))
        )
    document.close()
    if engine_call is not None:
        engine_call(images[0])  # load the models before timing
    start = time.perf_counter()
    parsed = parse(scanned, detect_file(scanned, scanned.name))
    ours = time.perf_counter() - start
    result: dict[str, Any] = {
        "pages": pages,
        "ocr_pages": parsed.report.ocr_pages,
        "mean_score": parsed.report.ocr_mean_score,
        "ragtune_pages_per_s": pages / ours,
        "words_found": sum(w in parsed.text for w in ("maintenance", "warehouse", "Employees")),
    }
    if engine_call is not None:
        start = time.perf_counter()
        for image in images:
            engine_call(image)
        engine = time.perf_counter() - start
        result["engine_only_pages_per_s"] = pages / engine
        result["ratio_ragtune_over_engine"] = engine / ours
    return result
