"""Text clean-up applied to every parsed document, and removal of page headers and footers."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

# \x02 is how PDFium marks a hyphen it removed at a line end; dropping it rejoins the word.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f\ufeff]")
_LINE_BREAKS = re.compile(r"\r\n?|[\x0b\x0c\u2028\u2029]")
_SPACES = re.compile(r"[ \t\u00a0]+")
# Only lowercase on both sides, so "Covid-\n19" or "Jean-\nPierre" keep their hyphen.
_HYPHEN_BREAK = re.compile(r"([a-zß-ÿ])-\n([a-zß-ÿ])")
_BLANK_LINES = re.compile(r"\n{3,}")
_PAGE_NUMBER = re.compile(
    r"(?:page\s*)?[-–—]?\s*\d{1,4}\s*[-–—]?(?:\s*(?:/|of)\s*\d{1,4})?"  # 3, - 3 -, Page 3 of 10
    r"|第\s*\d{1,4}\s*页(?:\s*[,，/]?\s*共\s*\d{1,4}\s*页)?",  # 第 3 页 共 10 页
    re.IGNORECASE,
)
REPEATED_LINE_MAX_CHARS = 80
MIN_PAGES_FOR_REPEATS = 3
# Page numbers sit in the first or last lines of a page; further in, a lone number is content.
_EDGE_LINES = 2


def clean(text: str) -> str:
    """Normalise Unicode (NFC, keeping full-width CJK punctuation), whitespace and hyphenated line breaks."""
    text = unicodedata.normalize("NFC", text)
    text = _LINE_BREAKS.sub("\n", text)
    text = _CONTROL.sub("", text)
    text = _SPACES.sub(" ", text)
    text = "\n".join(line.strip(" ") for line in text.split("\n"))
    text = _HYPHEN_BREAK.sub(r"\1\2", text)
    return _BLANK_LINES.sub("\n\n", text).strip()


def drop_repeated_lines(pages: list[str]) -> list[str]:
    """Remove page headers and footers: short lines on more than half of the pages, and page numbers.

    Does nothing below MIN_PAGES_FOR_REPEATS pages, where a repeat says nothing.
    """
    if len(pages) < MIN_PAGES_FOR_REPEATS:
        return pages
    counts = Counter(line for page in pages for line in {ln.strip() for ln in page.split("\n")})
    repeated = {
        line
        for line, n in counts.items()
        if line and len(line) < REPEATED_LINE_MAX_CHARS and n > len(pages) / 2
    }
    return [_drop_lines(page, repeated) for page in pages]


def _drop_lines(page: str, repeated: set[str]) -> str:
    lines = [line for line in page.split("\n") if line.strip() not in repeated]
    content = [i for i, line in enumerate(lines) if line.strip()]
    edges = set(content[:_EDGE_LINES] + content[-_EDGE_LINES:])
    kept = [line for i, line in enumerate(lines) if not (i in edges and _PAGE_NUMBER.fullmatch(line.strip()))]
    return "\n".join(kept).strip()
