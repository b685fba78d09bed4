"""split(): a Document becomes token-sized chunks, each knowing its page and Markdown headings.

Markdown pipe tables (also those the DOCX and HTML readers write) are split by whole rows, and every chunk
holding rows of a table starts its table part with the table's header row and separator line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from langchain_text_splitters import MarkdownHeaderTextSplitter, RecursiveCharacterTextSplitter
from markdown_it import MarkdownIt

from .detect import DOCX, HTML, MARKDOWN
from .types import Chunk, Document

AUTO_MAX_TOKENS = 800
AUTO_OVERLAP_TOKENS = 400
STATIC_MIN_TOKENS = 100
STATIC_MAX_TOKENS = 4096

# Coarse to fine. CJK text has no spaces, so its sentence punctuation must come before " " and "".
SEPARATORS = ["\n\n", "\n", "。", "！", "？", "；", ". ", "! ", "? ", "; ", "，", ", ", " ", ""]
_HEADERS = [("#", "h1"), ("##", "h2"), ("###", "h3")]
# Parsed DOCX and HTML are Markdown too.
_MARKDOWN_TYPES = {MARKDOWN, DOCX, HTML}
# GFM pipe tables as CommonMark + GFM parse them (pipe-less rows, escaped pipes, fenced code left alone).
# Only blocks matter here: inline parsing would triple the time on a long table.
_TABLE_PARSER = MarkdownIt("commonmark").enable("table").disable(["inline", "text_join"], True)
# Chunk metadata flags: a row too long for one chunk was cut by tokens; a table's rows come without their
# header because the header alone takes more than half a chunk.
ROW_CUT = "table_row_cut"
HEADER_OMITTED = "table_header_omitted"


@dataclass(frozen=True)
class ChunkingStrategy:
    max_chunk_size_tokens: int
    chunk_overlap_tokens: int


def resolve_chunking(strategy: Mapping[str, Any] | None, window: int) -> ChunkingStrategy:
    """OpenAI's `chunking_strategy` (None, auto or static) as token sizes; ValueError if invalid.

    `window` is the embedder's input size without special tokens; auto sizes are capped to it, static
    sizes are not (text past the window is still found by BM25).
    """
    if window < 1:
        raise ValueError(f"window must be positive, got {window}")
    if strategy is None:
        strategy = {"type": "auto"}
    if not isinstance(strategy, Mapping):
        raise ValueError("chunking_strategy must be an object")
    kind = strategy.get("type")
    if kind == "auto":
        size = min(AUTO_MAX_TOKENS, window)
        return ChunkingStrategy(size, min(AUTO_OVERLAP_TOKENS, size // 2))
    if kind != "static":
        raise ValueError(f"chunking_strategy.type must be 'auto' or 'static', got {kind!r}")
    return _static(strategy.get("static"))


def _static(static: Any) -> ChunkingStrategy:
    """The static strategy, validated with OpenAI's limits."""
    if not isinstance(static, Mapping):
        raise ValueError("chunking_strategy.static must be an object when type is 'static'")
    size = _int_field(static, "max_chunk_size_tokens")
    overlap = _int_field(static, "chunk_overlap_tokens")
    if not STATIC_MIN_TOKENS <= size <= STATIC_MAX_TOKENS:
        raise ValueError(
            f"chunking_strategy.static.max_chunk_size_tokens must be between {STATIC_MIN_TOKENS} "
            f"and {STATIC_MAX_TOKENS}, got {size}"
        )
    if overlap < 0:
        raise ValueError(f"chunking_strategy.static.chunk_overlap_tokens must not be negative, got {overlap}")
    if overlap > size // 2:
        raise ValueError(
            "chunking_strategy.static.chunk_overlap_tokens must not exceed half of max_chunk_size_tokens "
            f"({overlap} > {size // 2})"
        )
    return ChunkingStrategy(size, overlap)


def split(document: Document, strategy: ChunkingStrategy, tokenizer: Any) -> list[Chunk]:
    """Chunks of at most `strategy.max_chunk_size_tokens` tokens, split page by page.

    `tokenizer` is a Hugging Face tokenizer (e.g. `SentenceTransformer(...).tokenizer`). In Markdown, DOCX
    and HTML documents, pipe tables are split by whole rows under a repeated header (see `_table_parts`);
    a chunk's metadata then may hold the flags ROW_CUT and HEADER_OMITTED.
    """
    splitter = RecursiveCharacterTextSplitter.from_huggingface_tokenizer(
        tokenizer,
        chunk_size=strategy.max_chunk_size_tokens,
        chunk_overlap=strategy.chunk_overlap_tokens,
        separators=SEPARATORS,
        keep_separator="end",
        is_separator_regex=False,
    )
    markdown = document.metadata.get("mime") in _MARKDOWN_TYPES
    chunks: list[Chunk] = []
    for page in document.pages:
        for text, headings in _sections(page.text, markdown):
            blocks = _blocks(text) if markdown else [text]
            for part, tokens, flags in _section_parts(blocks, splitter, tokenizer, strategy):
                metadata = {"headings": headings} if headings else {}
                chunks.append(Chunk(part, len(chunks), page.number, tokens, metadata | flags))
    return chunks


