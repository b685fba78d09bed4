"""The RAG step of a chat: retrieved sources put into the prompt in one of two formats, and their
citations (which the API response carries from retrieval, whatever the prompt asked of the model).

Formats (`PROMPT_FORMATS`), chosen per request (`file_search.prompt_format`) or by the server's
`rag_prompt_format` (default `auto`, `prompt_format_for`):
- `plain`: `Context:` with the sources' text, then `Question:` and `Answer:`; no numbering, no instruction
  to cite. For small models: numbered sources made the default 135M model answer with a source number
  ("The answer is: 2.") or a date from the wrong source (bench/rag_prompt.py measures both).
- `cited`: an instruction to answer from the numbered sources and cite them like [1], then the numbered
  sources (file name and page) in a delimited block, then the question.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from server.vector_stores.protocol import SearchHit

PROMPT_FORMATS = ("plain", "cited")
INSTRUCTION = (
    "Answer the question using only the numbered sources below. Cite the sources you use like [1]. "
    "If the sources do not contain the answer, say that the documents do not say."
)
NO_SOURCE = (
    "No relevant source was found in the knowledge base for this question. Tell the user that the documents "
    "do not contain the answer; do not make one up."
)
EMPTY_RESPONSES = {
    "en": "The documents in the knowledge base do not contain the answer to this question.",
    "zh": "知识库中的文档没有包含这个问题的答案。",
}
"""What `rag_empty_response: auto` says when nothing was found, by the question's script. Measured with
the default 135M model told that nothing was found (Responses API, five questions over an unrelated
store): two of five answers were made up ("The warranty period of the X200 drill is 1 year.")."""
QUOTE_CHARS = 400
PLAIN_BELOW_PARAMETERS = 1_000_000_000
"""`auto` picks `plain` for models with fewer parameters than this, `cited` for larger ones. Measured on
the default SmolLM2-135M: on 40 questions over Constitution passages (bench/rag_prompt.py) both formats
beat the base model with intervals excluding 0 and scored alike (F1 0.114 plain, 0.117 cited, 4 sources);
on 40 Wikipedia reading-comprehension questions (issue 15's report) plain scored 0.109 against cited's
0.078, whose numbered sources the model answered with ("The answer is: 2."). The larger side keeps the
conventional format, not measured here (no larger model ships)."""


def source_label(n: int, hit: SearchHit) -> str:
    where = f", page {hit.page}" if hit.page else ""
    return f"[{n}] {hit.filename}{where}"


def augment(question: str, sources: list[SearchHit], prompt_format: str = "cited") -> str:
    """The user message that carries `sources` (best first) for `question`, in `prompt_format` (one of
    PROMPT_FORMATS; ValueError otherwise). Without sources, the no-source instruction and the question."""
    if prompt_format not in PROMPT_FORMATS:
        raise ValueError(f"unknown RAG prompt format {prompt_format!r}")
    if not sources:
        return f"{NO_SOURCE}\n\nQuestion: {question}"
    if prompt_format == "plain":
        context = "\n\n".join(hit.text.strip() for hit in sources)
        return f"Context:\n{context}\n\nQuestion: {question}\nAnswer:"
    blocks = "\n\n".join(
        f"{source_label(n, hit)}\n{hit.text.strip()}" for n, hit in enumerate(sources, start=1)
    )
    # Instruction, then the context block, then the question (the order small models follow best).
    return f"{INSTRUCTION}\n\n<sources>\n{blocks}\n</sources>\n\nQuestion: {question}"


def rag_messages(
    messages: list[dict[str, Any]], sources: list[SearchHit], prompt_format: str = "cited"
) -> list[dict[str, Any]]:
    """The conversation with its last user message replaced by the augmented one."""
    last = max(i for i, m in enumerate(messages) if m["role"] == "user")
    out = list(messages)
    out[last] = {"role": "user", "content": augment(messages[last]["content"], sources, prompt_format)}
    return out


@functools.lru_cache(maxsize=16)
def model_parameters(model_path: str | Path) -> int | None:
    """Parameter count of a decoder-only transformer from its `config.json` (embeddings, attention with
    grouped key/value heads, gated MLP, untied output head), or None when the file or a field is missing.
    An estimate for choosing a prompt format, not an exact count (it leaves out norms and biases)."""
    try:
        config = json.loads((Path(model_path) / "config.json").read_text())
        hidden, layers = int(config["hidden_size"]), int(config["num_hidden_layers"])
        vocab, inner = int(config["vocab_size"]), int(config["intermediate_size"])
        heads = int(config["num_attention_heads"])
        kv_heads = int(config.get("num_key_value_heads") or heads)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    head_dim = int(config.get("head_dim") or hidden // heads)
    attention = hidden * head_dim * (2 * heads + 2 * kv_heads)  # q and o, k and v
    mlp = 3 * hidden * inner  # gate, up, down
    embeddings = vocab * hidden * (1 if config.get("tie_word_embeddings", True) else 2)
    return embeddings + layers * (attention + mlp)


def prompt_format_for(setting: str, model_path: str | Path | None) -> str:
    """The format `setting` (`auto` or one of PROMPT_FORMATS) means for the model at `model_path`: `auto`
    is `plain` below PLAIN_BELOW_PARAMETERS parameters and `cited` at or above it, or when the size is
    unknown."""
    if setting != "auto":
        return setting
    count = model_parameters(model_path) if model_path else None
    return "plain" if count is not None and count < PLAIN_BELOW_PARAMETERS else "cited"


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


def empty_response(setting: str, question: str) -> str | None:
    """The answer given when retrieval found nothing (`rag_empty_response`): None for '' (the model
    answers), the built-in sentence in the question's script for 'auto' (Chinese when the question holds
    a CJK character), else `setting` itself."""
    if not setting:
        return None
    if setting != "auto":
        return setting
    chinese = any("\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf" for ch in question)
    return EMPTY_RESPONSES["zh" if chinese else "en"]
