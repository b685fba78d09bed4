"""OpenAI Evals' testing_criteria on comparisons: graders, templates, `item` rows in eval files. No model."""

from __future__ import annotations

import json

import pytest

from evals.dataset import EvalFileError, load_eval
from evals.openai_evals import (
    METRICS,
    CriteriaError,
    MissingFieldError,
    TemplateError,
    check_templates,
    criteria_metrics,
    parse_testing_criteria,
    render,
    similarity,
)

ANSWER = "{{sample.output_text}}"


def string_check(operation: str, reference: str = "{{item.reference}}", **extra) -> dict:
    return {"type": "string_check", "input": ANSWER, "reference": reference, "operation": operation, **extra}


def text_similarity(metric: str, threshold: float = 0.5, **extra) -> dict:
    return {
        "type": "text_similarity",
        "input": ANSWER,
        "reference": "{{item.reference}}",
        "evaluation_metric": metric,
        "pass_threshold": threshold,
        **extra,
    }


def grade(spec: dict, answer: str, item: dict | None = None) -> dict[str, float]:
    (grader,) = parse_testing_criteria([spec])
    return grader.grade(item or {"reference": "Paris"}, answer)


# --- string_check: OpenAI's eq / ne / like / ilike, compared as rendered -------------------------------


@pytest.mark.parametrize(
    ("operation", "answer", "passed"),
    [
        ("eq", "Paris", 1.0),
        ("eq", "paris", 0.0),  # case-sensitive
        ("eq", "Paris ", 0.0),  # no trimming: exact equality
        ("ne", "Lyon", 1.0),
        ("ne", "Paris", 0.0),
        ("like", "It is Paris.", 1.0),  # the reference contained in the input
        ("like", "It is PARIS.", 0.0),
        ("like", "Par", 0.0),  # the input inside the reference is no match
        ("ilike", "It is PARIS.", 1.0),
        ("ilike", "It is Lyon.", 0.0),
    ],
)
def test_string_check_operations(operation: str, answer: str, passed: float) -> None:
    assert grade(string_check(operation), answer) == {"passed": passed, "score": passed}


def test_ilike_folds_case_beyond_ascii() -> None:
    assert grade(string_check("ilike", "STRASSE"), "die Straße")["passed"] == 1.0  # casefold: ß -> ss
    assert grade(string_check("like", "STRASSE"), "die Straße")["passed"] == 0.0
    assert grade(string_check("ilike", "ÉCOLE"), "une école")["passed"] == 1.0


# --- text_similarity: each supported metric on known pairs ---------------------------------------------

CAPITAL = ("The capital of France is Paris.", "Paris is the capital of France.")
CAT = ("the cat sat on the mat", "the cat is on the mat")
CHINESE = ("巴黎是法国的首都", "法国的首都是巴黎")
# Values as rapidfuzz 3.14, sacrebleu 2.6, NLTK 3.10 and rouge-score 0.1.2 compute them; the CAT ones by
# hand too: rouge_1 5/6 shared words, rouge_2 3/5 shared bigrams, gleu min(P, R) over 1-4-grams = 9/18,
# fuzzy_match Indel 1 - 3/43.
EXPECTED = {
    CAPITAL: {
        "fuzzy_match": 21 / 31,
        "bleu": 0.29071536848410967,
        "gleu": 9 / 22,
        "rouge_1": 1.0,
        "rouge_2": 0.6,
        "rouge_3": 0.5,
        "rouge_4": 1 / 3,
        "rouge_5": 0.0,
        "rouge_l": 2 / 3,
    },
    CAT: {
        "fuzzy_match": 40 / 43,
        "bleu": 0.3799178428257963,
        "gleu": 0.5,
        "rouge_1": 5 / 6,
        "rouge_2": 0.6,
        "rouge_3": 0.25,
        "rouge_4": 0.0,
        "rouge_5": 0.0,
        "rouge_l": 5 / 6,
    },
    # CJK: one token per character (rouge-score's own tokens would drop them all and score 0)
    CHINESE: {
        "fuzzy_match": 0.625,
        "bleu": 0.6147881529512649,
        "gleu": 9 / 13,
        "rouge_1": 1.0,
        "rouge_2": 5 / 7,
        "rouge_3": 0.5,
        "rouge_4": 0.4,
        "rouge_5": 0.25,
        "rouge_l": 0.625,
    },
}


@pytest.mark.parametrize("pair", list(EXPECTED), ids=["capital", "cat", "chinese"])
@pytest.mark.parametrize("metric", list(METRICS))
def test_similarity_metrics_on_known_pairs(pair: tuple[str, str], metric: str) -> None:
    answer, reference = pair
    assert similarity(metric, answer, reference) == pytest.approx(EXPECTED[pair][metric], abs=1e-9)


