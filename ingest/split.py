"""split(): a Document becomes token-sized chunks, each knowing its page and Markdown headings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from langchain_text_splitters import MarkdownHeaderTextSplitter, RecursiveCharacterTextSplitter

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

    `tokenizer` is a Hugging Face tokenizer (e.g. `SentenceTransformer(...).tokenizer`).
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
            for piece in splitter.split_text(text):
                for part, tokens in _within_limit(piece.strip(), tokenizer, strategy.max_chunk_size_tokens):
                    metadata = {"headings": headings} if headings else {}
                    chunks.append(Chunk(part, len(chunks), page.number, tokens, metadata))
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


def _int_field(static: Mapping[str, Any], name: str) -> int:
    value = static.get(name)
    # bool is an int in Python, but `true` is not a size.
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"chunking_strategy.static.{name} must be an integer, got {value!r}")
    return value
