"""Knowledge bases end to end: the real server, the real `openai` client, LangChain, the CLI, and kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import openai
import pytest

from tests import docs
from tests.conftest import start_server, stop_server
from tests.helpers import MODEL

pytestmark = pytest.mark.slow
RAGTUNE = str(Path(sys.executable).parent / "ragtune")


@pytest.fixture(scope="module")
def client(live_server) -> openai.OpenAI:
    return openai.OpenAI(base_url=live_server.api, api_key="unused", max_retries=0, timeout=300)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    return docs.corpus(tmp_path_factory.mktemp("e2e-corpus"))


@pytest.fixture(scope="module")
def handbook(client, corpus):
    """A knowledge base filled through the client's own helpers."""
    store = client.vector_stores.create(name="e2e-handbook")
    with open(corpus["pdf"], "rb") as f:
        pdf = client.vector_stores.files.upload_and_poll(
            vector_store_id=store.id, file=f, poll_interval_ms=200
        )
    assert pdf.status == "completed", pdf.last_error
    with ExitStack() as stack:
        handles = [stack.enter_context(open(corpus[k], "rb")) for k in ("md", "docx", "html", "txt_zh")]
        batch = client.vector_stores.file_batches.upload_and_poll(
            vector_store_id=store.id, files=handles, poll_interval_ms=200
        )
    assert batch.status == "completed" and batch.file_counts.completed == 4
    return store, pdf


def test_openai_client_files_and_search(client, handbook, corpus):
    store, pdf = handbook
    uploaded = client.files.create(file=corpus["csv"].open("rb"), purpose="assistants")
    assert client.files.retrieve(uploaded.id).filename == "contacts.csv"
    assert client.files.content(uploaded.id).read() == corpus["csv"].read_bytes()
    results = client.vector_stores.search(
        vector_store_id=store.id, query="What is the Zorblax warehouse access code?", max_num_results=3
    )
    first = next(iter(results))
    assert first.file_id == pdf.id and first.filename == "handbook.pdf"
    assert "7431" in first.content[0].text
    assert client.vector_stores.retrieve(store.id).file_counts.completed == 5
    assert client.files.delete(uploaded.id).deleted


def test_chat_with_file_search_cites_the_file(client, handbook):
    store, pdf = handbook
    answer = client.chat.completions.create(
        model=MODEL,
        temperature=0,
        max_tokens=60,
        messages=[{"role": "user", "content": "What is the Zorblax warehouse access code?"}],
        extra_body={"file_search": {"vector_store_ids": [store.id], "max_num_results": 2}},
    )
    message = answer.choices[0].message.model_dump()
    assert message["annotations"][0]["type"] == "file_citation"
    assert message["annotations"][0]["file_id"] == pdf.id
    assert "7431" in message["annotations"][0]["quote"]
    assert "7431" in message["content"]
    assert answer.model_extra["file_search"]["results"] >= 1


def test_chat_with_file_search_streaming(client, handbook):
    store, pdf = handbook
    stream = client.chat.completions.create(
        model=MODEL,
        temperature=0,
        max_tokens=40,
        stream=True,
        messages=[{"role": "user", "content": "What is the Zorblax warehouse access code?"}],
        extra_body={"file_search": {"vector_store_ids": [store.id], "max_num_results": 2}},
    )
    finals = [c for c in stream if c.choices and c.choices[0].finish_reason]
    annotations = finals[0].choices[0].delta.model_dump()["annotations"]
    assert annotations[0]["file_id"] == pdf.id


