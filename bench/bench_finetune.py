"""Fine-tuning benchmark: ragtune's LoRA recipe vs TRL's SFTTrainer + PEFT, same data, model, settings.

Both train the default SmolLM2-135M-Instruct for one epoch on the same slice of the shared huanhuan
data set (Chinese dialogue, alpaca format), loss on the answers only, LoRA r=16/alpha=32 on every
linear layer, batch 8, lr 1e-3 with warmup + cosine, fp32 (bf16 where the CPU has it natively). Each
side runs in its own process so its peak memory (max RSS) is its own. ragtune's rehearsal and
retention guard are switched off, so both do the same work. Reported: training tokens/s (non-padding
tokens over the training-loop time), peak memory, and the share of the CPU's measured fp32 matmul
FLOP/s the training reaches (a LoRA step costs about 4 x parameters FLOPs per token: forward 2N,
backward through the frozen weights 2N).

Then the quality figures (bench/finetune_quality.py, with the job defaults): the 20 invented facts x 3
phrasings for 10 epochs, with facts recall, "Paris", retention (and its interval) and task F1 per epoch
and the epoch a job would publish, so a change of defaults shows its effect on learning and on keeping.
`--no-quality` skips them (about 25 minutes on 2 cores).

    .venv/bin/python bench/bench_finetune.py [--examples 96] [--max-length 256] [--no-quality]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import RESULTS, write_report  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "huanhuan.json"
SETTINGS = {
    "batch_size": 8,
    "learning_rate": 1e-3,
    "lora_r": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.05,
    "warmup_ratio": 0.1,
    "n_epochs": 1,
    "seed": 0,
}


def model_dir() -> Path:
    from server.provision import chat_model_path
    from server.settings import Settings

    return chat_model_path(Settings(data_dir=ROOT / "data", models_dir=ROOT / "data" / "models"))


def slice_data(n: int, path: Path) -> Path:
    records = json.loads(DATA.read_text())[:n]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n")
    return path


def run_ragtune(data: Path, max_length: int) -> dict:
    from finetune.config import TrainConfig
    from finetune.hardware import pick_dtype
    from finetune.recipe import LoRARecipe

    class Rate:
        last: dict = {}

        def event(self, message, data=None, kind="message"):
            if kind == "metrics" and data and "tokens_per_second" in data:
                Rate.last = data

        def stop_requested(self):
            return False

    config = TrainConfig(
        **SETTINGS,
        micro_batch_size=8,
        max_length=max_length,
        rehearsal_ratio=0,
        min_retention=0,
        checkpoint_every=10_000,
    )
    with tempfile.TemporaryDirectory() as tmp:
        recipe = LoRARecipe(config, model_dir(), data, Path(tmp), Rate(), dtype=pick_dtype("auto", "cpu"))
        recipe.setup()
        start = time.perf_counter()
        recipe.train()
        wall = time.perf_counter() - start
    return {
        "tokens": Rate.last["tokens_seen"],
        "tokens_per_s": Rate.last["tokens_per_second"],
        "train_seconds": wall,
        "final_loss": Rate.last["train_loss"],
        "params": param_count(),
    }


def run_trl(data: Path, max_length: int) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from finetune.config import DEFAULT_TARGETS
    from finetune.data import load_dataset
    from finetune.hardware import pick_dtype

    conversations = load_dataset(data)
    rows = [
        {
            "prompt": [{"role": m.role, "content": m.content} for m in c.messages[:-1]],
            "completion": [{"role": "assistant", "content": c.messages[-1].content}],
        }
        for c in conversations
    ]
    tokenizer = AutoTokenizer.from_pretrained(model_dir())
    model = AutoModelForCausalLM.from_pretrained(model_dir(), dtype=pick_dtype("auto", "cpu"))
    with tempfile.TemporaryDirectory() as tmp:
        args = SFTConfig(
            output_dir=tmp,
            per_device_train_batch_size=SETTINGS["batch_size"],
            num_train_epochs=1,
            learning_rate=SETTINGS["learning_rate"],
            lr_scheduler_type="cosine",
            warmup_steps=SETTINGS["warmup_ratio"],
            max_length=max_length,
            completion_only_loss=True,
            report_to="none",
            save_strategy="no",
            logging_steps=1000,
            use_cpu=True,
            seed=SETTINGS["seed"],
            dataloader_num_workers=0,
            # TRL's defaults are gradient checkpointing and bf16 autocast; matched to ragtune's recipe here
            # (on a CPU without native bf16 its defaults ran at 27.7 tokens/s in our trial, 3x slower).
            gradient_checkpointing=False,
            bf16=pick_dtype("auto", "cpu") == torch.bfloat16,
        )
        lora = LoraConfig(
            r=SETTINGS["lora_r"],
            lora_alpha=SETTINGS["lora_alpha"],
            lora_dropout=SETTINGS["lora_dropout"],
            target_modules=list(DEFAULT_TARGETS),
            task_type="CAUSAL_LM",
        )
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            peft_config=lora,
        )
        tokens = sum(min(len(ids), max_length) for ids in trainer.train_dataset["input_ids"])
        start = time.perf_counter()
        output = trainer.train()
        wall = time.perf_counter() - start
    torch.set_num_threads(torch.get_num_threads())
    return {
        "tokens": tokens,
        "tokens_per_s": tokens / wall,
        "train_seconds": wall,
        "final_loss": output.training_loss,
        "params": param_count(),
    }


def param_count() -> int:
    from transformers import AutoConfig, AutoModelForCausalLM

    with __import__("torch").device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir()))
    return sum(p.numel() for p in model.parameters())


def matmul_flops() -> float:
    """Measured fp32 GEMM throughput of this CPU with torch's threads (FLOP/s)."""
    import torch

    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    for _ in range(3):
        a @ b
    runs, start = 30, time.perf_counter()
    for _ in range(runs):
        a @ b
    return runs * 2 * 1024**3 / (time.perf_counter() - start)


