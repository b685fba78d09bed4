"""Data-parallel training over several processes (one per GPU), as launched by torchrun.

The rule is PyTorch DDP's (https://pytorch.org/docs/stable/notes/ddp.html): every process (rank) holds
the same weights and optimizer state, computes gradients on its own part of the batch, and the gradients
are reduced over all ranks before each optimizer step, so every rank takes the same step and the weights
stay equal without ever being sent. DDP averages because each rank's loss is a mean over its own part;
the recipe divides each rank's summed loss by the token count of the WHOLE batch, so here the gradients
are summed (`all_reduce_gradients`), which gives exactly the gradient of the whole batch in one process.

torchrun (`python -m torch.distributed.run`, https://pytorch.org/docs/stable/elastic/run.html) starts
the processes and gives each its RANK, WORLD_SIZE and LOCAL_RANK (and MASTER_ADDR/MASTER_PORT, which
`init_process_group` reads). Without them this is one process of a world of one: every method is then a
no-op that returns its input, so the single-process path costs nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch

T = TypeVar("T")

COLLECTIVE_TIMEOUT = timedelta(hours=2)
"""How long a rank waits in a collective. Rank 0 alone scores each epoch (generation: minutes on a large
model) and generates the base model's answers while the other ranks wait at a barrier or a broadcast, so
PyTorch's default (10 minutes for NCCL) is too short. A rank that dies does not leave the others
waiting this long: torchrun stops every worker when one fails."""


@dataclass(frozen=True)
class Distributed:
    """Where this process is in a data-parallel job: `rank` in [0, world_size), `world_size` processes
    in all, `local_rank` in [0, processes on this machine) (the CUDA device index it trains on).
    `Distributed()` is the single process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    def __post_init__(self) -> None:
        if self.world_size < 1 or not 0 <= self.rank < self.world_size or self.local_rank < 0:
            raise ValueError(
                f"rank {self.rank}, local_rank {self.local_rank} of world_size {self.world_size}: "
                "need world_size >= 1, 0 <= rank < world_size and local_rank >= 0"
            )

    @property
    def main(self) -> bool:
        """Rank 0: the one process that reports, writes checkpoints, scores epochs and saves."""
        return self.rank == 0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Distributed:
        """From torchrun's RANK, WORLD_SIZE and LOCAL_RANK (`environ`, default os.environ); a world of
        one without them. Raises ValueError for values that are not integers or not a valid rank."""
        env = os.environ if environ is None else environ
        rank = int(env.get("RANK", "0"))
        return cls(rank, int(env.get("WORLD_SIZE", "1")), int(env.get("LOCAL_RANK", str(rank))))

    # ---- the process group ----------------------------------------------------------------------

    def init_process_group(self, device: torch.device | str, timeout: timedelta = COLLECTIVE_TIMEOUT) -> None:
        """Join the job's process group (torchrun's env:// rendezvous) with the backend for `device`:
        NCCL for a CUDA device (made this process's current device first, as NCCL requires), gloo
        otherwise (the CPU). A no-op for a world of one or when already joined. Raises RuntimeError or
        ValueError (PyTorch's) when the rendezvous fails or MASTER_ADDR/MASTER_PORT are missing."""
        if self.world_size == 1:
            return
        import torch.distributed as dist

        if dist.is_initialized():
            return
        device = torch.device(device)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, rank=self.rank, world_size=self.world_size, timeout=timeout)

    def destroy_process_group(self) -> None:
        """Leave the process group (a no-op for a world of one or when not joined)."""
        if self.world_size == 1:
            return
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()

    # ---- collectives (each a no-op for a world of one) --------------------------------------------

    def barrier(self) -> None:
        """Wait until every rank gets here."""
        if self.world_size == 1:
            return
        import torch.distributed as dist

        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()

    def all_reduce_gradients(self, params: Iterable[torch.nn.Parameter]) -> None:
        """Replace each parameter's `.grad` by its SUM over all ranks, in place: one flat buffer per
        (dtype, device) goes through one all_reduce (as DDP's gradient buckets do), not one call per
        tensor. A parameter without a gradient (a rank whose share of the batch was empty) counts as
        zeros and gets the sum too, so every rank steps on the same gradients. Every rank must pass the
        same parameters in the same order (the same model), as for any collective."""
        if self.world_size == 1:
            return
        import torch.distributed as dist
        from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

        buckets: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
        for param in params:
            if param.grad is None:
                param.grad = torch.zeros_like(param)
            buckets.setdefault((param.grad.dtype, param.grad.device), []).append(param.grad)
        for grads in buckets.values():
            flat = _flatten_dense_tensors(grads)
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)
            for grad, summed in zip(grads, _unflatten_dense_tensors(flat, grads), strict=True):
                grad.copy_(summed)

    def all_reduce_sum(self, *values: float) -> tuple[float, ...]:
        """`values` (numbers, such as a step's loss and token count) each summed over all ranks, in one
        float64 all_reduce (exact for integers below 2**53)."""
        if self.world_size == 1:
            return values
        import torch.distributed as dist

        summed = torch.tensor(values, dtype=torch.float64, device=self._collective_device())
        dist.all_reduce(summed, op=dist.ReduceOp.SUM)
        return tuple(summed.tolist())

    def broadcast_object(self, obj: T) -> T:
        """Rank 0's `obj` (any picklable value) on every rank: how rank 0's decisions (a stop request,
        an epoch's scores, the base model's answers) reach the others. The other ranks' `obj` is
        ignored."""
        if self.world_size == 1:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0, device=self._collective_device())
        return box[0]

    def all_gather_object(self, obj: Any) -> list[Any]:
        """Every rank's `obj` (picklable), in rank order, on every rank."""
        if self.world_size == 1:
            return [obj]
        import torch.distributed as dist

        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, obj)
        return gathered

    @staticmethod
    def _collective_device() -> torch.device:
        """Where a collective's tensors must live: the current CUDA device for NCCL, the CPU for gloo."""
        import torch.distributed as dist

        if dist.get_backend() == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")


