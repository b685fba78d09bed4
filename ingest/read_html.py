"""HTML as Markdown: all of a page's main content (every article, FAQ entry and table) kept, page
furniture and hidden elements dropped and counted in the ParseReport."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable

from bs4 import BeautifulSoup, Tag
from bs4.element import PreformattedString
from markdownify import ATX, MarkdownConverter

from .types import ParseReport

PARSER = "beautifulsoup4+markdownify"
FURNITURE = "page furniture"
_NOT_DISPLAYED = {"script", "style", "noscript", "template"}
_EMBEDS = {"iframe", "svg", "object", "embed"}
_FORM_CONTROLS = {"select", "textarea"}
# A page's header and footer are furniture; a header or footer inside one of these is that part's own.
_SECTIONS = ["article", "section", "main"]
_CONTENT = ["main", "article", "h1", "h2", "h3", "h4", "h5", "h6", "p", "table", "ul", "ol", "dl", "pre"]
_BLOCKS = ["p", "li", "dt", "dd", "h1", "h2", "h3", "h4", "h5", "h6", "td", "th", "pre", "blockquote"]
_BLOCKS += ["div", "section", "article", "figure", "details", "summary", "table", "header", "footer"]
_HTML5_BLOCKS = {"main", "header", "footer", "nav", "aside", "figure", "details", "summary", "address"}
_HTML5_BLOCKS |= {"fieldset", "legend", "form", "hgroup", "search", "dialog", "center"}
_BLANK_LINES = re.compile(r"\n{3,}")
_DISPLAY_NONE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)
# Searched in each lower-cased id and class token; the first match names the part.
_MARKERS = [
    ("cookie banner", re.compile(r"cookie|consent|gdpr")),
    ("nav", re.compile(r"breadcrumb")),
    ("sidebar", re.compile(r"sidebar")),
    # Whole tokens only: class "header", not "card-header" or "page-header" (a page's title block).
    ("page header", re.compile(r"^(?:(?:site|global)[-_]?)?header$|^masthead$")),
    ("page footer", re.compile(r"^(?:(?:site|global|page)[-_]?)?footer$")),
]
_PAGE_LEVEL = {"page header", "page footer"}
_COOKIE_DIALOG = re.compile(r"cookie|consent|gdpr|banner|privacy")


class _Converter(MarkdownConverter):
    """markdownify, with the HTML5 block elements it would run into the next line kept as blocks
    (`<details><summary>Q?</summary>A.</details>` is "Q?\\n\\nA.", not "Q?A.")."""

    def get_conv_fn(self, tag_name: str) -> Callable[..., str] | None:
        if tag_name.lower() in _HTML5_BLOCKS:
            return self.convert_div
        return super().get_conv_fn(tag_name)

    def convert_td(self, el: Tag, text: str, parent_tags: set[str]) -> str:
        # A literal | in a cell would split it into two columns of the pipe table.
        return super().convert_td(el, _escape_pipes(text), parent_tags)

    def convert_th(self, el: Tag, text: str, parent_tags: set[str]) -> str:
        return super().convert_th(el, _escape_pipes(text), parent_tags)


def _escape_pipes(text: str) -> str:
    return re.sub(r"(?<!\\)\|", r"\\|", text)


# Links and images become their text: URLs cost many tokens and rarely answer a question.
_CONVERTER = _Converter(heading_style=ATX, strip=["a", "img"], table_infer_header=True, bullets="-")


def read_html(text: str, report: ParseReport | None = None) -> tuple[str, str | None]:
    """The main content of an HTML page as Markdown (ATX `#` headings, pipe tables with a header row,
    `-` lists), and the page's <title> (None when it has none).

    Kept: the page's `<main>` (or `role="main"`) elements, else its whole `<body>`, so every `<article>`,
    definition list, `<details>` entry and accordion panel stays. Dropped and counted in `report.dropped`:
    script, style, noscript, template; hidden elements (`hidden`, `aria-hidden="true"`, `display:none`,
    `visibility:hidden`, a closed `<dialog>`) except collapsed panels that a control opens (`aria-controls`,
    `role="tabpanel"`, `hidden="until-found"`); page furniture (nav, sidebars, the page's own header and
    footer, cookie banners, search forms, frames, svg); and text outside `<main>`. When `<main>` holds less
    text than the rest of the page, or nothing is left after dropping, the wider text is kept and
    `report.warnings` says so. `report` (when given) also gets `parser` and `tables` (tables kept)."""
    report = report if report is not None else ParseReport()
    report.parser = PARSER
    markdown, title, dropped, tables = _extract(text, report, keep_furniture=False)
    if not markdown and any(reason != "not displayed" for _, reason in dropped):
        markdown, title, dropped, tables = _extract(text, report, keep_furniture=True)
        report.warn(
            "The page has no text outside its navigation, header, footer, sidebars or hidden elements, "
            "so those were kept."
        )
    for (part, reason), count in dropped.items():
        report.drop(part, reason, count)
    report.tables = tables
    return markdown, title


def _extract(
    text: str, report: ParseReport, keep_furniture: bool
) -> tuple[str, str | None, Counter[tuple[str, str]], int]:
    """(markdown, title, dropped (part, reason) counts, tables kept) for one reading of the page."""
    soup = BeautifulSoup(text, "lxml")
    title = soup.title.get_text(" ", strip=True) if soup.title else None
    dropped = _drop_furniture(soup, keep_furniture)
    roots = _main_content(soup, dropped, report)
    markdown = "\n\n".join(filter(None, (_CONVERTER.convert_soup(root).strip() for root in roots)))
    markdown = _BLANK_LINES.sub("\n\n", markdown)  # markdownify leaves them between HTML5 blocks
    tables = sum(len(root.find_all("table")) for root in roots)
    return markdown, title or None, dropped, tables


def _drop_furniture(soup: BeautifulSoup, keep_furniture: bool) -> Counter[tuple[str, str]]:
    """Remove from `soup` what a reader of the page does not see as its content; count it by kind."""
    openers = soup.find_all(attrs={"aria-controls": True})
    controlled = {ref for tag in openers for ref in str(tag["aria-controls"]).split()}
    dropped: Counter[tuple[str, str]] = Counter()
    stack: list[Tag] = [soup]
    while stack:  # a loop, not recursion: pages nest deeper than Python's recursion limit
        for child in stack.pop().find_all(True, recursive=False):
            kind = _furniture_kind(child, controlled, keep_furniture)
            if kind is None:
                stack.append(child)
            else:
                dropped[kind] += 1
                child.decompose()
    return dropped


def _furniture_kind(tag: Tag, controlled: set[str], keep_furniture: bool) -> tuple[str, str] | None:
    """(part, reason) when `tag` is not page content, else None."""
    if tag.name in _NOT_DISPLAYED:
        return tag.name, "not displayed"
    if keep_furniture or tag.name in ("html", "body"):
        return None
    if _is_hidden(tag, controlled):
        return "hidden element", "hidden"
    part = _furniture_by_tag(tag) or _furniture_by_marker(tag)
    # Whatever it is called, a block around the page's main content or an article is not furniture.
    if part is None or tag.find(_is_main_or_article) is not None:
        return None
    return part, FURNITURE


def _furniture_by_tag(tag: Tag) -> str | None:
    """The kind of furniture `tag`'s name or ARIA role says it is."""
    role = _role(tag)
    if tag.name == "nav" or role in ("navigation", "search"):
        return "nav"
    if role in ("dialog", "alertdialog") and _any(_COOKIE_DIALOG, [*_id_class_tokens(tag), _aria_label(tag)]):
        return "cookie banner"
    if (tag.name == "aside" and tag.find_parent("article") is None) or role == "complementary":
        return "sidebar"
    if role == "banner" or (tag.name == "header" and _is_page_level(tag)):
        return "page header"
    if role == "contentinfo" or (tag.name == "footer" and _is_page_level(tag)):
        return "page footer"
    if tag.name == "form" and tag.find(_CONTENT) is None:  # a search box; a form around the page is kept
        return "form"
    if tag.name in _FORM_CONTROLS:
        return "form control"
    return tag.name if tag.name in _EMBEDS else None


