"""ingest/read_docx.py: everything Word shows is in the text, once, in reading order (text boxes, content
controls, nested and merged tables, headers and footers, notes, list numbers as shown, tracked changes)."""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import docx
import pytest
from docx.enum.style import WD_STYLE_TYPE
from docx.oxml import parse_xml
from docx.oxml.ns import qn
from PIL import Image

from ingest import Document, parse
from ingest.detect import DOCX
from ingest.docx_numbering import format_number

CASES = Path(__file__).resolve().parents[2] / "shared" / "cases" / "kb-ft"
W = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'
NS = (
    f'{W} xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"'
    ' xmlns:mc="http://schemas.openxmlformats.org/markup-compatibility/2006"'
    ' xmlns:wp="http://schemas.openxmlformats.org/drawingml/2006/wordprocessingDrawing"'
    ' xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main"'
    ' xmlns:wps="http://schemas.microsoft.com/office/word/2010/wordprocessingShape"'
    ' xmlns:v="urn:schemas-microsoft-com:vml"'
)
XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
NOTES_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.{kind}s+xml"
NOTES_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/{kind}s"


# --- building documents -------------------------------------------------------------------------


def run(text: str) -> str:
    return f'<w:r><w:t xml:space="preserve">{text}</w:t></w:r>'


def para(*content: str, style: str = "") -> str:
    props = f'<w:pPr><w:pStyle w:val="{style}"/></w:pPr>' if style else ""
    return f"<w:p>{props}{''.join(content)}</w:p>"


def item(text: str, num_id: int, level: int = 0) -> str:
    props = f'<w:pPr><w:numPr><w:ilvl w:val="{level}"/><w:numId w:val="{num_id}"/></w:numPr></w:pPr>'
    return f"<w:p>{props}{run(text) if text else ''}</w:p>"


def cell(*content: str, props: str = "") -> str:
    return f"<w:tc><w:tcPr>{props}</w:tcPr>{''.join(content) or '<w:p/>'}</w:tc>"


def table(*rows: str, columns: int) -> str:
    grid = '<w:gridCol w:w="2000"/>' * columns
    return f"<w:tbl><w:tblGrid>{grid}</w:tblGrid>{''.join(rows)}</w:tbl>"


def row(*cells: str, props: str = "") -> str:
    return f"<w:tr><w:trPr>{props}</w:trPr>{''.join(cells)}</w:tr>"


def texts(*values: str) -> list[str]:
    return [cell(para(run(value))) for value in values]


def level(ilvl: int, fmt: str, text: str, start: int = 1) -> str:
    return (
        f'<w:lvl w:ilvl="{ilvl}"><w:start w:val="{start}"/><w:numFmt w:val="{fmt}"/>'
        f'<w:lvlText w:val="{text}"/></w:lvl>'
    )


def abstract(abstract_id: int, *levels: str) -> str:
    return f'<w:abstractNum w:abstractNumId="{abstract_id}">{"".join(levels)}</w:abstractNum>'


def num(num_id: int, abstract_id: int, restart_at: int | None = None) -> str:
    override = (
        f'<w:lvlOverride w:ilvl="0"><w:startOverride w:val="{restart_at}"/></w:lvlOverride>'
        if restart_at is not None
        else ""
    )
    return f'<w:num w:numId="{num_id}"><w:abstractNumId w:val="{abstract_id}"/>{override}</w:num>'


def notes_part(kind: str, notes: dict[int, str]) -> str:
    separators = (
        f'<w:{kind} w:type="separator" w:id="-1"><w:p><w:r><w:separator/></w:r></w:p></w:{kind}>'
        f'<w:{kind} w:type="continuationSeparator" w:id="0"><w:p><w:r><w:continuationSeparator/></w:r>'
        f"</w:p></w:{kind}>"
    )
    bodies = "".join(
        f'<w:{kind} w:id="{note_id}"><w:p><w:r><w:{kind}Ref/></w:r>{run(" " + text)}</w:p></w:{kind}>'
        for note_id, text in notes.items()
    )
    return f"{XML_DECLARATION}<w:{kind}s {NS}>{separators}{bodies}</w:{kind}s>"