def rank_device(device: str, dist: Distributed) -> str:
    """The device rank `dist` trains on when the job's training device resolved to `device` (`cpu`,
    `mps` or `cuda:K`): `cpu` stays `cpu` (gloo, every rank on the CPU); CUDA becomes
    `cuda:<K + local_rank>`, one GPU per process from the card the setting names (`cuda:1` with 3
    processes: cards 1, 2 and 3; `auto` and `cuda` start at the current card, 0), so serving can keep
    card 0 to itself. A world of one keeps `device`. Raises finetune.hardware.DeviceUnavailable when
    the cards run past the GPUs PyTorch sees (torchrun's LOCAL_WORLD_SIZE processes on this machine,
    else world_size), the same answer on every rank, and for MPS (no backend reduces MPS tensors)."""
    from finetune.hardware import DeviceUnavailable

    if dist.world_size == 1 or device == "cpu":
        return device
    processes = f"RAGTUNE_TRAINING_PROCESSES={dist.world_size}"
    if device == "mps":
        raise DeviceUnavailable(
            f"{processes} trains on several CUDA GPUs or on the CPU, not on mps; set it to 1."
        )
    first = int(device.split(":", 1)[1]) if ":" in device else 0
    count = torch.cuda.device_count()
    local = int(os.environ.get("LOCAL_WORLD_SIZE", dist.world_size))
    if first + local > count:
        raise DeviceUnavailable(
            f"{processes} from cuda:{first} needs cards cuda:{first} to cuda:{first + local - 1}, but "
            f"PyTorch sees {count} here; set it to {max(count - first, 1)} or fewer, or "
            "RAGTUNE_TRAINING_DEVICE to a lower card."
        )
    return f"cuda:{first + dist.local_rank}"
