"""Knowledge bases over HTTP: real files, embeddings, FAISS and SQLite (chat on the FakeEngine)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from server.app import build_app
from server.chat.rag import EMPTY_RESPONSES
from server.engines.fake import FakeEngine
from server.settings import Settings
from tests import docs
from tests.helpers import assert_error, chat, stream_chat


def upload(client, path: Path, purpose: str = "assistants", name: str | None = None):
    with open(path, "rb") as f:
        return client.post("/v1/files", data={"purpose": purpose}, files={"file": (name or path.name, f)})


def wait_for_store(client, store_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        store = client.get(f"/v1/vector_stores/{store_id}").json()
        if store["file_counts"]["in_progress"] == 0:
            return store
        time.sleep(0.1)
    raise AssertionError(f"ingestion did not finish: {store}")


def search(client, store_id: str, query: str, **body) -> list[dict]:
    response = client.post(f"/v1/vector_stores/{store_id}/search", json={"query": query, **body})
    assert response.status_code == 200, response.text
    return response.json()["data"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    return docs.corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture
def kb(client, corpus):
    """A store holding one document of every type, fully ingested."""
    ids = {kind: upload(client, path).json()["id"] for kind, path in corpus.items()}
    store = client.post("/v1/vector_stores", json={"name": "handbook", "file_ids": list(ids.values())}).json()
    done = wait_for_store(client, store["id"])
    assert done["file_counts"] == {"in_progress": 0, "completed": 7, "failed": 0, "cancelled": 0, "total": 7}
    return store["id"], ids


@pytest.mark.parametrize(
    ("query", "kind", "needle"),
    [
        ("What is the access code of the Zorblax warehouse?", "pdf", "7431"),
        ("How many days of paid holiday do employees get?", "docx", "twenty-eight"),
        ("How do I reset my password?", "html", "4455"),
        ("What badge must visitors wear?", "md", "red badge"),
        ("报销需要在多少天内提交？", "txt_zh", "三十天"),
        ("What is Alan Turing's phone number?", "csv", "555-0199"),
        ("How much does the quantum toaster cost?", "json", "249"),
    ],
)
def test_search_finds_the_right_chunk(client, kb, query, kind, needle):
    store_id, ids = kb
    hits = search(client, store_id, query, max_num_results=3)
    assert hits[0]["file_id"] == ids[kind]
    assert needle in hits[0]["content"][0]["text"]
    assert 0.0 <= hits[0]["score"] <= 1.0
    assert set(hits[0]) >= {"file_id", "filename", "score", "attributes", "content"}


def test_pdf_pages_and_boilerplate(client, kb):
    store_id, ids = kb
    [hit] = search(client, store_id, "Zorblax warehouse access code", max_num_results=1)
    assert hit["page"] == 3
    assert "ACME Corp - internal handbook" not in hit["content"][0]["text"]  # repeated page header dropped


def test_vector_store_file_objects(client, kb):
    store_id, ids = kb
    vs_file = client.get(f"/v1/vector_stores/{store_id}/files/{ids['pdf']}").json()
    assert vs_file["object"] == "vector_store.file" and vs_file["status"] == "completed"
    assert vs_file["usage_bytes"] > 0 and vs_file["last_error"] is None
    # auto chunking for the 256-token embedder: 800 capped to the window, overlap half of it
    assert vs_file["chunking_strategy"] == {
        "type": "static",
        "static": {"max_chunk_size_tokens": 254, "chunk_overlap_tokens": 127},
    }
    listed = client.get(
        f"/v1/vector_stores/{store_id}/files", params={"filter": "completed", "limit": 3}
    ).json()
    assert len(listed["data"]) == 3 and listed["has_more"] is True
    content = client.get(f"/v1/vector_stores/{store_id}/files/{ids['md']}/content").json()
    assert any("red badge" in part["text"] for part in content["data"])


def test_file_objects_say_what_the_parser_saw_and_content_is_the_parsed_text(client, kb, corpus):
    store_id, ids = kb
    pdf = client.get(f"/v1/vector_stores/{store_id}/files/{ids['pdf']}").json()
    assert pdf["parse"]["parser"] == "pypdfium2" and pdf["parse"]["pages"] == 3
    assert pdf["parse"]["ocr_pages"] == []
    # The handbook header repeated on its 3 pages is dropped, and said so.
    assert pdf["parse"]["dropped"] == [
        {"part": "page header/footer line", "reason": "repeated on most pages, or a page number", "count": 3}
    ]
    text = client.get(f"/v1/vector_stores/{store_id}/files/{ids['txt_zh']}").json()
    assert text["parse"]["encoding"] == "gb18030"  # tests/docs.py writes it so: detected, not assumed
    # The parsed text, once, not the overlapping chunks: the Markdown file comes back as it was read.
    [part] = client.get(f"/v1/vector_stores/{store_id}/files/{ids['md']}/content").json()["data"]
    assert part["text"] == corpus["md"].read_text(encoding="utf-8").strip()


def test_parse_extension_is_absent_until_completed(client, corpus):
    file_id = upload(client, corpus["md"]).json()["id"]
    store_id = client.post("/v1/vector_stores", json={"name": "pending"}).json()["id"]
    attached = client.post(f"/v1/vector_stores/{store_id}/files", json={"file_id": file_id}).json()
    if attached["status"] == "in_progress":
        assert attached["parse"] is None
        content = client.get(f"/v1/vector_stores/{store_id}/files/{file_id}/content").json()
        assert content["data"] == []
    wait_for_store(client, store_id)
    assert client.get(f"/v1/vector_stores/{store_id}/files/{file_id}").json()["parse"]["parser"] == "text"


def test_detach_and_delete_remove_chunks(client, kb):
    store_id, ids = kb
    assert search(client, store_id, "Zorblax warehouse access code")[0]["file_id"] == ids["pdf"]
    response = client.delete(f"/v1/vector_stores/{store_id}/files/{ids['pdf']}")
    assert response.json() == {"id": ids["pdf"], "object": "vector_store.file.deleted", "deleted": True}
    assert ids["pdf"] not in {h["file_id"] for h in search(client, store_id, "Zorblax warehouse access code")}
    assert client.delete(f"/v1/files/{ids['docx']}").json()["deleted"] is True
    assert ids["docx"] not in {
        h["file_id"] for h in search(client, store_id, "paid holiday days", max_num_results=50)
    }
    assert_error(client.get(f"/v1/files/{ids['docx']}"), 404, "file_id")
    assert_error(client.get(f"/v1/vector_stores/{store_id}/files/{ids['docx']}"), 404, "file_id")
    assert client.get(f"/v1/vector_stores/{store_id}").json()["file_counts"]["total"] == 5


def test_identical_bytes_share_chunks(client, kb, corpus):
    store_id, ids = kb
    before = client.get(f"/v1/vector_stores/{store_id}").json()["usage_bytes"]
    twin = upload(client, corpus["md"], name="security-copy.md").json()["id"]
    client.post(f"/v1/vector_stores/{store_id}/files", json={"file_id": twin})
    client.post(f"/v1/vector_stores/{store_id}/files", json={"file_id": ids["md"]})  # re-attach: idempotent
    store = wait_for_store(client, store_id)
    assert store["usage_bytes"] == before
    hits = search(client, store_id, "What badge must visitors wear?", max_num_results=10)
    assert sum("red badge" in h["content"][0]["text"] for h in hits) == 1
    # Detaching the original keeps the shared chunks for the twin.
    client.delete(f"/v1/vector_stores/{store_id}/files/{ids['md']}")
    assert search(client, store_id, "What badge must visitors wear?")[0]["file_id"] == twin


def test_identical_bytes_under_other_chunking_get_their_own_chunks(client, corpus):
    store_id = client.post("/v1/vector_stores", json={"name": "twins"}).json()["id"]
    first = upload(client, corpus["md"]).json()["id"]
    second = upload(client, corpus["md"], name="copy.md").json()["id"]
    static = {"type": "static", "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 0}}
    client.post(f"/v1/vector_stores/{store_id}/files", json={"file_id": first})
    client.post(f"/v1/vector_stores/{store_id}/files", json={"file_id": second, "chunking_strategy": static})
    wait_for_store(client, store_id)
    db = client.app.state.services.db
    keys = {
        r["chunking_key"]: r["n"]
        for r in db.query(
            "SELECT chunking_key, COUNT(*) AS n FROM chunks WHERE vector_store_id = ? GROUP BY chunking_key",
            (store_id,),
        )
    }
    assert set(keys) == {"254/127", "100/0"}
    client.delete(f"/v1/vector_stores/{store_id}/files/{first}")  # the twin keeps its own chunks
    hits = search(client, store_id, "What badge must visitors wear?")
    assert hits and {h["file_id"] for h in hits} == {second}
    assert (
        db.one("SELECT COUNT(*) AS n FROM chunks WHERE vector_store_id = ?", (store_id,))["n"]
        == keys["100/0"]
    )


def test_reattached_while_ingesting_commits_the_new_runs_chunks(client, tmp_path, monkeypatch):
    """../shared/cases/kb-ft/make_big_log.py: a file detached while it is being embedded and at once
    re-attached with another chunking strategy gets the new strategy's chunks; the old run commits
    nothing (it used to commit its chunks for the new attachment)."""
    from server.vector_stores.protocol import AttachFile

    services = client.app.state.services
    run = tmp_path.name  # text no other test embeds: a cached embedding would skip the spy below
    lines = [
        f"2026-11-30 07:{i // 60 % 60:02d}:{i % 60:02d} INFO worker {i} processed batch {i * 7} ({run})"
        for i in range(3000)
    ]
    big = docs.write(tmp_path / "big_log.txt", "\n".join(lines))
    file_id = upload(client, big).json()["id"]
    store_id = client.post("/v1/vector_stores", json={"name": "race"}).json()["id"]
    static = {"type": "static", "static": {"max_chunk_size_tokens": 400, "chunk_overlap_tokens": 0}}
    embedder = services.ingestion.embedders.get()
    embed = embedder.embed
    reattached = []

    def embed_then_reattach(texts, input_type="passage"):
        vectors = embed(texts, input_type)
        if not reattached:  # in the worker's thread, between two embedding batches of the first run
            services.vector_stores.detach(store_id, file_id)
            reattached.append(
                services.vector_stores.attach(store_id, AttachFile(file_id=file_id, chunking_strategy=static))
            )
        return vectors

    monkeypatch.setattr(embedder, "embed", embed_then_reattach)
    client.post(f"/v1/vector_stores/{store_id}/files", json={"file_id": file_id})
    store = wait_for_store(client, store_id)
    monkeypatch.undo()
    assert reattached and store["file_counts"]["completed"] == 1
    vs_file = client.get(f"/v1/vector_stores/{store_id}/files/{file_id}").json()
    assert vs_file["chunking_strategy"]["static"] == static["static"]
    rows = services.db.query(
        "SELECT chunking_key, MAX(tokens) AS longest, COUNT(*) AS n FROM chunks WHERE vector_store_id = ? "
        "GROUP BY chunking_key",
        (store_id,),
    )
    assert [(r["chunking_key"], r["longest"] <= 400) for r in rows] == [("400/0", True)]
    # No overlap: the chunks hold each line once.
    texts = services.vector_stores.tables.chunk_texts(
        store_id, vs_file_sha(services, store_id, file_id), "400/0"
    )
    assert sum(t.count("INFO worker 1234 processed") for t in texts) == 1


def vs_file_sha(services, store_id: str, file_id: str) -> str:
    return services.vector_stores.tables.file(store_id, file_id)["sha256"]


def test_attaching_again_keeps_what_it_does_not_give(client, corpus):
    """Re-attaching without attributes (alone or in a batch) keeps the file's attributes; a batch that
    names an attached file counts it."""
    hr = upload(client, corpus["docx"]).json()["id"]
    store_id = client.post("/v1/vector_stores", json={"name": "again"}).json()["id"]
    url = f"/v1/vector_stores/{store_id}/files"
    client.post(url, json={"file_id": hr, "attributes": {"dept": "hr"}})
    wait_for_store(client, store_id)
    batch = client.post(f"/v1/vector_stores/{store_id}/file_batches", json={"file_ids": [hr]}).json()
    assert batch["file_counts"]["total"] == 1 and batch["status"] == "completed"
    assert client.post(url, json={"file_id": hr}).json()["attributes"] == {"dept": "hr"}
    assert client.get(f"{url}/{hr}").json()["attributes"] == {"dept": "hr"}
    assert client.post(url, json={"file_id": hr, "attributes": {"dept": "ops"}}).json()["attributes"] == {
        "dept": "ops"
    }


def test_attributes_filter_search(client, corpus):
    hr = upload(client, corpus["docx"]).json()["id"]
    it = upload(client, corpus["html"]).json()["id"]
    store_id = client.post("/v1/vector_stores", json={"name": "filtered"}).json()["id"]
    client.post(
        f"/v1/vector_stores/{store_id}/files",
        json={"file_id": hr, "attributes": {"dept": "hr", "year": 2024}},
    )
    client.post(
        f"/v1/vector_stores/{store_id}/files",
        json={"file_id": it, "attributes": {"dept": "it", "year": 2025}},
    )
    wait_for_store(client, store_id)
    only_it = search(client, store_id, "paid holiday", filters={"type": "eq", "key": "dept", "value": "it"})
    assert only_it and {h["file_id"] for h in only_it} == {it}
    assert only_it[0]["attributes"] == {"dept": "it", "year": 2025}
    both = search(
        client,
        store_id,
        "paid holiday",
        filters={
            "type": "or",
            "filters": [
                {"type": "gte", "key": "year", "value": 2025},
                {"type": "eq", "key": "dept", "value": "hr"},
            ],
        },
    )
    assert {h["file_id"] for h in both} == {hr, it}
    none = search(client, store_id, "paid holiday", filters={"type": "in", "key": "dept", "value": ["legal"]})
    assert none == []
    assert_error(
        client.post(f"/v1/vector_stores/{store_id}/search", json={"query": "x", "filters": {"type": "like"}}),
        400,
        "filters",
    )
    client.post(f"/v1/vector_stores/{store_id}/files/{hr}", json={"attributes": {"dept": "it"}})
    assert {
        h["file_id"]
        for h in search(client, store_id, "holiday", filters={"type": "eq", "key": "dept", "value": "it"})
    } == {hr, it}


def test_rankers_and_threshold(client, kb):
    store_id, ids = kb
    for ranker in ("auto", "dense", "bm25", "hybrid"):
        hits = search(client, store_id, "Zorblax warehouse access code", ranking_options={"ranker": ranker})
        assert hits[0]["file_id"] == ids["pdf"], ranker
    # The score is the better of cosine and lexical coverage: the chunk holding every query term scores
    # 1.0 and passes any threshold; a query no chunk matches passes none.
    strict = search(
        client, store_id, "Zorblax warehouse access code", ranking_options={"score_threshold": 0.99}
    )
    assert strict and strict[0]["file_id"] == ids["pdf"] and all(h["score"] >= 0.99 for h in strict)
    unrelated = search(
        client, store_id, "quantum chromodynamics gluons", ranking_options={"score_threshold": 0.9}
    )
    assert unrelated == []
    assert_error(
        client.post(
            f"/v1/vector_stores/{store_id}/search",
            json={"query": "x", "ranking_options": {"ranker": "magic"}},
        ),
        400,
        "ranking_options.ranker",
    )
    assert_error(
        client.post(f"/v1/vector_stores/{store_id}/search", json={"query": "x", "max_num_results": 51}),
        400,
        "max_num_results",
    )
    assert_error(client.post(f"/v1/vector_stores/{store_id}/search", json={"query": " "}), 400, "query")


def test_file_batches(client, corpus):
    a, b = (upload(client, corpus[k]).json()["id"] for k in ("csv", "json"))
    store_id = client.post("/v1/vector_stores", json={"name": "batch"}).json()["id"]
    batch = client.post(f"/v1/vector_stores/{store_id}/file_batches", json={"file_ids": [a, b]}).json()
    assert batch["object"] == "vector_store.files_batch" and batch["id"].startswith("vsfb_")
    wait_for_store(client, store_id)
    batch = client.get(f"/v1/vector_stores/{store_id}/file_batches/{batch['id']}").json()
    assert batch["status"] == "completed" and batch["file_counts"]["completed"] == 2
    files = client.get(f"/v1/vector_stores/{store_id}/file_batches/{batch['id']}/files").json()
    assert {f["id"] for f in files["data"]} == {a, b}
    assert_error(
        client.post(f"/v1/vector_stores/{store_id}/file_batches", json={"file_ids": ["file-nope"]}),
        404,
        "file_ids",
    )


def test_store_crud(client):
    created = client.post("/v1/vector_stores", json={"name": "kb", "metadata": {"team": "ops"}}).json()
    assert created["object"] == "vector_store" and created["id"].startswith("vs_")
    assert created["status"] == "completed" and created["file_counts"]["total"] == 0
    updated = client.post(
        f"/v1/vector_stores/{created['id']}", json={"name": "kb2", "metadata": {"a": "b"}}
    ).json()
    assert updated["name"] == "kb2" and updated["metadata"] == {"a": "b"}
    assert created["id"] in {s["id"] for s in client.get("/v1/vector_stores").json()["data"]}
    assert client.delete(f"/v1/vector_stores/{created['id']}").json()["deleted"] is True
    assert_error(client.get(f"/v1/vector_stores/{created['id']}"), 404, "vector_store_id")
    assert_error(
        client.post(
            "/v1/vector_stores",
            json={
                "chunking_strategy": {
                    "type": "static",
                    "static": {"max_chunk_size_tokens": 200, "chunk_overlap_tokens": 150},
                }
            },
        ),
        400,
        "chunking_strategy",
    )
    assert_error(
        client.post("/v1/vector_stores", json={"metadata": {str(i): "x" for i in range(17)}}), 400, "metadata"
    )


def test_files_api(client, corpus):
    created = upload(client, corpus["md"]).json()
    assert created["object"] == "file" and created["id"].startswith("file-")
    assert created["bytes"] == corpus["md"].stat().st_size and created["purpose"] == "assistants"
    assert client.get(f"/v1/files/{created['id']}/content").content == corpus["md"].read_bytes()
    assert created["id"] in {
        f["id"] for f in client.get("/v1/files", params={"purpose": "assistants"}).json()["data"]
    }


def test_bad_uploads(make_client, tmp_path, corpus):
    client = make_client(max_upload_mb=1)
    exe = docs.write(tmp_path / "setup.exe", "MZ\x90\x00 binary")
    error = assert_error(upload(client, exe), 415, "file", "unsupported_file")
    png = tmp_path / "report.pdf"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    error = assert_error(upload(client, png), 415, "file", "unsupported_file")
    assert "image/png" in error["message"]
    assert_error(upload(client, docs.write(tmp_path / "empty.txt", "")), 400, "file")
    assert_error(upload(client, corpus["md"], name="../../etc/passwd.md"), 400, "file", "invalid_filename")
    big = docs.write(tmp_path / "big.txt", "word " * 500_000)
    assert_error(upload(client, big), 413, "file", "file_too_large")
    assert_error(upload(client, corpus["md"], purpose="wizardry"), 400, "purpose")
    fine_tune = upload(
        client, docs.write(tmp_path / "train.jsonl", '{"messages": []}\n'), purpose="fine-tune"
    ).json()
    store_id = client.post("/v1/vector_stores", json={}).json()["id"]
    assert_error(
        client.post(f"/v1/vector_stores/{store_id}/files", json={"file_id": fine_tune["id"]}), 400, "file_id"
    )
    assert client.get("/v1/files").json()["data"] == [fine_tune]  # nothing half-stored


def test_unreadable_documents_fail_and_the_store_keeps_working(client, tmp_path, corpus):
    bad = {
        "encrypted": upload(client, docs.encrypted_pdf(tmp_path / "locked.pdf")).json()["id"],
        "bomb": upload(client, docs.docx_bomb(tmp_path / "bomb.docx")).json()["id"],
        "blank": upload(client, docs.write(tmp_path / "blank.md", "   \n\n  ")).json()["id"],
    }
    good = upload(client, corpus["md"]).json()["id"]
    store_id = client.post("/v1/vector_stores", json={"file_ids": [*bad.values(), good]}).json()["id"]
    store = wait_for_store(client, store_id)
    assert store["file_counts"]["failed"] == 3 and store["file_counts"]["completed"] == 1
    for kind, file_id in bad.items():
        vs_file = client.get(f"/v1/vector_stores/{store_id}/files/{file_id}").json()
        assert vs_file["status"] == "failed", kind
        assert (
            vs_file["last_error"]["code"] in ("invalid_file", "unsupported_file")
            and vs_file["last_error"]["message"]
        )
    errors = {
        k: client.get(f"/v1/vector_stores/{store_id}/files/{f}").json()["last_error"] for k, f in bad.items()
    }
    assert "password" in errors["encrypted"]["message"]
    assert "expands to 300 MB" in errors["bomb"]["message"]
    assert search(client, store_id, "What badge must visitors wear?")[0]["file_id"] == good


def test_rag_chat_prompt_and_citations(client, fake_engine, kb):
    store_id, ids = kb
    fake_engine.enqueue("The code is 7431 [1].")
    body = chat(
        client,
        messages=[{"role": "user", "content": "What is the access code of the Zorblax warehouse?"}],
        file_search={"vector_store_ids": [store_id], "max_num_results": 2},
    ).json()
    prompt = fake_engine.calls[-1].prompt
    instruction = prompt.index("Answer the question using only the numbered sources")
    context = prompt.index("<sources>")
    question = prompt.index("Question: What is the access code")
    assert instruction < context < prompt.index("7431") < prompt.index("</sources>") < question
    annotations = body["choices"][0]["message"]["annotations"]
    assert annotations[0]["type"] == "file_citation" and annotations[0]["file_id"] == ids["pdf"]
    assert annotations[0]["filename"] == "handbook.pdf" and annotations[0]["index"] == 0
    assert "7431" in annotations[0]["quote"] and annotations[0]["chunk_id"]
    assert body["file_search"] == {
        "vector_store_ids": [store_id],
        "query": "What is the access code of the Zorblax warehouse?",
        "results": len(annotations),
    }


def test_rag_chat_plain_prompt_format_keeps_citations_in_the_response(client, fake_engine, kb):
    """`prompt_format: "plain"` puts the sources' text under `Context:` with no numbers and no instruction
    to cite; the response still carries every source as a citation, from retrieval."""
    store_id, ids = kb
    fake_engine.enqueue("7431")
    body = chat(
        client,
        messages=[{"role": "user", "content": "What is the access code of the Zorblax warehouse?"}],
        file_search={"vector_store_ids": [store_id], "max_num_results": 2, "prompt_format": "plain"},
    ).json()
    prompt = fake_engine.calls[-1].prompt
    context, code = prompt.index("Context:\n"), prompt.index("7431")
    question = prompt.index("Question: What is the access code of the Zorblax warehouse?\nAnswer:")
    assert context < code < question
    assert "[1]" not in prompt and "numbered sources" not in prompt and "handbook.pdf" not in prompt
    annotations = body["choices"][0]["message"]["annotations"]
    assert annotations[0]["file_id"] == ids["pdf"] and "7431" in annotations[0]["quote"]
    assert body["file_search"]["results"] == len(annotations)
    bad = chat(
        client,
        messages=[{"role": "user", "content": "What is the code?"}],
        file_search={"vector_store_ids": [store_id], "prompt_format": "fancy"},
    )
    assert bad.status_code == 400 and "prompt_format" in bad.json()["error"]["param"]


def test_auto_prompt_format_follows_model_size(tmp_path, smol_model_dir):
    from server.chat.rag import model_parameters, prompt_format_for

    assert 130e6 < model_parameters(smol_model_dir) < 140e6  # SmolLM2-135M
    assert prompt_format_for("auto", smol_model_dir) == "plain"
    big = tmp_path / "big"
    big.mkdir()
    config = {"hidden_size": 4096, "num_hidden_layers": 32, "vocab_size": 32000, "intermediate_size": 11008}
    (big / "config.json").write_text(json.dumps({**config, "num_attention_heads": 32}))
    assert 6.5e9 < model_parameters(big) < 7e9  # Llama-2-7B's shape
    assert prompt_format_for("auto", big) == "cited"
    assert prompt_format_for("auto", tmp_path / "missing") == "cited"  # unknown size: the usual format
    assert prompt_format_for("plain", big) == "plain"


def test_rag_chat_streams_citations_on_the_final_chunk(client, fake_engine, kb):
    store_id, ids = kb
    status, events = stream_chat(
        client,
        messages=[{"role": "user", "content": "How do I reset my password?"}],
        file_search={"vector_store_ids": [store_id]},
    )
    assert status == 200
    finals = [e for e in events[:-1] if e["choices"] and e["choices"][0]["finish_reason"]]
    [final] = finals
    assert final["choices"][0]["delta"]["annotations"][0]["file_id"] == ids["html"]
    assert final["file_search"]["results"] >= 1


def test_rag_chat_without_relevant_source_says_so(client, fake_engine, kb):
    store_id, _ = kb
    body = chat(
        client,
        messages=[{"role": "user", "content": "Who won the 1966 football world cup?"}],
        file_search={"vector_store_ids": [store_id], "ranking_options": {"score_threshold": 0.9}},
    ).json()
    # Nothing is generated: the answer says the documents do not say (rag_empty_response: auto).
    assert fake_engine.calls == [] and body["choices"][0]["message"]["content"] == EMPTY_RESPONSES["en"]
    assert body["choices"][0]["message"]["annotations"] == []
    assert body["file_search"]["results"] == 0
    assert body["usage"]["completion_tokens"] == len(EMPTY_RESPONSES["en"])  # the fake's tokens: characters
    asked = [{"role": "user", "content": "1966年世界杯冠军是谁？"}]
    threshold = {"vector_store_ids": [store_id], "ranking_options": {"score_threshold": 0.9}}
    status, events = stream_chat(client, messages=asked, file_search=threshold)
    said = "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1] if e["choices"])
    assert status == 200
    assert said == EMPTY_RESPONSES["zh"] and fake_engine.calls == []


def test_rag_chat_errors(client):
    assert_error(
        chat(client, file_search={"vector_store_ids": ["vs_missing"]}),
        404,
        "file_search.vector_store_ids",
        "vector_store_not_found",
    )
    assert_error(chat(client, file_search={"vector_store_ids": []}), 400, "file_search.vector_store_ids")


def test_restart_keeps_stores_indexes_and_statuses(tmp_path, embedder, corpus):
    settings = Settings(data_dir=tmp_path / "data")
    with TestClient(build_app(settings, engine=FakeEngine(), embedder=embedder)) as client:
        file_id = upload(client, corpus["pdf"]).json()["id"]
        store_id = client.post("/v1/vector_stores", json={"file_ids": [file_id]}).json()["id"]
        wait_for_store(client, store_id)
    index_file = settings.data_dir / "indexes" / store_id / embedder.name / "dense.faiss"
    assert index_file.is_file()
    with TestClient(build_app(settings, engine=FakeEngine(), embedder=embedder)) as client:
        assert client.get(f"/v1/vector_stores/{store_id}/files/{file_id}").json()["status"] == "completed"
        assert search(client, store_id, "Zorblax access code")[0]["file_id"] == file_id
    index_file.write_bytes(b"garbage")  # a torn or stale index is rebuilt from SQLite
    with TestClient(build_app(settings, engine=FakeEngine(), embedder=embedder)) as client:
        assert search(client, store_id, "Zorblax access code")[0]["file_id"] == file_id


def test_cancel_batch_stops_ingestion(client, tmp_path, corpus):
    big = docs.write(tmp_path / "big.md", "\n\n".join(f"Paragraph {i} about item {i}." for i in range(4000)))
    big_id = upload(client, big).json()["id"]
    store_id = client.post("/v1/vector_stores", json={"name": "cancel"}).json()["id"]
    batch = client.post(f"/v1/vector_stores/{store_id}/file_batches", json={"file_ids": [big_id]}).json()
    cancelled = client.post(f"/v1/vector_stores/{store_id}/file_batches/{batch['id']}/cancel").json()
    assert cancelled["status"] == "cancelled"
    wait_for_store(client, store_id)
    time.sleep(1)  # a worker mid-embedding notices at its next batch and must not commit
    assert client.get(f"/v1/vector_stores/{store_id}/files/{big_id}").json()["status"] == "cancelled"
    assert search(client, store_id, "Paragraph 12 about item 12") == []


def test_work_queued_while_the_worker_flushes_is_not_lost(client, corpus, monkeypatch):
    """A file attached while the idle worker flushes its indexes (the wake lands mid-flush) is ingested
    without any other wake (it used to wait for an unrelated attach)."""
    from server.vector_stores.protocol import AttachFile

    services = client.app.state.services
    late = upload(client, corpus["md"], name="late.md").json()["id"]
    store_id = client.post("/v1/vector_stores", json={"name": "flush"}).json()["id"]
    flush = services.indexes.flush
    attached = []

    def flush_then_attach() -> None:
        flush()
        if not attached:  # from the worker's own flush thread, exactly where the wake used to be lost
            attached.append(services.vector_stores.attach(store_id, AttachFile(file_id=late)))

    monkeypatch.setattr(services.indexes, "flush", flush_then_attach)
    other = upload(client, corpus["html"]).json()["id"]
    client.post(f"/v1/vector_stores/{store_id}/files", json={"file_id": other})
    # The store can look done between `other`'s commit and the idle flush that attaches `late`: wait for
    # both files, not for the first moment nothing is in progress.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        store = wait_for_store(client, store_id, timeout=60)
        if store["file_counts"]["completed"] == 2:
            break
        time.sleep(0.05)
    assert attached and store["file_counts"]["completed"] == 2