def _furniture_by_marker(tag: Tag) -> str | None:
    """The kind of furniture `tag`'s id or classes say it is. Weaker evidence than names and roles, so a
    block holding the page's title is content whatever its class says (a "with-sidebar" wrapper, say)."""
    tokens = _id_class_tokens(tag)
    if not tokens or tag.name in ("h1", "main", "article"):
        return None
    for part, pattern in _MARKERS:
        if _any(pattern, tokens) and (part not in _PAGE_LEVEL or _is_page_level(tag)):
            return part if tag.find("h1") is None else None
    return None


def _is_page_level(tag: Tag) -> bool:
    return tag.find_parent(_SECTIONS) is None and tag.find_parent(_is_main) is None


def _is_hidden(tag: Tag, controlled: set[str]) -> bool:
    # A collapsed accordion or tab panel is hidden until clicked, and is content.
    if tag.get("id") in controlled or _role(tag) == "tabpanel" or tag.get("hidden") == "until-found":
        return False
    return (
        tag.has_attr("hidden")
        or str(tag.get("aria-hidden", "")).strip().lower() == "true"
        or bool(_DISPLAY_NONE.search(str(tag.get("style", ""))))
        or (tag.name == "dialog" and not tag.has_attr("open"))
    )


def _main_content(soup: BeautifulSoup, dropped: Counter[tuple[str, str]], report: ParseReport) -> list[Tag]:
    """The page's `<main>` elements, or its body when it has none or they hold less than half its text;
    visible text left outside `<main>` is counted in `dropped` by block."""
    body = soup.body or soup
    mains = [tag for tag in body.find_all(_is_main) if tag.find_parent(_is_main) is None]
    if not mains:
        return [body]
    inside = sum(_chars(tag) for tag in mains)
    if _chars(body) - inside > inside:
        report.warn(
            "Most of the page's text lies outside its <main> element, so the whole page was kept: "
            "it may include page furniture."
        )
        return [body]
    outside = {
        id(string.find_parent(_BLOCKS) or string.parent)
        for string in body.find_all(string=_is_text)
        if string.find_parent(_is_main) is None
    }
    if outside:
        dropped[("text outside <main>", "not the page's main content")] += len(outside)
    return mains


def _is_main(tag: Tag) -> bool:
    return tag.name == "main" or _role(tag) == "main"


def _role(tag: Tag) -> str:
    return str(tag.get("role", "")).strip().lower()


def _is_main_or_article(tag: Tag) -> bool:
    return tag.name == "article" or _is_main(tag)


def _is_text(string: object) -> bool:
    return not isinstance(string, PreformattedString) and bool(str(string).strip())


def _chars(tag: Tag) -> int:
    """Visible characters in `tag`, whitespace not counted."""
    return sum(len("".join(string.split())) for string in tag.find_all(string=_is_text))


def _id_class_tokens(tag: Tag) -> list[str]:
    classes = tag.get("class") or []
    classes = classes.split() if isinstance(classes, str) else classes
    return [token.lower() for token in [str(tag.get("id", "")), *classes] if token]


def _any(pattern: re.Pattern[str], tokens: list[str]) -> bool:
    return any(pattern.search(token) for token in tokens)


def _aria_label(tag: Tag) -> str:
    return str(tag.get("aria-label", "")).lower()
