"""What every benchmark shares: where results go and how they are written."""

from __future__ import annotations

from pathlib import Path

from common.atomic import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def write_report(path: Path, report: dict) -> None:
    """Write the JSON report atomically (temporary name, then rename) and say where it went."""
    atomic_write_json(path, report)
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