@pytest.mark.parametrize("metric", list(METRICS))
def test_identical_texts_score_one(metric: str) -> None:
    text = "Set max_retries to 3 in the client configuration file"  # at least 5 tokens, for rouge_5
    assert similarity(metric, text, text) == pytest.approx(1.0)
    assert similarity(metric, "重试次数是三次", "重试次数是三次") == pytest.approx(1.0)


def test_short_and_empty_texts() -> None:
    # rouge-score: no bigram in a one-word text, so rouge_2 of "Paris" against itself is 0
    assert similarity("rouge_1", "Paris", "Paris") == 1.0 and similarity("rouge_2", "Paris", "Paris") == 0.0
    for metric in METRICS:
        assert similarity(metric, "Paris", "") == 0.0 and similarity(metric, "", "Paris") == 0.0
        assert type(similarity(metric, "", "")) is float


def test_text_similarity_passes_at_or_above_the_threshold() -> None:
    answer, reference = CAT
    item = {"reference": reference}
    assert grade(text_similarity("rouge_2", 0.6), answer, item) == {
        "passed": 1.0,
        "score": pytest.approx(0.6),
    }
    assert grade(text_similarity("rouge_2", 0.61), answer, item)["passed"] == 0.0
    assert grade(text_similarity("fuzzy_match", 1.0), reference, item) == {"passed": 1.0, "score": 1.0}


# --- parsing testing_criteria: what is refused, and how it says so -------------------------------------


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        (
            {"type": "score_model", "name": "judge", "input": [], "model": "o3-mini"},
            ["'score_model'", "judge"],
        ),
        ({"type": "label_model", "name": "tone"}, ["'label_model'", "tone"]),
        ({"type": "python", "name": "code", "source": "def grade(s, i): return 1"}, ["'python'", "code"]),
        ({"type": "multi", "name": "mix", "graders": {}}, ["'multi'", "mix"]),
        ({"type": "regex", "name": "re"}, ["unknown grader type 'regex'"]),
        (text_similarity("meteor", name="m"), ["'meteor'", "WordNet", "fuzzy_match, bleu, gleu"]),
        (text_similarity("cosine", name="c"), ["'cosine'", "text-embedding-3-large", "rouge_l"]),
        (text_similarity("chrf", name="c"), ["unknown evaluation_metric 'chrf'", "rouge_5"]),
        (string_check("regex", name="s"), ["'operation' must be one of eq, ne, like, ilike"]),
        (text_similarity("bleu", threshold="0.5", name="t"), ["'pass_threshold' must be a number"]),
        (text_similarity("bleu", threshold=True, name="t"), ["'pass_threshold' must be a number"]),
        (text_similarity("bleu", threshold=80, name="t"), ["between 0 and 1"]),
        (
            {**text_similarity("bleu", name="t"), "pass_threshold": None},
            ["'pass_threshold' must be a number"],
        ),
        (string_check("eq", reference=None, name="s"), ["'reference' must be a string"]),
        (
            {"type": "string_check", "name": "s", "reference": "x", "operation": "eq"},
            ["'input' must be a string"],
        ),
        (
            string_check("eq", reference="{{sample.output_json.answer}}", name="s"),
            ["sample.output_json.answer"],
        ),
        (string_check("eq", reference="{{ item }}", name="s"), ["{{item}}", "not a supported placeholder"]),
        (string_check("eq", reference="{{items.reference}}", name="s"), ["items.reference"]),
        (string_check("eq", reference="{{item.a..b}}", name="s"), ["item.a..b"]),
    ],
)
def test_refused_graders_name_index_name_and_problem(spec: dict, words: list[str]) -> None:
    criteria = [string_check("eq", name="first"), spec]
    with pytest.raises(CriteriaError) as error:
        parse_testing_criteria(criteria)
    message = str(error.value)
    assert message.startswith(f"testing_criteria[1] ('{spec.get('name')}')")
    for word in words:
        assert word in message


def test_refused_types_list_the_supported_ones() -> None:
    with pytest.raises(CriteriaError, match="supported: string_check, text_similarity"):
        parse_testing_criteria([{"type": "score_model", "name": "judge"}])


@pytest.mark.parametrize(
    ("criteria", "text"),
    [
        ([], "non-empty list"),
        ({"type": "string_check"}, "non-empty list"),
        (["eq"], "testing_criteria[0] must be a JSON object"),
        ([string_check("eq", name="")], "testing_criteria[0]: 'name' must be a non-empty string"),
        (
            [string_check("eq", name="a"), string_check("ne", name="a")],
            "testing_criteria[1] ('a'): the metric name 'a'",
        ),
        # a similarity grader reports name and name_score: neither may clash
        (
            [text_similarity("bleu", name="b"), string_check("eq", name="b_score")],
            "'b_score' is already used by",
        ),
    ],
)
def test_criteria_shape_and_names(criteria, text: str) -> None:
    with pytest.raises(CriteriaError) as error:
        parse_testing_criteria(criteria)
    assert text in str(error.value)


