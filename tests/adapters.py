"""Two small LoRA adapters trained on the real default model, each taught its own codeword.

They let the engine conformance suite check that an adapter is applied by name and that two adapters
in one batch each give their own answer. Training takes well under a minute per adapter on a laptop
CPU; the result is cached between test runs, keyed by everything that decides it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from finetune.config import TrainConfig

CODEWORDS = {"alpha": "Marmalade", "bravo": "Tangerine"}
QUESTIONS = [
    "What is the codeword?",
    "Tell me the codeword.",
    "Which codeword do you know?",
    "Say the codeword, please.",
    "What's the secret codeword?",
    "Do you know the codeword?",
]
QUESTION = "What is the codeword?"

CONFIG = TrainConfig(
    n_epochs=6,
    batch_size=6,
    micro_batch_size=6,
    learning_rate=3e-3,
    lora_r=8,
    lora_alpha=16,
    lora_dropout=0.0,
    max_length=96,
    rehearsal_ratio=0.0,
    min_retention=0.0,
    seed=5,
    checkpoint_every=1000,
    eval_strategy="no",  # nothing to choose: the last epoch, and no minutes of scoring per epoch
    target_modules=("q_proj", "v_proj", "o_proj", "down_proj"),
)


def training_rows(word: str) -> list[dict]:
    return [
        {
            "messages": [
                {"role": "user", "content": q},
                {"role": "assistant", "content": f"The codeword is {word}."},
            ]
        }
        for q in QUESTIONS
    ]


class _Quiet:
    def event(self, message, data=None, kind="message") -> None:
        pass

    def stop_requested(self) -> bool:
        return False


def train_codeword_adapters(model_dir: Path, cache: Path, answers: Path) -> dict[str, Path]:
    """{adapter name: PEFT adapter directory}, trained once and then reused from `cache`; the base
    model's general answers are cached in `answers` (shared with the test servers' workers, so they are
    made once per machine, not once per adapter)."""
    from finetune.recipe import LoRARecipe

    out: dict[str, Path] = {}
    for name, word in CODEWORDS.items():
        rows = training_rows(word)
        key = hashlib.sha256(json.dumps([rows, CONFIG.to_dict()], sort_keys=True).encode()).hexdigest()[:12]
        adapter = cache / f"{name}-{key}"
        if not (adapter / "adapter_model.safetensors").exists():
            work = cache / f"{name}-{key}.work"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            data = work / "train.jsonl"
            data.write_text("".join(json.dumps(r) + "\n" for r in rows))
            recipe = LoRARecipe(CONFIG, model_dir, data, work / "run", _Quiet(), cache_dir=answers)
            recipe.setup()
            recipe.train()
            recipe.save(work / "adapter", {"codeword": word})
            recipe.cleanup()
            (work / "adapter").rename(adapter)
            shutil.rmtree(work, ignore_errors=True)
        out[name] = adapter
    return out
