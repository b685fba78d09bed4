"""Embeddings through the configured embedder; batches run off the event loop."""

from __future__ import annotations

import asyncio
import base64

import numpy as np

from retrieval.embedder import Embedder
from server.catalog import model_not_found
from server.embeddings.protocol import EmbeddingItem, EmbeddingRequest, EmbeddingResponse, EmbeddingUsage
from server.errors import bad_request

MAX_INPUTS = 2048


class EmbeddingService:
    def __init__(self, embedder: Embedder, model_name: str) -> None:
        self.embedder = embedder
        self.model_name = model_name

    def texts(self, request: EmbeddingRequest) -> list[str]:
        if request.model != self.model_name:
            raise model_not_found(request.model)
        data = request.input
        if isinstance(data, str):
            data = [data]
        if not data:
            raise bad_request("'input' must not be empty.", "input")
        if not all(isinstance(item, str) for item in data):
            raise bad_request(
                "Token-id input is not supported (its ids belong to another tokenizer); send strings.",
                "input",
                "unsupported_parameter",
            )
        if len(data) > MAX_INPUTS:
            raise bad_request(f"At most {MAX_INPUTS} inputs per request.", "input")
        if any(not text.strip() for text in data):
            raise bad_request("'input' must not contain empty strings.", "input")
        if request.dimensions is not None and request.dimensions != self.embedder.dimension:
            raise bad_request(
                f"This model has {self.embedder.dimension} dimensions and cannot be shortened.", "dimensions"
            )
        return data

    async def create(self, request: EmbeddingRequest) -> EmbeddingResponse:
        texts = self.texts(request)
        vectors = await asyncio.to_thread(self.embedder.embed, texts)
        tokens = await asyncio.to_thread(self.embedder.count_tokens, texts)
        return EmbeddingResponse(
            data=[
                EmbeddingItem(index=i, embedding=encode(v, request.encoding_format))
                for i, v in enumerate(vectors)
            ],
            model=self.model_name,
            usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens),
        )


def encode(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return vector.tolist()
