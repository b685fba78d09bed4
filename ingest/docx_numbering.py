"""Word paragraph styles and list numbering: the heading level of a paragraph and the list label ("3.",
"a)", "1.2.", "-") Word shows before it, computed from styles.xml and numbering.xml as Word counts.

Counting follows ECMA-376 §17.9 as Word applies it: the running count belongs to the abstract numbering
definition, so every w:num on the same w:abstractNum continues one sequence; a w:num whose w:lvlOverride
carries a w:startOverride restarts that level the first time the num is used at it; a level restarts
when a higher level is used (or as w:lvlRestart says). Level texts like "%1.%2." substitute each level's
count in that level's w:numFmt (decimal for all with w:isLgl).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from docx.oxml.ns import qn
from lxml import etree

_LEVELS = 9
_OFF = {"0", "false", "off"}
# Repeated letters ("aaa…") and Roman numerals stay readable up to here; beyond, decimal.
_MAX_LETTER_VALUE = 26 * 4
_MAX_ROMAN_VALUE = 3999
_ROMAN = [
    (1000, "m"), (900, "cm"), (500, "d"), (400, "cd"), (100, "c"), (90, "xc"),
    (50, "l"), (40, "xl"), (10, "x"), (9, "ix"), (5, "v"), (4, "iv"), (1, "i"),
]  # fmt: skip
_CJK_DIGITS = "〇一二三四五六七八九"
_FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")
_CIRCLED = "①②③④⑤⑥⑦⑧⑨⑩⑪⑫⑬⑭⑮⑯⑰⑱⑲⑳"


def is_on(element: etree._Element | None) -> bool:
    """Whether an OOXML on/off property (e.g. w:vanish, w:titlePg) is present and not switched off."""
    return element is not None and element.get(qn("w:val"), "true") not in _OFF


def format_number(value: int, fmt: str) -> str | None:
    """`value` written in Word's w:numFmt `fmt` ("decimal", "lowerLetter", "upperRoman", …), or None for a
    format not implemented here (the caller falls back to decimal)."""
    if fmt in ("decimal", "decimalHalfWidth") or value <= 0:
        return str(value)
    if fmt == "decimalFullWidth":
        return str(value).translate(_FULL_WIDTH)
    if fmt == "decimalZero":
        return f"{value:02d}"
    if fmt in ("lowerLetter", "upperLetter"):
        if value > _MAX_LETTER_VALUE:
            return str(value)
        letters = chr(ord("a") + (value - 1) % 26) * ((value - 1) // 26 + 1)  # Word: …, z, aa, bb, …
        return letters.upper() if fmt == "upperLetter" else letters
    if fmt in ("lowerRoman", "upperRoman"):
        roman = _roman(value) if value <= _MAX_ROMAN_VALUE else str(value)
        return roman.upper() if fmt == "upperRoman" else roman
    if fmt == "ordinal":
        suffix = "th" if value % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(value % 10, "th")
        return f"{value}{suffix}"
    if fmt in ("chineseCounting", "chineseCountingThousand", "japaneseCounting", "taiwaneseCounting"):
        return _cjk_counting(value)
    if fmt in ("ideographDigital", "taiwaneseDigital", "japaneseDigitalTenThousand"):
        return "".join(_CJK_DIGITS[int(digit)] for digit in str(value))
    if fmt == "decimalEnclosedCircle":
        return _CIRCLED[value - 1] if value <= len(_CIRCLED) else str(value)
    return None


def _roman(value: int) -> str:
    parts = []
    for size, numeral in _ROMAN:
        count, value = divmod(value, size)
        parts.append(numeral * count)
    return "".join(parts)


def _cjk_counting(value: int) -> str:
    if value >= 10_000:
        return str(value)
    text = ""
    for size, unit in ((1000, "千"), (100, "百"), (10, "十")):
        digit, value = divmod(value, size)
        if digit:
            text += ("" if size == 10 and digit == 1 and not text else _CJK_DIGITS[digit]) + unit
        elif text and value:
            text += "" if text.endswith("〇") else "〇"
    return text + (_CJK_DIGITS[value] if value else "")


class Styles:
    """Paragraph styles from styles.xml: names, outline levels and numbering, following w:basedOn."""

    def __init__(self, styles: etree._Element | None) -> None:
        self._by_id: dict[str, etree._Element] = {}
        self.default_paragraph: str | None = None
        for style in [] if styles is None else styles.iterchildren(qn("w:style")):
            style_id = style.get(qn("w:styleId"))
            if style_id is None or style.get(qn("w:type"), "paragraph") != "paragraph":
                continue
            self._by_id[style_id] = style
            if style.get(qn("w:default"), "0") not in _OFF:
                self.default_paragraph = style_id

    def of(self, paragraph: etree._Element) -> str | None:
        """The style id of a w:p (its w:pStyle, else the default paragraph style)."""
        style = paragraph.find(f"{qn('w:pPr')}/{qn('w:pStyle')}")
        return style.get(qn("w:val")) if style is not None else self.default_paragraph

    def name(self, style_id: str | None) -> str:
        """The style's name, lower-cased as Word stores built-ins ("heading 1", "title"), or ""."""
        name = self._by_id[style_id].find(qn("w:name")) if style_id in self._by_id else None
        return (name.get(qn("w:val")) or "").lower() if name is not None else ""

    def find(self, style_id: str | None, path: str) -> etree._Element | None:
        """The first element at `path` (below w:style, e.g. "w:pPr/w:outlineLvl") in the style or the
        styles it is based on, or None."""
        query = "/".join(qn(step) for step in path.split("/"))
        seen: set[str] = set()
        while style_id in self._by_id and style_id not in seen:
            seen.add(style_id)
            style = self._by_id[style_id]
            if (found := style.find(query)) is not None:
                return found
            based_on = style.find(qn("w:basedOn"))
            style_id = based_on.get(qn("w:val")) if based_on is not None else None
        return None


