"""Which device and dtype to compute in (shared by serving and training)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

TRAINING_DEVICE_SETTING = "RAGTUNE_TRAINING_DEVICE"
DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
"""The values a device setting may take: `auto`, `cpu`, `mps`, `cuda` or `cuda:N`."""


class DeviceUnavailable(ValueError):
    """A device setting names a device this machine does not have; the message names the setting."""


def cpu_has_native_bf16() -> bool:
    """AVX-512 BF16 or AMX: without them bfloat16 is emulated on the CPU and slower than float32."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def pick_device(setting: str = "auto") -> str:
    """`cuda` when `setting` is `auto` and PyTorch sees a CUDA GPU, else `cpu`; any other setting as is."""
    import torch

    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return setting


def pick_dtype(setting: str, device: str) -> Any:
    """The torch dtype for `setting` (`auto` or a torch dtype name) on `device` (`cpu`, `cuda`, `cuda:N`,
    `mps`): `auto` is bfloat16 on a CUDA GPU that supports it (else float16), bfloat16 on a CPU with
    native bf16 (else float32), float32 on anything else."""
    import torch

    if setting != "auto":
        return getattr(torch, setting)
    kind = str(device).split(":", 1)[0]
    if kind == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if kind == "cpu":
        return torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    return torch.float32


def resolve_training_device(setting: str = "auto", name: str = TRAINING_DEVICE_SETTING) -> str:
    """The device to train on for `setting` (`auto`, `cpu`, `cuda`, `cuda:N`, `mps`), as `cpu`, `mps` or
    `cuda:N` (`cuda` is the current CUDA device, `auto` is `pick_device`'s choice).

    Raises DeviceUnavailable, naming the setting `name`, when the value is not one of those or names a
    device PyTorch cannot use here (no CUDA GPU, an index past the GPU count, no MPS)."""
    import torch

    if not DEVICE_PATTERN.fullmatch(setting):
        raise DeviceUnavailable(f"{name}={setting!r} is not a device: use auto, cpu, cuda, cuda:N or mps.")
    device = pick_device(setting)
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceUnavailable(
                f"{name}={setting!r} but PyTorch sees no CUDA GPU here (torch {torch.__version__}, built "
                f"for CUDA {torch.version.cuda or 'none'}); set {name} to auto or cpu."
            )
        count = torch.cuda.device_count()
        index = int(device.split(":", 1)[1]) if ":" in device else torch.cuda.current_device()
        if index >= count:
            raise DeviceUnavailable(
                f"{name}={setting!r} but PyTorch sees {count} CUDA GPU(s) (cuda:0 to cuda:{count - 1})."
            )
        return f"cuda:{index}"
    if device == "mps" and not (torch.backends.mps.is_available()):
        raise DeviceUnavailable(f"{name}='mps' but PyTorch has no MPS (Apple GPU) here; set {name} to cpu.")
    return device


def release_cached_memory(device: str) -> tuple[int, int] | None:
    """Collect garbage and hand the blocks PyTorch's caching allocator holds on `device` back to the
    driver. Returns (free, total) bytes of a CUDA `device` as the driver counts them afterwards, None for
    any other device or when CUDA cannot say."""
    import gc

    import torch

    gc.collect()
    kind = str(device).split(":", 1)[0]
    if kind == "mps" and torch.backends.mps.is_available():
        torch.mps.empty_cache()
    if kind != "cuda" or not torch.cuda.is_available():
        return None
    torch.cuda.empty_cache()
    try:
        return torch.cuda.mem_get_info(torch.device(device))
    except RuntimeError:  # a device left unusable by the failure: the message goes without the numbers
        return None


def out_of_memory_errors() -> tuple[type[BaseException], ...]:
    """The exceptions PyTorch raises when a device's memory runs out (`torch.OutOfMemoryError` since
    torch 2.5, `torch.cuda.OutOfMemoryError` before; one class today)."""
    import torch

    return tuple(
        {getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError), torch.cuda.OutOfMemoryError}
    )
