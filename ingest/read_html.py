"""HTML as Markdown: page furniture and hidden elements dropped, headings and tables kept."""

from __future__ import annotations

import re

from bs4 import BeautifulSoup, Tag
from markdownify import ATX, MarkdownConverter

from .types import ParseReport

_FURNITURE = ["script", "style", "noscript", "template", "nav", "aside", "form", "iframe", "svg"]
_DISPLAY_NONE = re.compile(r"display\s*:\s*none", re.IGNORECASE)
# Links and images become their text: URLs cost many tokens and rarely answer a question.
_CONVERTER = MarkdownConverter(heading_style=ATX, strip=["a", "img"], table_infer_header=True, bullets="-")


def read_html(text: str, report: ParseReport | None = None) -> tuple[str, str | None]:
    """The main content of an HTML page as Markdown, and the page's <title>; `report` (when given)
    records what was read and dropped."""
    report = report if report is not None else ParseReport()
    soup = BeautifulSoup(text, "lxml")
    title = soup.title.get_text(" ", strip=True) if soup.title else None
    for tag in soup(_FURNITURE):
        tag.decompose()
    for tag in soup.find_all(_is_hidden):
        tag.decompose()
    # A page's header and footer are furniture; an article's own header holds its title.
    for tag in soup(["header", "footer"]):
        if tag.find_parent(["article", "main"]) is None:
            tag.decompose()
    main = soup.find("main") or soup.find("article") or soup.body or soup
    return _CONVERTER.convert_soup(main), title or None


def _is_hidden(tag: Tag) -> bool:
    return (
        tag.has_attr("hidden")
        or tag.get("aria-hidden") == "true"
        or bool(_DISPLAY_NONE.search(str(tag.get("style", ""))))
    )
