"""Hugging Face transformers engine with continuous batching on one background thread.

Requests join the running batch at the next decode step: their prompts are prefilled together, and
their KV cache is left-padded and concatenated onto the running one. Finished or cancelled sequences
leave the batch at once. Torch releases the GIL inside its kernels, so the event loop keeps serving
HTTP while the thread computes. A failure in sampling, prefill or an adapter ends only the rows that
cause it. With `batch_invariant`, each row keeps its own cache and forward pass, so a greedy or seeded
answer does not depend on what else is running.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from common.memory_plan import (
    CPU_MAX_BATCH,
    DTYPE_BYTES,
    GIB,
    ModelShape,
    kv_cache_bytes_per_token,
    serving_max_batch,
)
from finetune.hardware import pick_device, pick_dtype
from server.engines.base import (
    Delta,
    Engine,
    EngineInfo,
    EngineOverloaded,
    SamplingParams,
    TokenLogprob,
)
from server.engines.detok import LogprobAligner, StreamDecoder
from server.engines.grammar import GrammarRuntime

log = logging.getLogger("ragtune.engine")


def auto_max_batch(
    model_config: Any, dtype: Any, device: str, memory_utilization: float, context_len: int
) -> int:
    """The engine's default `max_batch_size` (sequences decoded together) for a loaded model.

    On a CPU (any device but `cuda`/`cuda:N`): CPU_MAX_BATCH, as the cores, not memory, are the bound.
    On a CUDA device: `common.memory_plan.serving_max_batch`, i.e. as many sequences of `context_len`
    tokens (prompt + answer: the engine's `max_model_len`) as the KV cache left in the budget after the
    weights holds, within [1, SERVING_MAX_BATCH]. The budget is `memory_utilization` (the
    `gpu_memory_utilization` setting, a fraction in (0, 1]) of the card's total bytes
    (`torch.cuda.mem_get_info(device)[1]`, the driver's count), as vLLM reads that setting. The model's
    shape comes from `model_config` (a transformers config, or its text sub-config for a multimodal
    one), the bytes per element from `dtype` (a torch dtype or its name: float32, bfloat16, float16).

    A config without the fields the planner needs (see `ModelShape.from_config`) falls back to
    CPU_MAX_BATCH with a warning rather than failing the engine's start. Logs the choice and its reason
    at info level."""
    kind = str(device).split(":", 1)[0]
    if kind != "cuda":
        log.info("max_batch_size %d: on %s the cores, not memory, bound the batch", CPU_MAX_BATCH, device)
        return CPU_MAX_BATCH
    import torch

    get_text_config = getattr(model_config, "get_text_config", None)
    config = get_text_config() if callable(get_text_config) else model_config
    try:
        shape = ModelShape.from_config(config)
    except KeyError as exc:
        log.warning("max_batch_size %d: the model's shape is unknown (%s)", CPU_MAX_BATCH, exc)
        return CPU_MAX_BATCH
    name = str(dtype).removeprefix("torch.")
    dtype_bytes = DTYPE_BYTES.get(name) or dtype.itemsize
    total = torch.cuda.mem_get_info(device)[1]
    budget = int(memory_utilization * total)
    batch = serving_max_batch(shape, dtype_bytes, budget, context_len)
    per_sequence = kv_cache_bytes_per_token(shape, dtype_bytes) * max(context_len, 1)
    log.info(
        "max_batch_size %d on %s: KV cache %.3f GiB per %d-token sequence (%s), in a budget of %.1f GiB "
        "(gpu_memory_utilization %g of %.1f GiB) less %.2f GiB of weights",
        batch,
        device,
        per_sequence / GIB,
        context_len,
        name,
        budget / GIB,
        memory_utilization,
        total / GIB,
        shape.parameters * dtype_bytes / GIB,
    )
    return batch


class SequenceFailed(RuntimeError):
    """One sequence cannot go on (its scores are not finite, or its forward pass raised); the others do."""


@dataclass(eq=False)
class _Seq:
    prompt_ids: list[int]
    params: SamplingParams
    adapter: str | None
    loop: asyncio.AbstractEventLoop
    decoder: StreamDecoder
    aligner: LogprobAligner | None = None
    matcher: Any = None  # xgrammar.GrammarMatcher of this row's structured output, if any
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    generated: list[int] = field(default_factory=list)
    generator: Any = None
    cancelled: bool = False
    admitted: bool = False  # popped from the waiting queue into the running batch (under the lock)

    @property
    def plain(self) -> bool:
        """Greedy with nothing to apply to the logits: the batch's one argmax serves this row."""
        p = self.params
        return p.greedy and not (
            p.ignore_eos
            or p.presence_penalty
            or p.frequency_penalty
            or p.repetition_penalty != 1.0
            or p.logit_bias
            or p.logprobs is not None
            or p.structured is not None
        )

    def emit(self, item: Delta | BaseException) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the client's event loop is gone
            self.cancelled = True


@dataclass
class _Batch:
    """Running sequences and their shared, left-padded KV cache."""

    seqs: list[_Seq]
    cache: Any
    mask: Any  # [B, T] attention mask over the cache
    next_tokens: Any  # [B] last sampled token of each row
    positions: Any  # [B] position id of the next token of each row


class TransformersEngine(Engine):
    """Continuous batching over a transformers model (plus PEFT adapters), on one background thread.

    `batch_invariant=True` gives every row its own cache and forward pass (batch size 1, no padding),
    still interleaved in one loop: a greedy or seeded answer is then the same whatever else runs, at
    the cost of batched throughput."""

    name = "transformers"
    max_lora_rank = None  # PEFT applies an adapter of any rank

    def __init__(
        self,
        model_path: str,
        *,
        dtype: str = "auto",
        device: str = "auto",
        max_model_len: int | None = None,
        max_batch_size: int | None = None,
        max_queue: int = 256,
        max_prefill_tokens: int = 8192,
        batch_invariant: bool = False,
        gpu_memory_utilization: float = 0.9,
    ) -> None:
        """Load `model_path` on `device` in `dtype` and start the engine thread. `max_batch_size` None:
        `auto_max_batch` decides it once the model is loaded (CPU_MAX_BATCH on a CPU, from the KV-cache
        room in `gpu_memory_utilization` of the card on a GPU). `max_queue` is raised to the batch when
        lower, so that the batch can fill."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self._torch = torch
        self.device = pick_device(device)
        self.dtype = pick_dtype(dtype, self.device)
        started = time.perf_counter()
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=self.dtype).to(self.device).eval()
        limit = getattr(self.model.config, "max_position_embeddings", None) or 2048
        self.info = EngineInfo(
            name=self.name,
            model_path=str(model_path),
            dtype=str(self.dtype).removeprefix("torch."),
            device=self.device,
            max_model_len=min(max_model_len or limit, limit),
            extra={
                "load_seconds": round(time.perf_counter() - started, 2),
                "batch_invariant": batch_invariant,
            },
        )
        if max_batch_size is None:
            max_batch_size = auto_max_batch(
                self.model.config, self.dtype, self.device, gpu_memory_utilization, self.info.max_model_len
            )
        if max_queue < max_batch_size:
            log.info("max_queue %d is below max_batch_size %d: raised to it", max_queue, max_batch_size)
            max_queue = max_batch_size
        self.max_batch_size = max_batch_size  # read by _admit on the engine thread, started below
        self.max_queue = max_queue
        self.info.extra["max_batch_size"] = max_batch_size
        self.max_prefill_tokens = max_prefill_tokens
        self.batch_invariant = batch_invariant
        self.eos_ids = self._eos_ids()
        self._grammar: GrammarRuntime | None = None  # built on the first structured request
        self.pad_id = (
            self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else min(self.eos_ids)
        )
        self._waiting: collections.deque[_Seq] = collections.deque()
        # Sequences holding a place in `max_queue`: from `generate` until their last delta is handed to
        # the client's loop (or the client goes away), not until the engine thread tidies its batch.
        self._slots: set[_Seq] = set()
        self._cv = threading.Condition()
        self._commands: list[Any] = []  # run on the engine thread between steps (adapter loads)
        self._adapters: set[str] = set()
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name="ragtune-engine", daemon=True)
        self._thread.start()

    def _eos_ids(self) -> set[int]:
        ids: set[int] = set()
        for source in (getattr(self.model, "generation_config", None), self.model.config, self.tokenizer):
            value = getattr(source, "eos_token_id", None)
            if isinstance(value, int):
                ids.add(value)
            elif isinstance(value, list | tuple):
                ids.update(int(v) for v in value)
        return ids

    # ---- public interface -------------------------------------------------------------------------

    async def generate(
        self, prompt_ids: list[int], params: SamplingParams, adapter: str | None = None
    ) -> AsyncIterator[Delta]:
        if adapter is not None and adapter not in self._adapters:
            raise NotImplementedError(f"adapter {adapter!r} is not loaded")
        seq = _Seq(
            prompt_ids=list(prompt_ids),
            params=params,
            adapter=adapter,
            loop=asyncio.get_running_loop(),
            decoder=StreamDecoder(self.tokenizer, params.stop),
            aligner=None if params.logprobs is None else LogprobAligner(self.tokenizer),
            matcher=None if params.structured is None else self.grammar.matcher(params.structured),
        )
        if params.seed is not None:  # manual_seed takes [-2**63, 2**64); seeds are in [0, 2**63)
            seq.generator = self._torch.Generator(device=self.device).manual_seed(params.seed)
        with self._cv:
            if self._closing:
                raise EngineOverloaded("the engine is shutting down")
            if len(self._slots) >= self.max_queue:
                raise EngineOverloaded(f"{self.max_queue} requests are already queued or running")
            self._slots.add(seq)
            self._waiting.append(seq)
            self._cv.notify()
        try:
            while True:
                item = await seq.queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if item.finish_reason is not None:
                    return
        finally:
            seq.cancelled = True  # no-op when finished; otherwise the worker drops it at the next step
            self._release(seq)

    @property
    def grammar(self) -> GrammarRuntime:
        """xgrammar's compiler for this model (built once, on the first structured request)."""
        if self._grammar is None:
            vocab = self.model.get_output_embeddings().weight.shape[0]
            self._grammar = GrammarRuntime(self.tokenizer, vocab, sorted(self.eos_ids))
        return self._grammar

    async def add_adapter(self, name: str, path: str) -> None:
        """Load a PEFT LoRA adapter; it is applied per row, so one batch mixes adapters and the base."""
        if name in self._adapters:
            return
        done, failure = threading.Event(), []

        def load() -> None:
            from peft import PeftModel

            try:
                if not self._adapters:
                    self.model = PeftModel.from_pretrained(self.model, path, adapter_name=name).eval()
                else:
                    self.model.load_adapter(path, adapter_name=name)
                self._adapters.add(name)
            except Exception as exc:
                failure.append(exc)
            finally:
                done.set()

        with self._cv:
            self._commands.append(load)
            self._cv.notify()
        if not await asyncio.to_thread(done.wait, 300):
            raise TimeoutError(f"loading adapter {name!r} timed out")
        if failure:
            raise failure[0]

    def stats(self) -> dict[str, int]:
        """Requests holding a queue place: running (in the batch) and waiting (not admitted yet)."""
        with self._cv:
            running = sum(1 for s in self._slots if s.admitted)
            return {"running": running, "waiting": len(self._slots) - running}

    async def close(self) -> None:
        with self._cv:
            self._closing = True
            self._cv.notify()
        await asyncio.to_thread(self._thread.join, 30)

    def _release(self, seq: _Seq) -> None:
        with self._cv:
            self._slots.discard(seq)

    def _finish(self, seq: _Seq, last: Delta | BaseException) -> None:
        """Hand a sequence its last item, freeing its queue place first so that a client that asks
        again the moment it reads the answer finds the place free."""
        self._release(seq)
        seq.emit(last)

    def _fail(self, seq: _Seq, exc: BaseException, stage: str) -> None:
        log.warning("a sequence failed in %s: %s", stage, exc, exc_info=not isinstance(exc, SequenceFailed))
        self._finish(seq, SequenceFailed(f"generation failed ({stage}): {exc}"))

    # ---- worker thread ------------------------------------------------------------------------------

    def _loop(self) -> None:
        groups: list[_Batch] = []  # one shared batch, or one per row when batch-invariant
        with self._torch.inference_mode():
            while True:
                with self._cv:
                    while not self._closing and not self._waiting and not groups and not self._commands:
                        self._cv.wait()
                    if self._closing:
                        break
                    commands, self._commands = self._commands, []
                for command in commands:
                    command()
                with self._cv:
                    admitted = self._admit(groups)
                try:
                    if admitted:
                        groups = self._join(groups, self._prefill_rows(admitted))
                    elif groups:
                        groups = [g for g in map(self._decode_group, groups) if g.seqs]
                except Exception as exc:  # a bug outside any one row: fail what runs, keep serving
                    log.exception("engine step failed")
                    for seq in admitted + [s for g in groups for s in g.seqs]:
                        self._finish(seq, RuntimeError(f"generation failed: {exc}"))
                    groups = []
            for seq in list(self._waiting) + [s for g in groups for s in g.seqs]:
                self._finish(seq, EngineOverloaded("the engine is shutting down"))

    def _admit(self, groups: list[_Batch]) -> list[_Seq]:
        """Pop waiting sequences that fit the batch and the prefill budget (called under the lock)."""
        if groups and not self.batch_invariant and not self._can_merge(groups[0]):
            return []
        room = self.max_batch_size - sum(len(g.seqs) for g in groups)
        admitted: list[_Seq] = []
        longest = 0
        while self._waiting and len(admitted) < room:
            seq = self._waiting[0]
            longest_if = max(longest, len(seq.prompt_ids))
            if admitted and longest_if * (len(admitted) + 1) > self.max_prefill_tokens:
                break
            self._waiting.popleft()
            if seq.cancelled:
                continue
            seq.admitted = True
            admitted.append(seq)
            longest = longest_if
        return admitted

    def _join(self, groups: list[_Batch], new: list[_Batch]) -> list[_Batch]:
        if self.batch_invariant:
            return groups + new
        merged = groups[0] if groups else None
        for batch in new:
            merged = self._merge(merged, batch)
        return [merged] if merged is not None and merged.seqs else []

    def _prefill_rows(self, seqs: list[_Seq]) -> list[_Batch]:
        """Prefill the admitted rows together (each alone when batch-invariant); when a batched prefill
        raises, retry row by row so that only the rows that cause it fail."""
        parts = [[s] for s in seqs] if self.batch_invariant else [seqs]
        done: list[_Batch] = []
        while parts:
            part = parts.pop(0)
            try:
                batch, logits = self._prefill(part)
            except Exception as exc:
                if len(part) == 1:
                    self._fail(part[0], exc, "prefill")
                else:
                    log.warning("batched prefill of %d rows failed (%s); retrying row by row", len(part), exc)
                    parts = [[s] for s in part] + parts
                continue
            batch = self._sample_and_emit(batch, logits)
            if batch.seqs:
                done.append(batch)
        return done

    def _prefill(self, seqs: list[_Seq]) -> tuple[_Batch, Any]:
        from transformers import DynamicCache

        torch = self._torch
        width = max(len(s.prompt_ids) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, seq in enumerate(seqs):
            n = len(seq.prompt_ids)
            ids[row, width - n :] = torch.tensor(seq.prompt_ids, dtype=torch.long)
            mask[row, width - n :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache(config=self.model.config)  # PeftModel forwards .config
        out = self._forward(
            seqs, input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache
        )
        lengths = torch.tensor([len(s.prompt_ids) for s in seqs], device=self.device)
        return _Batch(seqs, out.past_key_values, mask, None, lengths), out.logits[:, -1, :]

    def _decode_group(self, batch: _Batch) -> _Batch:
        """One decode step of one group; when its forward raises, only the rows that raise alone fail."""
        batch = self._drop(batch, [i for i, s in enumerate(batch.seqs) if not s.cancelled])
        if not batch.seqs:
            return batch
        width = batch.mask.shape[1]
        try:
            logits = self._decode_forward(batch)
        except Exception as exc:
            if len(batch.seqs) == 1 or not self._can_merge(batch):
                for seq in batch.seqs:
                    self._fail(seq, exc, "decode")
                batch.seqs = []
                return batch
            log.warning("batched decode of %d rows failed (%s); retrying row by row", len(batch.seqs), exc)
            self._truncate(batch, width)  # layers before the failing one already appended this step
            merged = None
            for row in map(self._decode_group, self._split(batch)):
                if row.seqs:
                    merged = self._merge(merged, row)
            if merged is None:
                batch.seqs = []
                return batch
            return merged
        return self._sample_and_emit(batch, logits)

    def _decode_forward(self, batch: _Batch) -> Any:
        torch = self._torch
        mask = torch.cat([batch.mask, torch.ones_like(batch.mask[:, :1])], dim=1)
        out = self._forward(
            batch.seqs,
            input_ids=batch.next_tokens[:, None],
            attention_mask=mask,
            position_ids=batch.positions[:, None],
            past_key_values=batch.cache,
        )
        batch.mask, batch.positions = mask, batch.positions + 1
        return out.logits[:, -1, :]

    def _forward(self, seqs: list[_Seq], **inputs: Any) -> Any:
        """One forward pass; with adapters loaded, each row names its own (PEFT mixed-batch LoRA)."""
        if self._adapters:
            inputs["adapter_names"] = [s.adapter or "__base__" for s in seqs]
        return self.model(**inputs, use_cache=True, logits_to_keep=1)

    def _sample_and_emit(self, batch: _Batch, logits: Any) -> _Batch:
        """Pick each row's next token, stream its text, and drop the rows that finished or failed."""
        picks = self._sample(batch.seqs, logits.float())
        keep: list[int] = []
        tokens: list[int] = []
        for row, (seq, pick) in enumerate(zip(batch.seqs, picks, strict=True)):
            if seq.cancelled or isinstance(pick, Exception):
                if isinstance(pick, Exception) and not seq.cancelled:
                    self._fail(seq, pick, "sampling")
                tokens.append(self.pad_id)  # the row is dropped below; any id keeps the tensor whole
                continue
            token, logprob = pick
            if seq.matcher is not None and not seq.matcher.accept_token(token):
                if not seq.cancelled:
                    self._fail(seq, SequenceFailed("the grammar refused the sampled token"), "sampling")
                tokens.append(self.pad_id)
                continue
            tokens.append(token)
            seq.generated.append(token)
            finish = None
            if token in self.eos_ids and (not seq.params.ignore_eos or seq.matcher is not None):
                text, finish = seq.decoder.flush(), "stop"
            else:
                text = seq.decoder.push(token)
                if seq.decoder.stopped:
                    finish = "stop"
                elif (
                    len(seq.generated) >= seq.params.max_tokens
                    or len(seq.prompt_ids) + len(seq.generated) >= self.info.max_model_len
                ):
                    text, finish = text + seq.decoder.flush(), "length"
            logprobs = None
            if seq.aligner is not None:  # logprobs travel with the text their tokens produced
                seq.aligner.add([logprob], end=seq.decoder.length)
                logprobs = seq.aligner.take(seq.decoder.sent)
            if finish:
                self._finish(seq, Delta(text, finish, len(seq.prompt_ids), len(seq.generated), logprobs))
            else:
                if text or logprobs:
                    seq.emit(Delta(text, logprobs=logprobs))
                keep.append(row)
        batch.next_tokens = self._torch.tensor(tokens, device=self.device)
        return self._drop(batch, keep)

    def _sample(self, seqs: list[_Seq], logits: Any) -> list[tuple[int, TokenLogprob | None] | Exception]:
        """Each row's (token, logprob), or the exception that ends that row alone."""
        torch = self._torch
        fast = logits.argmax(dim=-1).tolist()  # plain greedy rows share one batched argmax
        finite = torch.isfinite(logits).all(dim=-1).tolist()
        picks: list[tuple[int, TokenLogprob | None] | Exception] = []
        for row, seq in enumerate(seqs):
            try:
                if not finite[row]:
                    raise SequenceFailed("the model's logits are not finite")
                picks.append((fast[row], None) if seq.plain else self._pick(seq, logits[row]))
            except Exception as exc:
                picks.append(exc)
        return picks

    def _pick(self, seq: _Seq, logits: Any) -> tuple[int, TokenLogprob | None]:
        """Sample one row in base.py's order: logit_bias, penalties, (logprobs), temperature, top-k,
        top-p, min-p."""
        torch = self._torch
        p = seq.params
        scores = logits.clone()
        vocab = scores.shape[-1]
        if seq.matcher is not None:  # this row's grammar only: -inf for every token it does not allow
            self.grammar.mask(seq.matcher, scores)
        if p.logit_bias:
            ids = [t for t, _ in p.logit_bias]
            if not all(0 <= t < vocab for t in ids):
                raise SequenceFailed(f"logit_bias names a token id outside the vocabulary (0..{vocab - 1})")
            bias = torch.tensor([b for _, b in p.logit_bias], dtype=scores.dtype, device=scores.device)
            scores.index_add_(0, torch.tensor(ids, device=scores.device), bias)
        if p.repetition_penalty != 1.0:
            seen = torch.tensor(seq.prompt_ids + seq.generated, device=scores.device).unique()
            seen = seen[seen < vocab]
            picked = scores[seen]
            scores[seen] = torch.where(
                picked > 0, picked / p.repetition_penalty, picked * p.repetition_penalty
            )
        if (p.presence_penalty or p.frequency_penalty) and seq.generated:
            counts = torch.bincount(torch.tensor(seq.generated, device=scores.device), minlength=vocab)[
                :vocab
            ].to(scores.dtype)
            scores -= p.frequency_penalty * counts + p.presence_penalty * (counts > 0).to(scores.dtype)
        if scores.isnan().any() or scores.isposinf().any() or not scores.isfinite().any():
            raise SequenceFailed("the scores are not finite after logit_bias and penalties")
        logprobs = torch.log_softmax(scores, dim=-1) if p.logprobs is not None else None
        if p.ignore_eos and seq.matcher is None:  # a grammar decides itself where the answer may end
            scores[list(self.eos_ids)] = float("-inf")
        if p.greedy:  # also temperature 1e-40: never divide by a temperature below SAMPLING_EPS
            token = int(scores.argmax())
        else:
            scores = scores / p.temperature
            if 0 < p.top_k < vocab:
                scores = scores.masked_fill(scores < scores.topk(p.top_k).values[-1], float("-inf"))
            probs = torch.softmax(scores, dim=-1)
            if p.top_p < 1.0:
                sorted_probs, order = probs.sort(descending=True)
                outside = sorted_probs.cumsum(-1) - sorted_probs > p.top_p
                sorted_probs[outside] = 0.0
                probs = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
            if p.min_p > 0.0:
                probs = probs.masked_fill(probs < p.min_p * probs.max(), 0.0)
            if not probs.isfinite().all() or not probs.sum() > 0:
                raise SequenceFailed("the sampling probabilities are not finite")
            token = int(torch.multinomial(probs, 1, generator=seq.generator))
        if logprobs is None:
            return token, None
        top: tuple[tuple[int, float], ...] = ()
        if p.logprobs:
            values, ids = logprobs.topk(p.logprobs)
            top = tuple(zip(ids.tolist(), values.tolist(), strict=True))
        return token, TokenLogprob(token, float(logprobs[token]), top)

    # ---- KV cache bookkeeping -----------------------------------------------------------------------

    def _can_merge(self, batch: _Batch) -> bool:
        from transformers.cache_utils import DynamicLayer

        return all(type(layer) is DynamicLayer for layer in batch.cache.layers)

    def _drop(self, batch: _Batch, keep: list[int]) -> _Batch:
        """Keep only rows `keep`, then cut cache columns that are padding for every remaining row."""
        torch = self._torch
        if len(keep) == len(batch.seqs):
            return batch
        batch.seqs = [batch.seqs[i] for i in keep]
        if not keep:
            return batch
        index = torch.tensor(keep, device=self.device)
        batch.cache.batch_select_indices(index)
        batch.mask, batch.positions = batch.mask[index], batch.positions[index]
        batch.next_tokens = batch.next_tokens[index]
        first = int(batch.mask.any(dim=0).nonzero()[0])
        if first > 0 and self._can_merge(batch):
            for layer in batch.cache.layers:
                layer.keys, layer.values = layer.keys[:, :, first:], layer.values[:, :, first:]
            batch.mask = batch.mask[:, first:]
        return batch

    def _truncate(self, batch: _Batch, width: int) -> None:
        """Cut every cache layer back to `width` columns (undoes a forward pass that raised midway)."""
        for layer in batch.cache.layers:
            if getattr(layer, "keys", None) is not None and layer.keys.dim() == 4:
                layer.keys, layer.values = layer.keys[:, :, :width], layer.values[:, :, :width]

    def _split(self, batch: _Batch) -> list[_Batch]:
        """One single-row batch per row, each with its own slice of the cache."""
        from transformers import DynamicCache

        rows = []
        for i, seq in enumerate(batch.seqs):
            cache = DynamicCache(
                [(layer.keys[i : i + 1], layer.values[i : i + 1]) for layer in batch.cache.layers]
            )
            sl = slice(i, i + 1)
            rows.append(_Batch([seq], cache, batch.mask[sl], batch.next_tokens[sl], batch.positions[sl]))
        return rows

    def _merge(self, old: _Batch | None, new: _Batch) -> _Batch:
        """Left-pad both caches to one length and stack the new rows under the running ones."""
        torch = self._torch
        if old is None or not old.seqs:
            return new
        if not new.seqs:
            return old
        width = max(old.mask.shape[1], new.mask.shape[1])

        def pad(t: Any, dim_from_end: int) -> Any:
            missing = width - t.shape[-dim_from_end]
            if missing == 0:
                return t
            spec = [0, 0] * (dim_from_end - 1) + [missing, 0]
            return torch.nn.functional.pad(t, spec)

        for old_layer, new_layer in zip(old.cache.layers, new.cache.layers, strict=True):
            old_layer.keys = torch.cat([pad(old_layer.keys, 2), pad(new_layer.keys, 2)])
            old_layer.values = torch.cat([pad(old_layer.values, 2), pad(new_layer.values, 2)])
        old.mask = torch.cat([pad(old.mask, 1), pad(new.mask, 1)])
        old.seqs = old.seqs + new.seqs
        old.next_tokens = torch.cat([old.next_tokens, new.next_tokens])
        old.positions = torch.cat([old.positions, new.positions])
        return old


def from_settings(settings: Any, model_path: str) -> TransformersEngine:
    """The engine the settings describe (`batch_invariant` comes from `RAGTUNE_BATCH_INVARIANT`); an
    unset `max_batch_size` is decided by `auto_max_batch` once the model is loaded."""
    return TransformersEngine(
        model_path,
        dtype=settings.dtype,
        device=settings.device,
        max_model_len=settings.max_model_len,
        max_batch_size=settings.max_batch_size,
        max_queue=settings.max_queue,
        batch_invariant=getattr(settings, "batch_invariant", False),
        gpu_memory_utilization=getattr(settings, "gpu_memory_utilization", 0.9),
    )
