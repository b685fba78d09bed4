"""UI strings in English and Chinese, one JSON file per page under `server/ui/strings/`
(`{"en": {key: text}, "zh": {key: text}}`; `common.json` is on every page), and the language of a request.

Keys are namespaced by file (`chat.send`, `common.nav.chat`). Every key must exist in both languages:
`load_strings` raises otherwise, so a page never shows a missing string (tests/test_ui_i18n.py).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from starlette.requests import Request

LANGUAGES = ("en", "zh")
STRINGS_DIR = Path(__file__).resolve().parent / "strings"
LANG_COOKIE = "ragtune_lang"


@functools.cache
def load_strings() -> dict[str, dict[str, str]]:
    """{language: {"<file>.<key>": text}} from every strings file. Raises ValueError naming the file and
    key when a key is missing in a language (or a file is not `{"en": {...}, "zh": {...}}`)."""
    merged: dict[str, dict[str, str]] = {lang: {} for lang in LANGUAGES}
    for path in sorted(STRINGS_DIR.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if set(data) != set(LANGUAGES):
            raise ValueError(f"{path.name}: expected the languages {LANGUAGES}, found {sorted(data)}")
        keys = {lang: set(data[lang]) for lang in LANGUAGES}
        for lang in LANGUAGES:
            for other in LANGUAGES:
                missing = keys[other] - keys[lang]
                if missing:
                    raise ValueError(f"{path.name}: {lang} lacks {sorted(missing)}")
            for key, text in data[lang].items():
                merged[lang][f"{path.stem}.{key}"] = text
    return merged


def strings_for(lang: str, *files: str) -> dict[str, str]:
    """The strings of `common` and of `files`, in `lang`."""
    prefixes = tuple(f"{name}." for name in ("common", *files))
    return {key: text for key, text in load_strings()[lang].items() if key.startswith(prefixes)}


def request_language(request: Request) -> str:
    """`?lang=` (en or zh), else the `ragtune_lang` cookie the switch sets, else the browser's
    Accept-Language (zh for any Chinese tag ranked above English), else en."""
    for value in (request.query_params.get("lang"), request.cookies.get(LANG_COOKIE)):
        if value in LANGUAGES:
            return value
    ranked = []
    for part in request.headers.get("accept-language", "").split(","):
        tag, _, q = part.strip().partition(";q=")
        try:
            weight = float(q) if q else 1.0
        except ValueError:
            weight = 0.0
        ranked.append((weight, tag.lower()))
    for _, tag in sorted(ranked, key=lambda pair: -pair[0]):
        if tag.startswith("zh"):
            return "zh"
        if tag.startswith("en"):
            return "en"
    return "en"