def make_docx(
    path: Path,
    body: str = "",
    *,
    numbering: str = "",
    notes: dict[str, dict[int, str]] | None = None,
    edit: Callable[[docx.document.Document], None] | None = None,
) -> Path:
    """A DOCX: python-docx's default document, changed by `edit`, then the WordprocessingML `body` appended
    to its body, `numbering` (w:abstractNum and w:num elements) added to numbering.xml, and `notes` parts
    ({"footnote": {id: text}, "endnote": ...}) written into the package."""
    document = docx.Document()
    if edit is not None:
        edit(document)
    final_section = document.element.body[-1]
    for element in parse_xml(f"<w:body {NS}>{body}</w:body>"):
        final_section.addprevious(element)
    definitions = document.part.numbering_part.element
    first_num = definitions.find(qn("w:num"))
    for element in parse_xml(f"<w:numbering {NS}>{numbering}</w:numbering>"):
        if element.tag == qn("w:abstractNum"):
            first_num.addprevious(element)
        else:
            definitions.append(element)
    buffer = io.BytesIO()
    document.save(buffer)
    add_notes(buffer, path, notes or {})
    return path


def add_notes(package: io.BytesIO, path: Path, notes: dict[str, dict[int, str]]) -> None:
    """Write `package` to `path` with a notes part per kind (python-docx writes none), registered in the
    content types and the document's relationships."""
    types = rels = ""
    for kind in notes:
        types += f'<Override PartName="/word/{kind}s.xml" ContentType="{NOTES_TYPE.format(kind=kind)}"/>'
        rels += f'<Relationship Id="rId{kind}" Type="{NOTES_REL.format(kind=kind)}" Target="{kind}s.xml"/>'
    insert = {
        "[Content_Types].xml": ("</Types>", types),
        "word/_rels/document.xml.rels": ("</Relationships>", rels),
    }
    with zipfile.ZipFile(package) as source, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for member in source.infolist():
            data = source.read(member.filename)
            if member.filename in insert:
                end, added = insert[member.filename]
                data = data.replace(end.encode(), (added + end).encode())
            target.writestr(member, data)
        for kind, texts_by_id in notes.items():
            target.writestr(f"word/{kind}s.xml", notes_part(kind, texts_by_id))


def read(path: Path) -> Document:
    return parse(path, DOCX)


# --- what must be in the text -------------------------------------------------------------------

TEXT_BOX = (
    run("See the box. ") + '<w:r><mc:AlternateContent><mc:Choice Requires="wps"><w:drawing><wp:anchor>'
    '<wp:docPr id="1" name="Text Box 1"/><a:graphic><a:graphicData><wps:wsp><wps:txbx><w:txbxContent>'
    f"{para(run('Assembly point is bay C.'))}</w:txbxContent></wps:txbx></wps:wsp></a:graphicData>"
    "</a:graphic></wp:anchor></w:drawing></mc:Choice><mc:Fallback><w:pict><v:shape><v:textbox>"
    f"<w:txbxContent>{para(run('Assembly point is bay C.'))}</w:txbxContent></v:textbox></v:shape></w:pict>"
    "</mc:Fallback></mc:AlternateContent></w:r>" + run(" After the box.")
)
LEGACY_TEXT_BOX = (
    f"<w:r><w:pict><v:shape><v:textbox><w:txbxContent>{para(run('Legacy box text.'))}</w:txbxContent>"
    "</v:textbox></v:shape></w:pict></w:r>"
)


