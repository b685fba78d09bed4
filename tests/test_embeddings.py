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
    # Strict types, as OpenAI's: a boolean or a numeric string is not an integer.
    assert_error(embed(client, input="x", truncate_prompt_tokens=True), 400, "truncate_prompt_tokens")
    assert_error(embed(client, input="x", dimensions="384"), 400, "dimensions")
    assert_error(embed(client, input=5), 400, "input")


# Two inputs that share a ~400-token prefix and differ only after all-MiniLM-L6-v2's 256-token window.
PREFIX = "The quick brown fox jumps over the lazy dog. " * 40
LONG_A = PREFIX + "Quantum chromodynamics describes the strong interaction between quarks and gluons."
LONG_B = PREFIX + "My grandmother's apple pie recipe uses cinnamon, nutmeg and a buttery crust."


def test_input_over_the_window_is_a_400_naming_the_limit(client):
    error = assert_error(embed(client, input=[LONG_A, LONG_B]), 400, "input", "context_length_exceeded")
    assert "256" in error["message"] and "input[0]" in error["message"]
    assert_error(embed(client, input=["short", LONG_B]), 400, "input")
    window_words = "word " * 254  # 254 tokens + [CLS] + [SEP] = exactly the window
    assert embed(client, input=window_words).json()["usage"]["prompt_tokens"] == 256
    assert_error(embed(client, input=window_words + "word"), 400, "input")


def test_truncate_prompt_tokens_opts_into_truncation(client):
    body = embed(client, input=[LONG_A, LONG_B, "short text"], truncate_prompt_tokens=32).json()
    tokens = embed(client, input="short text").json()["usage"]["prompt_tokens"]
    assert body["usage"]["prompt_tokens"] == 32 + 32 + tokens  # what was embedded, not what was sent
    a, b, short = (np.array(d["embedding"]) for d in body["data"])
    assert np.allclose(a, b, atol=1e-5)  # asked for: only the shared beginning is embedded
    alone = np.array(embed(client, input="short text").json()["data"][0]["embedding"])
    assert np.allclose(short, alone, atol=1e-5)  # inputs under the limit are not changed
    whole = embed(client, input=[LONG_A], truncate_prompt_tokens=-1).json()
    assert whole["usage"]["prompt_tokens"] == 256
    assert_error(embed(client, input="x", truncate_prompt_tokens=257), 400, "truncate_prompt_tokens")
    assert_error(embed(client, input="x", truncate_prompt_tokens=2), 400, "truncate_prompt_tokens")
    assert_error(embed(client, input="x", truncate_prompt_tokens=-2), 400, "truncate_prompt_tokens")


def test_chat_model_is_not_an_embedding_model(client):
    error = assert_error(
        embed(client, model="smollm2-135m-instruct", input="x"), 400, "model", "model_not_supported"
    )
    assert "not an embedding model" in error["message"]
    assert_error(embed(client, model="nope", input="x"), 404, "model", "model_not_found")


def test_embedding_nulls_and_bad_text(client):
    body = embed(client, input="hello", encoding_format=None, dimensions=None, user=None).json()
    assert len(body["data"][0]["embedding"]) == 384
    raw = '{"model": "all-minilm-l6-v2", "input": "a\\ud800b"}'
    response = client.post("/v1/embeddings", content=raw, headers={"content-type": "application/json"})
    assert_error(response, 400, "input")
