"""Hugging Face transformers engine with continuous batching on one background thread.

Requests join the running batch at the next decode step: their prompts are prefilled together, and
their KV cache is left-padded and concatenated onto the running one. Finished or cancelled sequences
leave the batch at once. Torch releases the GIL inside its kernels, so the event loop keeps serving
HTTP while the thread computes.
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

from finetune.hardware import pick_device, pick_dtype
from server.engines.base import Delta, Engine, EngineInfo, EngineOverloaded, SamplingParams
from server.engines.detok import StreamDecoder

log = logging.getLogger("ragtune.engine")


@dataclass(eq=False)
class _Seq:
    prompt_ids: list[int]
    params: SamplingParams
    adapter: str | None
    loop: asyncio.AbstractEventLoop
    decoder: StreamDecoder
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    generated: list[int] = field(default_factory=list)
    generator: Any = None
    cancelled: bool = False

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
    name = "transformers"
    max_lora_rank = None  # PEFT applies an adapter of any rank

    def __init__(
        self,
        model_path: str,
        *,
        dtype: str = "auto",
        device: str = "auto",
        max_model_len: int | None = None,
        max_batch_size: int = 16,
        max_queue: int = 256,
        max_prefill_tokens: int = 8192,
    ) -> None:
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
            extra={"load_seconds": round(time.perf_counter() - started, 2)},
        )
        self.max_batch_size = max_batch_size
        self.max_queue = max_queue
        self.max_prefill_tokens = max_prefill_tokens
        self.eos_ids = self._eos_ids()
        self.pad_id = (
            self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else min(self.eos_ids)
        )
        self._waiting: collections.deque[_Seq] = collections.deque()
        self._running = 0
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
        )
        if params.seed is not None:
            seq.generator = self._torch.Generator(device=self.device).manual_seed(params.seed)
        with self._cv:
            if self._closing:
                raise EngineOverloaded("the engine is shutting down")
            if len(self._waiting) + self._running >= self.max_queue:
                raise EngineOverloaded(f"{self.max_queue} requests are already queued or running")
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
        with self._cv:
            return {"running": self._running, "waiting": len(self._waiting)}

    async def close(self) -> None:
        with self._cv:
            self._closing = True
            self._cv.notify()
        await asyncio.to_thread(self._thread.join, 30)

    # ---- worker thread ------------------------------------------------------------------------------

    def _loop(self) -> None:
        torch = self._torch
        batch: _Batch | None = None
        with torch.inference_mode():
            while True:
                with self._cv:
                    while not self._closing and not self._waiting and batch is None and not self._commands:
                        self._cv.wait()
                    if self._closing:
                        break
                    commands, self._commands = self._commands, []
                for command in commands:
                    command()
                with self._cv:
                    admitted = self._admit(batch)
                    self._running = len(admitted) + (len(batch.seqs) if batch else 0)
                try:
                    if admitted:
                        new = self._prefill(admitted)
                        batch = self._merge(batch, new)
                    elif batch is not None:
                        batch = self._decode_step(batch)
                except Exception as exc:  # a model error fails the affected requests, not the server
                    log.exception("engine step failed")
                    for seq in admitted + (batch.seqs if batch else []):
                        seq.emit(RuntimeError(f"generation failed: {exc}"))
                    batch = None
                if batch is not None and not batch.seqs:
                    batch = None
                self._running = len(batch.seqs) if batch else 0
            for seq in list(self._waiting) + (batch.seqs if batch else []):
                seq.emit(EngineOverloaded("the engine is shutting down"))

    def _admit(self, batch: _Batch | None) -> list[_Seq]:
        """Pop waiting sequences that fit the batch and the prefill budget (called under the lock)."""
        if batch is not None and not self._can_merge(batch):
            return []
        room = self.max_batch_size - (len(batch.seqs) if batch else 0)
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
            admitted.append(seq)
            longest = longest_if
        return admitted

    def _prefill(self, seqs: list[_Seq]) -> _Batch:
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
        batch = _Batch(seqs, out.past_key_values, mask, None, lengths)
        return self._sample_and_emit(batch, out.logits[:, -1, :])

    def _decode_step(self, batch: _Batch) -> _Batch:
        torch = self._torch
        batch = self._drop(batch, [i for i, s in enumerate(batch.seqs) if not s.cancelled])
        if not batch.seqs:
            return batch
        mask = torch.cat([batch.mask, torch.ones_like(batch.mask[:, :1])], dim=1)
        out = self._forward(
            batch.seqs,
            input_ids=batch.next_tokens[:, None],
            attention_mask=mask,
            position_ids=batch.positions[:, None],
            past_key_values=batch.cache,
        )
        batch.mask, batch.positions = mask, batch.positions + 1
        return self._sample_and_emit(batch, out.logits[:, -1, :])

    def _forward(self, seqs: list[_Seq], **inputs: Any) -> Any:
        """One forward pass; with adapters loaded, each row names its own (PEFT mixed-batch LoRA)."""
        if self._adapters:
            inputs["adapter_names"] = [s.adapter or "__base__" for s in seqs]
        return self.model(**inputs, use_cache=True, logits_to_keep=1)

    def _sample_and_emit(self, batch: _Batch, logits: Any) -> _Batch:
        """Pick each row's next token, stream its text, and drop the rows that finished."""
        tokens = self._sample(batch.seqs, logits.float())
        keep: list[int] = []
        for row, (seq, token) in enumerate(zip(batch.seqs, tokens, strict=True)):
            if seq.cancelled:
                continue
            seq.generated.append(token)
            finish = None
            if token in self.eos_ids and not seq.params.ignore_eos:
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
            if finish:
                seq.emit(Delta(text, finish, len(seq.prompt_ids), len(seq.generated)))
            else:
                if text:
                    seq.emit(Delta(text))
                keep.append(row)
        batch.next_tokens = self._torch.tensor(tokens, device=self.device)
        return self._drop(batch, keep)

    def _sample(self, seqs: list[_Seq], logits: Any) -> list[int]:
        torch = self._torch
        greedy = logits.argmax(dim=-1).tolist()
        tokens: list[int] = []
        for row, seq in enumerate(seqs):
            p = seq.params
            needs_row = p.ignore_eos or p.presence_penalty or p.frequency_penalty or not p.greedy
            if not needs_row:
                tokens.append(greedy[row])
                continue
            scores = logits[row].clone()
            if p.ignore_eos:
                scores[list(self.eos_ids)] = float("-inf")
            if (p.presence_penalty or p.frequency_penalty) and seq.generated:
                counts = torch.bincount(
                    torch.tensor(seq.generated, device=scores.device), minlength=scores.shape[-1]
                )[: scores.shape[-1]].to(scores.dtype)
                scores -= p.frequency_penalty * counts + p.presence_penalty * (counts > 0).to(scores.dtype)
            if p.greedy:
                tokens.append(int(scores.argmax()))
                continue
            probs = torch.softmax(scores / p.temperature, dim=-1)
            if p.top_p < 1.0:
                sorted_probs, order = probs.sort(descending=True)
                outside = sorted_probs.cumsum(-1) - sorted_probs > p.top_p
                sorted_probs[outside] = 0.0
                probs = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
            tokens.append(int(torch.multinomial(probs, 1, generator=seq.generator)))
        return tokens

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
    return TransformersEngine(
        model_path,
        dtype=settings.dtype,
        device=settings.device,
        max_model_len=settings.max_model_len,
        max_batch_size=settings.max_batch_size or 16,
        max_queue=settings.max_queue,
    )