@dataclass(frozen=True)
class _Level:
    start: int = 0
    fmt: str = "decimal"
    text: str = ""
    restart: int | None = None  # 1-based level whose use restarts this one; None: the level above; 0: never
    legal: bool = False  # w:isLgl: every level's count in decimal
    style: str | None = None  # w:pStyle: the paragraph style bound to this level


def _int(element: etree._Element | None, default: int | None) -> int | None:
    try:
        return int(element.get(qn("w:val"), "")) if element is not None else default
    except ValueError:
        return default


def _val(element: etree._Element | None) -> str | None:
    return element.get(qn("w:val")) if element is not None else None


def _level(lvl: etree._Element) -> _Level:
    return _Level(
        start=_int(lvl.find(qn("w:start")), 0) or 0,
        fmt=_val(lvl.find(qn("w:numFmt"))) or "decimal",
        text=_val(lvl.find(qn("w:lvlText"))) or "",
        restart=_int(lvl.find(qn("w:lvlRestart")), None),
        legal=is_on(lvl.find(qn("w:isLgl"))),
        style=_val(lvl.find(qn("w:pStyle"))),
    )


def _levels(parent: etree._Element) -> dict[int, _Level]:
    return {_int_attr(lvl, "w:ilvl"): _level(lvl) for lvl in parent.iterchildren(qn("w:lvl"))}


def _int_attr(element: etree._Element, name: str) -> int:
    try:
        return int(element.get(qn(name), "0"))
    except ValueError:
        return 0


@dataclass
class _Num:
    abstract: str
    levels: dict[int, _Level] = field(default_factory=dict)  # w:lvlOverride/w:lvl: replaces a level
    starts: dict[int, int] = field(default_factory=dict)  # w:lvlOverride/w:startOverride


