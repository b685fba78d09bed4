"""/v1/embeddings with the real packaged all-MiniLM-L6-v2."""

from __future__ import annotations

import base64

import numpy as np

from tests.helpers import assert_error


def embed(client, **body):
    body.setdefault("model", "all-minilm-l6-v2")
    return client.post("/v1/embeddings", json=body)


def test_embeddings_shape_and_usage(client):
    body = embed(client, input=["The cat sat on the mat.", "猫坐在垫子上。"]).json()
    assert body["object"] == "list" and body["model"] == "all-minilm-l6-v2"
    assert [d["index"] for d in body["data"]] == [0, 1]
    vectors = np.array([d["embedding"] for d in body["data"]])
    assert vectors.shape == (2, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 10


def test_similar_texts_are_closer(client):
    texts = [
        "A kitten is sleeping on the sofa.",
        "A cat naps on the couch.",
        "Quarterly tax filing deadlines.",
    ]
    v = np.array([d["embedding"] for d in embed(client, input=texts).json()["data"]])
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2


def test_base64_matches_float(client):
    as_float = embed(client, input="hello world").json()["data"][0]["embedding"]
    as_b64 = embed(client, input="hello world", encoding_format="base64").json()["data"][0]["embedding"]
    decoded = np.frombuffer(base64.b64decode(as_b64), dtype="<f4")
    assert np.allclose(decoded, as_float, atol=1e-6)


def test_embedding_errors(client):
    assert_error(embed(client, model="nope", input="x"), 404, "model", "model_not_found")
    assert_error(embed(client, input=[]), 400, "input")
    assert_error(embed(client, input=[""]), 400, "input")
    assert_error(embed(client, input=[1, 2, 3]), 400, "input", "unsupported_parameter")
    assert_error(embed(client, input="x", dimensions=128), 400, "dimensions")
    assert_error(embed(client, input="x", encoding_format="int8"), 400, "encoding_format")
    assert_error(client.post("/v1/embeddings", json={"model": "all-minilm-l6-v2"}), 400, "input")
