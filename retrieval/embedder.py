"""Sentence embeddings (sentence-transformers), normalised so inner product is cosine similarity."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np


class Embedder:
    def __init__(self, model_path: str | Path, device: str = "cpu", batch_size: int = 64) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(model_path), device=device, local_files_only=True)
        self.batch_size = batch_size
        dimension = (
            getattr(self.model, "get_embedding_dimension", None)
            or self.model.get_sentence_embedding_dimension
        )
        self.dimension = int(dimension())
        self.max_seq_length = int(self.model.max_seq_length)
        self.tokenizer = self.model.tokenizer
        self._lock = threading.Lock()  # one encode at a time: the model is not re-entrant on CPU threads

    def embed(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            vectors = self.model.encode(
                texts,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)

    def count_tokens(self, texts: list[str]) -> int:
        """Tokens the model reads (truncated at its window), with special tokens, as usage reports."""
        encoded = self.tokenizer(texts, truncation=True, max_length=self.max_seq_length)
        return sum(len(ids) for ids in encoded["input_ids"])
