"""Comparison metrics and statistics against known values, Chinese included."""

from __future__ import annotations

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
