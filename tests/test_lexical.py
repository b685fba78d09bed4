"""One BM25 tokenizer for chunks and queries, whatever the script: identifiers, C++, versions, katakana."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from retrieval.lexical import terms
from server.storage.db import Database
from server.storage.migrations import STEPS, migrate

CROSSLANG = Path(__file__).resolve().parents[2] / "shared" / "cases" / "kb-ft" / "crosslang"


def ingested_store(client, paths: list[Path]) -> str:
    """A knowledge base holding `paths`, every file ingested (or the test fails)."""
    ids = []
    for path in paths:
        with open(path, "rb") as f:
            upload = client.post("/v1/files", data={"purpose": "assistants"}, files={"file": (path.name, f)})
        ids.append(upload.json()["id"])
    store = client.post("/v1/vector_stores", json={"file_ids": ids}).json()["id"]
    for _ in range(400):
        if client.get(f"/v1/vector_stores/{store}").json()["file_counts"]["completed"] == len(ids):
            return store
        time.sleep(0.05)
    raise AssertionError(f"not all of {len(ids)} files were ingested")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "参数 max_retry_count 控制失败任务的重试次数",
            {"max_retry_count", "max", "retry", "count", "重试", "次数"},
        ),
        ("本项目的核心引擎使用 C++ 编写", {"c++", "引擎"}),
        ("設定ファイルでサーバーのポート番号を8443に変更", {"サーバー", "ファイル", "ポート", "8443"}),
        ("当前稳定版本为 2.4.1", {"2.4.1", "版本"}),
        ("Files are UTF-8; see C# and F#.", {"utf-8", "utf", "c#", "f#", "files"}),
        ("서버 설정 café", {"서버", "설정", "café"}),
    ],
)
def test_terms_keep_what_a_query_would_name(text, expected):
    assert expected <= set(terms(text))


@pytest.mark.parametrize("query", ["max_retry_count", "C++", "サーバー", "バックアップ", "2.4.1", "重试次数"])
def test_a_query_and_a_chunk_that_holds_it_share_its_terms(query):
    """Whatever else the chunk holds (Han around it, or not), the query's terms are among the chunk's."""
    for chunk in (f"see {query} here", f"请参见{query}的说明", f"{query}を確認してください"):
        assert set(terms(query)) <= set(terms(chunk)), (query, chunk)


def test_crosslang_case_bm25_finds_each_term(client):
    """../shared/cases/kb-ft/crosslang: each term's file is BM25's first hit, and hybrid's."""
    store = ingested_store(client, sorted(CROSSLANG.glob("*.txt")))
    expected = {
        "max_retry_count": "cfg_retry.txt",
        "C++": "lang_cpp.txt",
        "サーバー": "ja_server.txt",
        "バックアップ": "ja_backup.txt",
        "重试次数": "cfg_retry.txt",
        "2.4.1": "ver.txt",
    }
    for ranker in ("bm25", "hybrid"):
        for query, filename in expected.items():
            body = {"query": query, "max_num_results": 3, "ranking_options": {"ranker": ranker}}
            hits = client.post(f"/v1/vector_stores/{store}/search", json=body).json()["data"]
            assert hits and hits[0]["filename"] == filename, (ranker, query, [h["filename"] for h in hits])


def test_step_3_recomputes_stored_terms(tmp_path):
    """Chunks indexed with the old tokenizer get today's terms, so old knowledge bases find identifiers."""
    path = tmp_path / "ragtune.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, path, STEPS[:2])
    conn.execute("INSERT INTO vector_stores (id, created_at, last_active_at) VALUES ('vs_1', 1, 1)")
    conn.execute(
        "INSERT INTO chunks (vector_store_id, sha256, seq, text, tokens, terms, embedding) "
        "VALUES ('vs_1', 'h', 0, '参数 max_retry_count 控制重试次数', 5, '[\"max\",\"_\",\"retry\"]', x'00')"
    )
    conn.close()
    db = Database(path)
    stored = db.one("SELECT terms FROM chunks")["terms"]
    db.close()
    assert '"max_retry_count"' in stored and '"重试"' in stored


def test_chat_keeps_a_strong_lexical_hit_the_cosine_gate_dropped(make_client):
    """../shared/cases/kb-ft/parts_table.md: the row of part P-1077 (unit price 62.75) reaches the prompt
    although its cosine to the question is below RAG_SCORE_THRESHOLD: the gate reads the fused relevance."""
    from server.engines.fake import FakeEngine

    engine = FakeEngine(max_model_len=8192)
    client = make_client(engine)
    store = ingested_store(client, [CROSSLANG.parent / "parts_table.md"])
    question = [{"role": "user", "content": "What is the unit price of part P-1077?"}]
    body = {
        "model": "smollm2-135m-instruct",
        "messages": question,
        "file_search": {"vector_store_ids": [store]},
    }
    answer = client.post("/v1/chat/completions", json=body).json()
    assert "| P-1077 |" in engine.calls[-1].prompt and "62.75" in engine.calls[-1].prompt
    cited = [
        a
        for a in answer["choices"][0]["message"]["annotations"]
        if "P-1077" in a["quote"] or "P-107" in a["quote"]
    ]
    assert cited and all(a["score"] >= 0.25 for a in cited)


def test_hybrid_hits_come_in_order_of_relevance(make_client):
    """parts_table.md: fusion chose the intro chunk first (middling in both rankings) and the P-1077 rows
    (score 1.0) below it, so a one-source chat saw only the intro and answered 15.50. Hybrid hits are
    returned by score; the one source is now the P-1077 row, with its table header."""
    from server.engines.fake import FakeEngine

    engine = FakeEngine(max_model_len=8192)
    client = make_client(engine)
    store = ingested_store(client, [CROSSLANG.parent / "parts_table.md"])
    question = "What is the unit price of part P-1077?"
    hits = client.post(f"/v1/vector_stores/{store}/search", json={"query": question}).json()["data"]
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True) and "| P-1077 |" in hits[0]["content"][0]["text"]
    body = {
        "model": "smollm2-135m-instruct",
        "messages": [{"role": "user", "content": question}],
        "file_search": {"vector_store_ids": [store], "max_num_results": 1},
    }
    client.post("/v1/chat/completions", json=body)
    prompt = engine.calls[-1].prompt
    assert "| P-1077 |" in prompt and "Unit price" in prompt
