"""OpenAI Evals' `testing_criteria` run on ragtune comparisons: the `string_check` and `text_similarity`
graders, and the `{{item.*}}` / `{{sample.output_text}}` templates they read their text through.

What OpenAI documents, and what is taken from where:
- Grader shapes, operations and metric names: OpenAI's API reference (`StringCheckGrader`,
  `TextSimilarityGrader`: `operation` one of eq, ne, like, ilike; `evaluation_metric` one of cosine,
  fuzzy_match, bleu, gleu, meteor, rouge_1 ... rouge_5, rouge_l; "a float score where a value greater
  than or equal [to pass_threshold] indicates a passing grade").
- Operation semantics: OpenAI's graders guide and Azure OpenAI's reinforcement fine-tuning guide
  (MicrosoftDocs/azure-ai-docs, articles/ai-foundry/openai/how-to/reinforcement-fine-tuning.md):
  eq "input matches the reference (case-sensitive)", ne "doesn't match", like "input contains the
  reference (case-sensitive)", ilike "input contains the reference (not case-sensitive)".
- Metrics, same guide: fuzzy_match "fuzzy string match, using rapidfuzz"; bleu "BLEU score between
  strings"; gleu "google BLEU score"; meteor "METEOR score"; rouge-* "as defined by the rouge python
  library"; cosine: embeddings of OpenAI's text-embedding-3-large. OpenAI names neither the rapidfuzz
  scorer, the BLEU implementation and its smoothing, nor the tokenisation: the choices below are
  ragtune's (see `METRICS`), so a score can differ from OpenAI's by a few points, and a pass near the
  threshold can flip.
- Templates: the graders guide: `{{ namespace.variable }}`, namespaces `item` (the data row) and `sample`
  (the model's output), nested fields by a JSON-path-like syntax.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from common.answer_metrics import _CJK

if TYPE_CHECKING:
    from evals.dataset import EvalItem

OPERATIONS = ("eq", "ne", "like", "ilike")
"""string_check operations, as OpenAI's StringCheckGrader defines them."""

METRICS = {
    "fuzzy_match": "rapidfuzz's fuzz.ratio / 100 (normalised Indel similarity, case-sensitive, as is)",
    "bleu": "sacrebleu's sentence_bleu with its defaults (13a tokens, exp smoothing) / 100",
    "gleu": "NLTK's sentence_gleu (Google BLEU, 1- to 4-grams) on sacrebleu's 13a tokens",
    **{
        f"rouge_{n}": f"rouge-score's rouge{n} F-measure (lower-cased alphanumeric tokens, no stemming)"
        for n in range(1, 6)
    },
    "rouge_l": "rouge-score's rougeL F-measure (lower-cased alphanumeric tokens, no stemming)",
}
"""Supported text_similarity metrics -> how ragtune computes each (scores in [0, 1]). Where either text has
CJK characters, bleu and gleu take sacrebleu's "zh" tokens (each Chinese character a token, as sacrebleu
scores Chinese) and rouge takes each CJK character as a token (rouge-score's own tokens drop them, so
two identical Chinese answers would score 0). As rouge-score defines it, rouge_n of a text shorter than n
tokens is 0, even against itself: "Paris" vs "Paris" scores rouge_1 1.0, rouge_2 0.0."""

REFUSED_METRICS = {
    "meteor": "METEOR needs NLTK's WordNet data, which would have to be downloaded at run time",
    "cosine": "cosine compares embeddings from OpenAI's text-embedding-3-large, which ragtune cannot run",
}
REFUSED_TYPES = {
    "label_model": "it asks a model hosted by OpenAI for a label",
    "score_model": "it asks a model hosted by OpenAI for a score",
    "python": "it runs the eval author's Python code in OpenAI's sandbox",
    "multi": "it combines graders with a formula",
}
TYPES = ("string_check", "text_similarity")
"""Supported grader types."""

_PLACEHOLDER = re.compile(r"\{\{\s*(.*?)\s*\}\}")
_INDEX = re.compile(r"\[(\d+)\]")


class CriteriaError(ValueError):
    """A `testing_criteria` list that ragtune cannot run; the message names `testing_criteria[i] ('name')`."""