def _sections(text: str, markdown: bool) -> list[tuple[str, str]]:
    """(text, heading path) per Markdown section; the whole text with no headings otherwise."""
    if not markdown:
        return [(text, "")]
    splitter = MarkdownHeaderTextSplitter(_HEADERS, strip_headers=False)
    sections = []
    pending = ""
    for section in splitter.split_text(text):
        # The splitter joins the paragraphs of a section with "  \n"; restore the paragraph breaks
        # the recursive splitter prefers (clean() left no other line ending in two spaces).
        body = pending + section.page_content.replace("  \n", "\n\n")
        path = " > ".join(section.metadata[name] for _, name in _HEADERS if section.metadata.get(name))
        # A heading straight above one of the same level (a DOCX Title over a Heading 1) would be a
        # chunk of its own, with nothing to retrieve: it goes with the next section instead.
        if all(line.startswith("#") for line in body.split("\n") if line):
            pending = body + "\n\n"
            continue
        sections.append((body, path))
        pending = ""
    if pending:
        sections.append((pending.strip(), path))
    return sections


@dataclass
class _Table:
    """A pipe table of a section: its header row and separator line (`head`) and its body rows, one line
    each as in the source; `intro` is the text piece above it that goes into its first chunk."""

    head: str
    rows: list[str]
    intro: str = ""


_Part = tuple[str, int, dict[str, bool]]  # chunk text, its token count, metadata flags


def count_tables(text: str) -> int:
    """The Markdown pipe tables (with at least one body row) in `text`, as the splitter finds them."""
    return sum(isinstance(block, _Table) for block in _blocks(text))


def _blocks(text: str) -> list[str | _Table]:
    """A section as text and pipe tables (with at least one body row), in order.

    Tables are found as markdown-it parses GFM; those inside block quotes or list items stay text.
    """
    if "|" not in text:
        return [text]
    lines = text.split("\n")
    blocks: list[str | _Table] = []
    done = 0
    # markdown-it reads a lone \r as a line break too; blank it so its line numbers match `lines`.
    for token in _TABLE_PARSER.parse(text.replace("\r", " ")):
        if token.type != "table_open" or token.level != 0 or not token.map:
            continue
        start, end = token.map
        rows = [row for row in lines[start + 2 : end] if row.strip()]
        if rows:
            blocks.append("\n".join(lines[done:start]))
            blocks.append(_Table("\n".join(lines[start : start + 2]), rows))
            done = end
    blocks.append("\n".join(lines[done:]))
    return [block for block in blocks if isinstance(block, _Table) or block.strip()]


def _section_parts(
    blocks: list[str | _Table],
    splitter: RecursiveCharacterTextSplitter,
    tokenizer: Any,
    strategy: ChunkingStrategy,
) -> list[_Part]:
    """The chunks of one section: text by the recursive splitter, tables by `_table_parts`.

    The text piece just above a table (a caption, an introduction) joins the table's first chunk if it fits
    there with the header and the first row; the piece just below joins its last chunk if it fits.
    """
    limit = strategy.max_chunk_size_tokens
    items: list[str | _Table] = []
    for block in blocks:
        if isinstance(block, str):
            items.extend(piece.strip() for piece in splitter.split_text(block) if piece.strip())
            continue
        if items and isinstance(items[-1], str) and _header_kept(block, tokenizer, limit):
            first = _compose(items[-1], block.head, block.rows[:1])
            if _count(tokenizer, first) <= limit:
                block.intro = items.pop()
        items.append(block)
    parts: list[_Part] = []
    for i, item in enumerate(items):
        if isinstance(item, _Table):
            parts.extend(_table_parts(item, tokenizer, strategy))
            continue
        if i and isinstance(items[i - 1], _Table):
            text, _, flags = parts[-1]
            joined = f"{text}\n\n{item}"
            tokens = _count(tokenizer, joined)
            if tokens <= limit:
                parts[-1] = (joined, tokens, flags)
                continue
        parts.extend((text, tokens, {}) for text, tokens in _within_limit(item, tokenizer, limit))
    return parts


