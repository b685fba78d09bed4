"""Chat serving benchmark: ragtune's HTTP server vs plain transformers `generate`, same model, same prompts.

For each concurrency level, `c` clients stream chat completions from `ragtune serve` (every answer
exactly --max-tokens long: `ignore_eos`, greedy) and we measure output tokens/s and time to first
token. The peer is raw transformers on the same converted model: one left-padded batch of the same `c`
prompt-id sequences through `model.generate` (TTFT = a 1-token generate of that batch). The figure that
matters is the ratio server/raw, measured in the same run, because these machines are noisy.

    .venv/bin/python bench/bench_chat.py [--concurrency 1 4 8] [--max-tokens 64] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import RESULTS, write_report  # noqa: E402
from server.provision import chat_model_path  # noqa: E402
from server.settings import Settings  # noqa: E402
from tests.conftest import start_server, stop_server  # noqa: E402

PROMPTS = [
    "What is the capital of France?",
    "Explain photosynthesis in simple terms.",
    "Write a short poem about the sea.",
    "Give three tips for learning a new language.",
    "What causes rain?",
    "Describe a cat to someone who has never seen one.",
    "How does a bicycle stay upright?",
    "List some uses of vinegar in the kitchen.",
    "Why is the sky blue?",
    "Summarise the plot of Romeo and Juliet.",
    "What is a prime number?",
    "How do vaccines work?",
    "Suggest a name for a coffee shop.",
    "What should I pack for a beach holiday?",
    "请介绍一下长城。",
    "如何学习编程？",
]


def prompt_for(i: int) -> list[dict]:
    return [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}]


async def one_request(http: httpx.AsyncClient, model: str, i: int, max_tokens: int) -> dict:
    body = {
        "model": model,
        "messages": prompt_for(i),
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    start = time.perf_counter()
    ttft = None
    tokens = 0
    async with http.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if ttft is None and chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                ttft = time.perf_counter() - start
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
    return {"ttft": ttft, "latency": time.perf_counter() - start, "tokens": tokens}


async def server_round(base_url: str, model: str, concurrency: int, offset: int, max_tokens: int) -> dict:
    """`concurrency` simultaneous streaming requests; aggregate tokens/s over the round's wall time."""
    async with httpx.AsyncClient(base_url=base_url, timeout=600) as http:
        start = time.perf_counter()
        results = await asyncio.gather(
            *(one_request(http, model, offset + i, max_tokens) for i in range(concurrency))
        )
        wall = time.perf_counter() - start
    return {
        "tokens_per_s": sum(x["tokens"] for x in results) / wall,
        "ttft_s": statistics.median(x["ttft"] for x in results),
    }


class RawPeer:
    """Plain transformers on the same converted model: one left-padded batch through `generate`."""

    def __init__(self, model_dir: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from finetune.hardware import pick_dtype

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.tokenizer.padding_side = "left"
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=pick_dtype("auto", "cpu")).eval()

    def _generate(self, inputs, n: int):
        with self.torch.inference_mode():
            return self.model.generate(
                **inputs,
                max_new_tokens=n,
                min_new_tokens=n,
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
            )

    def round(self, concurrency: int, offset: int, max_tokens: int) -> dict:
        texts = [
            self.tokenizer.apply_chat_template(
                prompt_for(offset + i), tokenize=False, add_generation_prompt=True
            )
            for i in range(concurrency)
        ]
        inputs = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        start = time.perf_counter()
        self._generate(inputs, 1)
        ttft = time.perf_counter() - start
        start = time.perf_counter()
        out = self._generate(inputs, max_tokens)
        wall = time.perf_counter() - start
        tokens = (out.shape[1] - inputs["input_ids"].shape[1]) * concurrency
        return {"tokens_per_s": tokens / wall, "ttft_s": ttft}


def summarise(rounds: list[dict]) -> dict:
    return {
        "tokens_per_s": statistics.median(r["tokens_per_s"] for r in rounds),
        "ttft_p50_s": statistics.median(r["ttft_s"] for r in rounds),
        "rounds": rounds,
    }


def run(args: argparse.Namespace) -> tuple[dict, dict, dict]:
    """Server and raw rounds alternate, so machine noise hits both sides alike."""
    workdir = ROOT / "data" / "bench"
    workdir.mkdir(parents=True, exist_ok=True)
    models_dir = ROOT / "data" / "models"  # shared with `make run`
    raw = RawPeer(chat_model_path(Settings(data_dir=workdir, models_dir=models_dir)))
    server = start_server(workdir, {"RAGTUNE_MODELS_DIR": str(models_dir)})
    served: dict[int, list] = {c: [] for c in args.concurrency}
    peer: dict[int, list] = {c: [] for c in args.concurrency}
    try:
        health = httpx.get(f"{server.base_url}/health").json()
        model = health["model"]
        asyncio.run(server_round(server.base_url, model, 1, 0, 8))  # warm-up both sides
        raw.round(1, 0, 8)
        for c in args.concurrency:
            for r in range(args.rounds):
                served[c].append(asyncio.run(server_round(server.base_url, model, c, r * c, args.max_tokens)))
                peer[c].append(raw.round(c, r * c, args.max_tokens))
    finally:
        stop_server(server)
    return health, {c: summarise(v) for c, v in served.items()}, {c: summarise(v) for c, v in peer.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_chat.json")
    args = parser.parse_args()

    health, served, raw = run(args)

    table = Table(
        title=f"chat: ragtune server vs raw transformers generate ({args.max_tokens} tokens/answer)"
    )
    for col in (
        "concurrency",
        "server tok/s",
        "raw tok/s",
        "ratio tok/s",
        "server TTFT ms",
        "raw TTFT ms",
        "ratio TTFT",
        "server vs raw one-by-one",
    ):
        table.add_column(col, justify="right")
    rows = []
    # What a server without batching would do: answer requests one after another at raw c=1 speed.
    one_by_one = raw[min(args.concurrency)]["tokens_per_s"] if min(args.concurrency) == 1 else None
    for c in args.concurrency:
        s, r = served[c], raw[c]
        row = {
            "concurrency": c,
            "server": s,
            "raw_transformers": r,
            "ratio_tokens_per_s": s["tokens_per_s"] / r["tokens_per_s"],
            "ratio_ttft": s["ttft_p50_s"] / r["ttft_p50_s"],
            "gain_vs_one_by_one": s["tokens_per_s"] / one_by_one if one_by_one else None,
        }
        rows.append(row)
        table.add_row(
            str(c),
            f"{s['tokens_per_s']:.1f}",
            f"{r['tokens_per_s']:.1f}",
            f"{row['ratio_tokens_per_s']:.2f}",
            f"{s['ttft_p50_s'] * 1000:.0f}",
            f"{r['ttft_p50_s'] * 1000:.0f}",
            f"{row['ratio_ttft']:.2f}",
            f"{row['gain_vs_one_by_one']:.2f}x" if one_by_one else "-",
        )
    Console(width=140).print(table)
    import torch

    report = {
        "benchmark": "chat",
        "peer": "transformers model.generate (one left-padded batch of the same prompt ids, same model)",
        "engine": health["engine"],
        "model": health["model"],
        "max_tokens": args.max_tokens,
        "rounds": args.rounds,
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
        },
        "results": rows,
    }
    write_report(args.out, report)


if __name__ == "__main__":
    main()
