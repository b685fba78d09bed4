"""LoRA supervised fine-tuning, as one readable recipe: setup() → train() → save() → cleanup().

Loss is taken on assistant tokens only (by default). To keep the base model's general ability, the
recipe mixes in *rehearsal* examples (the base model's own answers to built-in general prompts). Every
epoch asked for is trained; after each one the recipe measures

- *retention*: the share of built-in general questions the base model answers correctly that the tuned
  model still answers correctly, with its Wilson interval;
- the *task score*: token F1 (and exact match) of greedy answers against the user's references, from the
  validation file, else from held-out training examples, else from the training prompts themselves
  (`task_source` says which), with the metrics comparisons report (common/answer_metrics.py);

and keeps the epoch's adapter. The published adapter is the earliest epoch with the best task score among
those whose retention is at least `min_retention` (`choose_epoch`); events and metrics say which and why.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import random
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from common.answer_metrics import exact_match, f1
from common.atomic import atomic_dir, atomic_write_json
from finetune.config import TrainConfig
from finetune.data import Conversation, DataError, Example, Message, check_trainable, load_dataset, tokenize
from finetune.distributed import Distributed
from finetune.general import REHEARSAL_PROMPTS, RETENTION_QUESTIONS, is_correct, retention_interval
from finetune.hardware import out_of_memory_errors, release_cached_memory

log = logging.getLogger("ragtune.finetune")
GENERAL_SETS = {"base": "retention questions", "rehearsal": "rehearsal prompts"}  # cache name: what it is
TASK_NOUNS = {
    "validation file": "validation example",
    "held-out examples": "held-out example",
    "training prompts": "training prompt",
}
RETENTION_TOKENS = 24  # the general answers are one short sentence; the accepted word comes early
REHEARSAL_TOKENS = 64  # the base model's rehearsal answers: a few sentences, cut to whole ones
_SENTENCE_END = re.compile(r"[.!?…][\"'”’)）」』]*(?=\s|$)|[。！？][\"'”’)）」』]*")
TASK_TOKENS = 64  # answers scored per epoch: long enough for a sentence of facts
TASK_MAX_PROMPTS = (
    64  # examples scored per epoch at most (a seeded sample): generation costs minutes on a CPU
)
CPU_MICRO_BATCH = 8  # `auto` micro-batch off CUDA: the cores, not memory, bound a CPU step
HELD_OUT_MIN_EXAMPLES = 40  # fewer examples: none is held out, the training prompts are scored instead
HELD_OUT_MAX = 64


def rehearsal_count(ratio: float, n_user: int) -> int:
    """Rehearsal examples for `n_user` user examples at `ratio` per example, rounded up: any positive
    ratio gives at least one (round() made 0.5 × 1 example zero, so a one-example job had no rehearsal)."""
    return math.ceil(ratio * n_user) if ratio > 0 and n_user > 0 else 0


class Reporter(Protocol):
    def event(self, message: str, data: dict[str, Any] | None = None, kind: str = "message") -> None: ...

    def stop_requested(self) -> bool: ...


class RankReporter:
    """What a rank other than 0 reports through: its events go nowhere (rank 0 reports the job, once);
    stop requests are still read from the `reporter` it wraps (rank 0's is what counts, see `train`)."""

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter

    def event(self, message: str, data: dict[str, Any] | None = None, kind: str = "message") -> None:
        pass

    def stop_requested(self) -> bool:
        return self.reporter.stop_requested()


class Cancelled(BaseException):
    """The job was cancelled: raised at a step boundary, or by the worker's SIGTERM handler wherever the
    signal lands (loading, generating, measuring). A BaseException, like KeyboardInterrupt, so library
    code that catches Exception (a tokenizer or generation fallback) cannot swallow a cancel."""


@dataclass
class Progress:
    """Where training is: saved with every checkpoint, so a resumed run continues exactly there."""

    epoch: int = 0
    step_in_epoch: int = 0
    step: int = 0
    tokens_seen: int = 0
    epochs: list[dict[str, Any]] = field(default_factory=list)  # per finished epoch: scores, checkpoint
    base_task: dict[str, Any] | None = None  # the base model's task scores (before training)


class LoRARecipe:
    def __init__(
        self,
        config: TrainConfig,
        model_dir: Path,
        training_file: Path,
        run_dir: Path,
        reporter: Reporter,
        validation_file: Path | None = None,
        cache_dir: Path | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        memory_budget: int | None = None,
        dist: Distributed | None = None,
    ) -> None:
        """`dtype`: the base model's weights (LoRA weights stay float32, as PEFT makes them); `device`:
        where the model, every batch and every generation run (`cpu`, `cuda:N`, `mps`), picked by the
        worker (finetune/hardware.py); `memory_budget`: bytes this job may use on a CUDA `device` (its
        training share of the card, common/memory_plan.py), None for what is free.

        `dist`: this process's place in a data-parallel job (finetune/distributed.py; None: one process,
        the recipe exactly as without it). Every rank runs the whole recipe with the same seed, so the
        same LoRA init and data order; each optimizer step's batch is split over the ranks (`shard`) and
        the gradients summed over them before the step, so the weights stay equal on every rank. Rank 0
        alone reports (the others' events go nowhere), writes checkpoints, generates the base model's
        answers (broadcast to the others), scores epochs and saves; `device` is then this rank's own."""
        self.dist = dist or Distributed()
        self.config = config
        self.model_dir = Path(model_dir)
        self.training_file = training_file
        self.validation_file = validation_file
        self.run_dir = run_dir
        self.reporter = reporter if self.dist.main else RankReporter(reporter)
        self.cache_dir = cache_dir or run_dir
        self.dtype = dtype
        self.device = torch.device(device)
        self.memory_budget = memory_budget
        self.micro_batch_size = config.micro_batch_size or CPU_MICRO_BATCH
        self.progress = Progress()
        self.metrics: dict[str, Any] = {}

    # ---- setup ------------------------------------------------------------------------------------

    def setup(self) -> None:
        from peft import LoraConfig, get_peft_model
        from transformers import AutoTokenizer, get_cosine_schedule_with_warmup

        cfg = self.config
        if self.device.type == "cuda" and self.device.index is not None:
            torch.cuda.set_device(self.device)  # library code that allocates on "the" GPU uses this one
        torch.manual_seed(cfg.seed)  # seeds the CPU and every CUDA device
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = load_model(self.model_dir, self.dtype).to(self.device)
        self.reporter.event(
            f"Loaded the base model on {self.device} in {str(self.dtype).removeprefix('torch.')} "
            f"({self.model.config._attn_implementation} attention).",
            {"device": str(self.device), "dtype": str(self.dtype).removeprefix("torch.")},
        )
        self._check_targets()  # before minutes of base-model generation, not after
        conversations = load_dataset(self.training_file)
        valid_conversations = load_dataset(self.validation_file) if self.validation_file else []
        held_out: list[Conversation] = []
        if cfg.eval_strategy == "epoch":  # unscored epochs need nothing held out
            conversations, held_out = self._hold_out(conversations, bool(valid_conversations))
        self.examples, stats = tokenize(conversations, self.tokenizer, cfg.max_length, cfg.train_on_prompts)
        check_trainable(stats)  # a file that would train nothing fails here, before any step
        self.examples = [e for e in self.examples if any(label != -100 for label in e.labels)]
        if stats.truncated_lines or stats.empty_lines:
            self.reporter.event(
                f"{_count(len(stats.truncated_lines), 'example')} longer than {cfg.max_length} tokens kept "
                f"their answer and lost the middle of their prompt{_at_lines(stats.truncated_lines)}; "
                f"{_count(len(stats.empty_lines), 'example')} with nothing to train on "
                f"{'is' if len(stats.empty_lines) == 1 else 'are'} skipped{_at_lines(stats.empty_lines)}.",
                {"truncated_lines": stats.truncated_lines[:100], "empty_lines": stats.empty_lines[:100]},
            )
        self.valid = []
        if valid_conversations:
            self.valid, _ = tokenize(valid_conversations, self.tokenizer, cfg.max_length)
        self.evaluate = cfg.eval_strategy == "epoch"
        self.task, self.task_source, self.base_answers = [], "", []
        if self.evaluate:
            self._task_set(valid_conversations, held_out, conversations)
            questions = [q for q, _ in RETENTION_QUESTIONS]
            if self.dist.main:  # only rank 0 scores retention
                self.base_answers = self._general_answers("base", questions, RETENTION_TOKENS)
        else:
            self.reporter.event(
                "Epochs are not scored (eval_strategy 'no'): no retention or task score is measured, and "
                "the last epoch is published.",
                {"eval_strategy": "no"},
            )
        self.rehearsal_count = rehearsal_count(cfg.rehearsal_ratio, len(self.examples))
        self.rehearsal_pool = self._rehearsal_pool() if self.rehearsal_count else []
        self.rehearsal_count = min(self.rehearsal_count, len(self.rehearsal_pool))
        self.reporter.event(
            f"Training on {_count(len(self.examples), 'example')} ({stats.trained_tokens} trained tokens) "
            f"plus {_count(self.rehearsal_count, 'rehearsal example')} per epoch (each epoch the next "
            f"{self.rehearsal_count} of {len(self.rehearsal_pool)} built-in general prompts answered by the "
            f"base model); {stats.truncated} truncated to {cfg.max_length} tokens.",
            {
                "examples": len(self.examples),
                "rehearsal_examples": self.rehearsal_count,
                "rehearsal_pool": len(self.rehearsal_pool),
                "truncated": stats.truncated,
                "trained_tokens": stats.trained_tokens,
            },
        )
        lora = LoraConfig(
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=list(cfg.target_modules),
            task_type="CAUSAL_LM",
        )
        if cfg.gradient_checkpointing:
            self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            self.model.enable_input_require_grads()  # frozen embeddings would otherwise cut the graph
        self.model = get_peft_model(self.model, lora)
        self.micro_batch_size = self._pick_micro_batch()
        if self.dist.world_size > 1:
            self.reporter.event(
                f"Data-parallel training on {self.dist.world_size} processes: each step's batch of "
                f"{cfg.batch_size} is split over them and their gradients are summed before the step.",
                {"world_size": self.dist.world_size},
            )
        self.steps_per_epoch = math.ceil((len(self.examples) + self.rehearsal_count) / cfg.batch_size)
        self.total_steps = self.steps_per_epoch * cfg.n_epochs
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        self.scheduler = get_cosine_schedule_with_warmup(
            self.optimizer, int(cfg.warmup_ratio * self.total_steps), self.total_steps
        )
        self.dist.barrier()  # rank 0 has written its checkpoints: every rank resumes from the same one
        self._resume()
        if self.evaluate and self.progress.base_task is None and self.dist.main:  # once per job
            with self.model.disable_adapter():
                self.progress.base_task = self.task_scores()
            self.reporter.event(
                f"The base model scores task F1={self.progress.base_task['task_f1']:.3f} on "
                f"{self.task_source}: each epoch is compared with it.",
                {"base_task_f1": self.progress.base_task["task_f1"]},
            )

    def _check_targets(self) -> None:
        """Every `target_modules` name must end the name of a linear layer of the model (PEFT's rule).
        Raises DataError `invalid_hyperparameters` naming the unknown ones and the model's own."""
        linear = {
            name.rsplit(".", 1)[-1]
            for name, module in self.model.named_modules()
            if isinstance(module, torch.nn.Linear)
        }
        unknown = [m for m in self.config.target_modules if m not in linear]
        if unknown:
            raise DataError(
                "invalid_hyperparameters",
                f"lora.target_modules {unknown} are not linear layers of this model; "
                f"its linear layers are {sorted(linear)}.",
            )

    def _hold_out(
        self, conversations: list[Conversation], has_validation: bool
    ) -> tuple[list[Conversation], list[Conversation]]:
        """(kept for training, held out to score epochs): `held_out_share` of the examples, by seed, only
        without a validation file and with at least HELD_OUT_MIN_EXAMPLES examples."""
        share = self.config.held_out_share
        if has_validation or share <= 0 or len(conversations) < HELD_OUT_MIN_EXAMPLES:
            return conversations, []
        count = min(HELD_OUT_MAX, max(2, round(share * len(conversations))))
        chosen = set(random.Random(self.config.seed).sample(range(len(conversations)), count))
        kept = [c for i, c in enumerate(conversations) if i not in chosen]
        held = [c for i, c in enumerate(conversations) if i in chosen]
        self.reporter.event(
            f"Held out {len(held)} of {len(conversations)} examples{_at_lines([c.line for c in held])} "
            "to score each epoch; they are not trained on. Give a validation_file, or set "
            "training.held_out_share to 0, to train on all of them.",
            {"held_out_lines": [c.line for c in held]},
        )
        return kept, held

    def _task_set(
        self, valid: list[Conversation], held_out: list[Conversation], train: list[Conversation]
    ) -> None:
        """The (prompt messages, reference answer) pairs each epoch is scored on, and where they come from."""
        source, self.task_source = (
            (valid, "validation file")
            if valid
            else (held_out, "held-out examples")
            if held_out
            else (train, "training prompts")
        )
        items = [item for item in (_task_item(c) for c in source) if item is not None]
        if len(items) > TASK_MAX_PROMPTS:
            items = random.Random(self.config.seed).sample(items, TASK_MAX_PROMPTS)
        self.task = items
        self.reporter.event(
            f"Each epoch is scored on {_count(len(items), TASK_NOUNS[self.task_source])} (token F1 of "
            "greedy answers).",
            {"task_source": self.task_source, "task_examples": len(items)},
        )

    def _rehearsal_pool(self) -> list[Example]:
        """The base model's own answers to the built-in rehearsal prompts, as training examples
        (self-distillation), in one order seeded by `seed`: only as many prompts as the job's epochs will
        use are answered. An answer cut by the token limit is cut back to its last whole sentence, so
        rehearsal never teaches the model to stop mid-sentence."""
        order = torch.randperm(
            len(REHEARSAL_PROMPTS), generator=torch.Generator().manual_seed(self.config.seed)
        ).tolist()
        prompts = [REHEARSAL_PROMPTS[i] for i in order[: self.rehearsal_count * self.config.n_epochs]]
        # Data-parallel: rank 0 answers and every rank trains on its answers (one generation, and the
        # same rehearsal data everywhere even where two GPUs would round differently).
        answers = self.dist.broadcast_object(
            self._general_answers("rehearsal", prompts, REHEARSAL_TOKENS) if self.dist.main else None
        )
        conversations = [
            Conversation([Message("user", q), Message("assistant", text)], line=0)
            for q, a in zip(prompts, answers, strict=True)
            if (text := whole_sentences(a))
        ]
        examples, _ = tokenize(conversations, self.tokenizer, self.config.max_length)
        return examples

    def epoch_rehearsal(self, epoch: int) -> list[Example]:
        """Epoch `epoch`'s (0-based) rehearsal examples: the next `rehearsal_count` of the pool (already in
        its seeded order), wrapping around, so successive epochs rehearse different prompts and every
        prompt is used before any is repeated."""
        pool, count = self.rehearsal_pool, self.rehearsal_count
        if not pool or not count:
            return []
        return [pool[(epoch * count + i) % len(pool)] for i in range(count)]

    def _general_answers(self, name: str, prompts: list[str], max_new_tokens: int) -> list[str]:
        """Greedy base-model answers to `prompts`, cached per base model and prompt (they do not depend on
        the job): a later job asking for more prompts generates only the missing ones."""
        stamp = (self.model_dir / "config.json").stat().st_mtime_ns
        # hashlib, not hash(): str hashes are salted per process, and the cache must outlive the worker.
        source = f"{self.model_dir.resolve()}\0{stamp}\0{max_new_tokens}"
        key = hashlib.sha256(source.encode()).hexdigest()[:16]
        path = self.cache_dir / f"{name}-{key}.json"
        cached: dict[str, str] = {}
        if path.is_file():
            with contextlib.suppress(ValueError, AttributeError):  # unreadable: made again
                cached = dict(json.loads(path.read_text()).get("answers_by_prompt", {}))
        missing = [q for q in dict.fromkeys(prompts) if q not in cached]
        if missing:
            # Minutes on a CPU, once per base model: say so, or the job looks stuck before its first step.
            self.reporter.event(
                f"Generating the base model's answers to {len(missing)} built-in {GENERAL_SETS[name]} "
                "(minutes on a CPU; cached per base model and prompt, so later jobs reuse them).",
                {"stage": f"{name}_answers", "prompts": len(missing)},
            )
            cached.update(
                zip(
                    missing,
                    generate(self.model, self.tokenizer, missing, max_new_tokens, device=self.device),
                    strict=True,
                )
            )
            atomic_write_json(path, {"answers_by_prompt": cached}, indent=None)
        return [cached[q] for q in prompts]

    def _pick_micro_batch(self) -> int:
        """Examples per forward/backward pass: the configured `micro_batch_size`; for `auto` (None)
        `CPU_MICRO_BATCH` off CUDA, and on CUDA as many rows of the longest training example as
        `common.memory_plan.micro_batch_for` fits in the memory budget (`memory_budget`, at most what
        is allocated now plus what is free, less HEADROOM of the card). Within [1, batch_size]."""
        cfg = self.config
        if cfg.micro_batch_size is not None:
            return cfg.micro_batch_size
        rows = math.ceil(cfg.batch_size / self.dist.world_size)  # a rank's share of a batch at most
        if self.device.type != "cuda":
            return min(CPU_MICRO_BATCH, rows)
        from common.memory_plan import HEADROOM, ModelShape, micro_batch_for

        free, total = torch.cuda.mem_get_info(self.device)
        budget = torch.cuda.memory_allocated(self.device) + free - int(HEADROOM * total)
        if self.memory_budget is not None:
            budget = min(budget, self.memory_budget)
        shape = ModelShape.from_config(self.model.get_base_model().config)
        longest = max((len(e.input_ids) for e in self.examples + self.rehearsal_pool), default=1)
        size = micro_batch_for(
            shape,
            torch.finfo(self.dtype).bits // 8,
            shape.lora_parameters(cfg.lora_r, cfg.target_modules),
            budget,
            longest,
            rows,
            cfg.gradient_checkpointing,
        )
        self.reporter.event(
            f"Micro-batches of {size} (auto): rows of up to {longest} tokens in a "
            f"{budget / 2**30:.1f} GiB budget on {self.device}.",
            {"micro_batch_size": size, "longest_example_tokens": longest, "memory_budget_bytes": budget},
        )
        return size

    # ---- training ---------------------------------------------------------------------------------

    def train(self) -> dict[str, Any]:
        cfg, p = self.config, self.progress
        started, tokens_at_start = time.perf_counter(), p.tokens_seen
        while p.epoch < cfg.n_epochs:
            data = self.examples + self.epoch_rehearsal(p.epoch)
            order = torch.randperm(len(data), generator=torch.Generator().manual_seed(cfg.seed + p.epoch))
            batches = [order[i : i + cfg.batch_size].tolist() for i in range(0, len(order), cfg.batch_size)]
            for index in range(p.step_in_epoch, len(batches)):
                loss, tokens = self._step([data[i] for i in batches[index]])
                p.step, p.step_in_epoch, p.tokens_seen = p.step + 1, index + 1, p.tokens_seen + tokens
                rate = (p.tokens_seen - tokens_at_start) / (time.perf_counter() - started)
                self.reporter.event(
                    f"Step {p.step}/{self.total_steps}: training loss={loss:.4f}",
                    {
                        "step": p.step,
                        "total_steps": self.total_steps,
                        "epoch": p.epoch + 1,
                        "train_loss": loss,
                        "tokens_per_second": rate,
                        "tokens_seen": p.tokens_seen,
                        "learning_rate": self.scheduler.get_last_lr()[0],
                    },
                    kind="metrics",
                )
                self.metrics["train_loss"] = loss
                if self.dist.broadcast_object(self.reporter.stop_requested()):  # rank 0's: all stop
                    raise Cancelled
                if p.step % cfg.checkpoint_every == 0 and p.step_in_epoch < len(batches):
                    self.checkpoint()
            p.epoch, p.step_in_epoch = p.epoch + 1, 0
            # Rank 0 scores; the others wait here and keep its scores, so every rank's record is the same.
            scores = self.dist.broadcast_object(self._end_of_epoch() if self.dist.main else None)
            # Recorded before the checkpoint is written, so a run resumed from it knows this epoch too.
            p.epochs.append({**scores, "checkpoint": str(self._checkpoint_dir())})
            self.checkpoint(scores)
        if self.dist.main:  # rank 0's choice is what it saves; the others save nothing
            self._publish_best()
        self.metrics.update({"steps": p.step, "epochs": p.epoch, "tokens_seen": p.tokens_seen})
        return self.metrics

    def _step(self, batch: list[Example]) -> tuple[float, int]:
        """One optimizer step over `batch`, in length-grouped micro-batches (`micro_batches`). Returns
        (loss, tokens): the loss summed over the batch's trained tokens divided by their count, whatever
        the micro-batches (each micro-batch's sum is divided by the whole batch's count), and the tokens
        fed to the model, padding excluded. Data-parallel, each rank passes the same whole `batch` and
        trains its `shard`; both numbers are then the whole batch's, summed over the ranks."""
        while True:
            try:
                return self._accumulate(batch)
            except out_of_memory_errors() as exc:
                if self.micro_batch_size == 1:
                    raise
                message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            # Out of the except block: the traceback's frames (and the activations they hold) are gone.
            self.optimizer.zero_grad(set_to_none=True)
            release_cached_memory(str(self.device))
            smaller = max(1, self.micro_batch_size // 2)
            self.reporter.event(
                f"Out of memory with micro-batches of {self.micro_batch_size}: retrying the step with "
                f"{smaller} (the size stays at {smaller} for the rest of the job).",
                {"micro_batch_size": smaller, "error": message[:300]},
            )
            self.micro_batch_size = smaller

    def _accumulate(self, batch: list[Example]) -> tuple[float, int]:
        """`_step`'s work at `self.micro_batch_size`: forward and backward over each micro-batch, then
        the optimizer step. Raises torch.OutOfMemoryError before the optimizer step when a micro-batch
        does not fit (the gradients accumulated so far are then to be discarded)."""
        self.model.train()
        trained = trained_tokens(batch)  # the WHOLE batch's, on every rank: summed gradients are its own
        total_loss = torch.zeros((), device=self.device)  # summed on the device: no sync per micro-batch
        tokens = 0
        share = shard(batch, self.dist.rank, self.dist.world_size)
        for micro in micro_batches(share, self.micro_batch_size):
            ids, labels, mask = collate(micro, self.tokenizer.pad_token_id, self.device)
            # rehearsal examples have no line
            rehearsal = torch.tensor([e.line == 0 for e in micro], device=self.device)
            loss = self._loss_sum(ids, labels, mask, rehearsal) / max(trained, 1)
            loss.backward()
            total_loss += loss.detach()
            tokens += sum(len(e.input_ids) for e in micro)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.dist.all_reduce_gradients(params)  # the whole batch's gradient on every rank (DDP's rule)
        torch.nn.utils.clip_grad_norm_(params, self.config.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.dist.world_size == 1:
            return float(total_loss), tokens
        loss, tokens_sum = self.dist.all_reduce_sum(float(total_loss), tokens)
        return loss, round(tokens_sum)

    def _loss_sum(
        self,
        ids: torch.Tensor,
        labels: torch.Tensor,
        mask: torch.Tensor,
        rehearsal: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Summed loss over the trained positions only: next-token cross-entropy on the user's examples;
        on rehearsal rows (`rehearsal`, bool [batch]) with `rehearsal_distillation`, the KL divergence
        KL(base ‖ tuned) of the next-token distributions instead (self-distillation: the base model's whole
        distribution at each position of its own answer, not only its greedy token, as in Learning without
        Forgetting, Li & Hoiem 2016; the base model is the same weights with the adapter disabled).

        The output projection runs on the hidden states of trained positions alone: the full
        [batch, length, vocabulary] logits would cost a vocabulary-sized matmul per prompt token and
        most of the memory (49k x 4 bytes per token for SmolLM2).
        """
        with self._mixed_precision():
            return self._loss_sum_inner(ids, labels, mask, rehearsal)

    def _mixed_precision(self) -> contextlib.AbstractContextManager:
        """With bfloat16 weights, forward passes run under torch.autocast(bfloat16) with PEFT's input
        casting off: the LoRA path then computes in bfloat16 from its float32 weights (the master copy
        AdamW updates) instead of casting each projection's input to float32 and multiplying on CUDA
        cores. Measured on an H200, 1.7B shape (bench_gpu.py --only profile): those float32 casts, GEMMs
        and elementwise ops took about half of each step's GPU time. float32 weights: no change."""
        if self.dtype != torch.bfloat16:
            return contextlib.nullcontext()
        from peft.helpers import disable_input_dtype_casting

        stack = contextlib.ExitStack()
        stack.enter_context(torch.autocast(self.device.type, dtype=torch.bfloat16))
        stack.enter_context(disable_input_dtype_casting(self.model))
        return stack

    def _loss_sum_inner(
        self,
        ids: torch.Tensor,
        labels: torch.Tensor,
        mask: torch.Tensor,
        rehearsal: torch.Tensor | None,
    ) -> torch.Tensor:
        """`_loss_sum`'s computation, inside its precision context."""
        base = self.model.get_base_model()
        decoder, head = base.get_decoder(), base.get_output_embeddings()
        hidden = decoder(input_ids=ids, attention_mask=mask).last_hidden_state[:, :-1]
        targets = labels[:, 1:]
        keep = targets != -100
        distill = (
            rehearsal is not None
            and self.config.rehearsal_distillation
            and bool(rehearsal.any())
            and bool(keep[rehearsal].any())
        )
        if not distill:
            logits = head(hidden[keep]).float()
            return torch.nn.functional.cross_entropy(logits, targets[keep], reduction="sum")
        rows = rehearsal[:, None]
        own, kept = keep & ~rows, keep & rows
        loss = (
            torch.nn.functional.cross_entropy(head(hidden[own]).float(), targets[own], reduction="sum")
            if bool(own.any())
            else hidden.new_zeros(())
        )
        with torch.no_grad(), self.model.disable_adapter():
            reference = decoder(input_ids=ids[rehearsal], attention_mask=mask[rehearsal]).last_hidden_state
            reference = torch.log_softmax(head(reference[:, :-1][kept[rehearsal]]).float(), dim=-1)
        tuned = torch.log_softmax(head(hidden[kept]).float(), dim=-1)
        return loss + torch.nn.functional.kl_div(tuned, reference, log_target=True, reduction="sum")

    def _end_of_epoch(self) -> dict[str, Any]:
        """Validation loss, retention (with its interval) and task score after an epoch, as an event."""
        p = self.progress
        data: dict[str, Any] = {"epoch": p.epoch, "step": p.step}
        if self.valid:
            data["valid_loss"] = self.validation_loss()
            self.metrics["valid_loss"] = data["valid_loss"]
        if not self.evaluate:
            self.reporter.event(
                f"Epoch {p.epoch}/{self.config.n_epochs} done"
                + (f": validation loss={data['valid_loss']:.4f}" if "valid_loss" in data else "."),
                data,
                kind="metrics",
            )
            return data
        data.update(self.retention_scores())
        data.update(self.task_scores())
        low, high = data["retention_interval"]
        self.reporter.event(
            f"Epoch {p.epoch}/{self.config.n_epochs}: task F1={data['task_f1']:.3f} on {self.task_source}, "
            f"retention={data['retention']:.2f} (95% interval {low:.2f}–{high:.2f}, "
            f"{data['retention_kept']}/{data['retention_known']} questions)"
            + (f", validation loss={data['valid_loss']:.4f}" if "valid_loss" in data else ""),
            data,
            kind="metrics",
        )
        return data

    def _publish_best(self) -> None:
        """Load the chosen epoch's adapter (see choose_epoch) and say which and why."""
        epochs = self.progress.epochs
        if not epochs:
            return
        if not self.evaluate:
            reason = "epochs were not scored (eval_strategy 'no'), so the last one is published"
            self.metrics.update({"chosen_epoch": epochs[-1]["epoch"], "chosen_reason": reason})
            self.reporter.event(
                f"Publishing epoch {epochs[-1]['epoch']} of {len(epochs)}: {reason}",
                {"chosen_epoch": epochs[-1]["epoch"], "reason": reason},
            )
            return
        index, reason = choose_epoch(epochs, self.config.min_retention)
        chosen = epochs[index]
        if index != len(epochs) - 1:
            self._load_adapter(Path(chosen["checkpoint"]))
        self.metrics.update(
            {
                "chosen_epoch": chosen["epoch"],
                "chosen_reason": reason,
                "retention": chosen["retention"],
                "retention_interval": chosen["retention_interval"],
                "task_f1": chosen["task_f1"],
                "task_exact_match": chosen["task_exact_match"],
                "task_source": self.task_source,
                "base_task_f1": (self.progress.base_task or {}).get("task_f1"),
                "base_task_exact_match": (self.progress.base_task or {}).get("task_exact_match"),
                "epoch_scores": [
                    {k: e[k] for k in ("epoch", "task_f1", "retention", "retention_interval")} for e in epochs
                ],
            }
        )
        self.reporter.event(
            f"Publishing epoch {chosen['epoch']} of {len(epochs)}: {reason}",
            {"chosen_epoch": chosen["epoch"], "reason": reason},
        )
        base = (self.progress.base_task or {}).get("task_f1")
        self.metrics["beats_base"] = base is None or chosen["task_f1"] > base + TASK_TIE
        if not self.metrics["beats_base"]:
            self.reporter.event(
                f"Warning: the published epoch scores task F1 {chosen['task_f1']:.3f} on {self.task_source}, "
                f"no better than the base model's {base:.3f}: training has not improved on your examples "
                "(too few, or too few epochs; a higher learning_rate_multiplier may help). The model is "
                "published so you can inspect and compare it.",
                {"warning": "no_gain_over_base", "task_f1": chosen["task_f1"], "base_task_f1": base},
            )

    @torch.no_grad()
    def validation_loss(self) -> float:
        """Mean next-token loss per trained token of the validation file (length-grouped micro-batches)."""
        self.model.eval()
        total = torch.zeros((), device=self.device)
        for micro in micro_batches(self.valid, self.micro_batch_size):
            ids, labels, mask = collate(micro, self.tokenizer.pad_token_id, self.device)
            total += self._loss_sum(ids, labels, mask)
        return float(total) / max(trained_tokens(self.valid), 1)

    def retention_scores(self) -> dict[str, Any]:
        """Retention: of the general questions the base model gets right, the share the tuned model still
        gets right, with its 95% Wilson interval (`retention_kept` of `retention_known`)."""
        questions = [q for q, _ in RETENTION_QUESTIONS]
        known = [i for i, (_, ok) in enumerate(RETENTION_QUESTIONS) if is_correct(self.base_answers[i], ok)]
        kept = 0
        if known:
            tuned = generate(
                self.model,
                self.tokenizer,
                [questions[i] for i in known],
                RETENTION_TOKENS,
                device=self.device,
            )
            kept = sum(is_correct(a, RETENTION_QUESTIONS[i][1]) for a, i in zip(tuned, known, strict=True))
        retention = kept / len(known) if known else 1.0
        interval = retention_interval(kept, len(known))  # (0, 1) when nothing is known: no information
        return {
            "retention": retention,
            "retention_interval": [round(interval[0], 4), round(interval[1], 4)],
            "retention_kept": kept,
            "retention_known": len(known),
        }

    def task_scores(self) -> dict[str, Any]:
        """Mean token F1 and exact match (CJK-aware, as comparisons score) of greedy answers to the task
        set against its references."""
        if not self.task:
            return {"task_f1": 0.0, "task_exact_match": 0.0, "task_examples": 0}
        answers = generate(
            self.model, self.tokenizer, [m for m, _ in self.task], TASK_TOKENS, device=self.device
        )
        references = [r for _, r in self.task]
        return {
            "task_f1": sum(f1(a, [r]) for a, r in zip(answers, references, strict=True)) / len(answers),
            "task_exact_match": sum(exact_match(a, [r]) for a, r in zip(answers, references, strict=True))
            / len(answers),
            "task_examples": len(answers),
        }

    # ---- checkpoints ------------------------------------------------------------------------------

    def checkpoint(self, scores: dict[str, Any] | None = None) -> Path:
        """Adapter + optimizer + scheduler + RNG + progress (with the epoch's `scores`, at an epoch end),
        written to a temporary dir and renamed. Data-parallel, rank 0 alone writes it (every rank holds
        the same weights and optimizer state); every rank returns its path."""
        p = self.progress
        final = self._checkpoint_dir()
        if not self.dist.main:
            return final
        state = {
            **p.__dict__,
            **(scores or {}),
            "train_loss": self.metrics.get("train_loss"),
            "valid_loss": self.metrics.get("valid_loss"),
        }
        with atomic_dir(final, replace=True) as tmp:
            self.model.save_pretrained(tmp)
            torch.save(
                {
                    "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(),
                    "rng": torch.get_rng_state(),
                    # LoRA dropout on a GPU draws from its own generator: saved too, for an exact resume
                    **(
                        {"cuda_rng": torch.cuda.get_rng_state(self.device)}
                        if self.device.type == "cuda"
                        else {}
                    ),
                },
                tmp / "trainer_state.pt",
            )
            (tmp / "progress.json").write_text(json.dumps(state))
        epoch_end = scores is not None
        # What the checkpoints API shows: the step's numbers, never server paths or the progress record.
        public = {
            "step": p.step,
            "epoch": p.epoch,
            "train_loss": state["train_loss"],
            "valid_loss": state["valid_loss"],
            **{k: v for k, v in (scores or {}).items() if k not in ("epoch", "step")},
        }
        self.reporter.event(
            f"Checkpoint at step {p.step}"
            + (f" (end of epoch {p.epoch})" if epoch_end else " (to resume from; epoch ends are the models)"),
            {"step": p.step, "epoch": p.epoch, "epoch_end": epoch_end, "metrics": public},
            kind="checkpoint",
        )
        return final

    def _checkpoint_dir(self) -> Path:
        return self.run_dir / "checkpoints" / f"step-{self.progress.step:06d}"

    def _resume(self) -> None:
        root = self.run_dir / "checkpoints"
        done = (
            sorted(d for d in root.glob("step-*") if (d / "progress.json").is_file()) if root.is_dir() else []
        )
        if not done:
            return
        latest = done[-1]
        self._load_adapter(latest)
        # Loaded to the CPU whatever device wrote it: load_state_dict moves each optimizer state to its
        # parameter's device (and keeps AdamW's step counts on the CPU, as a fresh run has them), and RNG
        # states are CPU tensors. So a checkpoint written on a GPU resumes on a CPU and the other way.
        state = torch.load(latest / "trainer_state.pt", map_location="cpu", weights_only=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        if "cuda_rng" in state and self.device.type == "cuda":  # else the GPU keeps its seeded state
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        saved = json.loads((latest / "progress.json").read_text())
        self.progress = Progress(**{k: saved[k] for k in Progress.__dataclass_fields__ if k in saved})
        for key in ("train_loss", "valid_loss"):
            if saved.get(key) is not None:
                self.metrics[key] = saved[key]
        self.reporter.event(
            f"Resumed from the checkpoint at step {self.progress.step}",
            {"step": self.progress.step, "epoch": self.progress.epoch},
        )

    def _load_adapter(self, directory: Path) -> None:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        weights = load_file(directory / "adapter_model.safetensors", device=str(self.device))
        set_peft_model_state_dict(self.model, weights)

    # ---- output -----------------------------------------------------------------------------------

    def save(self, adapter_dir: Path, extra: dict[str, Any]) -> None:
        """The servable adapter and everything needed to reproduce it, written atomically, with every
        epoch's adapter (and its scores) in `checkpoints/ckpt-step-<step>/`: each is a model of its own
        (`<fine-tuned model>:ckpt-step-<step>`), so a user can compare epochs. Data-parallel, rank 0
        alone saves (the others return at once)."""
        if not self.dist.main:
            return
        with atomic_dir(adapter_dir, replace=True) as tmp:
            self.model.save_pretrained(tmp)
            for epoch in self.progress.epochs:
                source = Path(epoch["checkpoint"])
                if not (source / "adapter_model.safetensors").is_file():
                    continue  # written by an older version that kept no epoch adapters
                target = tmp / "checkpoints" / f"ckpt-step-{epoch['step']}"
                target.mkdir(parents=True)
                for name in ("adapter_model.safetensors", "adapter_config.json"):
                    shutil.copy2(source / name, target / name)
                scores = {k: v for k, v in epoch.items() if k != "checkpoint"}
                (target / "metrics.json").write_text(json.dumps(scores, indent=2))
            (tmp / "training_config.json").write_text(
                json.dumps({**self.config.to_dict(), **extra}, indent=2)
            )
            (tmp / "metrics.json").write_text(json.dumps(self.metrics, indent=2))
            if self.tokenizer.chat_template:
                (tmp / "chat_template.jinja").write_text(self.tokenizer.chat_template)

    def cleanup(self) -> None:
        """Delete the checkpoints (rank 0's, rank 0 alone)."""
        if self.dist.main:
            shutil.rmtree(self.run_dir / "checkpoints", ignore_errors=True)


def load_model(model_dir: Path, dtype: torch.dtype) -> Any:
    """The causal LM in `model_dir` with weights in `dtype`, on the CPU, with PyTorch's
    scaled-dot-product attention (fused kernels on a GPU, no [batch, heads, length, length] score
    tensor kept for the backward pass) where transformers has it for the architecture, else with the
    architecture's default attention."""
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, attn_implementation="sdpa")
    except (ValueError, ImportError):  # transformers' answer for an architecture without SDPA
        return AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)


def micro_batches(batch: list[Example], size: int) -> list[list[Example]]:
    """`batch` cut into micro-batches of at most `size` examples, longest first: rows of similar length
    share a micro-batch, so little of it is padding (every pad token costs a forward and a backward
    position), and the first micro-batch is the largest, so a device too small fails at the first
    step. Every example is in exactly one micro-batch, in a deterministic order (a stable sort)."""
    ordered = sorted(batch, key=lambda e: len(e.input_ids), reverse=True)
    return [ordered[start : start + size] for start in range(0, len(ordered), size)]


def shard(batch: list[Example], rank: int, world_size: int) -> list[Example]:
    """Rank `rank`'s share of an optimizer step's `batch` when `world_size` processes train it: the
    batch sorted by length, longest first (a stable sort, as `micro_batches` does), then every
    `world_size`-th example from position `rank`. Every example is on exactly one rank, the ranks' row
    counts differ by at most one and their token counts by at most the longest example's length (rank 0
    gets the longest of each group of `world_size`), so no rank waits long for another at the
    gradient all_reduce. A rank may get nothing (a batch smaller than the world). `world_size` 1:
    `batch` itself."""
    if world_size == 1:
        return batch
    ordered = sorted(batch, key=lambda e: len(e.input_ids), reverse=True)
    return ordered[rank::world_size]


def trained_tokens(batch: list[Example]) -> int:
    """Positions the loss is taken on: labels other than -100 after the first (the first token is never
    predicted), as `_loss_sum` counts them."""
    return sum(sum(label != -100 for label in e.labels[1:]) for e in batch)


def collate(
    batch: list[Example], pad_id: int, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded input ids, labels (-100 on padding) and attention mask, each long [len(batch),
    longest example], built on the CPU and moved to `device` (if given) in one copy each."""
    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, example in enumerate(batch):
        n = len(example.input_ids)
        ids[row, :n] = torch.tensor(example.input_ids)
        labels[row, :n] = torch.tensor(example.labels)
        mask[row, :n] = 1
    if device is not None:
        ids, labels, mask = (t.to(device, non_blocking=True) for t in (ids, labels, mask))
    return ids, labels, mask


@torch.no_grad()
def generate(
    model: Any,
    tokenizer: Any,
    prompts: list[str] | list[list[dict[str, str]]],
    max_new_tokens: int,
    batch_size: int = 64,
    device: torch.device | str | None = None,
) -> list[str]:
    """Greedy answers to prompts (a user message, or the messages before the answer), in the prompts'
    order. Batched with left padding, prompts of similar length together (less padding); 64 per batch,
    because on a CPU a small model's decoding step costs little more for 64 rows than for 16, and it is
    the number of steps that counts. Each batch's inputs go to `device`, by default the device of the
    model's first parameter."""
    model.eval()
    device = torch.device(device) if device is not None else next(model.parameters()).device
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    texts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": q}] if isinstance(q, str) else q,
            tokenize=False,
            add_generation_prompt=True,
        )
        for q in prompts
    ]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    answers: list[str] = [""] * len(texts)
    try:
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            inputs = tokenizer(
                [texts[i] for i in rows], return_tensors="pt", padding=True, add_special_tokens=False
            ).to(device)
            out = model.generate(
                **inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
            )
            decoded = tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
            for i, text in zip(rows, decoded, strict=True):
                answers[i] = text
    finally:
        tokenizer.padding_side = side
    return answers


def whole_sentences(text: str) -> str:
    """`text` stripped and cut after its last sentence end (``.!?。！？…``, with closing quotes or
    brackets); unchanged when it ends with one or holds none (a list, a single phrase)."""
    text = text.strip()
    ends = list(_SENTENCE_END.finditer(text))
    return text[: ends[-1].end()] if ends else text


def _at_lines(lines: list[int]) -> str:
    """` (line 3)`, ` (lines 3, 5, … )` or nothing, for an event message."""
    if not lines:
        return ""
    shown = ", ".join(map(str, lines[:10])) + (" …" if len(lines) > 10 else "")
    return f" (line{'s' if len(lines) > 1 else ''} {shown})"


def _count(n: int, noun: str) -> str:
    """`1 example`, `2 examples`."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


TASK_TIE = 0.005  # task F1s this close are the same score (a 64-example set moves in steps of ~0.016)


def choose_epoch(epochs: list[dict[str, Any]], min_retention: float) -> tuple[int, str]:
    """(index into `epochs`, reason) of the epoch to publish: among epochs whose `retention` is at least
    `min_retention`, the earliest whose `task_f1` is the best (within TASK_TIE); when none keeps
    retention, the epoch with the best retention (ties: better task score, then earlier), and the reason
    says so.

    Why the earliest of equals, not the one with the best retention: once the task score has stopped
    rising, later epochs only move the model further from the base, and a retention difference of one
    or two questions is well inside its interval. Measured on the facts benchmark: epochs 4-8 all score
    task F1 1.0 with retention 0.86-0.91, but from epoch 6 on "What is the capital of France?" is
    answered in French.

    `epochs`: one dict per trained epoch with `epoch`, `task_f1`, `retention`. Raises ValueError if empty."""
    if not epochs:
        raise ValueError("no epoch to choose from")
    allowed = [i for i, e in enumerate(epochs) if e["retention"] >= min_retention]
    if allowed:
        top = max(epochs[i]["task_f1"] for i in allowed)
        best = min(i for i in allowed if epochs[i]["task_f1"] >= top - TASK_TIE)
        e = epochs[best]
        later = sum(1 for i in allowed if i > best and epochs[i]["task_f1"] >= top - TASK_TIE)
        return best, (
            f"the best task F1 ({e['task_f1']:.3f}) of the {len(allowed)} epoch(s) whose retention is at "
            f"least {min_retention:g} (this one: {e['retention']:.2f})"
            + (f"; {later} later epoch(s) only matched it, so the earliest is kept." if later else ".")
        )
    best = max(range(len(epochs)), key=lambda i: (epochs[i]["retention"], epochs[i]["task_f1"], -i))
    e = epochs[best]
    return best, (
        f"no epoch kept retention at {min_retention:g} or more; this one kept the most "
        f"({e['retention']:.2f}, task F1 {e['task_f1']:.3f})."
    )


def _task_item(conversation: Conversation) -> tuple[list[dict[str, str]], str] | None:
    """(messages before the last trained assistant answer, that answer), or None without one."""
    messages = conversation.messages
    for index in range(len(messages) - 1, 0, -1):
        message = messages[index]
        if message.role == "assistant" and message.weight and message.content.strip():
            prompt = [{"role": m.role, "content": m.content} for m in messages[:index]]
            return (prompt, message.content) if any(m["role"] == "user" for m in prompt) else None
    return None