def test_langchain_retriever_in_a_chain(live_server, handbook):
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.runnables import RunnablePassthrough
    from langchain_openai import ChatOpenAI

    from retrieval.langchain import RagtuneRetriever

    store, pdf = handbook
    retriever = RagtuneRetriever(base_url=live_server.api, vector_store_id=store.id, k=2)
    found = retriever.invoke("What is the Zorblax warehouse access code?")
    assert found[0].metadata["file_id"] == pdf.id and "7431" in found[0].page_content
    prompt = ChatPromptTemplate.from_messages(
        [("user", "Answer from the context.\n\nContext:\n{context}\n\nQuestion: {question}")]
    )
    llm = ChatOpenAI(base_url=live_server.api, api_key="unused", model=MODEL, temperature=0, max_tokens=40)
    chain = (
        {
            "context": retriever | (lambda ds: "\n\n".join(d.page_content for d in ds)),
            "question": RunnablePassthrough(),
        }
        | prompt
        | llm
        | StrOutputParser()
    )
    assert "7431" in chain.invoke("What is the Zorblax warehouse access code?")


def test_cli_knowledge_base_commands(live_server, corpus):
    def run(*args: str) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [RAGTUNE, "kb", *args, "--base-url", live_server.api], capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, result.stderr
        return result

    run("create", "cli-kb")
    added = run("add", "cli-kb", str(corpus["md"].parent))
    assert "7 completed, 0 failed" in added.stdout
    assert "red badge" in run("search", "cli-kb", "What badge must visitors wear?").stdout
    assert "cli-kb" in run("ls").stdout


def test_kill_9_during_ingestion_leaves_a_consistent_store(tmp_path, corpus):
    """A hard kill mid-ingestion: after restart every file is completed or failed, and no chunk of a
    deleted file is ever returned."""
    big = docs.write(
        tmp_path / "big.txt",
        "\n\n".join(
            f"Section {i}. The quarterly figure for region {i} is {i * 37 % 1000} units." for i in range(6000)
        ),
    )
    server = start_server(tmp_path / "srv")
    api = openai.OpenAI(base_url=server.api, api_key="unused", max_retries=0, timeout=120)
    try:
        # MiniLM: the large file is embedded in seconds (e5, the default, takes about twice as long and
        # is what every other live-server test uses); this test is about the crash, not the embedder.
        store = api.vector_stores.create(name="crash", extra_body={"embedding_model": "all-minilm-l6-v2"})
        doomed = api.vector_stores.files.upload_and_poll(
            vector_store_id=store.id, file=corpus["pdf"].open("rb"), poll_interval_ms=200
        )
        assert doomed.status == "completed"
        survivor = api.files.create(file=corpus["md"].open("rb"), purpose="assistants")
        large = api.files.create(file=big.open("rb"), purpose="assistants")
        api.vector_stores.file_batches.create(vector_store_id=store.id, file_ids=[large.id, survivor.id])
        api.files.delete(doomed.id)
        time.sleep(1.5)  # well inside the large file's embedding
        assert (
            api.vector_stores.files.retrieve(file_id=large.id, vector_store_id=store.id).status
            == "in_progress"
        )
    finally:
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait()
    server = start_server(tmp_path / "srv")
    api = openai.OpenAI(base_url=server.api, api_key="unused", max_retries=0, timeout=120)
    try:
        deadline = time.monotonic() + 300
        while api.vector_stores.retrieve(store.id).file_counts.in_progress and time.monotonic() < deadline:
            time.sleep(0.5)
        files = {f.id: f.status for f in api.vector_stores.files.list(vector_store_id=store.id)}
        assert files == {large.id: "completed", survivor.id: "completed"}
        hits = api.vector_stores.search(
            vector_store_id=store.id, query="Zorblax warehouse access code", max_num_results=50
        )
        assert doomed.id not in {h.file_id for h in hits}
        assert all("7431" not in h.content[0].text for h in hits)
        figure = api.vector_stores.search(
            vector_store_id=store.id, query="quarterly figure for region 4321", max_num_results=5
        )
        assert any("region 4321 " in h.content[0].text for h in figure)
        health = httpx.get(f"{server.base_url}/health").json()
        assert health["status"] == "ok"
    finally:
        stop_server(server)
