"""Decoding of uploaded text: a BOM's encoding, else UTF-8, else the encoding charset-normalizer detects.

Nothing is assumed: a file that is not UTF-8 is decoded only when charset-normalizer finds an encoding
among the common ones (`GUESSES`) under which the text reads cleanly (its mess ratio at most
`MAX_CHAOS`); otherwise `decode_text` gives None and the caller fails the file with a clear error, never
indexing or training on mojibake. Ties (the same text reads cleanly in cp1250 and cp1252, as most
Western text does) go to the first encoding in `GUESSES`."""

from __future__ import annotations

import codecs
import re
import unicodedata

# Control characters that do not occur in real text (tab, newline, form feed and carriage return do).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
# Some text files carry a few stray control characters (terminal colours in logs); binary has many.
_MAX_CONTROL_RATIO = 0.05


GUESSES = (
    "gb18030", "big5", "big5hkscs", "cp950", "cp932", "shift_jis", "euc_jp", "iso2022_jp", "euc_kr",
    "cp949", "cp1252", "cp1250", "cp1251", "cp1253", "cp1254", "cp1255", "cp1256", "cp1257", "cp1258",
    "latin_1", "iso8859_2", "iso8859_5", "iso8859_7", "iso8859_9", "iso8859_15", "koi8_r", "koi8_u",
    "mac_roman", "cp866", "cp874", "tis_620",
)  # fmt: skip
"""Encodings a text file without a BOM that is not UTF-8 may be decoded as, most preferred first. UTF-16
and UTF-32 without a BOM, and EBCDIC, are never guessed."""
MAX_CHAOS = 0.1
"""The most "mess" (charset-normalizer's ratio of unlikely characters) a detected decoding may show."""


def detect_encoding(data: bytes) -> str | None:
    """The encoding of `data`: its BOM's, UTF-8 when it decodes as such, else charset-normalizer's best
    clean reading among GUESSES; None when there is none."""
    if data.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return "utf-32"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(data, final=False)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    if _broken_utf8(data):
        return None
    from charset_normalizer import from_bytes

    readings = [r for r in from_bytes(data) if r.encoding in GUESSES and r.chaos <= MAX_CHAOS]
    # Ranked: least mess, most coherence, then GUESSES order.
    readings.sort(key=lambda r: (r.chaos, -r.coherence, GUESSES.index(r.encoding)))
    for reading in readings:
        if _reads_cleanly_where_it_matters(str(reading)):
            return reading.encoding
    return None


def _reads_cleanly_where_it_matters(text: str) -> bool:
    """Whether the words holding non-ASCII characters read cleanly on their own (mess ratio at most
    MAX_CHAOS). charset-normalizer's ratio is over the whole text, so a few stray bytes in a long ASCII
    file ("warehouse \xff\xfe\xc3manual" → "˙ţĂmanual" in cp1250) are diluted to nothing; judged
    by themselves they are plainly mojibake, while "café crème" or Chinese text stay clean."""
    from charset_normalizer.md import mess_ratio

    words = [word for word in text.split() if not word.isascii()]
    if not words:
        return True
    if any(_symbol_inside_word(word) for word in words):
        return False
    return mess_ratio(" ".join(words), MAX_CHAOS) <= MAX_CHAOS


def _symbol_inside_word(word: str) -> bool:
    """A non-ASCII symbol (Unicode category S*: ₫, ˙, ¤, ©) with a letter on both sides, as stray bytes
    decode in some code page ("ÿ₫Ămanual"); real text puts symbols beside digits or spaces ("25°C",
    "4,50 €"), and its in-word punctuation ("don’t") is P*, not S*."""
    for before, char, after in zip(word, word[1:], word[2:], strict=False):
        if (
            not char.isascii()
            and unicodedata.category(char).startswith("S")
            and before.isalpha()
            and after.isalpha()
        ):
            return True
    return False


def looks_binary(text: str) -> bool:
    controls = _CONTROL.findall(text)
    return "\x00" in controls or len(controls) > _MAX_CONTROL_RATIO * max(len(text), 1)


def _broken_utf8(data: bytes) -> bool:
    """UTF-8 with a few bad bytes (a truncated or corrupted file), not another encoding: most of its
    non-ASCII characters decode as UTF-8. (GBK and Big5 text forms a valid UTF-8 pair only by accident.)"""
    text = data.decode("utf-8", errors="replace")
    wide = sum(1 for c in text if ord(c) > 127 and c != "\ufffd")
    bad = text.count("\ufffd")
    return wide > 0 and wide >= 9 * bad


def decode_text(data: bytes, *, partial: bool = False) -> str | None:
    """Decode `data` as text (see the module's rules); None when it is binary or its encoding cannot be
    determined.

    `partial` says `data` is the head of a longer file, so its last character may be cut in half.
    """
    return decode_with_encoding(data, partial=partial)[0]


def decode_with_encoding(data: bytes, *, partial: bool = False) -> tuple[str | None, str | None]:
    """(text, encoding) of `data`, as decode_text decodes it; text is None when it is binary or its
    encoding cannot be determined (encoding None too in the latter case)."""
    encoding = detect_encoding(data)
    if encoding is None:
        return None, None
    try:
        text = codecs.getincrementaldecoder(encoding)().decode(data, final=not partial)
    except UnicodeDecodeError:
        return None, encoding
    return (None if looks_binary(text) else text), encoding
