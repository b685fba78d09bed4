"""DOCX as Markdown: everything Word shows, once, in reading order, after a check against zip bombs.

python-docx opens the package (parts, relationships, core properties); the text comes from our walk
over the WordprocessingML of the body, headers, footers and notes, because none of the extractors we
tried gets all of it right (test documents built for each feature; ✓ right, ✗ wrong or missing):

| feature                              | docx2python 3.7 | mammoth 1.13 | markitdown 0.1.9 | pandoc 3.9     |
| ------------------------------------ | --------------- | ------------ | ---------------- | -------------- |
| text box once, after its paragraph   | ✗ twice, before | ✓            | ✓                | ✗ loses anchor |
| content controls (w:sdt)             | ✓               | ✓            | ✓                | ✓              |
| merged cells once                    | ✓               | ✓ (HTML)     | ✗ row shifted    | ✓ (HTML)       |
| nested tables                        | ✓ flattened     | ✓ (HTML)     | ✗ garbled        | ✓ (HTML)       |
| headers and footers, once            | ✗ per section   | ✗ none       | ✗ none           | ✗ none         |
| foot- and endnotes                   | ✓               | ✓            | ✓                | ✓              |
| list labels as shown ("a)", "2.1.")  | ✗ always "n)"   | ✗ none       | ✗ "1." for all   | ✗ no "%1.%2."  |
| tracked changes (del out, ins in)    | ✓               | ✓            | ✓                | ✓              |
| headings as Markdown                 | ✓ (html=True)   | ✓ (HTML)     | ✓                | ✓              |

Layout of the Markdown: distinct header texts first, then the body, then the endnotes, then distinct
footer texts. Headings ("Title", "heading N" or an outline level) become `#` lines; list paragraphs start
with Word's label ("3.", "a)", "2.1."; "-" for bullets); a text box's content follows the paragraph it
is anchored in (the w:drawing choice of mc:AlternateContent, never its VML fallback too). Tables are pipe
tables with a `| --- |` line after the first row; a merged cell's text is in its first grid cell only;
a table nested in a cell follows the outer table as its own pipe table; a one-cell table is a frame, read
as plain blocks. Note references read `[^1]` (footnotes) / `[^i]` (endnotes, Word's default formats
unless settings.xml says otherwise); a footnote's text follows the top-level block citing it
(`[^1]: text`); endnotes come after the body. Tracked changes read as accepted (deleted and moved-away
text left out). Left out and counted in the ParseReport: hidden text (w:vanish), placeholder text of empty
content controls, images (no OCR), charts, SmartArt, embedded objects and documents, comments.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import docx
from docx.opc.constants import RELATIONSHIP_TYPE as RT
from docx.oxml import parse_xml
from docx.oxml.ns import qn
from lxml import etree

from .docx_numbering import Numbering, Styles, format_number, is_on
from .types import IngestError, ParseReport

MAX_UNCOMPRESSED_BYTES = 200 * 1024 * 1024
MAX_MEMBERS = 10_000
MAX_RATIO = 100
# Small members compress far beyond 100:1 legitimately (XML of repeated styles); only big ones matter.
RATIO_CHECK_MIN_BYTES = 10 * 1024 * 1024

_MC = "{http://schemas.openxmlformats.org/markup-compatibility/2006}"
_MATH_TEXT = "{http://schemas.openxmlformats.org/officeDocument/2006/math}t"
_BLIP = "{http://schemas.openxmlformats.org/drawingml/2006/main}blip"
_VML_IMAGE = "{urn:schemas-microsoft-com:vml}imagedata"
_CHART = "{http://schemas.openxmlformats.org/drawingml/2006/chart}chart"
_DIAGRAM = "{http://schemas.openxmlformats.org/drawingml/2006/diagram}relIds"
_TEXT = {qn("w:t"), _MATH_TEXT}
_BREAKS = {qn("w:br"), qn("w:cr")}
_TABS = {qn("w:tab"), qn("w:ptab")}
# Subtrees that hold no shown text: properties, deleted or moved-away runs, field codes, ruby annotations.
_SKIP = {
    qn(tag)
    for tag in ("w:pPr", "w:rPr", "w:sdtPr", "w:sdtEndPr", "w:del", "w:moveFrom", "w:instrText", "w:rt")
}
_NOTE_REFERENCES = {qn("w:footnoteReference"): "footnote", qn("w:endnoteReference"): "endnote"}
_HEADING = re.compile(r"heading ([1-9])")
_CELL_MERGED = ("w:vMerge", "w:hMerge")  # a "continue" cell of either shows nothing of its own

Block = tuple[str, str]  # ("text" | "table", Markdown)


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
    """The document as Markdown (layout in the module docstring), and its title (core properties, else
    the first top-level heading of the body); `report` (when given) records what was read and left out.

    Raises IngestError("unsafe_file") for a zip bomb; python-docx's errors for a file that is no DOCX."""
    report = report if report is not None else ParseReport()
    report.parser = "python-docx"
    check_zip(path)
    document = docx.Document(str(path))
    return _Reader(document, report).read(_core_title(document))