def test_text_box_is_read_once_after_its_paragraph(tmp_path):
    body = para(TEXT_BOX) + para(LEGACY_TEXT_BOX) + para(run("Next paragraph."))
    document = read(make_docx(tmp_path / "box.docx", body))
    assert document.text == (
        "See the box. After the box.\n\nAssembly point is bay C.\n\nLegacy box text.\n\nNext paragraph."
    )


def test_content_controls_block_inline_and_around_rows_are_read(tmp_path):
    placeholder = (
        "<w:sdt><w:sdtPr><w:showingPlcHdr/></w:sdtPr><w:sdtContent>"
        f"{para(run('Click or tap here to enter text.'))}</w:sdtContent></w:sdt>"
    )
    body = (
        f"<w:sdt><w:sdtPr/><w:sdtContent>{para(run('Block control text.'))}</w:sdtContent></w:sdt>"
        + para(
            run("Owner: "),
            f"<w:sdt><w:sdtPr/><w:sdtContent>{run('Jane Doe')}</w:sdtContent></w:sdt>",
            run("."),
        )
        + placeholder
        + table(
            row(*texts("Item", "Qty")),
            f"<w:sdt><w:sdtPr/><w:sdtContent>{row(*texts('Bolt', '4'))}</w:sdtContent></w:sdt>",
            columns=2,
        )
    )
    document = read(make_docx(tmp_path / "sdt.docx", body))
    assert (
        document.text
        == "Block control text.\n\nOwner: Jane Doe.\n\n| Item | Qty |\n| --- | --- |\n| Bolt | 4 |"
    )
    assert document.report.dropped == [
        {
            "part": "content control placeholder",
            "reason": "placeholder text of an empty form field",
            "count": 1,
        }
    ]


def test_merged_cells_are_read_once_and_a_nested_table_follows_its_table(tmp_path):
    nested = table(row(*texts("Tool", "Size")), row(*texts("Wrench", "13 mm")), columns=2)
    body = table(
        row(cell(para(run("Plan")), props='<w:gridSpan w:val="3"/>')),
        row(*texts("Region", "Q1", "Q2")),
        row(cell(para(run("North")), props='<w:vMerge w:val="restart"/>'), *texts("410", "455")),
        row(cell(props="<w:vMerge/>"), *texts("390", "402")),
        row(*texts("South"), cell(para(run("Kit:")), nested, "<w:p/>", props='<w:gridSpan w:val="2"/>')),
        columns=3,
    )
    document = read(make_docx(tmp_path / "merged.docx", body + para(run("After."))))
    assert document.text.split("\n") == [
        "| Plan | | |",  # clean() folds the empty cells' double spaces
        "| --- | --- | --- |",
        "| Region | Q1 | Q2 |",
        "| North | 410 | 455 |",
        "| | 390 | 402 |",
        "| South | Kit: | |",
        "",
        "| Tool | Size |",
        "| --- | --- |",
        "| Wrench | 13 mm |",
        "",
        "After.",
    ]
    assert document.report.tables == 2


def test_a_one_cell_table_is_a_frame_read_as_blocks(tmp_path):
    body = table(
        row(cell(para(run("Notice"), style="Heading2"), para(run("Doors lock at 22:00.")))), columns=1
    )
    document = read(make_docx(tmp_path / "frame.docx", body))
    assert document.text == "## Notice\n\nDoors lock at 22:00."
    assert document.report.tables == 0