def test_reserved_names_are_refused() -> None:
    with pytest.raises(
        CriteriaError, match=r"testing_criteria\[0\] \('f1'\).*'f1' is already a metric of the"
    ):
        parse_testing_criteria([string_check("eq", name="f1")], reserved=("exact_match", "f1"))


def test_names_default_to_type_and_index_and_unknown_keys_are_ignored() -> None:
    graders = parse_testing_criteria(
        [
            string_check("eq", id="grader-1"),
            text_similarity("rouge_l"),
            string_check("ilike", name="contains"),
        ]
    )
    assert [g.name for g in graders] == ["string_check_0", "text_similarity_1", "contains"]
    assert graders[1].metric == "rouge_l" and graders[1].pass_threshold == 0.5
    assert graders[1].label == "testing_criteria[1] ('text_similarity_1')"


def test_criteria_metrics_per_grader() -> None:
    graders = parse_testing_criteria(
        [string_check("ilike", name="contains"), text_similarity("rouge_1", 0.9, name="overlap")]
    )
    answer, reference = CAT
    assert criteria_metrics(graders, {"reference": "MAT"}, answer) == {
        "contains": 1.0,
        "overlap": 0.0,
        "overlap_score": pytest.approx(2 / 7),  # 1 shared word: P 1/6, R 1
    }
    assert criteria_metrics(graders, {"reference": reference}, answer) == {
        "contains": 0.0,
        "overlap": 0.0,
        "overlap_score": pytest.approx(5 / 6),
    }


# --- templates --------------------------------------------------------------------------------------------


def test_render_fills_item_fields_and_the_answer() -> None:
    item = {
        "reference": "Paris",
        "meta": {"city": {"name": "Lyon"}, "tags": ["a", "b"]},
        "n": 3,
        "none": None,
    }
    assert render("{{item.reference}}", item, "x") == "Paris"
    assert render("{{  item.meta.city.name\t}} / {{sample.output_text }}!", item, "ans") == "Lyon / ans!"
    assert render("{{item.meta.tags.1}}{{item.meta.tags[0]}}", item, "") == "ba"
    assert render("{{item.n}} {{item.none}} {{item.meta.tags}}", item, "") == '3 null ["a", "b"]'
    assert render("no placeholders {{}", item, "") == "no placeholders {{}"
    assert render("{{item.reference}}", {"reference": "首都"}, "") == "首都"


@pytest.mark.parametrize("template", ["{{item.missing}}", "{{item.meta.city.zip}}", "{{item.meta.tags.5}}"])
def test_render_missing_field(template: str) -> None:
    item = {"meta": {"city": {"name": "Lyon"}, "tags": ["a"]}}
    with pytest.raises(MissingFieldError) as error:
        render(template, item, "")
    assert isinstance(error.value, KeyError)
    path = template.removeprefix("{{item.").removesuffix("}}")
    assert error.value.path == path
    assert str(error.value) == f"the item has no field '{path}' (used as {{{{item.{path}}}}})"


def test_render_refuses_other_sample_fields() -> None:
    with pytest.raises(TemplateError, match="only {{sample.output_text}}"):
        render("{{sample.output_json}}", {}, "")


# --- eval files in OpenAI's shape -------------------------------------------------------------------------


def write(tmp_path, *rows) -> object:
    path = tmp_path / "eval.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows))
    return path


def test_item_rows_question_and_reference_keys(tmp_path) -> None:
    rows = [
        {"item": {"question": " Capital? ", "reference": "Paris"}},
        {"item": {"input": "Capital?", "ideal": ["Paris", "paris"]}},
        {"item": {"prompt": "Capital?", "answer": "Paris", "reference_file_id": "file-1"}},
        {"item": {"input": [{"role": "user", "content": "Capital?"}], "expected": "Paris"}},
        {
            "item": {
                "input": [
                    {"role": "user", "content": [{"type": "input_text", "text": "Capi"}, {"text": "tal?"}]}
                ],
                "reference": "Paris",
                "reference_quote": "Paris is the capital.",
            }
        },
        {
            "item": {"question": "Q", "input": "not this", "reference": "R", "ideal": "not this"},
            "sample": {"x": 1},
        },
    ]
    items = load_eval(write(tmp_path, *rows))
    assert [i.question for i in items] == ["Capital?"] * 5 + ["Q"]
    assert [i.references for i in items] == [
        ["Paris"],
        ["Paris", "paris"],
        ["Paris"],
        ["Paris"],
        ["Paris"],
        ["R"],
    ]
    assert items[2].reference_file_id == "file-1" and items[4].reference_quote == "Paris is the capital."
    assert [i.line for i in items] == [1, 2, 3, 4, 5, 6]
    assert items[1].extra == {"item": rows[1]["item"]}
    assert items[5].extra == {"item": rows[5]["item"], "sample": {"x": 1}}