class Numbering:
    """List labels as Word displays them. Call `label` once for every paragraph, in document order: it
    counts. `unknown_formats` collects the w:numFmt values shown as decimal because they are not
    implemented here."""

    def __init__(self, numbering: etree._Element | None, styles: Styles) -> None:
        self._styles = styles
        self._abstracts: dict[str, dict[int, _Level]] = {}
        self._links: dict[str, str] = {}  # abstractNumId -> numbering style (w:numStyleLink)
        self._nums: dict[str, _Num] = {}
        self._counts: dict[str, list[int | None]] = {}
        self._started: set[tuple[str, int]] = set()
        self.unknown_formats: set[str] = set()
        if numbering is None:
            return
        for abstract in numbering.iterchildren(qn("w:abstractNum")):
            abstract_id = abstract.get(qn("w:abstractNumId"), "")
            self._abstracts[abstract_id] = _levels(abstract)
            if (link := _val(abstract.find(qn("w:numStyleLink")))) is not None:
                self._links[abstract_id] = link
        for num in numbering.iterchildren(qn("w:num")):
            entry = _Num(_val(num.find(qn("w:abstractNumId"))) or "")
            for override in num.iterchildren(qn("w:lvlOverride")):
                ilvl = _int_attr(override, "w:ilvl")
                if (start := _int(override.find(qn("w:startOverride")), None)) is not None:
                    entry.starts[ilvl] = start
                entry.levels.update(_levels(override))
            self._nums[num.get(qn("w:numId"), "")] = entry

    def label(self, paragraph: etree._Element, style_id: str | None) -> str | None:
        """The label Word shows before `paragraph` ("3.", "a)", "2.1.", "-" for any bullet), or None when
        it is not a numbered paragraph."""
        num_id, ilvl = self._num_pr(paragraph, style_id)
        num = self._nums.get(num_id or "")
        if num is None:
            return None
        abstract_id = self._abstract_of(num)
        levels = self._abstracts.get(abstract_id, {}) | num.levels
        level = levels.get(ilvl)
        if level is None:
            return None
        counts = self._counts.setdefault(abstract_id, [None] * _LEVELS)
        if ilvl in num.starts and (num_id, ilvl) not in self._started:
            counts[ilvl] = num.starts[ilvl]
        else:
            current = counts[ilvl]
            counts[ilvl] = level.start if current is None else current + 1
        self._started.add((num_id, ilvl))
        for deeper in range(ilvl + 1, _LEVELS):
            below = levels.get(deeper)
            restart = below.restart if below is not None and below.restart is not None else deeper
            if restart and ilvl < restart:
                counts[deeper] = None
        if level.fmt == "bullet":
            return "-"
        return (
            re.sub(r"%([1-9])", lambda m: self._count(m, levels, counts, level.legal), level.text).strip()
            or None
        )

    def _count(
        self, match: re.Match, levels: dict[int, _Level], counts: list[int | None], legal: bool
    ) -> str:
        index = int(match.group(1)) - 1
        level = levels.get(index, _Level())
        value = counts[index] if counts[index] is not None else level.start
        fmt = "decimal" if legal else level.fmt
        if fmt == "none":
            return ""
        text = format_number(value, fmt)
        if text is None:
            self.unknown_formats.add(fmt)
            return str(value)
        return text

    def _num_pr(self, paragraph: etree._Element, style_id: str | None) -> tuple[str | None, int]:
        direct = paragraph.find(f"{qn('w:pPr')}/{qn('w:numPr')}")
        num_id = _val(direct.find(qn("w:numId"))) if direct is not None else None
        ilvl = _int(direct.find(qn("w:ilvl")), None) if direct is not None else None
        if num_id is None:
            num_id = _val(self._styles.find(style_id, "w:pPr/w:numPr/w:numId"))
        if ilvl is None:
            ilvl = _int(self._styles.find(style_id, "w:pPr/w:numPr/w:ilvl"), None)
        if ilvl is None and num_id in self._nums:
            # A style bound to a level (w:lvl/w:pStyle) takes that level.
            levels = self._abstracts.get(self._abstract_of(self._nums[num_id]), {})
            ilvl = next((i for i, level in levels.items() if level.style == style_id), 0)
        return num_id, min(max(ilvl or 0, 0), _LEVELS - 1)

    def _abstract_of(self, num: _Num) -> str:
        # An abstract that only links to a numbering style (w:numStyleLink) takes the definition of the
        # num that style points to.
        abstract_id = num.abstract
        for _ in range(3):
            if abstract_id not in self._links:
                break
            linked = self._nums.get(
                _val(self._styles.find(self._links[abstract_id], "w:pPr/w:numPr/w:numId")) or ""
            )
            if linked is None:
                break
            abstract_id = linked.abstract
        return abstract_id
