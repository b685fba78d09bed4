"""Comparison metrics and statistics against known values, Chinese included."""

from __future__ import annotations

import json

import pytest

from evals import metrics as m
from evals.stats import mean_ci, paired


def test_squad_normalisation_and_exact_match():
    assert m.normalize("The  Capital, of France!") == "capital of france"
    assert m.exact_match("Paris.", ["paris"]) == 1.0
    assert m.exact_match("It is Paris", ["Paris"]) == 0.0
    assert m.exact_match("北京。", ["北京"]) == 1.0


def test_f1_known_values():
    # articles dropped: ["cat", "sat"] vs ["cat", "sat", "on", "mat"] -> P = 1, R = 0.5
    assert m.f1("the cat sat", ["the cat sat on the mat"]) == pytest.approx(2 / 3)
    assert m.f1("blue", ["red", "blue"]) == 1.0
    assert m.f1("nothing shared", ["completely different"]) == 0.0
    # CJK: characters are tokens. "北京是首都" vs "首都是北京": same 5 characters.
    assert m.f1("北京是首都", ["首都是北京"]) == 1.0
    assert m.f1("北京", ["北京市"]) == pytest.approx(2 * 1 * (2 / 3) / (1 + 2 / 3))


def test_tokens_mix_cjk_and_latin():
    assert m.tokens("Zephyr X9 电池容量4200mAh") == ["zephyr", "x9", "电", "池", "容", "量", "4200mah"]


def test_rouge_l_known_values():
    # LCS of "a b c d" and "a c d e" is "a c d" (3): P = 3/4, R = 3/4.
    assert m.rouge_l("w1 w2 w3 w4", ["w1 w3 w4 w5"]) == pytest.approx(0.75)
    assert m.rouge_l("我爱北京", ["我在北京"]) == pytest.approx(0.75)
    assert m.rouge_l("", ["x"]) == 0.0


def test_retrieval_rank_hit_and_mrr():
    sources = [{"file_id": "f1", "quote": "about cats"}, {"file_id": "f2", "quote": "The code is 7431."}]
    assert m.source_rank(sources, "f2", None) == 2
    assert m.source_rank(sources, None, "code is 7431") == 2
    assert m.source_rank(sources, "f9", None) is None
    assert m.hit_at_k(2, 1) == 0.0 and m.hit_at_k(2, 4) == 1.0
    assert m.mrr(2) == 0.5 and m.mrr(None) == 0.0


PASSAGE = (
    "The Harbour Bridge was designed over many years by a team of engineers led by a chief designer who "
    "had worked on several earlier bridges across the region. Construction began in the spring after a "
    "long public debate about the cost. The bridge opened to traffic on 19 March 1932, after eight years "
    "of work. It carries rail, road and foot traffic between the business district and the north shore, "
    "and it remains one of the most photographed structures in the country."
)


def chunks(text: str, size: int, overlap: int = 0) -> list[str]:
    words = text.split()
    step = size - overlap
    return [" ".join(words[i : i + size]) for i in range(0, len(words), step)]


def test_a_reference_passage_longer_than_a_chunk_matches_the_chunk_with_its_answer():
    """The reference paragraph is longer than any chunk (and than a 400-character citation quote): the
    chunk holding the answer-bearing sentence is the hit, at its rank."""
    assert len(PASSAGE) > 400
    parts = chunks(PASSAGE, 25)
    answer_chunk = next(i for i, c in enumerate(parts) if "1932" in c)
    sources = [{"file_id": "other", "text": "Unrelated text about tides and harbours."}] + [
        {"file_id": "doc", "text": c} for c in parts
    ]
    assert m.source_rank(sources, None, PASSAGE, ["19 March 1932"]) == 2 + answer_chunk
    # Without a reference answer the whole passage is the span: any chunk lying inside it matches.
    assert m.source_rank(sources, None, PASSAGE) == 2
    assert m.source_rank([{"text": PASSAGE + " More text."}], None, PASSAGE) == 1
    # A chunk sharing only a few common words in a row is no match.
    assert m.source_rank([{"text": "It carries rail and cargo."}], None, PASSAGE) is None


