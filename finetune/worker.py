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

Data-parallel (RAGTUNE_TRAINING_PROCESSES > 1), the server starts it under torchrun instead
(`python -m torch.distributed.run --standalone --nproc-per-node=N -m finetune.worker ...`): each of the N
processes trains on `cuda:<LOCAL_RANK>` (or all on the CPU, with gloo) with finetune/distributed.py, and
rank 0 alone writes events.jsonl, result.json, error.json and wait.json. torchrun's exit status does not
carry the worker's exit code, so the server reads those files instead.
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
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common.atomic import atomic_write_json
from finetune.hardware import out_of_memory_errors

if TYPE_CHECKING:
    from finetune.distributed import Distributed

EXIT_OK, EXIT_FAILED, EXIT_CANCELLED, EXIT_WAIT = 0, 2, 3, 4
"""EXIT_FAILED: `error.json` holds the job's error; the server fails the job with it (no retry).
EXIT_WAIT: the job fits its card's training share but not the memory free now; `wait.json` says why
and the server puts it back in the queue to try again later (finetune is not started, nothing trained)."""


class FileReporter:
    """Events as JSON lines, flushed and fsynced so the server never reads half a line. `path` None: the
    events go nowhere (a data-parallel rank other than 0), while `stop` still works."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.stop = False
        self.writing = False  # an event line is being written: a signal must not tear it

    def event(self, message: str, data: dict[str, Any] | None = None, kind: str = "message") -> None:
        if self.path is None:
            return
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


def die_with_launcher() -> None:
    """Linux, under torchrun: get SIGTERM when the server that started torchrun dies. die_with_parent
    covers torchrun's own death (it is this process's parent), but torchrun gets no signal when the
    server dies and would train on, beside the job the next server starts again. So a daemon thread
    reads torchrun's parent from /proc every 2 seconds and, once it changes (the server died and
    torchrun was re-parented, or torchrun is gone), sends this process SIGTERM: the cancel path, after
    which torchrun stops the other ranks. Does nothing where /proc cannot say."""
    agent = os.getppid()
    launcher = _parent_of(agent)
    if launcher is None:
        return

    def watch() -> None:
        while _parent_of(agent) == launcher:
            time.sleep(2)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="ragtune-launcher-watch", daemon=True).start()


def _parent_of(pid: int) -> int | None:
    """The parent process id of `pid` (field 4 of /proc/<pid>/stat, after the parenthesised command
    name, which may hold spaces), or None when the process is gone or /proc cannot say."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


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
    error: str,
    device: str,
    stage: str,
    config: Any,
    memory: tuple[int, int] | None,
    micro_batch_size: int | None = None,
) -> str:
    """The job's error message for an out-of-memory `error` (PyTorch's text) on `device` while `stage`:
    what ran out (with `memory`, (free, total) bytes after the cache was released, when known) and the
    settings of `config` (a TrainConfig) that lower the memory a step needs; `micro_batch_size` is the
    size the recipe was using (what `auto` had come to), when known."""
    tried = re.search(r"Tried to allocate ([\d.]+ [KMGT]?i?B)", error)
    message = f"Out of memory on {device} while {stage}"
    if tried:
        message += f" (it tried to allocate {tried.group(1)} more)"
    if memory:
        free, total = memory
        message += f"; {free / 2**30:.2f} of {total / 2**30:.2f} GiB free once the job let go of its memory"
    if config.micro_batch_size is None and micro_batch_size is not None:
        now = f"auto, at {micro_batch_size}"
    else:
        now = config.micro_batch_size or "auto"
    message += (
        f". Lower training.micro_batch_size (now {now}) or training.max_length (now {config.max_length})"
    )
    if not config.gradient_checkpointing:
        message += ", or set training.gradient_checkpointing to true"
    return message + "."


def worst_admission(admissions: list[tuple[str, Any]]) -> tuple[str, Any]:
    """Of every rank's (device, Admission) the one that decides a data-parallel job (all ranks start or
    none does): the first that can never fit, else the first that must wait, else the first."""
    for refused in (lambda a: not a.start and not a.wait, lambda a: not a.start):
        for device, admission in admissions:
            if refused(admission):
                return device, admission
    return admissions[0]


