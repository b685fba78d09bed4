"""OpenAI's `ranking_options.hybrid_search` (`embedding_weight`, `text_weight`): weighted reciprocal rank
fusion of the dense and BM25 rankings, through `/v1/vector_stores/{id}/search`."""

from __future__ import annotations

import pytest

from retrieval.fusion import RRF_K, reciprocal_rank_fusion
from tests.helpers import assert_error, chat
from tests.test_rag_search import upload, wait_for_store

DENSE = [3, 1, 4, 5, 9]
TEXT = [2, 7, 1, 8, 3]


def test_unweighted_fusion_is_unchanged():
    """`weights=None` (and all 1) give the paper's sum of 1 / (k + rank), to the bit."""
    expected: dict[int, float] = {}
    for ranking in (DENSE, TEXT):
        for rank, item in enumerate(ranking, start=1):
            expected[item] = expected.get(item, 0.0) + 1.0 / (RRF_K + rank)
    fused = reciprocal_rank_fusion([DENSE, TEXT])
    assert fused == sorted(expected.items(), key=lambda kv: (-kv[1], kv[0]))
    assert reciprocal_rank_fusion([DENSE, TEXT], weights=(1.0, 1.0)) == fused
    assert reciprocal_rank_fusion([DENSE, TEXT], weights=[1, 1]) == fused


def test_a_zero_weight_leaves_the_other_rankings_order():
    assert [i for i, _ in reciprocal_rank_fusion([DENSE, TEXT], weights=(1.0, 0.0))] == DENSE
    assert [i for i, _ in reciprocal_rank_fusion([DENSE, TEXT], weights=(0.0, 2.5))] == TEXT


def test_weights_scale_each_rankings_share():
    fused = dict(reciprocal_rank_fusion([DENSE, TEXT], k=10, weights=(0.25, 2.0)))
    assert fused[1] == pytest.approx(0.25 / 12 + 2.0 / 13)
    assert fused[9] == pytest.approx(0.25 / 15)
    # Only the ratio matters for the order; the scores scale with the weights.
    doubled = reciprocal_rank_fusion([DENSE, TEXT], k=10, weights=(0.5, 4.0))
    assert [i for i, _ in doubled] == [i for i, _ in sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))]
    assert dict(doubled)[1] == pytest.approx(2 * fused[1])
    # Item 1 (first in a, second in b) against item 2 (the reverse): the heavier ranking's first wins.
    a, b = [1, 2], [2, 1]
    assert reciprocal_rank_fusion([a, b], weights=(2.0, 1.0))[0][0] == 1
    assert reciprocal_rank_fusion([a, b], weights=(1.0, 2.0))[0][0] == 2
    with pytest.raises(ValueError):
        reciprocal_rank_fusion([a, b], weights=(1.0,))


DOCS = {
    "depot.md": "The secret entry PIN for the storage depot is 4471; change it every quarter.",
    "mascot.md": "Zorblax is the name of our team mascot, a purple cartoon alien with three eyes.",
    "boots.md": "Warehouse staff must wear safety boots and a high-visibility vest at all times.",
    "repo.md": "Access to the code repository requires a company GitHub account and two-factor login.",
    "lunch.md": "Lunch is served in the canteen at noon; vegetarian dishes are marked in green.",
    "badge.md": "Visitors collect a temporary badge at reception and return it when they leave.",
}
QUERY = "Zorblax warehouse access code"


@pytest.fixture
def store(make_client, tmp_path):
    client = make_client()
    ids = [upload(client, tmp_path, name, text) for name, text in DOCS.items()]
    store_id = client.post("/v1/vector_stores", json={"name": "weights", "file_ids": ids}).json()["id"]
    wait_for_store(client, store_id)
    return client, store_id


def ranked(client, store_id: str, **ranking_options) -> list[str]:
    body = {"query": QUERY, "max_num_results": len(DOCS), "ranking_options": ranking_options}
    response = client.post(f"/v1/vector_stores/{store_id}/search", json=body)
    assert response.status_code == 200, response.text
    return [hit["filename"] for hit in response.json()["data"]]


def test_hybrid_search_weights_move_hybrid_between_dense_and_bm25(store):
    client, store_id = store
    dense, bm25 = ranked(client, store_id, ranker="dense"), ranked(client, store_id, ranker="bm25")
    assert dense[0] != bm25[0], (dense, bm25)  # the two rankings disagree, so the weights can show
    assert ranked(client, store_id, hybrid_search={"embedding_weight": 1, "text_weight": 0}) == dense
    assert ranked(client, store_id, hybrid_search={"embedding_weight": 0.0, "text_weight": 1.0}) == bm25
    # A small weight only breaks the heavier ranking's ties: its order leads, the other's hits follow.
    leaning = {"embedding_weight": 1, "text_weight": 0.01}
    assert ranked(client, store_id, ranker="auto", hybrid_search=leaning) == dense
    leaning = {"embedding_weight": 0.01, "text_weight": 1}
    assert ranked(client, store_id, ranker="hybrid", hybrid_search=leaning)[: len(bm25)] == bm25
    # Equal weights: plain fusion order, not the relevance order hybrid gives without hybrid_search.
    plain = ranked(client, store_id, hybrid_search={"embedding_weight": 2, "text_weight": 2})
    assert sorted(plain) == sorted(ranked(client, store_id)) and plain != ranked(client, store_id)
    # With another ranker the weights are accepted (as OpenAI does) and change nothing.
    assert (
        ranked(client, store_id, ranker="dense", hybrid_search={"embedding_weight": 0, "text_weight": 1})
        == dense
    )


@pytest.mark.parametrize(
    ("hybrid_search", "param"),
    [
        ({"embedding_weight": -0.5, "text_weight": 1}, "ranking_options.hybrid_search.embedding_weight"),
        ({"embedding_weight": 0, "text_weight": 0}, "ranking_options.hybrid_search"),
        ({"embedding_weight": 1}, "ranking_options.hybrid_search.text_weight"),
        ({"text_weight": 1}, "ranking_options.hybrid_search.embedding_weight"),
        ({"embedding_weight": "1", "text_weight": 1}, "ranking_options.hybrid_search.embedding_weight"),
    ],
)
def test_bad_hybrid_search_weights_are_a_400(client, hybrid_search, param):
    store_id = client.post("/v1/vector_stores", json={"name": "empty"}).json()["id"]
    body = {"query": "x", "ranking_options": {"hybrid_search": hybrid_search}}
    assert_error(client.post(f"/v1/vector_stores/{store_id}/search", json=body), 400, param)
    search = {"vector_store_ids": [store_id], "ranking_options": {"hybrid_search": hybrid_search}}
    assert_error(chat(client, file_search=search), 400, f"file_search.{param}")
