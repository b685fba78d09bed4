"""Real documents of every supported type, written by the libraries a user's tools would use."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path


def pdf(path: Path, pages: list[str], header: str = "ACME Corp - internal handbook") -> Path:
    from fpdf import FPDF

    doc = FPDF()
    doc.set_font("helvetica", size=12)
    for text in pages:
        doc.add_page()
        doc.cell(0, 10, header, new_x="LMARGIN", new_y="NEXT")
        doc.multi_cell(0, 8, text)
    doc.output(str(path))
    return path


def encrypted_pdf(path: Path) -> Path:
    from pypdf import PdfReader, PdfWriter

    plain = pdf(path.with_name("plain-" + path.name), ["Secret numbers: 1 2 3."])
    writer = PdfWriter()
    for page in PdfReader(plain).pages:
        writer.add_page(page)
    writer.encrypt("hunter2")
    with open(path, "wb") as f:
        writer.write(f)
    return path


def docx(path: Path, heading: str, paragraphs: list[str], table: list[list[str]] | None = None) -> Path:
    import docx as python_docx

    doc = python_docx.Document()
    doc.add_heading(heading, level=1)
    for text in paragraphs:
        doc.add_paragraph(text)
    if table:
        grid = doc.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, value in enumerate(row):
                grid.cell(r, c).text = value
    doc.save(str(path))
    return path


def docx_bomb(path: Path, megabytes: int = 300) -> Path:
    """A .docx whose document.xml inflates to hundreds of MB (a zip bomb)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        with z.open("word/document.xml", "w", force_zip64=True) as member:
            block = b" " * (1 << 20)
            for _ in range(megabytes):
                member.write(block)
    return path


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def corpus(folder: Path) -> dict[str, Path]:
    """One document of each type, each holding one distinctive fact."""
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "pdf": pdf(
            folder / "handbook.pdf",
            [
                "Welcome to ACME. Our offices open at nine in the morning.",
                "Travel policy: employees may book economy class flights for trips under six hours.",
                "The Zorblax warehouse access code is 7431. Do not share it outside the logistics team.",
            ],
        ),
        "docx": docx(
            folder / "benefits.docx",
            "Employee benefits",
            [
                "Every employee receives twenty-eight days of paid holiday per year.",
                "Dental insurance is provided by Molarcare.",
            ],
            [["Plan", "Monthly cost"], ["Gym membership", "35 euros"]],
        ),
        "html": write(
            folder / "it.html",
            """<html><head><title>IT help</title><script>var x = 1;</script></head>
<body><nav>Home | About</nav><main><h1>IT help desk</h1>
<p>To reset your password, call the help desk at extension 4455.</p>
<table><tr><th>System</th><th>Owner</th></tr><tr><td>Payroll</td><td>Finance</td></tr></table>
</main><footer>Copyright ACME</footer></body></html>""",
        ),
        "md": write(
            folder / "security.md",
            "# Security\n\n## Badges\n\nVisitors must wear a red badge at all "
            "times.\n\n## Laptops\n\nLaptops must be encrypted with BitLocker before travel.\n",
        ),
        "txt_zh": write(
            folder / "规章.txt",
            "公司规章制度。员工每年享有二十八天带薪年假。报销必须在三十天内提交。午餐补贴为每天五十元。",
            "gb18030",
        ),
        "csv": write(
            folder / "contacts.csv",
            "name,role,phone\nAda Lovelace,CTO,555-0101\nAlan Turing,Head of Research,555-0199\n",
        ),
        "json": write(
            folder / "products.json",
            json.dumps(
                [
                    {"sku": "QX-9", "name": "Quantum toaster", "price": 249},
                    {"sku": "LM-2", "name": "Lunar mixer", "price": 89},
                ]
            ),
        ),
    }
