"""Text that is not valid Unicode (a lone surrogate: legal JSON, refused by every tokenizer and by UTF-8)
is refused once, at the boundary, for every route that takes a JSON body: a 400 naming the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.text import lone_surrogate
from tests.helpers import assert_error

CASES = Path(__file__).resolve().parents[2] / "shared" / "cases" / "kb-ft"


def post_raw(client, path: str, raw: str):
    return client.post(path, content=raw, headers={"content-type": "application/json"})


@pytest.mark.parametrize(
    ("path", "raw", "param"),
    [
        (
            "/v1/chat/completions",
            '{"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "a\\ud800"}]}',
            "messages[0].content",
        ),
        ("/v1/embeddings", '{"model": "all-minilm-l6-v2", "input": ["ok", "b\\udc00"]}', "input[1]"),
        ("/v1/vector_stores", '{"name": "\\ud800"}', "name"),
        ("/v1/profiles", '{"name": "p", "model": "smollm2-135m-instruct", "system": "x\\ud83d"}', "system"),
        ("/v1/feedback", '{"\\ud800": 1}', "body"),
    ],
)
def test_lone_surrogates_are_400_naming_the_field(client, path, raw, param):
    assert_error(post_raw(client, path, raw), 400, param)


def test_search_case_from_a_user_report(client):
    store = client.post("/v1/vector_stores", json={"name": "kb"}).json()["id"]
    raw = (CASES / "search_lone_surrogate.json").read_text()
    assert json.loads(raw)["query"] == "retry \ud800 count"
    assert_error(post_raw(client, f"/v1/vector_stores/{store}/search", raw), 400, "query")
    ok = client.post(f"/v1/vector_stores/{store}/search", json={"query": "retry count 🙂"})
    assert ok.status_code == 200  # surrogate pairs (an emoji) are text


def test_lone_surrogate_paths():
    assert lone_surrogate({"a": [{"b": "ok"}, {"c": "x\udfff"}]}) == "a[1].c"
    assert lone_surrogate({"a": "🙂", "b": [1, None, True]}) is None
    assert lone_surrogate("\ud800") == "body"


def test_training_and_eval_files_refuse_lone_surrogates_by_line(tmp_path):
    from evals.dataset import EvalFileError, load_eval
    from finetune.data import DataError, load_dataset

    train = tmp_path / "train.jsonl"
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    train.write_text(
        json.dumps(good) + "\n" + '{"messages": [{"role": "user", "content": "a\\ud800"}, '
        '{"role": "assistant", "content": "b"}]}\n'
    )
    with pytest.raises(DataError) as error:
        load_dataset(train)
    assert error.value.code == "invalid_text" and error.value.line == 2
    assert "messages[0].content" in str(error.value)
    evals = tmp_path / "eval.jsonl"
    evals.write_text('{"question": "q\\udc00", "reference": "r"}\n')
    with pytest.raises(EvalFileError) as eval_error:
        load_eval(evals)
    assert eval_error.value.line == 1 and "question" in str(eval_error.value)


@pytest.mark.parametrize("encoding", ["utf-16", "gbk"])
def test_training_and_eval_files_decode_as_knowledge_base_files_do(tmp_path, encoding):
    """A UTF-16 (PowerShell's `>`) or GBK training file used to pass upload and then fail the job as
    "not UTF-8"; it is decoded as a knowledge-base file is."""
    from evals.dataset import load_eval
    from finetune.data import load_dataset

    record = {
        "messages": [
            {"role": "user", "content": "你好，请介绍一下"},
            {"role": "assistant", "content": "好的。"},
        ]
    }
    train = tmp_path / "train.jsonl"
    train.write_bytes((json.dumps(record, ensure_ascii=False) + "\n").encode(encoding))
    [conversation] = load_dataset(train)
    assert conversation.messages[-1].content == "好的。"
    evals = tmp_path / "eval.jsonl"
    evals.write_bytes('{"question": "重试次数是多少？", "reference": "七次"}\n'.encode(encoding))
    assert load_eval(evals)[0].question == "重试次数是多少？"
