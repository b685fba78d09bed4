"""Fine-tuning data: the three record formats, validation codes and lines, loss masks and truncation."""

from __future__ import annotations

import copy
import json
import pickle
from pathlib import Path

import pytest

from finetune.data import (
    IGNORE_INDEX,
    Conversation,
    DataError,
    Message,
    TokenStats,
    describe,
    load_dataset,
    tokenize,
)

HUANHUAN = Path("/work/shared/data/huanhuan.json")
IM_END = "<|im_end|>"

# The same two conversations in each format: one with a system prompt and a history, one with an input.
OPENAI = [
    {
        "messages": [
            {"role": "system", "content": "You are Zhen Huan."},
            {"role": "user", "content": "Who are you?"},
            {"role": "assistant", "content": "A concubine of the emperor."},
            {
                "role": "user",
                "content": [{"type": "text", "text": "Where "}, {"type": "text", "text": "now?"}],
            },
            {"role": "assistant", "content": "In the palace.", "weight": 1},
        ]
    },
    {
        "messages": [
            {"role": "user", "content": "Translate\nbonjour", "name": "alice"},
            {"role": "assistant", "content": "hello"},
        ]
    },
]
ALPACA = [
    {
        "system": "You are Zhen Huan.",
        "history": [["Who are you?", "A concubine of the emperor."]],
        "instruction": "Where now?",
        "input": "",
        "output": "In the palace.",
    },
    {"instruction": "Translate", "input": "bonjour", "output": "hello", "id": 7},
]
SHAREGPT = [
    {
        "system": "You are Zhen Huan.",
        "conversations": [
            {"from": "human", "value": "Who are you?"},
            {"from": "gpt", "value": "A concubine of the emperor."},
            {"from": "user", "value": "Where now?"},
            {"from": "assistant", "value": "In the palace."},
        ],
    },
    {
        "conversations": [
            {"role": "user", "content": "Translate\nbonjour"},
            {"role": "assistant", "content": "hello"},
        ]
    },
]
EXPECTED = [
    Conversation(
        [
            Message("system", "You are Zhen Huan."),
            Message("user", "Who are you?"),
            Message("assistant", "A concubine of the emperor."),
            Message("user", "Where now?"),
            Message("assistant", "In the palace."),
        ],
        line=1,
    ),
    Conversation([Message("user", "Translate\nbonjour"), Message("assistant", "hello")], line=2),
]

GOOD = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records))
    return path


def chat(*turns: tuple[str, str] | tuple[str, str, float]) -> Conversation:
    return Conversation([Message(*turn) for turn in turns], line=1)


def trained_runs(example, tokenizer) -> list[str]:
    """Decode each run of consecutive trained tokens."""
    runs, run = [], []
    for token, label in zip(example.input_ids, example.labels, strict=True):
        if label != IGNORE_INDEX:
            assert label == token
            run.append(token)
        elif run:
            runs.append(run)
            run = []
    if run:
        runs.append(run)
    return [tokenizer.decode(run, skip_special_tokens=False) for run in runs]


# ---------------------------------------------------------------- formats


@pytest.mark.parametrize(
    "name, write",
    [
        ("openai.jsonl", lambda path: write_jsonl(path, OPENAI)),
        ("alpaca.json", lambda path: path.write_text(json.dumps(ALPACA, indent=2))),
        ("alpaca.jsonl", lambda path: write_jsonl(path, ALPACA)),
        ("sharegpt.jsonl", lambda path: write_jsonl(path, SHAREGPT)),
    ],
)
def test_every_format_gives_the_same_conversations(tmp_path, name, write):
    path = tmp_path / name
    write(path)
    assert load_dataset(path) == EXPECTED


