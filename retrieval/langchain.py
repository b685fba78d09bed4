"""A LangChain retriever over a ragtune knowledge base (HTTP search API; needs only langchain-core)."""

from __future__ import annotations

from typing import Any

import httpx
from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever


class RagtuneRetriever(BaseRetriever):
    """Documents from `POST /v1/vector_stores/{id}/search` of a running ragtune server.

    >>> retriever = RagtuneRetriever(base_url="http://127.0.0.1:8000/v1", vector_store_id="vs_...", k=4)
    >>> retriever.invoke("What is our travel policy?")
    """

    base_url: str = "http://127.0.0.1:8000/v1"
    vector_store_id: str
    api_key: str | None = None
    k: int = 4
    filters: dict[str, Any] | None = None
    ranker: str | None = None
    score_threshold: float = 0.0
    timeout: float = 60.0

    def _request(self, query: str) -> tuple[str, dict[str, Any], dict[str, str]]:
        body: dict[str, Any] = {"query": query, "max_num_results": self.k}
        if self.filters is not None:
            body["filters"] = self.filters
        if self.ranker or self.score_threshold:
            body["ranking_options"] = {"ranker": self.ranker, "score_threshold": self.score_threshold}
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        return f"{self.base_url.rstrip('/')}/vector_stores/{self.vector_store_id}/search", body, headers

    @staticmethod
    def _documents(payload: dict[str, Any]) -> list[Document]:
        return [
            Document(
                page_content="".join(part["text"] for part in hit["content"]),
                metadata={
                    "file_id": hit["file_id"],
                    "filename": hit["filename"],
                    "score": hit["score"],
                    "attributes": hit.get("attributes") or {},
                    "chunk_id": hit.get("chunk_id"),
                    "page": hit.get("page"),
                },
            )
            for hit in payload["data"]
        ]

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        url, body, headers = self._request(query)
        response = httpx.post(url, json=body, headers=headers, timeout=self.timeout)
        response.raise_for_status()
        return self._documents(response.json())

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun
    ) -> list[Document]:
        url, body, headers = self._request(query)
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            response = await client.post(url, json=body, headers=headers)
        response.raise_for_status()
        return self._documents(response.json())
