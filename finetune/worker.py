"""`python -m finetune.worker <job-id> --data-dir DIR`: train one job in its own process.

The server writes `<data>/fine_tuning/<job-id>/job.json` (paths, `config`: `TrainConfig.to_dict()` as
the job row holds it, and `training_device`: RAGTUNE_TRAINING_DEVICE); this process appends its progress
to `events.jsonl` beside it and, on success, writes the adapter and `result.json`. It exits 0 on success;
2 when the job cannot succeed as asked, with `error.json` (`code`, `message`, `param`) saying why: invalid
data, a training device this machine lacks (`training_device_unavailable`), or the device's memory ran out
(`out_of_memory`), or the job can never fit its card's training share (`insufficient_gpu_memory`); 3
when cancelled (SIGTERM); 4 when it fits the share but not what is free now (`wait.json`); and it dies
with its parent.
Started again after a crash, it resumes from the job's last checkpoint.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any

from common.atomic import atomic_write_json
from finetune.hardware import out_of_memory_errors

EXIT_OK, EXIT_FAILED, EXIT_CANCELLED, EXIT_WAIT = 0, 2, 3, 4
"""EXIT_FAILED: `error.json` holds the job's error; the server fails the job with it (no retry).
EXIT_WAIT: the job fits its card's training share but not the memory free now; `wait.json` says why
and the server puts it back in the queue to try again later (finetune is not started, nothing trained)."""


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


def plan_on_card(
    device: str, split: dict[str, Any], config: Any, model_dir: Path, dtype: Any
) -> tuple[Any, int | None]:
    """(Admission, memory budget in bytes) of a job on CUDA `device` (`cuda:N`), by common/memory_plan.py:
    `split` is job.json's `gpu_split` (`serving_share`: RAGTUNE_GPU_MEMORY_UTILIZATION,
    `serving_cards`: the CUDA indices the serving engine uses, `training_share`:
    RAGTUNE_TRAINING_MEMORY_UTILIZATION or None); the job's smallest footprint is its weights, adapter
    state and one row of `config.max_length` (plus a CUDA context). A model whose shape cannot be read
    from its config.json is admitted unplanned (budget None). Raises SplitError for a split that
    cannot hold (the server checks it at start-up too)."""
    import torch

    from common.memory_plan import (
        CUDA_CONTEXT_BYTES,
        Admission,
        ModelShape,
        admit_job,
        plan_split,
        training_bytes,
    )

    index = int(device.split(":", 1)[1]) if ":" in device else torch.cuda.current_device()
    on_card = index in (split.get("serving_cards") or [])
    plan = plan_split(split.get("serving_share", 0.9), on_card, split.get("training_share"))
    try:
        shape = ModelShape.from_model_dir(model_dir)
    except (OSError, ValueError, KeyError):
        return Admission(True, False, 0, "unplanned: the model's shape is unknown"), None
    free, total = torch.cuda.mem_get_info(torch.device(device))
    need = CUDA_CONTEXT_BYTES + training_bytes(
        shape,
        torch.finfo(dtype).bits // 8,
        shape.lora_parameters(config.lora_r, config.target_modules),
        config.max_length,
        config.gradient_checkpointing,
    )
    return admit_job(need, plan, total, free), plan.training_bytes(total) - CUDA_CONTEXT_BYTES


def out_of_memory_message(
    error: str, device: str, stage: str, config: Any, memory: tuple[int, int] | None
) -> str:
    """The job's error message for an out-of-memory `error` (PyTorch's text) on `device` while `stage`:
    what ran out (with `memory`, (free, total) bytes after the cache was released, when known) and the
    settings of `config` (a TrainConfig) that lower the memory a step needs."""
    tried = re.search(r"Tried to allocate ([\d.]+ [KMGT]?i?B)", error)
    message = f"Out of memory on {device} while {stage}"
    if tried:
        message += f" (it tried to allocate {tried.group(1)} more)"
    if memory:
        free, total = memory
        message += f"; {free / 2**30:.2f} of {total / 2**30:.2f} GiB free once the job let go of its memory"
    message += (
        f". Lower training.micro_batch_size (now {config.micro_batch_size or 'auto'}) or "
        f"training.max_length (now {config.max_length})"
    )
    if not config.gradient_checkpointing:
        message += ", or set training.gradient_checkpointing to true"
    return message + "."


def run(job_id: str, data_dir: Path) -> int:
    """Train job `job_id` from `<data_dir>/fine_tuning/<job_id>/job.json`. Returns the exit code: EXIT_OK
    (`result.json` written), EXIT_FAILED (`error.json` written) or EXIT_CANCELLED. Raises whatever else
    went wrong (the server then re-queues the job to resume it)."""
    from common.memory_plan import Admission, SplitError
    from finetune.config import TrainConfig
    from finetune.data import DataError
    from finetune.hardware import (
        DeviceUnavailable,
        pick_dtype,
        release_cached_memory,
        resolve_training_device,
    )
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
    config = TrainConfig.from_dict(spec["config"])
    try:
        device = resolve_training_device(spec.get("training_device") or "auto")
    except DeviceUnavailable as exc:
        write_json(
            run_dir / "error.json",
            {"code": "training_device_unavailable", "message": str(exc), "param": None},
        )
        return EXIT_FAILED
    dtype, budget = pick_dtype("auto", device), None
    if device.startswith("cuda"):
        try:
            admission, budget = plan_on_card(
                device, spec.get("gpu_split") or {}, config, Path(spec["model_dir"]), dtype
            )
        except SplitError as exc:
            admission = Admission(False, False, 0, str(exc))
        if not admission.start:
            if admission.wait:
                write_json(run_dir / "wait.json", {"message": admission.reason})
                return EXIT_WAIT
            write_json(
                run_dir / "error.json",
                {"code": "insufficient_gpu_memory", "message": admission.reason, "param": None},
            )
            return EXIT_FAILED
        reporter.event(f"GPU memory planned on {device}: {admission.reason}", {"memory_budget_bytes": budget})
    stage, oom = "setting up (loading the model, generating the base model's answers)", None
    try:
        recipe = LoRARecipe(
            config,
            Path(spec["model_dir"]),
            Path(spec["training_file"]),
            run_dir,
            reporter,
            Path(spec["validation_file"]) if spec.get("validation_file") else None,
            cache_dir=data_dir / "fine_tuning" / "cache",
            dtype=dtype,
            device=device,
            memory_budget=budget,
        )
        recipe.setup()
        stage = "training or scoring an epoch"
        metrics = recipe.train()
        stage = "saving the adapter"
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
        return EXIT_FAILED
    except out_of_memory_errors() as exc:
        oom = str(exc)  # only the text: the traceback and the tensors its frames hold go with this block
    if oom is not None:
        recipe = None  # the model, optimizer and activations: released before the memory is measured
        memory = release_cached_memory(device)
        message = out_of_memory_message(oom, device, stage, config, memory)
        write_json(run_dir / "error.json", {"code": "out_of_memory", "message": message, "param": None})
        return EXIT_FAILED
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