class TemplateError(ValueError):
    """A template placeholder outside what ragtune fills: `{{item.<field>}}` and `{{sample.output_text}}`."""


class MissingFieldError(KeyError):
    """A `{{item.<path>}}` placeholder whose field the item lacks. `path` is the dotted path after
    `item.`; str() is a sentence (KeyError's own str() would be the quoted repr)."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path

    def __str__(self) -> str:
        return f"the item has no field '{self.path}' (used as {{{{item.{self.path}}}}})"


def _field_path(expression: str) -> list[str]:
    """`item.a.b[0]` -> ["a", "b", "0"]; `sample.output_text` -> []. Raises TemplateError otherwise."""
    namespace, _, path = _INDEX.sub(r".\1", expression).partition(".")
    if namespace == "sample":
        if path != "output_text":
            raise TemplateError(
                f"{{{{{expression}}}}} is not supported: of the sample, only {{{{sample.output_text}}}} "
                "(the arm's answer) is filled"
            )
        return []
    segments = path.split(".")
    if namespace != "item" or not all(segments):
        raise TemplateError(
            f"{{{{{expression}}}}} is not a supported placeholder: use {{{{item.<field>}}}} or "
            "{{sample.output_text}}"
        )
    return segments


def template_fields(template: str) -> list[str]:
    """Dotted item paths a template reads, in order (`"{{ item.a[0] }} {{sample.output_text}}"` ->
    `["a.0"]`). Raises TemplateError for a placeholder outside `item.*` and `sample.output_text`."""
    out = []
    for expression in _PLACEHOLDER.findall(template):
        if path := _field_path(expression):
            out.append(".".join(path))
    return out


def _lookup(item: dict, path: Sequence[str]) -> Any:
    value: Any = item
    for segment in path:
        if isinstance(value, dict) and segment in value:
            value = value[segment]
        elif isinstance(value, list) and segment.isdigit() and int(segment) < len(value):
            value = value[int(segment)]
        else:
            raise MissingFieldError(".".join(path))
    return value


def render(template: str, item: dict, output_text: str) -> str:
    """Fill `template`'s placeholders: `{{ item.a.b }}` (whitespace inside the braces allowed; list
    elements by `item.a.0` or `item.a[0]`) with the item's field, `{{sample.output_text}}` with
    `output_text`. A string field is inserted as it is, any other value as compact JSON (`null`, `3`,
    `["a", "b"]`). Text outside placeholders is kept.

    Raises MissingFieldError (a KeyError) when the item lacks a field (`check_templates` finds these
    before a run), TemplateError for a placeholder outside `item.*` and `sample.output_text`."""

    def fill(match: re.Match[str]) -> str:
        path = _field_path(match.group(1))
        if not path:
            return output_text
        value = _lookup(item, path)
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)

    return _PLACEHOLDER.sub(fill, template)


def _tokenizer(*texts: str) -> str:
    """sacrebleu tokenizer name: "zh" (each Chinese character a token, 13a for the rest) when any text
    has CJK, as sacrebleu scores Chinese; else its default "13a"."""
    return "zh" if any(_CJK.search(t) for t in texts) else "13a"


class _RougeTokens:
    """rouge-score's default tokens (lower-cased, runs of [a-z0-9]) plus CJK characters one by one; on
    text without CJK this is exactly rouge-score's tokenize() without stemming."""

    _TOKEN = re.compile(r"[a-z0-9]+|" + _CJK.pattern)

    def tokenize(self, text: str) -> list[str]:
        return self._TOKEN.findall(text.lower())


@lru_cache(maxsize=8)
def _rouge_scorer(rouge_type: str) -> Any:
    from rouge_score import rouge_scorer  # heavy (NLTK): loaded on first use

    return rouge_scorer.RougeScorer([rouge_type], use_stemmer=False, tokenizer=_RougeTokens())


