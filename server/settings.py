"""One typed settings object (env prefix RAGTUNE_), checked once at start-up."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.memory_plan import CPU_MAX_BATCH, HEADROOM, SplitError, plan_split
from finetune.hardware import DEVICE_PATTERN

DEFAULT_MODEL = "smollm2-135m-instruct"
MINILM_EMBEDDING_MODEL = "all-minilm-l6-v2"
E5_EMBEDDING_MODEL = "multilingual-e5-small"
BUILTIN_EMBEDDING_MODELS = (MINILM_EMBEDDING_MODEL, E5_EMBEDDING_MODEL)
DEFAULT_EMBEDDING_MODEL = E5_EMBEDDING_MODEL
"""Chosen by measurement (issue 17, README "Embedders"): it finds Chinese, English and cross-lingual
passages MiniLM cannot (hit@5 0.85-0.96 against 0.35-0.75, dense), at 0.50x MiniLM's chunks/s on English
text and 0.64x on Chinese here (bench/bench_retrieval.py): within the half of MiniLM's speed issue 17 set."""
DEFAULT_MODEL_MAX_TOKENS = 512
"""The embedded default model's answer length when a request names none: a 135M model left to the rest of
its context can repeat itself for minutes on a CPU; 512 tokens come back in seconds."""


class Settings(BaseSettings):
    """Server settings; every field can be set as RAGTUNE_<NAME> in the environment or in `.env`."""

    model_config = SettingsConfigDict(env_prefix="RAGTUNE_", env_file=".env", extra="ignore")

    data_dir: Path = Field(
        Path("data"), description="Where SQLite, uploads, indexes, adapters and models live."
    )
    models_dir: Path | None = Field(
        None, description="Cache of converted base models; default <data_dir>/models."
    )
    host: str = Field("127.0.0.1", description="Interface the HTTP server binds to.")
    port: int = Field(8000, ge=1, le=65535, description="TCP port of the HTTP server.")

    model: str = Field(
        DEFAULT_MODEL,
        description="Chat model: the embedded default name, or a local Hugging Face model directory.",
    )
    model_name: str | None = Field(
        None, description="Id the chat model is served under; default the model name or directory name."
    )
    engine: Literal["auto", "transformers", "vllm"] = Field(
        "auto", description="Serving engine; auto picks vLLM when installed with a GPU, else transformers."
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weights dtype; auto = bf16 where the CPU/GPU supports it natively, else fp32."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Torch device for the transformers engine."
    )
    max_model_len: int | None = Field(
        None, ge=16, description="Context length (prompt + answer); default the model's own maximum."
    )
    max_batch_size: int | None = Field(
        None,
        ge=1,
        le=1024,
        description=f"Sequences decoded together in one batch; default automatic: {CPU_MAX_BATCH} on a CPU "
        "(transformers), on a GPU as many max_model_len sequences as the KV cache left in "
        "gpu_memory_utilization of the card after the weights holds (transformers), vLLM's own "
        "max_num_seqs (vLLM).",
    )
    max_queue: int = Field(
        256, ge=1, description="Requests waiting or running before new ones get 503 + Retry-After."
    )
    lora_modules: str | None = Field(
        None,
        description="Extra PEFT LoRA adapters to serve, as name=directory pairs separated by commas "
        "(like vLLM's --lora-modules); fine-tuned models are served without this.",
    )
    tensor_parallel_size: int = Field(1, ge=1, le=64, description="vLLM: GPUs one model is split over.")
    max_loras: int = Field(
        4,
        ge=0,
        le=256,
        description="vLLM: adapters that can share one batch; 0 runs vLLM without LoRA (faster base model, "
        "no adapters or fine-tuned models served).",
    )
    max_lora_rank: Literal[8, 16, 32, 64, 128, 256, 320, 512] = Field(
        64, description="vLLM: the largest LoRA rank it can serve (memory is reserved for it)."
    )
    gpu_memory_utilization: float = Field(
        0.9,
        gt=0,
        le=1,
        description="Serving on a GPU: share of the card's memory for weights, activations and KV cache "
        "(vLLM's own setting; the transformers engine sizes its default batch from it).",
    )
    kv_cache_gib: float | None = Field(
        None, gt=0, description="vLLM: KV cache size in GiB; default 2 on a CPU, from the share on a GPU."
    )
    default_max_tokens: int | None = Field(
        None,
        ge=1,
        description=f"Answer length when a request names none; default {DEFAULT_MODEL_MAX_TOKENS} for the "
        "embedded default model, the rest of the context for any other.",
    )
    batch_invariant: bool = Field(
        False,
        description="Same greedy/seeded text whatever else shares the batch; slower.",
    )

    embedding_model: str = Field(
        DEFAULT_EMBEDDING_MODEL,
        description="Embedder of new knowledge bases (and /v1/embeddings' first model): "
        f"{' or '.join(BUILTIN_EMBEDDING_MODELS)} (built in), or a local sentence-transformers directory.",
    )
    embedding_model_name: str | None = Field(
        None, description="Id the default embedder is also served under (e.g. a name a client hard-codes)."
    )

    max_upload_mb: int = Field(
        512, ge=1, description="Largest upload accepted by POST /v1/files (413 above)."
    )
    rag_max_results: int = Field(
        4, ge=1, le=50, description="Chunks put into the prompt when file_search names no max_num_results."
    )
    rag_prompt_format: Literal["auto", "plain", "cited"] = Field(
        "auto",
        description="How chat RAG puts sources into the prompt: 'plain' (Context, Question, Answer: what "
        "small models answer best from), 'cited' (numbered sources, asked to cite like [1]), or 'auto': "
        "plain below 1B parameters, cited above (bench/rag_prompt.py measures them).",
    )
    rag_empty_response: str = Field(
        "auto",
        description="What a RAG answer says when retrieval finds nothing (and the request asks for no tool "
        "call or JSON): 'auto' says the documents do not contain the answer, in Chinese for a question in "
        "Chinese, else in English; other text is said as it is; '' lets the model answer, told that "
        "nothing was found (small models then often make an answer up).",
    )
    rag_score_threshold: float = Field(
        0.25,
        ge=0.0,
        le=1.0,
        description="Chat RAG ignores chunks whose relevance to the question is below this: the better of "
        "cosine similarity and lexical coverage (the idf-weighted share of the question's terms a chunk "
        "holds), the same score for every ranker.",
    )

    max_training_jobs: int = Field(
        1, ge=0, le=8, description="Fine-tuning jobs trained at once (0: queue them, train none)."
    )
    training_device: str = Field(
        "auto",
        description="Torch device fine-tuning jobs train on: auto (a CUDA GPU when PyTorch sees one, else "
        "the CPU), cpu, cuda, cuda:N or mps. A device the machine lacks fails each job at once, saying so.",
    )
    training_processes: int = Field(
        1,
        ge=1,
        le=64,
        description="Data-parallel training processes per fine-tuning job, one per GPU, launched with "
        "torchrun, on consecutive cards from the one training_device names (cuda:1 with 3 processes: "
        "cards 1 to 3; auto or cuda: from card 0), or all on the CPU; each step's batch is split over "
        "them. 1 = one process.",
    )
    # Declared after gpu_memory_utilization, tensor_parallel_size, training_device and training_processes:
    # its validator reads them (pydantic validates fields in declaration order).
    training_memory_utilization: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Share of a GPU's memory fine-tuning jobs may use on the card they train on; default: "
        f"what the serving engine leaves of that card (1 - gpu_memory_utilization - {HEADROOM:g}) when it "
        f"serves from the same card, else {1 - HEADROOM:g}.",
    )

    api_key: str | None = Field(
        None, description="One key or a comma-separated list; when set every route but /health needs it."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Server log level.")

    @field_validator("api_key")
    @classmethod
    def _keys_not_blank(cls, value: str | None) -> str | None:
        if value is not None and not [k for k in value.split(",") if k.strip()]:
            raise ValueError("RAGTUNE_API_KEY is set but holds no key; unset it or give one or more keys")
        return value

    @field_validator("training_device")
    @classmethod
    def _training_device_named(cls, value: str) -> str:
        value = value.strip().lower()
        if not DEVICE_PATTERN.fullmatch(value):
            raise ValueError(f"RAGTUNE_TRAINING_DEVICE={value!r}: use auto, cpu, cuda, cuda:N or mps")
        return value

    @field_validator("training_memory_utilization")
    @classmethod
    def _split_fits_one_card(cls, value: float | None, info) -> float | None:
        """Refuse a serving + training split of one card that cannot hold: gpu_memory_utilization +
        training_memory_utilization above 1 - HEADROOM (common.memory_plan.plan_split, whose message
        names both settings), when training may share a card with serving: serving on cards 0 to
        tensor_parallel_size - 1 (none for the transformers engine on the CPU), training on
        RAGTUNE_TRAINING_PROCESSES cards from RAGTUNE_TRAINING_DEVICE's (0 for auto or cuda). Unset,
        training takes what serving leaves on its card: nothing to check here. A field validator
        rather than a model validator, so that the error is reported under
        RAGTUNE_TRAINING_MEMORY_UTILIZATION at start-up."""
        serving = info.data.get("gpu_memory_utilization")
        if value is None or serving is None:  # serving's own error, if any, is reported on its own
            return value
        device = info.data.get("training_device", "auto")
        if device in ("cpu", "mps"):
            return value
        if info.data.get("engine") == "transformers" and info.data.get("device") == "cpu":
            return value  # serving uses no card
        first = int(device[5:]) if device.startswith("cuda:") else 0
        training = set(range(first, first + info.data.get("training_processes", 1)))
        if not training & set(range(info.data.get("tensor_parallel_size", 1))):
            return value  # training on cards serving does not use: the worker plans each card alone
        try:
            plan_split(serving, True, value)
        except SplitError as exc:
            raise ValueError(str(exc)) from exc
        return value

    @field_validator("model", "embedding_model")
    @classmethod
    def _model_exists(cls, value: str, info) -> str:
        default = DEFAULT_MODEL if info.field_name == "model" else DEFAULT_EMBEDDING_MODEL
        if value == default or (info.field_name == "embedding_model" and value in BUILTIN_EMBEDDING_MODELS):
            return value
        path = Path(value).expanduser()
        if not path.is_dir():
            builtin = default if info.field_name == "model" else " or ".join(BUILTIN_EMBEDDING_MODELS)
            raise ValueError(
                f"{value!r} is neither the embedded default {builtin!r} nor a local model directory "
                "(models are never downloaded)"
            )
        if info.field_name == "model" and not (path / "config.json").is_file():
            raise ValueError(f"{value!r} has no config.json: not a Hugging Face model directory")
        return str(path.resolve())

    @field_validator("lora_modules")
    @classmethod
    def _lora_modules_exist(cls, value: str | None) -> str | None:
        for name, path in parse_lora_modules(value).items():
            directory = Path(path).expanduser()
            if not (directory / "adapter_config.json").is_file():
                raise ValueError(
                    f"adapter {name!r}: {path!r} has no adapter_config.json (not a PEFT adapter)"
                )
            weights = ("adapter_model.safetensors", "adapter_model.bin")
            if not any((directory / w).is_file() for w in weights):
                raise ValueError(f"adapter {name!r}: {path!r} has no adapter_model.safetensors")
        return value

    @property
    def adapters(self) -> dict[str, str]:
        """The adapters named by `lora_modules`: {served name: absolute directory}."""
        return {
            k: str(Path(v).expanduser().resolve()) for k, v in parse_lora_modules(self.lora_modules).items()
        }

    @model_validator(mode="after")
    def _default_answer_length(self) -> Settings:
        if self.default_max_tokens is None and self.model == DEFAULT_MODEL:
            self.default_max_tokens = DEFAULT_MODEL_MAX_TOKENS
        return self

    @model_validator(mode="after")
    def _alias_is_not_another_embedder(self) -> Settings:
        alias = self.embedding_model_name
        if alias in BUILTIN_EMBEDDING_MODELS and alias != self.embedding_name:
            raise ValueError(
                f"embedding_model_name {alias!r} is the name of another built-in embedder; the default "
                f"embedder is {self.embedding_name!r} "
                f"(set RAGTUNE_EMBEDDING_MODEL={alias} to make it the default)"
            )
        return self

    @model_validator(mode="after")
    def _data_dir_usable(self) -> Settings:
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"data_dir {str(self.data_dir)!r} cannot be created: {exc.strerror}") from exc
        if not os.access(self.data_dir, os.W_OK):
            raise ValueError(f"data_dir {str(self.data_dir)!r} is not writable")
        return self

    @property
    def api_keys(self) -> list[str]:
        return [k.strip() for k in (self.api_key or "").split(",") if k.strip()]

    @property
    def served_model_name(self) -> str:
        if self.model_name:
            return self.model_name
        return self.model if self.model == DEFAULT_MODEL else Path(self.model).name

    @property
    def served_embedding_name(self) -> str:
        if self.embedding_model_name:
            return self.embedding_model_name
        return self.embedding_name

    @property
    def embedding_name(self) -> str:
        """The default embedder's own name, recorded with the knowledge bases it builds (never an alias)."""
        if self.embedding_model in BUILTIN_EMBEDDING_MODELS:
            return self.embedding_model
        return Path(self.embedding_model).name

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024

    @property
    def model_cache(self) -> Path:
        return self.models_dir or self.data_dir / "models"


def parse_lora_modules(value: str | None) -> dict[str, str]:
    """'a=/p/a,b=/p/b' -> {'a': '/p/a', 'b': '/p/b'}; raises ValueError naming a malformed pair."""
    out: dict[str, str] = {}
    for pair in (value or "").split(","):
        if not pair.strip():
            continue
        name, sep, path = pair.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise ValueError(f"{pair.strip()!r} is not name=directory")
        if name.strip() in out:
            raise ValueError(f"adapter name {name.strip()!r} is given twice")
        out[name.strip()] = path.strip()
    return out