class _Reader:
    """One walk over one document; counts list numbers and note marks in reading order."""

    def __init__(self, document: docx.document.Document, report: ParseReport) -> None:
        self._part = document.part
        self._body = document.element.body
        self._report = report
        self._styles = Styles(self._related(RT.STYLES))
        self._numbering = Numbering(self._related(RT.NUMBERING), self._styles)
        self._settings = document.settings.element
        self._notes = {
            "footnote": self._notes_by_id(RT.FOOTNOTES, "footnote"),
            "endnote": self._notes_by_id(RT.ENDNOTES, "endnote"),
        }
        self._marks: dict[tuple[str, str], str] = {}  # (kind, w:id) -> the mark shown, "1" or "i"
        self._note_counts = {"footnote": 0, "endnote": 0}
        self._footnotes: list[Block] = []  # cited by the top-level block being read
        self._endnotes: list[Block] = []

    def read(self, title: str | None) -> tuple[str, str | None]:
        body: list[Block] = []
        for child in self._body:
            body += self._block(child)
            body += self._footnotes
            self._footnotes = []
        body += self._endnotes
        headers, footers = self._headers_footers()
        if title is None:
            title = next((md[2:] for kind, md in body if kind == "text" and md.startswith("# ")), None)
        self._report_left_out()
        return "\n\n".join(md for _, md in headers + body + footers), title

    # --- blocks ---------------------------------------------------------------------------------

    def _blocks(self, container: etree._Element, plain: bool = False) -> list[Block]:
        """The blocks of a body, cell, text box, header or note; `plain`: no heading marks (in cells)."""
        return [block for child in container for block in self._block(child, plain)]

    def _block(self, element: etree._Element, plain: bool = False) -> list[Block]:
        tag = element.tag
        if tag == qn("w:p"):
            return self._paragraph(element, plain)
        if tag == qn("w:tbl"):
            return self._table(element)
        if tag == qn("w:sdt"):
            content = element.find(qn("w:sdtContent"))
            if content is None or self._is_placeholder(element):
                return []
            return self._blocks(content, plain)
        if tag in (qn("w:customXml"), qn("w:ins"), qn("w:moveTo")):
            return self._blocks(element, plain)
        if tag == f"{_MC}AlternateContent":
            choice = _choice(element)
            return self._blocks(choice, plain) if choice is not None else []
        if tag == qn("w:altChunk"):
            self._report.drop("embedded document", "documents embedded as w:altChunk are not read")
        return []

    def _paragraph(self, paragraph: etree._Element, plain: bool) -> list[Block]:
        parts: list[str] = []
        boxes: list[etree._Element] = []
        self._collect(paragraph, parts, boxes)
        text = "".join(parts).strip()
        style_id = self._styles.of(paragraph)
        mark_deleted = paragraph.find(f"{qn('w:pPr')}/{qn('w:rPr')}/{qn('w:del')}") is not None
        label = None if mark_deleted else self._numbering.label(paragraph, style_id)
        blocks: list[Block] = []
        if text:
            text = f"{label} {text}" if label else text
            level = 0 if plain else self._heading_level(paragraph, style_id)
            if plain or level:
                text = " ".join(text.split())  # a heading or a table cell stays on one line
            blocks.append(("text", "#" * level + " " + text if level else text))
        for box in boxes:
            blocks += self._blocks(box, plain)
        return blocks

    def _heading_level(self, paragraph: etree._Element, style_id: str | None) -> int:
        name = self._styles.name(style_id)
        if name == "title":
            return 1
        if match := _HEADING.fullmatch(name):
            return min(int(match.group(1)), 6)
        outline = paragraph.find(f"{qn('w:pPr')}/{qn('w:outlineLvl')}")
        if outline is None:
            outline = self._styles.find(style_id, "w:pPr/w:outlineLvl")
        value = outline.get(qn("w:val"), "") if outline is not None else ""
        return min(int(value) + 1, 6) if value.isdigit() and int(value) < 9 else 0  # 9: body text

    def _collect(self, element: etree._Element, parts: list[str], boxes: list[etree._Element]) -> None:
        """Append the shown text below `element` to `parts` and its text boxes (w:txbxContent) to `boxes`."""
        for child in element:
            tag = child.tag
            if not isinstance(tag, str) or tag in _SKIP:  # comments and processing instructions
                continue
            if tag in _TEXT:
                parts.append(child.text or "")
            elif tag in _TABS:
                parts.append("\t")
            elif tag in _BREAKS:
                parts.append("\n")
            elif tag == qn("w:noBreakHyphen"):
                parts.append("-")
            elif tag in _NOTE_REFERENCES:
                parts.append(self._note_mark(_NOTE_REFERENCES[tag], child))
            elif tag == qn("w:txbxContent"):
                boxes.append(child)
            elif tag == f"{_MC}AlternateContent":
                if (choice := _choice(child)) is not None:
                    self._collect(choice, parts, boxes)
            elif tag in (_BLIP, _VML_IMAGE):
                self._report.images_without_text += 1
            elif tag == _CHART:
                self._report.drop("chart", "chart data is not read")
            elif tag == _DIAGRAM:
                self._report.drop("SmartArt diagram", "diagram text is not read")
            elif tag == qn("w:object"):
                self._report.drop("embedded object", "embedded (OLE) objects are not read")
            elif tag == qn("w:r") and is_on(child.find(f"{qn('w:rPr')}/{qn('w:vanish')}")):
                self._report.drop("hidden text", "text formatted as hidden is not shown by Word")
            elif tag == qn("w:sdt") and self._is_placeholder(child):
                continue
            else:
                self._collect(child, parts, boxes)

    def _is_placeholder(self, sdt: etree._Element) -> bool:
        """Whether a content control shows its placeholder ("Click or tap here to enter text.")."""
        if sdt.find(f"{qn('w:sdtPr')}/{qn('w:showingPlcHdr')}") is None:
            return False
        self._report.drop("content control placeholder", "placeholder text of an empty form field")
        return True

    # --- notes ----------------------------------------------------------------------------------

    def _note_mark(self, kind: str, reference: etree._Element) -> str:
        """The mark of a foot- or endnote reference, `[^1]`; the note's text is queued on first sight."""
        key = (kind, reference.get(qn("w:id"), ""))
        if key not in self._marks:
            self._note_counts[kind] += 1
            number = self._note_counts[kind]
            self._marks[key] = format_number(number, self._note_format(kind)) or str(number)
            note = self._notes[kind].get(key[1])
            text = " ".join(md for _, md in self._blocks(note, plain=True)) if note is not None else ""
            if text:
                queue = self._footnotes if kind == "footnote" else self._endnotes
                queue.append(("text", f"[^{self._marks[key]}]: {text}"))
        return f"[^{self._marks[key]}]"

    def _note_format(self, kind: str) -> str:
        """The w:numFmt of note marks: settings.xml's, else Word's default (1, 2 / i, ii)."""
        fmt = self._settings.find(f"{qn(f'w:{kind}Pr')}/{qn('w:numFmt')}")
        value = fmt.get(qn("w:val"), "") if fmt is not None else ""
        return value or ("decimal" if kind == "footnote" else "lowerRoman")

    # --- tables ---------------------------------------------------------------------------------

    def _table(self, table: etree._Element) -> list[Block]:
        """The table as a pipe table, then the tables nested in its cells; a one-cell table as blocks."""
        rows = [
            (row, list(_children(row, qn("w:tc"))))
            for row in _children(table, qn("w:tr"))
            if row.find(f"{qn('w:trPr')}/{qn('w:del')}") is None  # a deleted tracked row
        ]
        all_cells = [cell for _, cells in rows for cell in cells]
        if len(all_cells) == 1:
            return self._blocks(all_cells[0])
        columns = len(table.findall(f"{qn('w:tblGrid')}/{qn('w:gridCol')}"))
        grid: list[list[str]] = []
        nested: list[Block] = []
        for row, cells in rows:
            line = [""] * _int_val(row.find(f"{qn('w:trPr')}/{qn('w:gridBefore')}"), 0, columns)
            for cell in cells:
                text = ""
                if not _continues_merge(cell):
                    blocks = self._blocks(cell, plain=True)
                    text = " ".join(md for kind, md in blocks if kind == "text")
                    nested += [block for block in blocks if block[0] == "table"]
                span = _int_val(cell.find(f"{qn('w:tcPr')}/{qn('w:gridSpan')}"), 1, columns)
                line += [_cell(text)] + [""] * (span - 1)
            grid.append(line)
        pipe = _pipe_table(grid)
        if pipe:
            self._report.tables += 1
        return ([("table", pipe)] if pipe else []) + nested

    # --- headers and footers --------------------------------------------------------------------

    def _headers_footers(self) -> tuple[list[Block], list[Block]]:
        """Each distinct header and footer text once, over all sections, as Word would show them."""
        even_pages = is_on(self._settings.find(qn("w:evenAndOddHeaders")))
        headers: list[Block] = []
        footers: list[Block] = []
        seen: set[str] = set()
        for section in self._body.iter(qn("w:sectPr")):
            if section.getparent().tag not in (qn("w:body"), qn("w:pPr")):
                continue  # the section's properties before a tracked change
            first_page = is_on(section.find(qn("w:titlePg")))
            for reference in section.iterchildren(qn("w:headerReference"), qn("w:footerReference")):
                kind = reference.get(qn("w:type"), "default")
                if (kind == "first" and not first_page) or (kind == "even" and not even_pages):
                    continue  # a part Word keeps but does not show
                part = self._part.related_parts.get(reference.get(qn("r:id"), ""))
                if part is None:
                    continue
                blocks = self._blocks(_element(part))
                text = "\n\n".join(md for _, md in blocks)
                if text and text not in seen:
                    seen.add(text)
                    (headers if reference.tag == qn("w:headerReference") else footers).extend(blocks)
        return headers, footers

    # --- helpers --------------------------------------------------------------------------------

    def _related(self, reltype: str) -> etree._Element | None:
        for rel in self._part.rels.values():
            if rel.reltype == reltype and not rel.is_external:
                return _element(rel.target_part)
        return None

    def _notes_by_id(self, reltype: str, kind: str) -> dict[str, etree._Element]:
        notes = self._related(reltype)
        children = notes.iterchildren(qn(f"w:{kind}")) if notes is not None else []
        return {note.get(qn("w:id"), ""): note for note in children}

    def _report_left_out(self) -> None:
        comments = self._related(RT.COMMENTS)
        if comments is not None and (count := len(comments.findall(qn("w:comment")))):
            self._report.drop("comment", "review comments are not indexed", count)
        for fmt in sorted(self._numbering.unknown_formats):
            self._report.warn(f"List numbers in the Word format '{fmt}' are shown as decimal numbers.")