def similarity(metric: str, text: str, reference: str) -> float:
    """`metric`'s score of `text` against `reference`, in [0, 1]: 1.0 for identical texts (for rouge_n,
    of at least n tokens), 0.0 when either is empty (fuzzy_match: 1.0 for two empty texts); how each is
    computed: `METRICS`. Raises ValueError for a metric not in `METRICS`."""
    if metric == "fuzzy_match":
        from rapidfuzz import fuzz

        return fuzz.ratio(text, reference) / 100
    if metric == "bleu":
        import sacrebleu

        return min(
            1.0, sacrebleu.sentence_bleu(text, [reference], tokenize=_tokenizer(text, reference)).score / 100
        )
    if metric == "gleu":
        from nltk.translate.gleu_score import sentence_gleu
        from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a
        from sacrebleu.tokenizers.tokenizer_zh import TokenizerZh

        split = TokenizerZh() if _tokenizer(text, reference) == "zh" else Tokenizer13a()
        return sentence_gleu([split(reference).split()], split(text).split())
    if metric in METRICS:
        rouge_type = "rougeL" if metric == "rouge_l" else f"rouge{metric.removeprefix('rouge_')}"
        return float(_rouge_scorer(rouge_type).score(reference, text)[rouge_type].fmeasure)
    raise ValueError(f"unknown similarity metric {metric!r}; supported: {', '.join(METRICS)}")


@dataclass(frozen=True)
class Grader:
    """One checked grader of `testing_criteria`. `type` is "string_check" (with `operation`) or
    "text_similarity" (with `metric` and `pass_threshold` in [0, 1]); `input` and `reference` are
    templates; `index` is its place in the list, for messages."""

    name: str
    type: str
    input: str
    reference: str
    index: int = 0
    operation: str | None = None
    metric: str | None = None
    pass_threshold: float | None = None

    @property
    def label(self) -> str:
        return f"testing_criteria[{self.index}] ('{self.name}')"

    @property
    def item_fields(self) -> list[str]:
        """Dotted item paths its templates read (`{{item.a.b}}` -> "a.b")."""
        return template_fields(self.input) + template_fields(self.reference)

    def grade(self, item: dict, output_text: str) -> dict[str, float]:
        """{"passed": 1.0 or 0.0, "score": float in [0, 1]} for an answer `output_text` to `item` (the
        data row's `item` object). string_check: score = passed; compared as rendered, no trimming or
        normalisation (OpenAI: exact, case-sensitive), ilike by str.casefold(). text_similarity: score
        = the metric, passed = score >= pass_threshold. Raises MissingFieldError as `render` does."""
        text, reference = render(self.input, item, output_text), render(self.reference, item, output_text)
        if self.type == "string_check":
            passed = {
                "eq": text == reference,
                "ne": text != reference,
                "like": reference in text,
                "ilike": reference.casefold() in text.casefold(),
            }[self.operation]
            return {"passed": float(passed), "score": float(passed)}
        score = similarity(self.metric, text, reference)
        return {"passed": float(score >= self.pass_threshold), "score": score}


def _fail(index: int, name: str, problem: str) -> CriteriaError:
    return CriteriaError(f"testing_criteria[{index}] ('{name}'): {problem}")


def _template(spec: dict, key: str, index: int, name: str) -> str:
    value = spec.get(key)
    if not isinstance(value, str):
        raise _fail(index, name, f"'{key}' must be a string (a template such as {{{{sample.output_text}}}})")
    try:
        template_fields(value)
    except TemplateError as exc:
        raise _fail(index, name, f"'{key}': {exc}") from exc
    return value