def test_formats_can_be_mixed_and_blank_lines_keep_line_numbers(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text(f"{json.dumps(ALPACA[1])}\n\n  \n{json.dumps(SHAREGPT[1])}\r\n")
    conversations = load_dataset(path)
    assert [c.line for c in conversations] == [1, 4]
    assert conversations[0].messages == conversations[1].messages


def test_weights_and_leading_system_messages(tmp_path):
    record = {
        "messages": [
            {"role": "system", "content": "one"},
            {"role": "system", "content": "two"},
            {"role": "user", "content": "q1"},
            {"role": "assistant", "content": "a1", "weight": 0},
            {"role": "user", "content": "q2"},
            {"role": "assistant", "content": "a2", "weight": 1.0},
        ]
    }
    [conversation] = load_dataset(write_jsonl(tmp_path / "w.jsonl", [record]))
    assert [(m.role, m.weight) for m in conversation.messages] == [
        ("system", 1.0),
        ("system", 1.0),
        ("user", 1.0),
        ("assistant", 0.0),
        ("user", 1.0),
        ("assistant", 1.0),
    ]


# ---------------------------------------------------------------- validation

USER = {"role": "user", "content": "hi"}
ASSISTANT = {"role": "assistant", "content": "hello"}


@pytest.mark.parametrize(
    "bad, code",
    [
        ('{"messages": [', "invalid_json"),
        ("[1, 2]", "not_an_object"),
        ('"text"', "not_an_object"),
        ({"messages": [{"role": "bot", "content": "hi"}, ASSISTANT]}, "invalid_role"),
        ({"conversations": [{"from": "observation", "value": "x"}]}, "invalid_role"),
        ({"messages": [{"role": "user", "content": "  \n"}, ASSISTANT]}, "empty_content"),
        ({"messages": [{"role": "user"}, ASSISTANT]}, "empty_content"),
        ({"instruction": "q", "input": "", "output": ""}, "empty_content"),
        ({"instruction": "", "input": "", "output": "a"}, "empty_content"),
        ({"messages": [USER]}, "no_assistant_message"),
        ({"messages": [USER, {**ASSISTANT, "weight": 0}]}, "no_assistant_message"),
        ({"messages": [USER, {**ASSISTANT, "weight": 0.5}]}, "invalid_weight"),
        ({"messages": [USER, {**ASSISTANT, "weight": True}]}, "invalid_weight"),
        ({"messages": [{**USER, "weight": 1}, ASSISTANT]}, "invalid_weight"),
        ({"messages": [{**USER, "mood": "happy"}, ASSISTANT]}, "invalid_message"),
        ({"messages": [USER, {"role": "assistant", "content": 42}]}, "invalid_message"),
        ({"messages": []}, "invalid_message"),
        ({"instruction": "q", "output": "a", "history": [["only a question"]]}, "invalid_message"),
        ({"prompt": "q", "completion": "a"}, "unknown_format"),
        ({"messages": [USER, ASSISTANT], "tools": [{"type": "function"}]}, "unsupported_feature"),
        ({"messages": [USER, ASSISTANT], "functions": []}, "unsupported_feature"),
        ({"messages": [USER, {"role": "assistant", "tool_calls": []}]}, "unsupported_feature"),
        ({"messages": [USER, {"role": "tool", "content": "42"}]}, "unsupported_feature"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url"}]}, ASSISTANT]},
            "unsupported_feature",
        ),
        ({"messages": [ASSISTANT, USER, ASSISTANT]}, "invalid_order"),
        ({"messages": [USER, USER, ASSISTANT]}, "invalid_order"),
        ({"messages": [USER, ASSISTANT, ASSISTANT]}, "invalid_order"),
        (
            {"messages": [USER, ASSISTANT, {"role": "system", "content": "late"}, USER, ASSISTANT]},
            "invalid_order",
        ),
    ],
)
def test_invalid_record_gives_its_code_and_line(tmp_path, bad, code):
    path = tmp_path / "bad.jsonl"
    bad_line = bad if isinstance(bad, str) else json.dumps(bad)
    path.write_text(f"{json.dumps(GOOD)}\n{json.dumps(GOOD)}\n{bad_line}\n{json.dumps(GOOD)}\n")
    with pytest.raises(DataError) as raised:
        load_dataset(path)
    assert (raised.value.code, raised.value.line) == (code, 3), raised.value
    assert str(raised.value).startswith("line 3: ")


def test_unknown_format_names_the_keys(tmp_path):
    with pytest.raises(DataError, match="'prompt', 'completion'") as raised:
        load_dataset(write_jsonl(tmp_path / "f.jsonl", [{"prompt": "q", "completion": "a"}]))
    assert raised.value.code == "unknown_format"


def test_json_array_errors(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('[{"instruction": "q", "output": "a"},')
    with pytest.raises(DataError) as raised:
        load_dataset(broken)
    assert (raised.value.code, raised.value.line) == ("invalid_json", None)

    records = tmp_path / "records.json"
    records.write_text(json.dumps([ALPACA[1], ALPACA[1], {"instruction": "q", "output": " "}]))
    with pytest.raises(DataError) as raised:
        load_dataset(records)
    assert (raised.value.code, raised.value.line) == ("empty_content", 3)


@pytest.mark.parametrize("text", ["", "\n \n\n", "[]", " [ ] "])
def test_empty_file(tmp_path, text):
    path = tmp_path / "empty.jsonl"
    path.write_text(text)
    with pytest.raises(DataError) as raised:
        load_dataset(path)
    assert (raised.value.code, raised.value.line) == ("empty_file", None)


def test_max_errors_collects_several(tmp_path):
    path = tmp_path / "bad.jsonl"
    lines = [
        json.dumps(GOOD),
        "{oops",
        json.dumps({"x": 1}),
        json.dumps(GOOD),
        json.dumps({"messages": [USER]}),
    ]
    path.write_text("\n".join(lines) + "\n" + "{again\n")

    with pytest.raises(DataError) as raised:
        load_dataset(path)
    assert (raised.value.code, raised.value.line, raised.value.errors) == ("invalid_json", 2, [raised.value])

    with pytest.raises(DataError) as raised:
        load_dataset(path, max_errors=3)
    error = raised.value
    assert (error.code, error.line) == ("invalid_json", 2)
    assert [(e.code, e.line) for e in error.errors] == [
        ("invalid_json", 2),
        ("unknown_format", 3),
        ("no_assistant_message", 5),
    ]
    assert "line 2: " in error.message and "line 3: " in error.message and "line 5: " in error.message
    assert "line 6" not in error.message

    with pytest.raises(DataError) as raised:
        load_dataset(path, max_errors=10)
    assert len(raised.value.errors) == 4


def test_data_error_survives_pickling():
    error = pickle.loads(pickle.dumps(DataError("invalid_role", "bad role", 4)))
    assert (error.code, error.message, error.line, str(error)) == (
        "invalid_role",
        "bad role",
        4,
        "line 4: bad role",
    )


# ---------------------------------------------------------------- loss mask

MULTI_TURN = chat(
    ("system", "You are Zhen Huan."),
    ("user", "Who are you?"),
    ("assistant", "A concubine of the emperor."),
    ("user", "Where now?"),
    ("assistant", "In the palace.\nFor now."),
)


def test_only_assistant_content_and_end_marker_are_trained(smol_tokenizer):
    [example], stats = tokenize([MULTI_TURN], smol_tokenizer, max_length=512)
    assert trained_runs(example, smol_tokenizer) == [
        "A concubine of the emperor." + IM_END,
        "In the palace.\nFor now." + IM_END,
    ]
    text = smol_tokenizer.apply_chat_template(
        [{"role": m.role, "content": m.content} for m in MULTI_TURN.messages], tokenize=False
    )
    assert smol_tokenizer.decode(example.input_ids, skip_special_tokens=False) == text
    assert stats.trained_tokens == sum(label != IGNORE_INDEX for label in example.labels)
    assert (stats.examples, stats.total_tokens, stats.truncated) == (1, len(example.input_ids), 0)
    assert not example.truncated


def test_default_system_prompt_and_user_text_are_not_trained(smol_tokenizer):
    # SmolLM2's template injects its own system prompt when there is none.
    [example], _ = tokenize([chat(("user", "hi"), ("assistant", "hello"))], smol_tokenizer, max_length=512)
    assert "SmolLM" in smol_tokenizer.decode(example.input_ids)
    assert trained_runs(example, smol_tokenizer) == ["hello" + IM_END]


def test_weight_zero_turns_are_context_only(smol_tokenizer):
    conversation = chat(
        ("user", "q1"), ("assistant", "skip me", 0.0), ("user", "q2"), ("assistant", "train me")
    )
    [example], _ = tokenize([conversation], smol_tokenizer, max_length=512)
    assert trained_runs(example, smol_tokenizer) == ["train me" + IM_END]
    assert "skip me" in smol_tokenizer.decode(example.input_ids)


def test_train_on_prompts_trains_everything(smol_tokenizer):
    [example], stats = tokenize([MULTI_TURN], smol_tokenizer, max_length=512, train_on_prompts=True)
    assert example.labels == example.input_ids
    assert stats.trained_tokens == stats.total_tokens == len(example.input_ids)


CHATML_NO_SYSTEM = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Llama-2 style: the assistant turn has no header of its own and ends with EOS.
LLAMA2_LIKE = (
    "{% for m in messages %}{% if m['role'] == 'system' %}<<SYS>>{{ m['content'] }}<</SYS>>\n"
    "{% elif m['role'] == 'user' %}[INST] {{ m['content'] }} [/INST]"
    "{% else %} {{ m['content'] }}{{ eos_token }}\n{% endif %}{% endfor %}"
)
# Renders the message count up front, so a prefix's rendering is not a prefix: the search fallback runs.
COUNTED = "{{ messages | length }} messages\n" + CHATML_NO_SYSTEM


@pytest.mark.parametrize("template", [CHATML_NO_SYSTEM, LLAMA2_LIKE, COUNTED])
def test_spans_do_not_depend_on_the_template(smol_tokenizer, template):
    tokenizer = copy.copy(smol_tokenizer)
    tokenizer.chat_template = template
    conversation = chat(
        ("system", "You are Zhen Huan."),
        ("user", "Who are you?"),
        ("assistant", "A concubine of the emperor."),
        ("user", "Where now?"),
        ("assistant", "palace", 0.0),
        ("user", "And then?"),
        ("assistant", "We shall see."),
    )
    [example], _ = tokenize([conversation], tokenizer, max_length=512)
    runs = [run.lstrip(" ") for run in trained_runs(example, tokenizer)]
    assert runs == ["A concubine of the emperor." + IM_END, "We shall see." + IM_END]
    assert smol_tokenizer.chat_template != template  # the fixture is shared; the copy must not touch it


def test_template_refusal_is_a_data_error(smol_tokenizer):
    tokenizer = copy.copy(smol_tokenizer)
    tokenizer.chat_template = "{{ raise_exception('no system role') }}"
    with pytest.raises(DataError) as raised:
        tokenize([MULTI_TURN], tokenizer, max_length=64)
    assert raised.value.code == "template_error"


# ---------------------------------------------------------------- truncation and stats


def test_truncation_keeps_the_start_and_counts(smol_tokenizer):
    short = chat(("user", "hi"), ("assistant", "hello"))
    long = chat(("user", "hi"), ("assistant", "word " * 200))
    [full_short, full_long], _ = tokenize([short, long], smol_tokenizer, max_length=4096)
    first_trained = next(i for i, label in enumerate(full_long.labels) if label != IGNORE_INDEX)
    limit = first_trained + 10

    examples, stats = tokenize([short, long], smol_tokenizer, max_length=limit)
    assert [e.truncated for e in examples] == [False, True]
    assert examples[1].input_ids == full_long.input_ids[:limit]
    assert examples[1].labels == full_long.labels[:limit]
    assert stats == TokenStats(
        examples=2,
        total_tokens=len(full_short.input_ids) + limit,
        trained_tokens=sum(label != IGNORE_INDEX for e in examples for label in e.labels),
        max_tokens=len(full_long.input_ids),
        truncated=1,
        empty_after_truncation=0,
    )
    line = describe(stats, limit)
    assert line.startswith(f"2 examples, {stats.total_tokens:,} tokens ({stats.trained_tokens:,} trained)")
    assert f"1 longer than {limit} tokens was truncated" in line


def test_example_with_nothing_left_to_train_is_kept_and_counted(smol_tokenizer):
    conversation = chat(("user", "a long question " * 50), ("assistant", "yes"))
    examples, stats = tokenize([conversation], smol_tokenizer, max_length=32)
    assert len(examples) == 1 and examples[0].truncated and len(examples[0].input_ids) == 32
    assert set(examples[0].labels) == {IGNORE_INDEX}
    assert (stats.trained_tokens, stats.truncated, stats.empty_after_truncation) == (0, 1, 1)
    assert "1 example with nothing left to train on" in describe(stats, 32)


def test_describe_without_truncation():
    stats = TokenStats(3729, 245_120, 188_002, 900, 0, 0)
    assert describe(stats, 1024) == (
        "3729 examples, 245,120 tokens (188,002 trained), longest 900; none longer than 1024 tokens"
    )


def test_nothing_to_tokenize(smol_tokenizer):
    assert tokenize([], smol_tokenizer, max_length=16) == ([], TokenStats(0, 0, 0, 0, 0, 0))


# ---------------------------------------------------------------- real data


def test_huanhuan_slice_loads_as_alpaca_and_keeps_chinese(tmp_path, smol_tokenizer):
    if not HUANHUAN.exists():
        pytest.skip(f"{HUANHUAN} (the huanhuan alpaca data set) is not on this machine")
    assert len(load_dataset(HUANHUAN)) == 3729  # reading the whole file is quick; tokenizing it is not
    records = json.loads(HUANHUAN.read_text(encoding="utf-8"))[:50]
    path = tmp_path / "huanhuan.json"
    path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")

    conversations = load_dataset(path)
    assert len(conversations) == 50
    assert [c.line for c in conversations] == list(range(1, 51))
    assert conversations[0].messages == [
        Message("user", "娘娘。"),
        Message("assistant", "你放心，本宫到任何时候都不会自轻自贱委屈了这孩子。"),
    ]

    examples, stats = tokenize(conversations, smol_tokenizer, max_length=1024)
    assert stats.examples == 50 and stats.truncated == 0 and stats.empty_after_truncation == 0
    for record, example in zip(records, examples, strict=True):
        assert trained_runs(example, smol_tokenizer) == [record["output"] + IM_END]