def _core_title(document: docx.document.Document) -> str | None:
    # python-docx invents core properties titled "Word Document" for a package without them.
    package_rels = document.part.package.rels.values()
    if not any(rel.reltype == RT.CORE_PROPERTIES for rel in package_rels):
        return None
    return document.core_properties.title or None


def _element(part: docx.opc.part.Part) -> etree._Element:
    """A part's XML root: python-docx parses the parts it knows; the others (notes, comments) from bytes."""
    element = getattr(part, "element", None)
    return element if element is not None else parse_xml(part.blob)


def _choice(alternate: etree._Element) -> etree._Element | None:
    """The content of mc:AlternateContent Word shows: its first mc:Choice, else its mc:Fallback."""
    choice = alternate.find(f"{_MC}Choice")
    return choice if choice is not None else alternate.find(f"{_MC}Fallback")


def _children(parent: etree._Element, tag: str) -> Iterator[etree._Element]:
    """Children with `tag`, also those wrapped in content controls or custom XML (rows, cells)."""
    for child in parent:
        if child.tag == tag:
            yield child
        elif child.tag == qn("w:sdt"):
            if (content := child.find(qn("w:sdtContent"))) is not None:
                yield from _children(content, tag)
        elif child.tag == qn("w:customXml"):
            yield from _children(child, tag)


def _continues_merge(cell: etree._Element) -> bool:
    for name in _CELL_MERGED:
        merge = cell.find(f"{qn('w:tcPr')}/{qn(name)}")
        if merge is not None and merge.get(qn("w:val"), "continue") == "continue":
            return True
    return False


def _int_val(element: etree._Element | None, default: int, most: int) -> int:
    """A w:val count (gridSpan, gridBefore), at most the table's column count (a corrupt span is no
    reason to build a row of a million cells)."""
    value = element.get(qn("w:val"), "") if element is not None else ""
    return min(int(value), max(most, 1)) if value.isdigit() else default


def _pipe_table(grid: list[list[str]]) -> str:
    rows = [row for row in grid if any(row)]
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