def _grader(spec: Any, index: int) -> Grader:
    if not isinstance(spec, dict):
        raise CriteriaError(f"testing_criteria[{index}] must be a JSON object (a grader)")
    kind = spec.get("type")
    name = spec.get("name", f"{kind}_{index}")
    if not isinstance(name, str) or not name.strip():
        raise CriteriaError(f"testing_criteria[{index}]: 'name' must be a non-empty string")
    if kind in REFUSED_TYPES:
        raise _fail(
            index,
            name,
            f"grader type '{kind}' is not supported ({REFUSED_TYPES[kind]}); supported: {', '.join(TYPES)}",
        )
    if kind not in TYPES:
        raise _fail(index, name, f"unknown grader type {kind!r}; supported: {', '.join(TYPES)}")
    text, reference = _template(spec, "input", index, name), _template(spec, "reference", index, name)
    if kind == "string_check":
        operation = spec.get("operation")
        if operation not in OPERATIONS:
            raise _fail(
                index, name, f"'operation' must be one of {', '.join(OPERATIONS)} (got {operation!r})"
            )
        return Grader(name, kind, text, reference, index, operation=operation)
    metric = spec.get("evaluation_metric")
    supported = f"supported: {', '.join(METRICS)}"
    if metric in REFUSED_METRICS:
        raise _fail(
            index,
            name,
            f"evaluation_metric '{metric}' is not supported ({REFUSED_METRICS[metric]}); {supported}",
        )
    if metric not in METRICS:
        raise _fail(index, name, f"unknown evaluation_metric {metric!r}; {supported}")
    threshold = spec.get("pass_threshold")
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not math.isfinite(threshold):
        raise _fail(index, name, f"'pass_threshold' must be a number (got {threshold!r})")
    if not 0 <= threshold <= 1:
        raise _fail(index, name, f"'pass_threshold' must be between 0 and 1, as scores are (got {threshold})")
    return Grader(name, kind, text, reference, index, metric=metric, pass_threshold=float(threshold))


def parse_testing_criteria(criteria: Any, reserved: Collection[str] = ()) -> list[Grader]:
    """Check an OpenAI eval's `testing_criteria` (a non-empty list of grader objects) and return its
    graders in order. A grader without a name is named f"{type}_{index}". Names must be unique, and no
    metric key a grader reports (`name`, and `name + "_score"` for text_similarity) may repeat another's
    or be in `reserved` (the comparison report's own metric names). Keys ragtune does not read (an `id`
    from an exported eval) are ignored.

    Raises CriteriaError naming `testing_criteria[i] ('name')` and the problem: an unsupported type
    (label_model, score_model, python, multi, ...), metric (meteor, cosine) or operation, a missing or
    non-string template, a placeholder other than `{{item.<field>}}` and `{{sample.output_text}}`, a
    pass_threshold that is not a number in [0, 1], a clashing name."""
    if not isinstance(criteria, list) or not criteria:
        raise CriteriaError("testing_criteria must be a non-empty list of graders")
    graders: list[Grader] = []
    taken = dict.fromkeys(reserved, "a metric of the comparison report")
    for index, spec in enumerate(criteria):
        grader = _grader(spec, index)
        keys = [grader.name] + ([f"{grader.name}_score"] if grader.type == "text_similarity" else [])
        for key in keys:
            if key in taken:
                raise _fail(
                    index, grader.name, f"the metric name '{key}' is already {taken[key]}; rename the grader"
                )
            taken[key] = f"used by {grader.label}"
        graders.append(grader)
    return graders


def criteria_metrics(graders: Sequence[Grader], item: dict, output_text: str) -> dict[str, float]:
    """Per-answer metrics for the comparison report: `name` -> passed (0.0 or 1.0) for every grader,
    and `name + "_score"` -> the similarity score for text_similarity graders. Raises MissingFieldError
    as `render` does."""
    out: dict[str, float] = {}
    for grader in graders:
        result = grader.grade(item, output_text)
        out[grader.name] = result["passed"]
        if grader.type == "text_similarity":
            out[f"{grader.name}_score"] = result["score"]
    return out


def check_templates(graders: Sequence[Grader], items: Sequence[EvalItem]) -> None:
    """Refuse, before any answer is generated, an eval file in which some line's item lacks a field a
    grader reads. The item of a line is `EvalItem.extra["item"]` (as `load_eval` keeps it; an empty
    object when absent). Raises EvalFileError naming the first such line, the field and the grader."""
    from evals.dataset import EvalFileError

    fields = [(grader, path) for grader in graders for path in grader.item_fields]
    for eval_item in items:
        row = eval_item.extra.get("item", {})
        for grader, path in fields:
            try:
                _lookup(row, path.split("."))
            except MissingFieldError as exc:
                raise EvalFileError(
                    f"the item has no field '{path}', which {grader.label} reads as {{{{item.{path}}}}}",
                    eval_item.line,
                ) from exc
