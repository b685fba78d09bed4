"""Optical character recognition of page images: RapidOCR running the PP-OCRv4 models (Chinese and English)
that its wheel ships, on ONNX Runtime on the CPU, with no network. Loaded once per process, on first use."""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# Lines recognised with a lower confidence are dropped: PaddleOCR's `drop_score` default, which RapidOCR
# keeps as its `text_score` default. Below it the recognizer mostly reads noise, rules or figure marks.
MIN_LINE_SCORE = 0.5
PACKAGE = "rapidocr_onnxruntime"

_engine: Any = None
_load_error: str | None = None
_load_lock = threading.Lock()
# One recognition at a time: each run already uses every core (ONNX Runtime's intra-op threads), and the
# engine keeps per-call settings on itself.
_run_lock = threading.Lock()


@dataclass(frozen=True)
class OcrLine:
    """One line of text found in an image."""

    text: str
    score: float  # recognition confidence, 0..1
    box: tuple[float, float, float, float]  # left, top, right, bottom, in pixels of the image (y down)


class OcrUnavailable(RuntimeError):
    """OCR cannot run in this process: the package or its models are missing, or ONNX Runtime failed."""


def ocr_available() -> bool:
    """Whether the OCR package is installed (a cheap check: it imports nothing)."""
    return importlib.util.find_spec(PACKAGE) is not None


def ocr_image(image: np.ndarray) -> list[OcrLine]:
    """Every text line the recognizer reads in `image`, in its detection order, with its confidence.

    `image` is uint8, (height, width, 3) RGB or (height, width) grey. Lines are not filtered by score:
    callers drop those below MIN_LINE_SCORE. An image without text gives []. Raises OcrUnavailable when
    the engine cannot be loaded. Takes seconds per page on a CPU; safe to call from several threads."""
    engine = _get_engine()
    if image.ndim == 3:
        image = np.ascontiguousarray(image[..., ::-1])  # RapidOCR takes OpenCV's BGR order
    with _run_lock:
        result, _elapsed = engine(image)
    lines = []
    for points, text, score in result or []:
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        if text.strip():
            lines.append(OcrLine(text.strip(), float(score), (min(xs), min(ys), max(xs), max(ys))))
    return lines


def lines_to_text(lines: Sequence[OcrLine]) -> str:
    """The lines as text in reading order for one column: rows top to bottom, each row left to right.

    A line belongs to the row above when its vertical centre falls within that row's height, which
    keeps slightly skewed scans together; lines in a row are joined by a space, rows by a newline."""
    rows: list[list[OcrLine]] = []
    for line in sorted(lines, key=lambda line: (line.box[1], line.box[0])):
        centre = (line.box[1] + line.box[3]) / 2
        if rows and min(item.box[1] for item in rows[-1]) <= centre <= max(item.box[3] for item in rows[-1]):
            rows[-1].append(line)
        else:
            rows.append([line])
    return "\n".join(
        " ".join(line.text for line in sorted(row, key=lambda line: line.box[0])) for row in rows
    )


def _get_engine() -> Any:
    global _engine, _load_error
    with _load_lock:
        if _engine is None and _load_error is None:
            try:
                from rapidocr_onnxruntime import RapidOCR

                # text_score=0: keep every line, so a caller can tell "no text" from "unreadable text".
                # use_cls=False, PaddleOCR's own default: the 180-degree line classifier squeezes a line
                # into 192 px and turned half the full-width lines of a justified A4 page into garbage.
                _engine = RapidOCR(text_score=0.0, use_cls=False)
            except Exception as error:  # an ImportError, or ONNX Runtime refusing the models
                _load_error = f"{type(error).__name__}: {error}"
        if _engine is None:
            raise OcrUnavailable(f"OCR could not be loaded ({PACKAGE}): {_load_error}")
        return _engine