def _table_parts(table: _Table, tokenizer: Any, strategy: ChunkingStrategy) -> list[_Part]:
    """A table's chunks: greedy runs of whole rows, each under the header, in source order.

    Overlap is whole rows: the next chunk repeats the last rows of the one before, as many as fit in
    `chunk_overlap_tokens`. A row too long for a chunk with the header is cut at token boundaries, each
    piece under the header and flagged ROW_CUT. A header longer than half a chunk is a chunk of its own,
    and the rows follow without it, flagged HEADER_OMITTED.
    """
    limit = strategy.max_chunk_size_tokens
    parts: list[_Part] = []
    head, flags = table.head, {}
    if not _header_kept(table, tokenizer, limit):
        parts = [(text, tokens, {}) for text, tokens in _within_limit(head, tokenizer, limit)]
        head, flags = "", {HEADER_OMITTED: True}
    rows = table.rows
    # A row's cost is its tokens and those of the line break before it.
    costs = [len(ids) for ids in _encode(tokenizer, ["\n" + row for row in rows])]
    head_tokens = _count(tokenizer, head) if head else 0
    start = 0
    while start < len(rows):
        intro = table.intro if start == 0 else ""
        used = _count(tokenizer, _compose(intro, head, [])) if intro else head_tokens
        end = start + 1
        used += costs[start]
        while end < len(rows) and used + costs[end] <= limit:
            used += costs[end]
            end += 1
        # Costs add up exactly for WordPiece; other tokenizers can merge across lines, so check the text.
        text = _compose(intro, head, rows[start:end])
        tokens = _count(tokenizer, text)
        while tokens > limit and end > start + 1:
            end -= 1
            text = _compose(intro, head, rows[start:end])
            tokens = _count(tokenizer, text)
        if tokens > limit:
            if intro:
                parts.extend((text, tokens, {}) for text, tokens in _within_limit(intro, tokenizer, limit))
            parts.extend(_cut_row(head, rows[start], tokenizer, limit, flags))
            start += 1
            continue
        parts.append((text, tokens, dict(flags)))
        start = _overlap_start(costs, start, end, limit - head_tokens, strategy.chunk_overlap_tokens)
    return parts


def _header_kept(table: _Table, tokenizer: Any, limit: int) -> bool:
    """Whether the header repeats in each chunk: it must leave at least half of the chunk for rows."""
    return _count(tokenizer, table.head) <= limit // 2


def _overlap_start(costs: list[int], start: int, end: int, room: int, overlap: int) -> int:
    """The first row of the chunk after rows [start, end): the last rows of those worth at most `overlap`
    tokens, as long as row `end` still fits in `room` with them and the next chunk holds a new row."""
    back = end
    if end >= len(costs):
        return end
    carried = 0
    while back - 1 > start:
        carried += costs[back - 1]
        if carried > overlap or carried + costs[end] > room:
            break
        back -= 1
    return back


def _cut_row(head: str, row: str, tokenizer: Any, limit: int, flags: dict[str, bool]) -> list[_Part]:
    """A row too long for one chunk, cut at token boundaries, each piece under the header (if any)."""
    room = limit - (_count(tokenizer, head + "\n") if head else 0)
    while True:
        parts = []
        for piece, _ in _within_limit(row, tokenizer, room):
            text = _compose("", head, [piece])
            parts.append((text, _count(tokenizer, text), flags | {ROW_CUT: True}))
        excess = max(tokens for _, tokens, _ in parts) - limit
        if excess <= 0 or room == 1:
            return parts
        room = max(room - excess, 1)


def _compose(intro: str, head: str, rows: list[str]) -> str:
    """A table chunk's text: the intro piece, a blank line, the header and the rows."""
    table = "\n".join([head, *rows] if head else rows)
    return f"{intro}\n\n{table}" if intro else table


def _within_limit(text: str, tokenizer: Any, limit: int) -> list[tuple[str, int]]:
    """(text, token count) of a chunk, cut at token boundaries if it is still too long.

    The splitter adds up the token counts of pieces, and a joined text can tokenize a little longer.
    """
    if not text:
        return []
    tokens = _count(tokenizer, text)
    if tokens <= limit:
        return [(text, tokens)]
    if getattr(tokenizer, "is_fast", False):
        encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        cut = encoding["offset_mapping"][limit][0]
    else:  # slow tokenizers have no offsets: cut in proportion, the recursion checks the head again
        cut = len(text) * limit // tokens
    cut = max(cut, 1)
    return [
        *_within_limit(text[:cut].strip(), tokenizer, limit),
        *_within_limit(text[cut:].strip(), tokenizer, limit),
    ]


def _count(tokenizer: Any, text: str) -> int:
    return len(tokenizer.encode(text, add_special_tokens=False, verbose=False))


def _encode(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    """Token ids of many texts in one call (a fast tokenizer encodes a batch in parallel)."""
    return tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"] if texts else []


def _int_field(static: Mapping[str, Any], name: str) -> int:
    value = static.get(name)
    # bool is an int in Python, but `true` is not a size.
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"chunking_strategy.static.{name} must be an integer, got {value!r}")
    return value
