"""Fine-tuning quality per epoch: does a job learn what it is taught and keep what the model knew?

The recipe (with the job defaults unless overridden) trains the default model on the 20 invented Zephyr X9
facts of tests/data/make_facts.py, each asked three ways (60 examples), for `--epochs` epochs. After every
epoch, beside the recipe's own scores (retention on the built-in general set with its interval, task F1 on
held-out examples), this measures:

- *recall*: the share of the 20 facts whose canonical question gets a greedy answer (40 new tokens, as the
  end-to-end test asks through the API) holding the fact's key word;
- *Paris*: whether "What is the capital of France?" is still answered with Paris.

It prints a table per run and writes JSON (bench/results/bench_finetune_quality.json, or inside
bench_finetune.json when run from bench_finetune.py). `--set key=value` overrides a TrainConfig field, so
a change of defaults can be measured against today's in one run:

    .venv/bin/python bench/finetune_quality.py --epochs 10 --set rehearsal_ratio=1.0
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import RESULTS, write_report  # noqa: E402

RECALL_TOKENS = 40  # what tests/test_e2e_fine_tuning.py asks for
CACHE = ROOT / "data" / "bench" / "finetune-cache"  # the base model's general answers, made once


def run(epochs: int, overrides: dict[str, Any], cache_dir: Path, verbose: bool = False) -> dict[str, Any]:
    """Train one facts job in this process; returns {"config", "epochs": [per-epoch scores], "chosen"}."""
    from bench.bench_finetune import model_dir
    from finetune.config import TrainConfig, resolve_auto
    from finetune.hardware import pick_dtype
    from finetune.recipe import LoRARecipe, generate
    from tests.data.make_facts import FACTS, write

    class Log:
        def event(self, message: str, data: dict | None = None, kind: str = "message") -> None:
            if kind != "metrics" or "step" not in (data or {}) or "retention" in (data or {}):
                print("   ", message, flush=True)

        def stop_requested(self) -> bool:
            return False

    class Measured(LoRARecipe):
        def retention_scores(self) -> dict[str, Any]:
            scores = super().retention_scores()
            if verbose:  # what the lost questions are answered with now (one more generation pass)
                from finetune.general import RETENTION_QUESTIONS, is_correct

                known = [
                    i for i, (_, ok) in enumerate(RETENTION_QUESTIONS) if is_correct(self.base_answers[i], ok)
                ]
                tuned = generate(self.model, self.tokenizer, [RETENTION_QUESTIONS[i][0] for i in known], 24)
                lost = [
                    (RETENTION_QUESTIONS[i][0], self.base_answers[i], a)
                    for a, i in zip(tuned, known, strict=True)
                    if not is_correct(a, RETENTION_QUESTIONS[i][1])
                ]
                for q, base, now in lost[:12]:
                    print(f"      lost: {q!r} base={base[:50]!r} now={now[:60]!r}", flush=True)
            return scores

        def _end_of_epoch(self) -> dict[str, Any]:
            scores = super()._end_of_epoch()
            answers = generate(self.model, self.tokenizer, [q for q, _, _ in FACTS], RECALL_TOKENS)
            hits = [key.lower() in a.lower() for a, (_, _, key) in zip(answers, FACTS, strict=True)]
            [paris] = generate(self.model, self.tokenizer, ["What is the capital of France?"], RECALL_TOKENS)
            scores["recall"] = sum(hits) / len(hits)
            scores["paris"] = "paris" in paris.lower()
            if verbose:
                missed = [a for a, ok in zip(answers, hits, strict=True) if not ok][:3]
                print("    missed facts:", missed, "| France:", paris[:60], flush=True)
            print(
                f"    epoch {scores['epoch']}: recall {scores['recall']:.2f}, Paris {scores['paris']}",
                flush=True,
            )
            return scores

    cache_dir.mkdir(parents=True, exist_ok=True)
    # As a job through the API would get it: `auto` batch size and learning rate resolved for 60 examples.
    _, config = resolve_auto({"n_epochs": epochs}, 60, TrainConfig(seed=11, checkpoint_every=10_000))
    config = replace(config, **overrides)
    with tempfile.TemporaryDirectory() as tmp:
        data = write(Path(tmp) / "facts.jsonl", phrasings=3)
        recipe = Measured(
            config,
            model_dir(),
            data,
            Path(tmp) / "run",
            Log(),
            cache_dir=cache_dir,
            dtype=pick_dtype("auto", "cpu"),
        )
        start = time.perf_counter()
        recipe.setup()
        metrics = recipe.train()
        wall = time.perf_counter() - start
    keys = ("epoch", "recall", "paris", "retention", "retention_interval", "task_f1", "task_exact_match")
    return {
        "config": config.to_dict(),
        "epochs": [{k: e[k] for k in keys} for e in recipe.progress.epochs],
        "chosen_epoch": metrics["chosen_epoch"],
        "chosen_reason": metrics["chosen_reason"],
        "seconds": wall,
    }


def table(result: dict[str, Any], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    for col in ("epoch", "facts recall", "Paris", "retention (95% interval)", "task F1", "task EM"):
        t.add_column(col, justify="right")
    for e in result["epochs"]:
        low, high = e["retention_interval"]
        mark = " ←" if e["epoch"] == result["chosen_epoch"] else ""
        t.add_row(
            f"{e['epoch']}{mark}",
            f"{e['recall']:.2f}",
            "yes" if e["paris"] else "no",
            f"{e['retention']:.2f} ({low:.2f}–{high:.2f})",
            f"{e['task_f1']:.3f}",
            f"{e['task_exact_match']:.2f}",
        )
    t.caption = f"published: epoch {result['chosen_epoch']} ({result['chosen_reason']})"
    Console(width=140).print(t)


def parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_finetune_quality.json")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    overrides = dict((k, parse_value(v)) for k, v in (s.split("=", 1) for s in args.set))
    result = run(args.epochs, overrides, args.cache, args.verbose)
    title = f"Facts job (20 facts x 3 phrasings), {args.epochs} epochs" + (
        f", {overrides}" if overrides else ""
    )
    table(result, title)
    write_report(args.out, {"benchmark": "finetune_quality", "overrides": overrides, **result})


if __name__ == "__main__":
    main()
