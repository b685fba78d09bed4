"""What every benchmark shares: where results go and how they are written."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import httpx

from common.atomic import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def machine() -> dict:
    """The machine a report was measured on: CPU count, platform, torch's version and its threads."""
    import torch

    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


async def stream_chat(http: httpx.AsyncClient, body: dict) -> dict:
    """POST a streaming chat completion `body` (with `stream_options.include_usage`) and time it:
    {"ttft": seconds to the first content delta or None, "latency": seconds to the end, "tokens": the
    usage's completion_tokens}. Raises RuntimeError with the answer's start on a non-200."""
    start = time.perf_counter()
    ttft = None
    tokens = 0
    async with http.stream("POST", "/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            raise RuntimeError(f"chat {response.status_code}: {(await response.aread()).decode()[:500]}")
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if ttft is None and chunk.get("choices") and chunk["choices"][0]["delta"].get("content"):
                ttft = time.perf_counter() - start
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
    return {"ttft": ttft, "latency": time.perf_counter() - start, "tokens": tokens}


def write_report(path: Path, report: dict) -> None:
    """Write the JSON report atomically (temporary name, then rename) and say where it went."""
    atomic_write_json(path, report)
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


def run_comparison(api: str, body: dict, timeout: float = 3600) -> tuple[dict, float]:
    """POST /comparisons with `body` and poll until it ends: (the completed report, wall seconds from
    the POST). Raises RuntimeError when the run failed, TimeoutError after `timeout` seconds."""
    with httpx.Client(base_url=api, timeout=60) as http:
        start = time.perf_counter()
        comparison = http.post("/comparisons", json=body).json()
        while comparison["status"] not in ("completed", "failed"):
            if time.perf_counter() - start > timeout:
                raise TimeoutError(comparison["progress"])
            time.sleep(0.2)
            comparison = http.get(f"/comparisons/{comparison['id']}").json()
        seconds = time.perf_counter() - start
    if comparison["status"] == "failed":
        raise RuntimeError(comparison["error"])
    return comparison["report"], seconds