def test_headers_and_footers_are_read_once_across_sections(tmp_path):
    def edit(document: docx.document.Document) -> None:
        first = document.sections[0]
        first.header.paragraphs[0].text = "ACME handbook"
        first.footer.paragraphs[0].text = "Footer one"
        first.different_first_page_header_footer = True
        first.first_page_header.paragraphs[0].text = "Cover page header"
        first.even_page_header.paragraphs[0].text = "Even pages only"  # no evenAndOddHeaders: not shown
        document.add_paragraph("Body one.")
        second = document.add_section()
        second.different_first_page_header_footer = False
        second.first_page_header.is_linked_to_previous = False
        second.first_page_header.paragraphs[0].text = "Unused first-page header"  # titlePg off: not shown
        second.header.is_linked_to_previous = False
        second.header.paragraphs[0].text = "ACME handbook"  # a second part with the same text
        second.footer.is_linked_to_previous = False
        second.footer.paragraphs[0].text = "Footer two"
        document.add_paragraph("Body two.")

    document = read(make_docx(tmp_path / "sections.docx", edit=edit))
    assert document.text == (
        "ACME handbook\n\nCover page header\n\nBody one.\n\nBody two.\n\nFooter one\n\nFooter two"
    )


def test_even_page_headers_are_read_when_the_document_uses_them(tmp_path):
    def edit(document: docx.document.Document) -> None:
        document.settings.odd_and_even_pages_header_footer = True
        document.sections[0].header.paragraphs[0].text = "Odd pages"
        document.sections[0].even_page_header.paragraphs[0].text = "Even pages"
        document.add_paragraph("Body.")

    assert read(make_docx(tmp_path / "even.docx", edit=edit)).text == "Odd pages\n\nEven pages\n\nBody."


def test_footnotes_follow_their_block_and_endnotes_close_the_body(tmp_path):
    body = (
        para(run("Wear gloves"), '<w:r><w:footnoteReference w:id="1"/></w:r>', run(" and goggles"))
        + para(run("Goggles"), '<w:r><w:endnoteReference w:id="1"/></w:r>', run(" are issued at the desk."))
        + table(
            row(*texts("Item", "Note")),
            row(*texts("Mask"), cell(para(run("FFP2"), '<w:r><w:footnoteReference w:id="2"/></w:r>'))),
            columns=2,
        )
        + para(run("End of section."))
    )
    notes = {
        "footnote": {1: "Nitrile gloves only.", 2: "Replace daily."},
        "endnote": {1: "Goggles per EN 166."},
    }
    document = read(make_docx(tmp_path / "notes.docx", body, notes=notes))
    assert document.text.split("\n\n") == [
        "Wear gloves[^1] and goggles",
        "[^1]: Nitrile gloves only.",
        "Goggles[^i] are issued at the desk.",
        "| Item | Note |\n| --- | --- |\n| Mask | FFP2[^2] |",
        "[^2]: Replace daily.",
        "End of section.",
        "[^i]: Goggles per EN 166.",
    ]


NUMBERING = (
    abstract(90, level(0, "decimal", "%1."), level(1, "lowerLetter", "%2)"), level(2, "lowerRoman", "(%3)"))
    + abstract(91, level(0, "decimal", "%1.", start=5), level(1, "decimal", "%1.%2."))
    + abstract(92, level(0, "upperRoman", "%1."))
    + abstract(93, level(0, "upperLetter", "Appendix %1:"))
    + num(90, 90)
    + num(91, 90, restart_at=1)
    + num(92, 91)
    + num(93, 92)
    + num(94, 93)
)


def test_list_numbers_are_the_labels_word_shows(tmp_path):
    body = (
        item("Open the valve.", 90)
        + item("Check the gauge.", 90, 1)
        + item("Check the light.", 90, 1)
        + item("Read the dial.", 90, 2)
        + item("Wait ten minutes.", 90)
        + item("Note the time.", 90, 1)  # a level restarts under a new item of the level above
        + para(run("Meanwhile, keep the door shut."))
        + item("", 90)  # an empty numbered paragraph still takes its number
        + item("Close the valve.", 90)  # the list continues after the interruption
        + item("Chapter five.", 92)
        + item("Section five one.", 92, 1)
        + item("Section five two.", 92, 1)
        + item("Roman one.", 93)
        + item("Roman two.", 93)
        + item("Glossary", 94)
        + item("Restarted one.", 91)  # startOverride: the shared count starts again
        + item("Restarted two.", 91)
        + item("Back on the first list.", 90)  # Word: numIds of one abstractNum share the count
    )
    document = read(make_docx(tmp_path / "lists.docx", body, numbering=NUMBERING))
    assert document.text.split("\n\n") == [
        "1. Open the valve.",
        "a) Check the gauge.",
        "b) Check the light.",
        "(i) Read the dial.",
        "2. Wait ten minutes.",
        "a) Note the time.",
        "Meanwhile, keep the door shut.",
        "4. Close the valve.",
        "5. Chapter five.",
        "5.1. Section five one.",
        "5.2. Section five two.",
        "I. Roman one.",
        "II. Roman two.",
        "Appendix A: Glossary",
        "1. Restarted one.",
        "2. Restarted two.",
        "3. Back on the first list.",
    ]
    assert document.report.warnings == []