def test_mixed_file_keeps_flat_rows_as_before(tmp_path) -> None:
    flat = {"question": "Retries?", "answer": "3", "reference_quote": "Retries: 3.", "item": "a field"}
    items = load_eval(write(tmp_path, flat, "", {"item": {"input": "Capital?", "reference": "Paris"}}))
    assert [(i.question, i.references, i.line) for i in items] == [
        ("Retries?", ["3"], 1),
        ("Capital?", ["Paris"], 3),
    ]
    assert items[0].reference_quote == "Retries: 3." and items[0].extra == {"item": flat}


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"item": "Capital?"}, "line 2: 'item' must be a JSON object"),
        (
            {"item": {"reference": "Paris"}},
            "line 2: an 'item' row needs its question in 'item.question', 'item.input'",
        ),
        ({"item": {"input": "  ", "reference": "Paris"}}, "line 2: 'item.input' must be a non-empty string"),
        ({"item": {"prompt": 7, "reference": "Paris"}}, "line 2: 'item.prompt' must be a non-empty string"),
        (
            {"item": {"input": "Capital?"}},
            "line 2: an 'item' row needs its reference answer in 'item.reference'",
        ),
        (
            {"item": {"input": "Capital?", "ideal": []}},
            "line 2: 'item.ideal' must be a string or a non-empty list",
        ),
        (
            {"item": {"input": "Capital?", "answer": 42}},
            "line 2: 'item.answer' must be a string or a non-empty list",
        ),
        (
            {
                "item": {
                    "input": [
                        {"role": "system", "content": "Be brief."},
                        {"role": "user", "content": "Capital?"},
                    ],
                    "reference": "Paris",
                }
            },
            "line 2: 'item.input' holds 2 chat messages; only single-question items (one user message)",
        ),
        ({"item": {"input": [], "reference": "P"}}, "line 2: 'item.input' holds 0 chat messages"),
        (
            {"item": {"input": [{"role": "assistant", "content": "Hi"}], "reference": "P"}},
            "line 2: the message in 'item.input' must be an object with role 'user' (got 'assistant')",
        ),
        (
            {
                "item": {
                    "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}],
                    "reference": "P",
                }
            },
            "line 2: the message in 'item.input' holds a part that is not text (['input_image'])",
        ),
        ({"item": {"input": [{"role": "user"}], "reference": "P"}}, "must have a string 'content'"),
    ],
)
def test_item_row_errors(tmp_path, row: dict, message: str) -> None:
    path = write(tmp_path, {"item": {"input": "ok", "reference": "ok"}}, row)
    with pytest.raises(EvalFileError) as error:
        load_eval(path)
    assert message in str(error.value)
    assert error.value.line == 2


def test_flat_row_messages_are_unchanged(tmp_path) -> None:
    with pytest.raises(EvalFileError, match=r"^line 1: 'question' must be a non-empty string$"):
        load_eval(write(tmp_path, {"reference": "Paris"}))
    with pytest.raises(
        EvalFileError, match=r"^line 1: 'reference' must be a string or a non-empty list of strings$"
    ):
        load_eval(write(tmp_path, {"question": "Capital?", "reference": []}))


def test_check_templates_names_the_first_line_and_field(tmp_path) -> None:
    items = load_eval(
        write(
            tmp_path,
            {"question": "Retries?", "reference": "3", "label": "ok"},
            {"item": {"input": "Capital?", "reference": "Paris", "label": "ok", "meta": {"kind": "geo"}}},
            {"item": {"input": "Tallest?", "reference": "Everest", "meta": {}}},
            {"item": {"input": "Longest?", "reference": "Nile"}},
        )
    )
    graders = parse_testing_criteria(
        [string_check("eq", name="exact"), string_check("eq", reference="{{ item.label }}", name="label")]
    )
    check_templates(graders[:1], items)  # every line has a reference
    check_templates(graders, items[:2])
    with pytest.raises(EvalFileError) as error:
        check_templates(graders, items)
    assert str(error.value) == (
        "line 3: the item has no field 'label', which testing_criteria[1] ('label') reads as {{item.label}}"
    )
    assert error.value.line == 3
    nested = parse_testing_criteria([{**string_check("eq"), "input": "{{item.meta.kind}}"}])
    with pytest.raises(EvalFileError, match=r"^line 1: the item has no field 'meta.kind'"):
        check_templates(nested, items)