def test_an_answer_sentence_split_across_two_chunks_still_matches():
    sentence = "The bridge opened to traffic on 19 March 1932, after eight years of work."
    head, tail = sentence[:30], sentence[30:]  # cut mid-word, as a character splitter would
    sources = [{"text": "Before. " + head}, {"text": tail + " After."}]
    rank = m.source_rank(sources, None, PASSAGE, ["19 March 1932"])
    assert rank == 2  # the chunk holding the larger part (with the answer) of the sentence


def test_an_absent_reference_never_matches_and_whitespace_does_not_matter():
    sources = [{"text": c} for c in chunks("Tides rise and fall twice a day along this coast. " * 5, 12)]
    assert m.source_rank(sources, None, PASSAGE, ["19 March 1932"]) is None
    spaced = [{"text": "the   bridge opened\nto traffic on 19 March\t1932 , after eight years of work"}]
    assert m.source_rank(spaced, None, PASSAGE, ["19 March 1932"]) == 1
    # A citation quote is only read when no full text is given.
    assert m.source_rank([{"quote": "x", "text": PASSAGE}], None, PASSAGE, ["1932"]) == 1


def test_chinese_reference_matches_per_character():
    passage = "长城是中国古代的军事防御工程。它的总长度超过两万公里。修建历时两千多年。"
    sources = [{"text": "无关内容。"}, {"text": "它的总长度超过两万公里，修建"}]
    assert m.source_rank(sources, None, passage, ["两万公里"]) == 2


def test_faithfulness_and_abstention():
    assert m.faithfulness("The code is 7431", ["Warehouse code: 7431"]) == 1.0  # 'code', '7431' supported
    assert m.faithfulness("The code is 9999", ["Warehouse code: 7431"]) == 0.5
    assert m.faithfulness("anything", []) is None
    assert m.abstained("I don't know.") == 1.0
    assert m.abstained("The documents do not contain the answer.") == 1.0
    assert m.abstained("文档中没有提到这个问题。") == 1.0
    assert m.abstained("Paris is the capital.") == 0.0


def test_bootstrap_ci_contains_the_mean_and_shrinks_with_n():
    small = mean_ci([0, 1] * 5)
    large = mean_ci([0, 1] * 500)
    assert small["ci_low"] < 0.5 < small["ci_high"] and large["mean"] == 0.5
    assert large["ci_high"] - large["ci_low"] < small["ci_high"] - small["ci_low"]
    assert mean_ci([1, 1, 1]) == {"mean": 1.0, "ci_low": 1.0, "ci_high": 1.0}


def test_paired_difference_is_real_or_noise():
    better = paired([1.0] * 30, [0.0] * 25 + [1.0] * 5)
    assert better["wins"] == 25 and better["ties"] == 5 and better["losses"] == 0
    assert better["ci_low"] > 0 and better["p_value"] < 0.001
    noise = paired([1, 0] * 10, [0, 1] * 10)
    assert noise["ci_low"] < 0 < noise["ci_high"] and noise["p_value"] > 0.5
    with pytest.raises(ValueError):
        paired([1, 2], [1])


@pytest.mark.parametrize(
    "answer",
    [
        "The answer to this question is not available in the knowledge base.",
        "The company that cleans the offices is not specified.",
        "That is not given in the documents.",
    ],
)
def test_common_abstentions_are_abstentions(answer):
    from evals.metrics import abstained

    assert abstained(answer) == 1.0


@pytest.mark.parametrize("field", ["reference_quote", "reference_file_id"])
def test_reference_source_fields_must_be_text(tmp_path, field):
    """A number or list where a passage or file id belongs is a line-numbered error at upload, not a
    failed run (or a silent hit@k of 0) later."""
    from evals.dataset import EvalFileError, load_eval

    for row in (
        {"question": "q?", "reference": "a", field: 123},
        {"item": {"question": "q?", "reference": "a", field: ["x"]}},
    ):
        path = tmp_path / "e.jsonl"
        path.write_text(json.dumps({"question": "ok?", "reference": "b"}) + "\n" + json.dumps(row) + "\n")
        with pytest.raises(EvalFileError, match=rf"line 2: .*{field}.* must be a string"):
            load_eval(path)