def run(job_id: str, data_dir: Path, dist: Distributed | None = None) -> int:
    """Train job `job_id` from `<data_dir>/fine_tuning/<job_id>/job.json`. Returns the exit code: EXIT_OK
    (`result.json` written), EXIT_FAILED (`error.json` written) or EXIT_CANCELLED. Raises whatever else
    went wrong (the server then re-queues the job to resume it).

    `dist` (default: from torchrun's environment, a world of one without it): under torchrun every
    rank runs this and joins the process group; the files are rank 0's to write. The device check and
    the memory plan (every card's, gathered) give every rank the same answer; a rank that fails alone
    later (its card ran out of memory) writes nothing, torchrun stops the others and the server
    re-queues the job as after a crash."""
    from finetune.distributed import Distributed

    dist = dist or Distributed.from_env()
    try:
        return _run(job_id, data_dir, dist)
    finally:
        dist.destroy_process_group()


def _run(job_id: str, data_dir: Path, dist: Distributed) -> int:
    """`run`'s work, in the process group `dist` when it has more than one rank."""
    from common.memory_plan import Admission, SplitError
    from finetune.config import TrainConfig
    from finetune.data import DataError
    from finetune.distributed import rank_device
    from finetune.hardware import (
        DeviceUnavailable,
        pick_dtype,
        release_cached_memory,
        resolve_training_device,
    )
    from finetune.recipe import Cancelled, LoRARecipe

    run_dir = data_dir / "fine_tuning" / job_id
    spec = json.loads((run_dir / "job.json").read_text())
    reporter = FileReporter(run_dir / "events.jsonl" if dist.main else None)

    def write_outcome(path: Path, value: dict[str, Any]) -> None:
        """The job's outcome files: rank 0's to write."""
        if dist.main:
            atomic_write_json(path, value)

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
        device = rank_device(resolve_training_device(spec.get("training_device") or "auto"), dist)
    except DeviceUnavailable as exc:  # the same answer on every rank: each returns EXIT_FAILED
        write_outcome(
            run_dir / "error.json",
            {"code": "training_device_unavailable", "message": str(exc), "param": None},
        )
        return EXIT_FAILED
    dist.init_process_group(device)
    dtype, budget = pick_dtype("auto", device), None
    if device.startswith("cuda"):
        try:
            admission, budget = plan_on_card(
                device, spec.get("gpu_split") or {}, config, Path(spec["model_dir"]), dtype
            )
        except SplitError as exc:
            admission = Admission(False, False, 0, str(exc))
        if dist.world_size > 1:  # each rank planned its own card; the job starts on all of them or none
            card, worst = worst_admission(dist.all_gather_object((device, admission)))
            if not worst.start:
                admission = Admission(False, worst.wait, worst.need_bytes, f"On {card}: {worst.reason}")
        if not admission.start:
            if admission.wait:
                write_outcome(run_dir / "wait.json", {"message": admission.reason})
                return EXIT_WAIT
            write_outcome(
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
            dist=dist,
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
        write_outcome(
            run_dir / "error.json",
            {"code": exc.code, "message": exc.message, "param": None if exc.line is None else str(exc.line)},
        )
        return EXIT_FAILED
    except out_of_memory_errors() as exc:
        oom = str(exc)  # only the text: the traceback and the tensors its frames hold go with this block
    if oom is not None:
        micro = getattr(recipe, "micro_batch_size", None)  # where `auto` had got to (halved on each OOM)
        recipe = None  # the model, optimizer and activations: released before the memory is measured
        memory = release_cached_memory(device)
        message = out_of_memory_message(oom, device, stage, config, memory, micro)
        write_outcome(run_dir / "error.json", {"code": "out_of_memory", "message": message, "param": None})
        return EXIT_FAILED
    write_outcome(run_dir / "result.json", {"metrics": metrics, "adapter_dir": spec["adapter_dir"]})
    recipe.cleanup()
    return EXIT_OK


def main() -> None:
    parser = argparse.ArgumentParser(description="Train one ragtune fine-tuning job.")
    parser.add_argument("job_id")
    parser.add_argument("--data-dir", type=Path, required=True)
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    die_with_parent()
    from finetune.distributed import Distributed

    dist = Distributed.from_env()
    if dist.world_size > 1:
        die_with_launcher()
    sys.exit(run(args.job_id, args.data_dir, dist))


if __name__ == "__main__":
    main()
