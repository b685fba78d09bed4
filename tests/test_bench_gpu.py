"""bench/bench_gpu.py --dry-run: the GPU benchmark's code, on the CPU with tiny shapes, so it cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


# About 1.5 minutes on 2 cores (most of it TRL's SFTTrainer setting up).
@pytest.mark.timeout(900)
def test_gpu_benchmark_dry_run(tmp_path, smol_model_dir):
    out = tmp_path / "gpu.json"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "bench_gpu.py"),
            "--dry-run",
            "--model-dir",
            str(smol_model_dir),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=840,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["env"]["dry_run"] is True and result["env"]["device"] == "cpu"
    training = result["training/tiny"]
    assert training["ragtune"]["tokens"] > 0 and training["ragtune"]["tokens_per_s"] > 0
    assert isinstance(training["trl_sft_packing"], dict)  # TRL is a dev dependency here
    assert set(result["serving/tiny"]) == {"1", "2", "4"}
    assert all(
        v["engine_tokens_per_s"] > 0 and v["raw_generate_tokens_per_s"] > 0
        for v in result["serving/tiny"].values()
    )
    ddp = result["ddp/tiny"]  # two gloo processes train the one-process adapter (float32: within 1e-5)
    assert ddp["processes"] == 2 and ddp["same_tokens"] and ddp["adapters_match"], ddp
    assert ddp["max_abs_diff"] <= 1e-5 and ddp["tokens_per_s"] > 0
    adapters = result["adapters/tiny"]
    assert (
        adapters["adapters_differ"] and adapters["equal_to_peft"] == adapters["rows"] == 4
    )  # float32 on a CPU
