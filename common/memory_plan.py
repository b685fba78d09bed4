"""GPU memory arithmetic shared by serving and training: one card's split between the serving engine and
fine-tuning jobs, the transformers engine's batch from its KV-cache budget, and a LoRA job's footprint.

Pure arithmetic on a model's shape (no torch), so the planner is tested on a CPU. Byte counts are
estimates of PyTorch's allocated memory (`torch.cuda.max_memory_allocated`), not of the driver's view:
a CUDA context (`CUDA_CONTEXT_BYTES`) is added where a whole process is planned. `bench/bench_gpu.py`
prints each estimate beside the peak it measured.

The split (README, "GPU guide"): the serving engine may use `gpu_memory_utilization` of the card
(vLLM's own setting and meaning), fine-tuning jobs `training_memory_utilization`; by default training
gets what serving leaves, less `HEADROOM`, when both use the same card, and `1 - HEADROOM` when serving
runs elsewhere (the CPU, another card).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GIB = 1024**3
HEADROOM = 0.05
"""Share of the card neither side plans for: fragmentation of the caching allocator, cuBLAS and NCCL
workspaces, other processes' contexts."""
CUDA_CONTEXT_BYTES = int(0.5 * GIB)
"""A process's CUDA context and kernels (seen: 0.3-0.6 GiB with PyTorch 2.x on Hopper)."""
TRAINING_SAFETY = 1.25
"""Factor on the activation estimate when `micro_batch_size` is chosen from free memory: the estimate
leaves out the caching allocator's fragmentation; a step that still runs out of memory is retried with
half the micro-batch (finetune/recipe.py)."""
SERVING_MAX_BATCH = 256
"""The transformers engine's largest automatic batch: past it, one Python decode loop is the bound."""
CPU_MAX_BATCH = 16
"""The transformers engine's batch on a CPU, where the cores, not memory, are the bound."""
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class ModelShape:
    """The numbers of a decoder-only transformer (Llama, Qwen, Mistral family) that memory depends on,
    with transformers' config names. `parameters` counts every weight once (tied embeddings once)."""

    parameters: int
    num_hidden_layers: int
    hidden_size: int
    intermediate_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    vocab_size: int
    max_position_embeddings: int

    @classmethod
    def from_config(cls, config: dict[str, Any] | Any) -> ModelShape:
        """From a transformers config (object or `config.json` dict). Parameters are counted from the
        shape: embeddings (and an untied output head), per layer the q/k/v/o projections, a gated MLP
        (3 matrices) and two RMSNorms, and the final norm. Raises KeyError without a needed field."""
        get = config.get if isinstance(config, dict) else lambda k, d=None: getattr(config, k, d)
        h, layers, inter = get("hidden_size"), get("num_hidden_layers"), get("intermediate_size")
        heads = get("num_attention_heads")
        if None in (h, layers, inter, heads):
            raise KeyError(
                "config needs hidden_size, num_hidden_layers, intermediate_size, num_attention_heads"
            )
        kv = get("num_key_value_heads") or heads
        head_dim = get("head_dim") or h // heads
        vocab = get("vocab_size") or 32000
        per_layer = h * heads * head_dim * 2 + h * kv * head_dim * 2 + 3 * h * inter + 2 * h
        embeddings = vocab * h * (1 if get("tie_word_embeddings", True) else 2)
        return cls(
            parameters=embeddings + layers * per_layer + h,
            num_hidden_layers=layers,
            hidden_size=h,
            intermediate_size=inter,
            num_attention_heads=heads,
            num_key_value_heads=kv,
            head_dim=head_dim,
            vocab_size=vocab,
            max_position_embeddings=get("max_position_embeddings") or 4096,
        )

    @classmethod
    def from_model_dir(cls, path: str | Path) -> ModelShape:
        """From `<path>/config.json`. Raises OSError, ValueError (not JSON) or KeyError (see from_config)."""
        return cls.from_config(json.loads((Path(path) / "config.json").read_text()))

    def lora_parameters(self, r: int, target_modules: tuple[str, ...] | list[str]) -> int:
        """Trainable LoRA parameters: r x (in + out features) per targeted projection per layer (PEFT's
        LoRA: A is [r, in], B is [out, r])."""
        h, i = self.hidden_size, self.intermediate_size
        q, kv = self.num_attention_heads * self.head_dim, self.num_key_value_heads * self.head_dim
        sizes = {
            "q_proj": (h, q),
            "k_proj": (h, kv),
            "v_proj": (h, kv),
            "o_proj": (q, h),
            "gate_proj": (h, i),
            "up_proj": (h, i),
            "down_proj": (i, h),
        }
        return self.num_hidden_layers * sum(r * sum(sizes[m]) for m in target_modules if m in sizes)