def child(side: str, data: Path, max_length: int) -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    result = (run_ragtune if side == "ragtune" else run_trl)(data, max_length)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--examples", type=int, default=96)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_finetune.json")
    parser.add_argument("--no-quality", action="store_true", help="skip the per-epoch quality run")
    parser.add_argument("--child", choices=["ragtune", "trl"], help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.data, args.max_length)
        return
    if not DATA.is_file():
        sys.exit(f"{DATA} is missing: this benchmark trains on the shared huanhuan data set")
    model_dir()  # convert once, outside the timed children
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = slice_data(args.examples, Path(tmp) / "train.jsonl")
        for side in ("ragtune", "trl"):
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    side,
                    "--data",
                    str(data),
                    "--max-length",
                    str(args.max_length),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            results[side] = json.loads(out.stdout.split("RESULT ", 1)[1])
    peak = matmul_flops()
    for r in results.values():
        r["flops_share"] = 4 * r["params"] * r["tokens_per_s"] / peak
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"LoRA fine-tuning, {args.examples} huanhuan examples, 1 epoch "
        f"(CPU fp32 matmul {peak / 1e9:.0f} GFLOP/s)"
    )
    for col in ("trainer", "tokens", "tokens/s", "peak RSS MB", "final loss", "share of matmul FLOP/s"):
        table.add_column(col, justify="right")
    for side, r in results.items():
        table.add_row(
            side,
            str(r["tokens"]),
            f"{r['tokens_per_s']:.1f}",
            f"{r['peak_rss_mb']:.0f}",
            f"{r['final_loss']:.3f}",
            f"{r['flops_share']:.1%}",
        )
    ratio = results["ragtune"]["tokens_per_s"] / results["trl"]["tokens_per_s"]
    memory = results["ragtune"]["peak_rss_mb"] / results["trl"]["peak_rss_mb"]
    table.caption = f"ragtune / TRL: tokens/s {ratio:.2f}, peak memory {memory:.2f}"
    Console(width=140).print(table)
    quality = None
    if not args.no_quality:
        from bench import finetune_quality

        quality = finetune_quality.run(10, {}, finetune_quality.CACHE)
        finetune_quality.table(quality, "Facts job (20 facts x 3 phrasings), 10 epochs, job defaults")
    write_report(
        args.out,
        {
            "benchmark": "finetune",
            "quality": quality,
            "peer": "trl.SFTTrainer + peft.LoraConfig (completion_only_loss)",
            "examples": args.examples,
            "max_length": args.max_length,
            "settings": SETTINGS,
            "cpu_matmul_flops": peak,
            "results": results,
            "ratio_tokens_per_s": ratio,
            "ratio_peak_memory": memory,
            "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
        },
    )


if __name__ == "__main__":
    main()