def test_list_styles_number_through_their_style_and_bullets_are_dashes(tmp_path):
    def edit(document: docx.document.Document) -> None:
        document.add_paragraph("First styled.", style="List Number")
        document.add_paragraph("Second styled.", style="List Number")
        document.add_paragraph("A bullet.", style="List Bullet")
        document.add_paragraph("Third styled.", style="List Number")

    document = read(make_docx(tmp_path / "styles.docx", edit=edit))
    assert document.text == "1. First styled.\n\n2. Second styled.\n\n- A bullet.\n\n3. Third styled."


def test_an_unknown_number_format_is_decimal_with_a_warning(tmp_path):
    numbering = abstract(95, level(0, "hebrew1", "%1.")) + num(95, 95)
    document = read(
        make_docx(tmp_path / "hebrew.docx", item("One.", 95) + item("Two.", 95), numbering=numbering)
    )
    assert document.text == "1. One.\n\n2. Two."
    assert document.report.warnings == [
        "List numbers in the Word format 'hebrew1' are shown as decimal numbers."
    ]


def test_tracked_changes_show_the_final_text(tmp_path):
    body = (
        para(
            run("The limit is "),
            '<w:del w:id="1" w:author="a"><w:r><w:br/><w:delText>10</w:delText></w:r></w:del>',
            f'<w:ins w:id="2" w:author="a">{run("12")}</w:ins>',
            run(" kg."),
        )
        + para(run("Stay calm."), f'<w:moveFrom w:id="3" w:author="a">{run(" Moved sentence.")}</w:moveFrom>')
        + para(run("Exit quickly."), f'<w:moveTo w:id="4" w:author="a">{run(" Moved sentence.")}</w:moveTo>')
        + table(
            row(*texts("Step", "Owner")),
            row(*texts("Old step", "Bob"), props='<w:del w:id="5" w:author="a"/>'),
            row(*texts("New step", "Ann"), props='<w:ins w:id="6" w:author="a"/>'),
            columns=2,
        )
    )
    document = read(make_docx(tmp_path / "tracked.docx", body))
    assert document.text == (
        "The limit is 12 kg.\n\nStay calm.\n\nExit quickly. Moved sentence.\n\n"
        "| Step | Owner |\n| --- | --- |\n| New step | Ann |"
    )


def test_hidden_text_images_and_comments_are_reported(tmp_path):
    image = tmp_path / "dot.png"
    Image.new("RGB", (4, 4), "red").save(image)

    def edit(document: docx.document.Document) -> None:
        paragraph = document.add_paragraph("Visible text.")
        hidden = paragraph.add_run(" Hidden note.")
        hidden.font.hidden = True
        document.add_picture(str(image))
        commented = document.add_paragraph("Reviewed text.")
        document.add_comment(commented.runs, text="Check this figure.", author="Ann")

    document = read(make_docx(tmp_path / "report.docx", edit=edit))
    assert document.text == "Visible text.\n\nReviewed text."
    assert document.report.parser == "python-docx"
    assert document.report.images_without_text == 1
    assert document.report.dropped == [
        {"part": "hidden text", "reason": "text formatted as hidden is not shown by Word", "count": 1},
        {"part": "comment", "reason": "review comments are not indexed", "count": 1},
    ]