def kv_cache_bytes_per_token(shape: ModelShape, dtype_bytes: int) -> int:
    """Bytes of KV cache one token holds: keys and values for every layer and KV head (vLLM's block
    size arithmetic: 2 x layers x KV heads x head_dim x dtype bytes)."""
    return 2 * shape.num_hidden_layers * shape.num_key_value_heads * shape.head_dim * dtype_bytes


def activation_bytes_per_token(shape: ModelShape, dtype_bytes: int, gradient_checkpointing: bool) -> int:
    """Bytes a training forward pass keeps per token for the backward pass, for ragtune's recipe (SDPA
    attention, so no [heads, length, length] scores are kept; LoRA with dropout on every projection).

    Per layer, after Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large Transformer
    Models", section 4.1) with a gated MLP: the inputs of the norms (float32), of q/k/v/o and of the
    three MLP projections, q, k, v and the attention output, the gate and up outputs and their product,
    and the dropout copies PEFT's LoRA makes of each projection's input. With gradient checkpointing only
    each layer's input is kept, plus one layer's activations during its recomputation. The output head's
    logits are not here: the recipe computes them for trained positions only (`head_bytes_per_token`)."""
    h, i = shape.hidden_size, shape.intermediate_size
    q, kv = shape.num_attention_heads * shape.head_dim, shape.num_key_value_heads * shape.head_dim
    norms = 2 * 4 * h
    attention = dtype_bytes * (h + q + 2 * kv + q + q)  # norm out, q, k, v, sdpa out (+ its lse), o in
    mlp = dtype_bytes * (h + 3 * i + i)  # norm out, gate, up, act(gate) * up, down in
    dropout = dtype_bytes * (3 * h + q + 2 * h + i)  # LoRA dropout copies: q/k/v, o, gate/up, down inputs
    layer = norms + attention + mlp + dropout
    if gradient_checkpointing:
        return shape.num_hidden_layers * dtype_bytes * h + layer
    return shape.num_hidden_layers * layer


def head_bytes_per_token(shape: ModelShape, dtype_bytes: int) -> int:
    """Bytes per trained token for the output head: the logits in the compute dtype, their float32 copy
    and its gradient (cross-entropy on [tokens, vocabulary])."""
    return shape.vocab_size * (dtype_bytes + 4 + 4)


def training_bytes(
    shape: ModelShape,
    dtype_bytes: int,
    lora_parameters: int,
    micro_batch_tokens: int,
    gradient_checkpointing: bool = False,
) -> int:
    """Peak allocated bytes of one LoRA training step: the frozen weights in the compute dtype, the
    adapter's float32 weights, gradients and AdamW's two moments (16 bytes per trainable parameter), and
    the activations of a micro-batch of `micro_batch_tokens` positions (padding included), every one of
    them assumed trained (an upper bound for the head)."""
    weights = shape.parameters * dtype_bytes
    adapter = lora_parameters * 16
    per_token = activation_bytes_per_token(shape, dtype_bytes, gradient_checkpointing)
    per_token += head_bytes_per_token(shape, dtype_bytes)
    return weights + adapter + micro_batch_tokens * per_token


