"""The RAG step of a chat: numbered sources in a delimited context block, and their citations."""

from __future__ import annotations

from typing import Any

from server.vector_stores.protocol import SearchHit

INSTRUCTION = (
    "Answer the question using only the numbered sources below. Cite the sources you use like [1]. "
    "If the sources do not contain the answer, say that the documents do not say."
)
NO_SOURCE = (
    "No relevant source was found in the knowledge base for this question. Tell the user that the documents "
    "do not contain the answer; do not make one up."
)
QUOTE_CHARS = 400


def source_label(n: int, hit: SearchHit) -> str:
    where = f", page {hit.page}" if hit.page else ""
    return f"[{n}] {hit.filename}{where}"


def augment(question: str, sources: list[SearchHit]) -> str:
    """Instruction, then the context block, then the question (the order small models follow best)."""
    if not sources:
        return f"{NO_SOURCE}\n\nQuestion: {question}"
    blocks = "\n\n".join(
        f"{source_label(n, hit)}\n{hit.text.strip()}" for n, hit in enumerate(sources, start=1)
    )
    return f"{INSTRUCTION}\n\n<sources>\n{blocks}\n</sources>\n\nQuestion: {question}"


def rag_messages(messages: list[dict[str, Any]], sources: list[SearchHit]) -> list[dict[str, Any]]:
    """The conversation with its last user message replaced by the augmented one."""
    last = max(i for i, m in enumerate(messages) if m["role"] == "user")
    out = list(messages)
    out[last] = {"role": "user", "content": augment(messages[last]["content"], sources)}
    return out


def annotations(sources: list[SearchHit]) -> list[dict[str, Any]]:
    """`file_citation` annotations; `index` is the source's position in the list (cited as [index + 1])."""
    return [
        {
            "type": "file_citation",
            "file_id": hit.file_id,
            "filename": hit.filename,
            "index": i,
            "chunk_id": str(hit.chunk_id),
            "score": round(hit.score, 6),
            "quote": hit.text[:QUOTE_CHARS],
            "page": hit.page,
            "vector_store_id": hit.vector_store_id,
        }
        for i, hit in enumerate(sources)
    ]
