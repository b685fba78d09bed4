"""`python -m finetune.worker <job-id> --data-dir DIR`: train one job in its own process.

The server writes `<data>/fine_tuning/<job-id>/job.json` (paths, and `config`: `TrainConfig.to_dict()` as
the job row holds it); this process appends its progress to `events.jsonl` beside it and, on success,
writes the adapter and `result.json`. It exits 0 on success, 2 when the data is invalid (`error.json`),
3 when cancelled (SIGTERM), and dies with its parent.
Started again after a crash, it resumes from the job's last checkpoint.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from common.atomic import atomic_write_json

EXIT_OK, EXIT_BAD_DATA, EXIT_CANCELLED = 0, 2, 3


class FileReporter:
    """Events as JSON lines, flushed and fsynced so the server never reads half a line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stop = False
        self.writing = False  # an event line is being written: a signal must not tear it

    def event(self, message: str, data: dict[str, Any] | None = None, kind: str = "message") -> None:
        record = {
            "created_at": int(time.time()),
            "level": "info",
            "message": message,
            "data": data or {},
            "type": kind,
        }
        self.writing = True
        try:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
                f.flush()
                os.fsync(f.fileno())
        finally:
            self.writing = False

    def stop_requested(self) -> bool:
        return self.stop


def die_with_parent() -> None:
    """Linux: get SIGTERM when the server that started us dies (so no orphan keeps training)."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def write_json(path: Path, value: dict[str, Any]) -> None:
    atomic_write_json(path, value)


def run(job_id: str, data_dir: Path) -> int:
    from finetune.config import TrainConfig
    from finetune.data import DataError
    from finetune.hardware import pick_device, pick_dtype
    from finetune.recipe import Cancelled, LoRARecipe

    run_dir = data_dir / "fine_tuning" / job_id
    spec = json.loads((run_dir / "job.json").read_text())
    reporter = FileReporter(run_dir / "events.jsonl")

    def on_sigterm(*_: Any) -> None:
        """Stop now. Between optimizer steps the recipe would notice the flag, but loading the model,
        generating the base model's answers or measuring retention can take minutes without a step, and a
        cancelled job must stop at once. So Cancelled is raised where the signal lands, except while an
        event line is being written (it must stay whole); checkpoints and the adapter are written
        atomically, so an interrupted write leaves the previous one."""
        reporter.stop = True
        if not reporter.writing:
            signal.signal(signal.SIGTERM, lambda *_: setattr(reporter, "stop", True))  # raise once only
            raise Cancelled

    signal.signal(signal.SIGTERM, on_sigterm)
    device = pick_device("auto")
    try:
        recipe = LoRARecipe(
            TrainConfig.from_dict(spec["config"]),
            Path(spec["model_dir"]),
            Path(spec["training_file"]),
            run_dir,
            reporter,
            Path(spec["validation_file"]) if spec.get("validation_file") else None,
            cache_dir=data_dir / "fine_tuning" / "cache",
            dtype=pick_dtype("auto", device),
        )
        recipe.setup()
        metrics = recipe.train()
        recipe.save(
            Path(spec["adapter_dir"]),
            {"base_model": spec["base_model"], "job_id": job_id, "training_file": spec["training_file_id"]},
        )
    except Cancelled:
        reporter.event("Training stopped (cancelled, or the server shut down); checkpoints are kept.")
        return EXIT_CANCELLED
    except DataError as exc:
        write_json(
            run_dir / "error.json",
            {"code": exc.code, "message": exc.message, "param": None if exc.line is None else str(exc.line)},
        )
        return EXIT_BAD_DATA
    write_json(run_dir / "result.json", {"metrics": metrics, "adapter_dir": spec["adapter_dir"]})
    recipe.cleanup()
    return EXIT_OK


def main() -> None:
    parser = argparse.ArgumentParser(description="Train one ragtune fine-tuning job.")
    parser.add_argument("job_id")
    parser.add_argument("--data-dir", type=Path, required=True)
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    die_with_parent()
    sys.exit(run(args.job_id, args.data_dir))


if __name__ == "__main__":
    main()
