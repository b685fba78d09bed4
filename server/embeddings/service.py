"""Embeddings through the configured embedder; batches run off the event loop."""

from __future__ import annotations

import asyncio
import base64

import numpy as np

from retrieval.embedder import Embedder
from server.catalog import ModelCatalog, model_not_found
from server.embeddings.protocol import EmbeddingItem, EmbeddingRequest, EmbeddingResponse, EmbeddingUsage
from server.errors import APIError, bad_request

MAX_INPUTS = 2048


class EmbeddingService:
    """Embeds whole inputs only: an input longer than the embedder's window is refused (OpenAI's
    behaviour) unless the request asks for truncation (vLLM's `truncate_prompt_tokens`)."""

    def __init__(self, embedder: Embedder, model_name: str, catalog: ModelCatalog | None = None) -> None:
        self.embedder = embedder
        self.model_name = model_name
        self.catalog = catalog  # tells a chat model's id (400) from an unknown one (404)

    def check_model(self, model: str) -> None:
        if model == self.model_name:
            return
        if self.catalog is not None and any(card.id == model for card in self.catalog.cards()):
            raise APIError(
                400,
                f"'{model}' is not an embedding model; use '{self.model_name}' for embeddings.",
                param="model",
                code="model_not_supported",
            )
        raise model_not_found(model)

    def texts(self, request: EmbeddingRequest) -> list[str]:
        self.check_model(request.model)
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

    @property
    def window(self) -> int:
        return self.embedder.max_seq_length

    def fit(self, texts: list[str], limit: int | None) -> tuple[list[str], int]:
        """The texts to embed and the tokens they hold (special tokens included, as the model reads
        them). Without `limit`, an input over the window is a 400; with it, each input is cut to its
        first `limit` tokens (at a token boundary of the original text)."""
        window = self.window
        if limit is not None and limit > window:
            raise bad_request(
                f"truncate_prompt_tokens is {limit}, but this model reads at most {window} tokens.",
                "truncate_prompt_tokens",
            )
        tokenizer = self.embedder.tokenizer
        specials = tokenizer.num_special_tokens_to_add()
        keep = (window if limit in (None, -1) else limit) - specials
        if keep < 1:
            raise bad_request(
                f"truncate_prompt_tokens must leave room for text after the model's {specials} special "
                "tokens.",
                "truncate_prompt_tokens",
            )
        encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
        out, total = [], 0
        for i, (text, ids, offsets) in enumerate(
            zip(texts, encoded["input_ids"], encoded["offset_mapping"], strict=True)
        ):
            if len(ids) > keep:
                if limit is None:
                    raise bad_request(
                        f"This model's maximum context length is {window} tokens, however input[{i}] has "
                        f"{len(ids) + specials} tokens. Shorten it, or set truncate_prompt_tokens to embed "
                        "only its beginning.",
                        "input",
                        "context_length_exceeded",
                    )
                text = text[: offsets[keep - 1][1]]
                ids = ids[:keep]
            out.append(text)
            total += len(ids) + specials
        return out, total

    async def create(self, request: EmbeddingRequest) -> EmbeddingResponse:
        """Embed the inputs (off the event loop); `usage` counts the tokens actually embedded."""
        texts, tokens = await asyncio.to_thread(self.fit, self.texts(request), request.truncate_prompt_tokens)
        vectors = await asyncio.to_thread(self.embedder.embed, texts)
        return EmbeddingResponse(
            data=[
                EmbeddingItem(index=i, embedding=encode(v, request.encoding_format or "float"))
                for i, v in enumerate(vectors)
            ],
            model=self.model_name,
            usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens),
        )


def encode(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return vector.tolist()