def test_headings_by_style_name_or_outline_level_and_title_from_core_properties(tmp_path):
    def edit(document: docx.document.Document) -> None:
        document.core_properties.title = "Site rules"
        custom = document.styles.add_style("Rule Heading", WD_STYLE_TYPE.PARAGRAPH)
        custom.base_style = document.styles["Heading 2"]  # inherits outline level 2
        document.add_heading("Rules", level=1)
        document.add_paragraph("Quiet hours", style="Rule Heading")
        document.add_paragraph("No noise after 22:00.")

    document = read(make_docx(tmp_path / "headings.docx", edit=edit))
    assert document.text == "# Rules\n\n## Quiet hours\n\nNo noise after 22:00."
    assert document.metadata["title"] == "Site rules"


def test_a_package_without_core_properties_gets_no_invented_title(tmp_path):
    source_path = make_docx(tmp_path / "source.docx", para(run("Just text.")))
    path = tmp_path / "no_core.docx"
    with zipfile.ZipFile(source_path) as source, zipfile.ZipFile(path, "w") as target:
        for member in source.infolist():
            data = source.read(member.filename)
            if member.filename == "_rels/.rels":
                data = re.sub(rb'<Relationship [^>]*metadata/core-properties"[^>]*/>', b"", data)
            if member.filename != "docProps/core.xml":
                target.writestr(member, data)
    document = read(path)
    assert document.text == "Just text."
    assert document.metadata["title"] is None  # python-docx alone would say "Word Document"


# --- the reported cases -------------------------------------------------------------------------


def test_case_merged_title_cell_appears_once():
    document = read(CASES / "merged_cells.docx")
    assert document.text == (
        "# Warehouse targets\n\n"
        "| Quarterly pallet targets for the Zorblax warehouse | | | |\n"
        "| --- | --- | --- | --- |\n"
        "| Region | Q1 | Q2 | Q3 |\n"
        "| North region | 410 | 455 | 470 |\n"
        "| | 390 | 402 | 415 |\n\n"
        "Targets are reviewed every quarter by the logistics team."
    )
    assert document.metadata["title"] == "Warehouse targets"
    assert (document.report.parser, document.report.tables) == ("python-docx", 1)


def test_case_text_box_header_and_footer_are_read_once():
    document = read(CASES / "textbox_header_footer.docx")
    assert document.text.split("\n\n") == [
        "ACME Facilities Handbook - Revision 7",
        "# Building access",
        "All staff badge in at the main entrance. Visitors are escorted at all times.",
        "See the box on the right.",
        "Emergency assembly point: the north parking lot, bay C.",
        "Fire wardens wear orange vests.",
        "Night security desk: extension 4410",
    ]
    assert (document.report.parser, document.report.tables) == ("python-docx", 0)


# --- number formats -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "fmt", "expected"),
    [
        (3, "decimal", "3"),
        (3, "decimalZero", "03"),
        (1, "lowerLetter", "a"),
        (27, "lowerLetter", "aa"),  # Word repeats the letter: y, z, aa, bb
        (28, "upperLetter", "BB"),
        (4, "lowerRoman", "iv"),
        (1994, "upperRoman", "MCMXCIV"),
        (12, "ordinal", "12th"),
        (22, "ordinal", "22nd"),
        (11, "chineseCounting", "十一"),
        (105, "chineseCounting", "一百〇五"),
        (3, "decimalEnclosedCircle", "③"),
        (10**9, "lowerLetter", "1000000000"),  # no billion-letter labels from a crafted start value
        (5000, "upperRoman", "5000"),
        (2, "hebrew1", None),
    ],
)
def test_format_number(value, fmt, expected):
    assert format_number(value, fmt) == expected
