"""Wire types of /v1/vector_stores (OpenAI shapes), and the one search call's query and hit types that
chat RAG and comparisons share with `/v1/vector_stores/{id}/search`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from retrieval import filters as filter_grammar
from server.protocol import WireModel

AttributeValue = str | bool | int | float
"""A file attribute; an integer stays an integer (pydantic's smart union picks the exact type)."""


def check_attributes(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    if len(value) > 16:
        raise ValueError("at most 16 attributes")
    for key, item in value.items():
        if len(key) > 64:
            raise ValueError(f"attribute key {key[:20]!r}… is longer than 64 characters")
        if isinstance(item, str) and len(item) > 512:
            raise ValueError(f"attribute {key!r} is longer than 512 characters")
    return value


def check_metadata(value: dict[str, str] | None) -> dict[str, str] | None:
    if value is None:
        return None
    if len(value) > 16:
        raise ValueError("at most 16 metadata pairs")
    if any(len(k) > 64 or len(v) > 512 for k, v in value.items()):
        raise ValueError("metadata keys are at most 64 characters and values at most 512")
    return value


class _Body(BaseModel):
    """A request body: unknown fields are kept (OpenAI adds fields), types are strict as OpenAI's are."""

    model_config = ConfigDict(extra="allow", strict=True)


class CreateVectorStore(_Body):
    name: str | None = None
    file_ids: list[str] = Field(default_factory=list, max_length=500)
    chunking_strategy: dict[str, Any] | None = None
    metadata: dict[str, str] | None = None
    expires_after: dict[str, Any] | None = None
    embedding_model: str | None = Field(
        None,
        description="Extension (Llama Stack's name): the embedder that builds this store's vectors; "
        "default the server's RAGTUNE_EMBEDDING_MODEL.",
    )

    _meta = field_validator("metadata")(check_metadata)


class UpdateVectorStore(_Body):
    name: str | None = None
    metadata: dict[str, str] | None = None
    expires_after: dict[str, Any] | None = None
    embedding_model: str | None = Field(
        None,
        description="Extension: another embedder re-embeds every chunk in the background (search keeps "
        "the current vectors until all are done); the current one cancels a re-embedding under way.",
    )

    _meta = field_validator("metadata")(check_metadata)


class AttachFile(_Body):
    file_id: str
    attributes: dict[str, AttributeValue] | None = None
    chunking_strategy: dict[str, Any] | None = None

    _attrs = field_validator("attributes")(check_attributes)


class UpdateFileAttributes(_Body):
    attributes: dict[str, AttributeValue] | None

    _attrs = field_validator("attributes")(check_attributes)


class BatchFile(_Body):
    file_id: str
    attributes: dict[str, AttributeValue] | None = None
    chunking_strategy: dict[str, Any] | None = None

    _attrs = field_validator("attributes")(check_attributes)


class CreateFileBatch(_Body):
    file_ids: list[str] | None = Field(None, max_length=2000)
    files: list[BatchFile] | None = Field(None, max_length=2000)
    attributes: dict[str, AttributeValue] | None = None
    chunking_strategy: dict[str, Any] | None = None

    _attrs = field_validator("attributes")(check_attributes)


def check_filters(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """An attribute filter in the grammar of retrieval/filters.py (ValueError names what is wrong)."""
    if value is not None:
        filter_grammar.validate(value)
    return value


class HybridSearch(_Body):
    """OpenAI's `ranking_options.hybrid_search` (API reference: vector store search and the file_search
    tool): the weights of the dense (embedding) and text (BM25) rankings in hybrid search's reciprocal
    rank fusion, score = embedding_weight / (60 + dense rank) + text_weight / (60 + BM25 rank). Both are
    required, each >= 0 and not both 0; only their ratio matters."""

    embedding_weight: float = Field(ge=0.0, allow_inf_nan=False)
    text_weight: float = Field(ge=0.0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _one_counts(self) -> HybridSearch:
        if self.embedding_weight == 0 and self.text_weight == 0:
            raise ValueError("embedding_weight and text_weight must not both be 0")
        return self

    @property
    def weights(self) -> tuple[float, float]:
        """(dense, text), as SearchQuery.weights."""
        return (self.embedding_weight, self.text_weight)


class RankingOptions(_Body):
    """OpenAI's `ranking_options`, for `/search` and chat's `file_search` alike. `ranker`: `auto`
    (= `hybrid`, also `default-2024-11-15`), `dense` or `bm25`; it is checked by the search, which knows
    where in the request it sits. `score_threshold` (0..1): `None` leaves the caller's default (0 for
    `/search`, the server's `rag_score_threshold` for chat). `hybrid_search`: the fusion's weights (see
    HybridSearch); accepted with any ranker, as OpenAI does, but only `auto`/`hybrid` use them."""

    ranker: str | None = None
    score_threshold: float | None = Field(None, ge=0.0, le=1.0)
    hybrid_search: HybridSearch | None = None

    @property
    def weights(self) -> tuple[float, float] | None:
        """`hybrid_search` as SearchQuery.weights (`None` when not given)."""
        return self.hybrid_search.weights if self.hybrid_search else None


class SearchRequest(_Body):
    query: str | list[str]
    max_num_results: int = Field(10, ge=1, le=50)
    filters: dict[str, Any] | None = None
    ranking_options: RankingOptions | None = None
    rewrite_query: bool = False

    _filters = field_validator("filters")(check_filters)

    @field_validator("query")
    @classmethod
    def _query(cls, value: str | list[str]) -> str | list[str]:
        texts = [value] if isinstance(value, str) else value
        if not texts or not all(t.strip() for t in texts):
            raise ValueError("query must not be empty")
        return value

    @property
    def text(self) -> str:
        return self.query if isinstance(self.query, str) else " ".join(self.query)

    def as_query(self) -> SearchQuery:
        """The search this body asks for (score threshold 0 unless given)."""
        options = self.ranking_options or RankingOptions()
        return SearchQuery(
            self.text,
            self.max_num_results,
            self.filters,
            options.ranker,
            options.score_threshold or 0.0,
            options.weights,
        )


# ---- the one search call ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchQuery:
    """One search over one or more stores: at most `max_num_results` chunks for `text`, each scoring at
    least `score_threshold` (0..1), from completed files whose attributes pass `filters` (the grammar of
    retrieval/filters.py; `None`: every file), ranked by `ranker` (`None`/`auto`/`hybrid`, `dense`,
    `bm25`). `weights` (dense, text): hybrid's fusion weights from `ranking_options.hybrid_search`
    (see Retriever.search); `None`: unweighted fusion re-ordered by relevance; other rankers ignore them."""

    text: str
    max_num_results: int = 10
    filters: dict[str, Any] | None = None
    ranker: str | None = None
    score_threshold: float = 0.0
    weights: tuple[float, float] | None = None


@dataclass
class SearchHit:
    """One retrieved chunk (`chunk_id`, its `text` and 1-based `page` if the document has pages), with
    the file it is attributed to and that file's attributes in the store `vector_store_id`."""

    chunk_id: int
    file_id: str
    filename: str
    score: float
    text: str
    page: int | None
    attributes: dict[str, Any]
    vector_store_id: str

    def wire(self) -> dict[str, Any]:
        """OpenAI's search result, plus where the text is (`chunk_id`, `page`, `vector_store_id`)."""
        return {
            "file_id": self.file_id,
            "filename": self.filename,
            "score": round(self.score, 6),
            "attributes": self.attributes,
            "content": [{"type": "text", "text": self.text}],
            "chunk_id": str(self.chunk_id),
            "page": self.page,
            "vector_store_id": self.vector_store_id,
        }


class KnowledgeSearch(Protocol):
    """What chat RAG needs of the knowledge bases (VectorStoreService implements it)."""

    def search(self, store_ids: Sequence[str], query: SearchQuery, param: str = "") -> list[SearchHit]:
        """Blocking: call it from a thread. See VectorStoreService.search."""
        ...


# ---- responses --------------------------------------------------------------------------------------


class FileCounts(BaseModel):
    in_progress: int
    completed: int
    failed: int
    cancelled: int
    total: int


class Reindex(WireModel):
    """Re-embedding a store with another embedder: `status` `in_progress` or `failed` (with `last_error`);
    `chunks_done` of `chunks_total` re-embedded."""

    embedding_model: str
    status: Literal["in_progress", "failed"]
    chunks_done: int = 0
    chunks_total: int = 0
    last_error: str | None = None


class VectorStore(WireModel):
    """A knowledge base. `usage_bytes` counts its chunks' text and vectors; `status` is `in_progress`
    while a file is being ingested, else `completed`; times are unix seconds."""

    id: str
    object: Literal["vector_store"] = "vector_store"
    created_at: int
    name: str | None = None
    usage_bytes: int
    file_counts: FileCounts
    status: Literal["expired", "in_progress", "completed"]
    expires_after: dict[str, Any] | None = None
    expires_at: int | None = None
    last_active_at: int | None = None
    metadata: dict[str, str] | None = None
    embedding_model: str | None = None
    """Extension: the embedder of the vectors search uses now."""
    embedding_dimension: int | None = None
    reindex: Reindex | None = None
    """Extension: a change of embedder under way (or the last one, when it failed)."""


class LastError(WireModel):
    """Why ingesting a file failed: `code` is `server_error`, `unsupported_file` or `invalid_file`."""

    code: str
    message: str


class ParseSummary(BaseModel):
    """What the parser saw in a file (ragtune's extension of the file object; see ingest.ParseReport):
    the library that read it, the detected text encoding, PDF pages, tables, images that gave no text,
    pages read by OCR and their mean confidence (0..1), parts left out (`{part, reason, count}`) and
    warnings."""

    parser: str
    encoding: str | None = None
    pages: int | None = None
    tables: int = 0
    images_without_text: int = 0
    ocr_pages: list[int] = []
    ocr_mean_score: float | None = None
    dropped: list[dict[str, Any]] = []
    warnings: list[str] = []


class VectorStoreFile(WireModel):
    """A file attached to a store; its `id` is the file's id. `status`: `in_progress`, `completed`,
    `failed` (see `last_error`) or `cancelled`. `parse` (a ragtune extension, completed files only) says
    what the parser saw, so a lossy parse is visible without reading chunks."""

    id: str
    object: Literal["vector_store.file"] = "vector_store.file"
    usage_bytes: int
    created_at: int
    vector_store_id: str
    status: Literal["in_progress", "completed", "failed", "cancelled"]
    last_error: LastError | None = None
    chunking_strategy: dict[str, Any] | None = None
    # Any: a number must come back as it was stored (pydantic's union would make 3 into 3.0).
    attributes: dict[str, Any] | None = None
    parse: ParseSummary | None = None


class VectorStoreFileBatch(WireModel):
    id: str
    object: Literal["vector_store.files_batch"] = "vector_store.files_batch"
    created_at: int
    vector_store_id: str
    status: Literal["in_progress", "completed", "failed", "cancelled"]
    file_counts: FileCounts


class TextContent(BaseModel):
    type: Literal["text"] = "text"
    text: str


class VectorStoreSearchResult(WireModel):
    """One hit of `/search` (see SearchHit.wire: `chunk_id`, `page`, `vector_store_id` ride along)."""

    file_id: str
    filename: str
    score: float
    attributes: dict[str, Any] | None = None
    content: list[TextContent]


class VectorStoreSearchResultsPage(WireModel):
    """OpenAI's `vector_store.search_results.page`: every hit on one page (`has_more` is always false)."""

    object: Literal["vector_store.search_results.page"] = "vector_store.search_results.page"
    search_query: str
    data: list[VectorStoreSearchResult]
    has_more: bool = False
    next_page: str | None = None


class VectorStoreFileContentPage(WireModel):
    """A stored file's parsed text (what was read from it, before chunking) as one text part; files
    ingested before ragtune kept the parsed text give their chunks in order instead."""

    object: Literal["vector_store.file_content.page"] = "vector_store.file_content.page"
    data: list[TextContent]
    has_more: bool = False
    next_page: str | None = None