def micro_batch_for(
    shape: ModelShape,
    dtype_bytes: int,
    lora_parameters: int,
    budget_bytes: int,
    row_tokens: int,
    batch_size: int,
    gradient_checkpointing: bool = False,
) -> int:
    """The largest micro-batch (rows of `row_tokens` positions, the longest example's length) whose
    `training_bytes`, with activations times `TRAINING_SAFETY`, fits `budget_bytes`; within
    [1, batch_size]. 1 when not even one row fits: the step then fails with the out-of-memory error
    that names what to lower."""
    fixed = training_bytes(shape, dtype_bytes, lora_parameters, 0, gradient_checkpointing)
    per_row = training_bytes(shape, dtype_bytes, 0, row_tokens, gradient_checkpointing) - (
        shape.parameters * dtype_bytes
    )
    room = budget_bytes - fixed
    rows = int(room // (per_row * TRAINING_SAFETY)) if per_row > 0 else batch_size
    return max(1, min(batch_size, rows))


def serving_max_batch(
    shape: ModelShape,
    dtype_bytes: int,
    budget_bytes: int,
    tokens_per_sequence: int,
) -> int:
    """The transformers engine's batch on a GPU: as many sequences of `tokens_per_sequence` (prompt and
    answer, usually `max_model_len`) as the KV cache left in `budget_bytes` after the weights holds,
    within [1, SERVING_MAX_BATCH]. One sequence's decode activations are small beside its cache and
    are covered by HEADROOM."""
    room = budget_bytes - shape.parameters * dtype_bytes
    per_sequence = kv_cache_bytes_per_token(shape, dtype_bytes) * max(tokens_per_sequence, 1)
    return max(1, min(SERVING_MAX_BATCH, room // per_sequence))


@dataclass(frozen=True)
class GpuSplit:
    """Shares of one card (fractions of its total memory): `serving` for the serving engine on it (0
    when it serves from elsewhere), `training` for fine-tuning jobs on it."""

    serving: float
    training: float

    def training_bytes(self, total_bytes: int) -> int:
        """The bytes fine-tuning may use on a card of `total_bytes`."""
        return int(self.training * total_bytes)


class SplitError(ValueError):
    """The serving and training shares of one card add up to more than it has (less HEADROOM)."""


def plan_split(
    serving_share: float,
    serving_on_card: bool,
    training_share: float | None = None,
) -> GpuSplit:
    """The split of one card between serving (`serving_share`, i.e. `gpu_memory_utilization`, counted
    only when `serving_on_card`) and training (`training_share`, i.e. `training_memory_utilization`;
    None: the rest less HEADROOM). Raises SplitError when the shares leave less than HEADROOM, or
    nothing for training, naming the settings to change."""
    serving = serving_share if serving_on_card else 0.0
    training = (1.0 - HEADROOM - serving) if training_share is None else training_share
    if training <= 0:
        raise SplitError(
            f"RAGTUNE_GPU_MEMORY_UTILIZATION={serving_share:g} leaves nothing of the card for fine-tuning "
            f"(with {HEADROOM:g} kept free): lower it (e.g. 0.5) to train on the card that serves, or "
            "set RAGTUNE_TRAINING_DEVICE to another card or cpu."
        )
    if serving + training > 1.0 - HEADROOM + 1e-9:
        raise SplitError(
            f"RAGTUNE_GPU_MEMORY_UTILIZATION={serving:g} and RAGTUNE_TRAINING_MEMORY_UTILIZATION="
            f"{training:g} add up to {serving + training:g} of one card: keep them at most "
            f"{1.0 - HEADROOM:g} together."
        )
    return GpuSplit(serving=serving, training=training)


@dataclass(frozen=True)
class Admission:
    """Whether a fine-tuning job may start on a card now (`start`), may wait for memory (`wait`: it fits
    the training share, not what is free now) or can never fit (neither). `need_bytes` is its smallest
    footprint, `reason` a sentence for the job's events or error."""

    start: bool
    wait: bool
    need_bytes: int
    reason: str


def admit_job(need_bytes: int, split: GpuSplit, total_bytes: int, free_bytes: int) -> Admission:
    """Whether a job needing `need_bytes` (`training_bytes` at one row of max_length, plus
    CUDA_CONTEXT_BYTES) may start on a card of `total_bytes` with `free_bytes` free now (the driver's
    count: the serving engine's and other jobs' memory is already taken out)."""
    share = split.training_bytes(total_bytes)
    gib = lambda n: f"{n / GIB:.1f} GiB"  # noqa: E731
    if need_bytes > share:
        return Admission(
            False,
            False,
            need_bytes,
            f"This job needs at least {gib(need_bytes)} of GPU memory (the model's weights, the adapter's "
            f"optimizer state and one row of max_length), but the training share of the card is "
            f"{gib(share)} ({split.training:g} of {gib(total_bytes)}): lower training.max_length, set "
            "training.gradient_checkpointing to true, "
            + (
                "lower RAGTUNE_GPU_MEMORY_UTILIZATION (the serving engine's share of this card) or raise "
                "RAGTUNE_TRAINING_MEMORY_UTILIZATION, "
                if split.serving
                else "raise RAGTUNE_TRAINING_MEMORY_UTILIZATION, "
            )
            + "or train on another device (RAGTUNE_TRAINING_DEVICE).",
        )
    if need_bytes > free_bytes:
        return Admission(
            False,
            True,
            need_bytes,
            f"Waiting for GPU memory: this job needs {gib(need_bytes)} and {gib(free_bytes)} of the card "
            f"is free (its training share is {gib(share)}); it starts when other jobs or processes let "
            "go of enough.",
        )
    return Admission(
        True, False, need_bytes, f"It needs {gib(need_bytes)} of the {gib(share)} training share."
    )
