"""Fine-tuning data: the three record formats, validation codes and lines, loss masks and truncation."""

from __future__ import annotations

import copy
import json
import pickle
from pathlib import Path

import pytest

from common.chat_format import flatten_tools
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
        ({"messages": [USER, ASSISTANT], "tools": [{"type": "function"}]}, "invalid_tools"),
        ({"messages": [USER, ASSISTANT], "functions": [{"description": "no name"}]}, "invalid_tools"),
        ({"messages": [USER, {"role": "assistant", "tool_calls": []}]}, "invalid_tool_call"),
        ({"messages": [USER, {"role": "tool", "content": "42"}]}, "invalid_tool_result"),
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


def test_truncation_keeps_the_answer_and_counts(smol_tokenizer):
    short = chat(("user", "hi"), ("assistant", "hello"))
    long = chat(("user", "hi"), ("assistant", "word " * 200))
    [full_short, full_long], _ = tokenize([short, long], smol_tokenizer, max_length=4096)
    first_trained = next(i for i, label in enumerate(full_long.labels) if label != IGNORE_INDEX)
    limit = first_trained + 10

    examples, stats = tokenize([short, long], smol_tokenizer, max_length=limit)
    assert [e.truncated for e in examples] == [False, True]
    # The answer alone is longer than the window: it starts a quarter window before the answer.
    start = max(0, first_trained - min(32, limit // 4))
    assert examples[1].input_ids == full_long.input_ids[start : start + limit]
    assert examples[1].labels == full_long.labels[start : start + limit]
    assert stats == TokenStats(
        examples=2,
        total_tokens=len(full_short.input_ids) + limit,
        trained_tokens=sum(label != IGNORE_INDEX for e in examples for label in e.labels),
        max_tokens=len(full_long.input_ids),
        truncated=1,
        empty_after_truncation=0,
        truncated_lines=[examples[1].line],
    )
    line = describe(stats, limit)
    assert line.startswith(f"2 examples, {stats.total_tokens:,} tokens ({stats.trained_tokens:,} trained)")
    assert f"1 longer than {limit} tokens was truncated" in line


def test_a_long_question_keeps_its_short_answer(smol_tokenizer):
    """Cut to 32 tokens, a 150-word question used to lose its answer (nothing left to train on); the
    answer is kept now, with the end of the question before it."""
    conversation = chat(("user", "a long question " * 50), ("assistant", "yes"))
    examples, stats = tokenize([conversation], smol_tokenizer, max_length=32)
    assert len(examples) == 1 and examples[0].truncated and len(examples[0].input_ids) == 32
    trained = [
        t for t, label in zip(examples[0].input_ids, examples[0].labels, strict=True) if label != IGNORE_INDEX
    ]
    assert smol_tokenizer.decode(trained).startswith("yes")
    assert (stats.truncated, stats.empty_after_truncation) == (1, 0) and stats.trained_tokens > 0


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


# ---------------------------------------------------------------- tools

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
CLOCK = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}


def call(call_id: str, name: str = "get_weather", arguments: str = '{"city": "Paris"}') -> dict:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


TOOL_RECORD = {
    "messages": [
        {"role": "system", "content": "You are a weather bot."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [call("call_1")]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"celsius": 21}'},
        {"role": "assistant", "content": "It is 21 °C in Paris."},
    ],
    "tools": [WEATHER],
}
LEGACY_RECORD = {
    "messages": [
        {"role": "system", "content": "You are a weather bot."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "function_call": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
        {"role": "function", "name": "get_weather", "content": '{"celsius": 21}'},
        {"role": "assistant", "content": "It is 21 °C in Paris."},
    ],
    "functions": [WEATHER["function"]],
}
CALL_TEXT = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
RESULT_TEXT = '<tool_response>\n{"celsius": 21}\n</tool_response>'


def test_tool_calls_are_rendered_as_the_server_renders_them_and_trained(tmp_path, smol_tokenizer):
    [conversation] = load_dataset(write_jsonl(tmp_path / "tools.jsonl", [TOOL_RECORD]))
    flat = flatten_tools(TOOL_RECORD["messages"], TOOL_RECORD["tools"])
    assert conversation.messages == [Message(m["role"], m["content"]) for m in flat]
    system, _, calling, result, _ = conversation.messages
    assert system.content.startswith("You are a weather bot.\n\n# Tools")
    assert json.dumps(WEATHER) in system.content
    assert (calling.role, calling.content) == ("assistant", CALL_TEXT)
    assert (result.role, result.content) == ("user", RESULT_TEXT)

    [example], _ = tokenize([conversation], smol_tokenizer, max_length=1024)
    text = smol_tokenizer.decode(example.input_ids, skip_special_tokens=False)
    assert "<tools>" in text and CALL_TEXT in text and RESULT_TEXT in text
    # The call and the final answer are trained; the tools, the question and the tool's result are not.
    assert trained_runs(example, smol_tokenizer) == [CALL_TEXT + IM_END, "It is 21 °C in Paris." + IM_END]


def test_legacy_functions_load_as_tools(tmp_path):
    [legacy, tools] = load_dataset(write_jsonl(tmp_path / "legacy.jsonl", [LEGACY_RECORD, TOOL_RECORD]))
    assert legacy.messages == tools.messages
    assert legacy.line == 1


def test_parallel_calls_merged_results_weights_and_a_record_ending_on_a_call(tmp_path, smol_tokenizer):
    record = {
        "tools": [WEATHER, CLOCK],
        "messages": [
            {"role": "user", "content": "Weather and time in Paris?"},
            {
                "role": "assistant",
                "content": "Let me check.",
                "tool_calls": [call("w1"), call("t1", "get_time", "{}")],
                "weight": 0,
            },
            {"role": "tool", "tool_call_id": "t1", "content": "12:00"},
            {"role": "tool", "tool_call_id": "w1", "content": '{"celsius": 21}'},
            {"role": "assistant", "content": "21 °C at noon."},
            {"role": "user", "content": "And Rome?"},
            {"role": "assistant", "content": "", "tool_calls": [call("w2", arguments='{"city": "Rome"}')]},
        ],
    }
    [conversation] = load_dataset(write_jsonl(tmp_path / "parallel.jsonl", [record]))
    assert [(m.role, m.weight) for m in conversation.messages] == [
        ("system", 1.0),  # added for the tools
        ("user", 1.0),
        ("assistant", 0.0),
        ("user", 1.0),  # both results, in one turn
        ("assistant", 1.0),
        ("user", 1.0),
        ("assistant", 1.0),
    ]
    messages = conversation.messages
    assert messages[0].content.startswith("# Tools") and json.dumps(CLOCK) in messages[0].content
    assert messages[2].content == (
        "Let me check.\n" + CALL_TEXT + '\n<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>'
    )
    assert messages[3].content == "<tool_response>\n12:00\n</tool_response>\n" + RESULT_TEXT
    rome = CALL_TEXT.replace("Paris", "Rome")
    assert messages[6].content == rome

    [example], _ = tokenize([conversation], smol_tokenizer, max_length=2048)
    assert trained_runs(example, smol_tokenizer) == ["21 °C at noon." + IM_END, rome + IM_END]


def test_empty_tool_lists_are_no_tools(tmp_path):
    records = [{**GOOD, "tools": []}, {**GOOD, "functions": []}, {**GOOD, "tools": None}]
    conversations = load_dataset(write_jsonl(tmp_path / "empty-tools.jsonl", records))
    assert [c.messages for c in conversations] == [[Message("user", "hi"), Message("assistant", "hello")]] * 3


QUESTION = {"role": "user", "content": "Weather in Paris?"}
ANSWER = {"role": "assistant", "content": "21 °C."}


def calling(*calls: dict, **extra) -> dict:
    return {"role": "assistant", "tool_calls": list(calls), **extra}


def result(call_id: str = "call_1", content: str | None = "21") -> dict:
    return {"role": "tool", "tool_call_id": call_id, "content": content}


def tool_record(*messages: dict, **record) -> dict:
    return {"tools": [WEATHER], **record, "messages": list(messages)}


@pytest.mark.parametrize(
    "bad, code, words",
    [
        (
            tool_record(QUESTION, calling(call("call_1", arguments='["Paris"]'))),
            "invalid_tool_call",
            "messages[1].tool_calls[0].function.arguments must be a JSON object, got an array",
        ),
        (
            tool_record(QUESTION, calling(call("call_1", arguments="{city: Paris}"))),
            "invalid_tool_call",
            "messages[1].tool_calls[0].function.arguments is not valid JSON",
        ),
        (
            tool_record(QUESTION, calling(call("call_1", arguments=""))),
            "invalid_tool_call",
            "arguments is not valid JSON",
        ),
        (
            tool_record(
                QUESTION, calling({**call("call_1"), "function": {"name": "get_weather", "arguments": {}}})
            ),
            "invalid_tool_call",
            "arguments must be JSON text (a string), got an object",
        ),
        (
            tool_record(QUESTION, {"role": "assistant", "function_call": {"name": "get_weather"}}),
            "invalid_tool_call",
            "messages[1].function_call.arguments must be JSON text",
        ),
        (
            tool_record(QUESTION, calling(call("call_1")), result(content=None)),
            "empty_content",
            "messages[2].content",
        ),
        (
            tool_record(QUESTION, calling(call("call_1")), result(content=" ")),
            "empty_content",
            "messages[2].content",
        ),
        (
            tool_record(QUESTION, calling(call("call_1")), {"role": "tool", "content": "21"}),
            "invalid_tool_result",
            "messages[2] needs the tool_call_id",
        ),
        (
            tool_record(QUESTION, calling(call("call_1")), result("call_9"), ANSWER),
            "invalid_tool_result",
            "messages[2] answers tool_call_id 'call_9'",
        ),
        (
            tool_record(QUESTION, calling(call("call_1")), result(), result(), ANSWER),
            "invalid_tool_result",
            "messages[3] answers tool_call_id 'call_1'",
        ),
        (tool_record(QUESTION, result(), ANSWER), "invalid_tool_result", "messages[1] answers"),
        (
            tool_record(QUESTION, calling(call("call_1")), QUESTION, ANSWER),
            "invalid_tool_result",
            "messages[2] comes before the result of messages[1].tool_calls[0]",
        ),
        (
            tool_record(QUESTION, calling(call("call_1"), call("call_2")), result("call_1"), ANSWER),
            "invalid_tool_result",
            "messages[3] comes before the result of messages[1].tool_calls[1]",
        ),
        (
            tool_record({**QUESTION, "tool_calls": [call("call_1")]}, ANSWER),
            "invalid_tool_call",
            "messages[0] is a user message: only assistant messages carry tool_calls",
        ),
        (
            tool_record(QUESTION, {**ANSWER, "tool_call_id": "call_1"}),
            "invalid_tool_result",
            "only tool messages carry tool_call_id",
        ),
        (
            tool_record(QUESTION, {"role": "assistant", "content": None}),
            "empty_content",
            "messages[1] has neither content nor tool_calls",
        ),
        (tool_record(QUESTION, {"role": "assistant"}), "empty_content", "neither content nor tool_calls"),
        (
            tool_record(
                QUESTION,
                calling(call("call_1")),
                result(),
                {**ANSWER, "weight": 1},
                tools=[{"type": "function"}],
            ),
            "invalid_tools",
            "tools[0].function must be a function definition",
        ),
        (
            tool_record(
                QUESTION, ANSWER, tools=[{"type": "function", "function": {"description": "no name"}}]
            ),
            "invalid_tools",
            "tools[0].function.name must be a function name",
        ),
        (
            tool_record(QUESTION, ANSWER, tools=[{"type": "function", "function": {"name": "get weather"}}]),
            "invalid_tools",
            "'get weather'",
        ),
        (
            tool_record(QUESTION, ANSWER, tools=[{"function": WEATHER["function"]}]),
            "invalid_tools",
            "tools[0].type must be 'function'",
        ),
        (tool_record(QUESTION, ANSWER, tools=[WEATHER, WEATHER]), "invalid_tools", "is given twice"),
        (
            tool_record(
                QUESTION,
                ANSWER,
                tools=[{"type": "function", "function": {**WEATHER["function"], "parameters": "x"}}],
            ),
            "invalid_tools",
            "tools[0].function.parameters must be an object",
        ),
        (tool_record(QUESTION, ANSWER, tools={"get_weather": {}}), "invalid_tools", "'tools' must be a list"),
        (
            tool_record(QUESTION, ANSWER, functions=[WEATHER["function"]]),
            "invalid_tools",
            "not both",
        ),
        (
            tool_record(QUESTION, calling(call("call_1", name="get_time"))),
            "invalid_tool_call",
            "messages[1].tool_calls[0] calls 'get_time', but it is not among the record's tools",
        ),
        (
            {"messages": [QUESTION, calling(call("call_1"))]},
            "invalid_tool_call",
            "calls 'get_weather', but the record has no tools",
        ),
        (
            tool_record(QUESTION, calling({"type": "function", "function": call("x")["function"]})),
            "invalid_tool_call",
            "messages[1].tool_calls[0] needs an id",
        ),
        (
            tool_record(QUESTION, calling(call("call_1")), result(), calling(call("call_1"))),
            "invalid_tool_call",
            "messages[3].tool_calls[0].id 'call_1' is used by an earlier call",
        ),
        (
            tool_record(QUESTION, calling(call("call_1"), call("call_2")), parallel_tool_calls=False),
            "invalid_tool_call",
            "messages[1] has 2 calls but parallel_tool_calls is false",
        ),
        (
            tool_record(QUESTION, calling(call("call_1"), function_call=call("x")["function"])),
            "invalid_tool_call",
            "has both tool_calls and function_call",
        ),
        (
            {
                "functions": [WEATHER["function"]],
                "messages": [
                    QUESTION,
                    {"role": "assistant", "function_call": call("x")["function"]},
                    {"role": "function", "name": "get_time", "content": "12:00"},
                ],
            },
            "invalid_tool_result",
            "messages[2] answers function 'get_time'",
        ),
        (
            {
                "functions": [WEATHER["function"]],
                "messages": [
                    QUESTION,
                    {"role": "assistant", "function_call": call("x")["function"]},
                    {"role": "function", "content": "21"},
                ],
            },
            "invalid_tool_result",
            "messages[2] needs the name",
        ),
        (
            tool_record(QUESTION, calling(call("call_1")), {**result(), "weight": 0}, ANSWER),
            "invalid_weight",
            "messages[2]: weight is only allowed on assistant messages",
        ),
        # Numbers in order errors are the record's, not the flattened conversation's (one more message).
        (tool_record(QUESTION, QUESTION, ANSWER), "invalid_order", "message 2 is user where assistant"),
        (
            tool_record(QUESTION, calling(call("call_1")), result(), QUESTION, ANSWER),
            "invalid_order",
            "message 4 is user where assistant",
        ),
    ],
)
def test_invalid_tool_record_gives_its_code_and_line(tmp_path, bad, code, words):
    path = write_jsonl(tmp_path / "bad.jsonl", [GOOD, TOOL_RECORD, bad, LEGACY_RECORD])
    with pytest.raises(DataError) as raised:
        load_dataset(path)
    assert (raised.value.code, raised.value.line) == (code, 3), raised.value
    assert words in raised.value.message


def test_tool_errors_are_collected_with_max_errors(tmp_path):
    bad_arguments = tool_record(QUESTION, calling(call("call_1", arguments="[]")))
    no_content = tool_record(QUESTION, calling(call("call_1")), result(content=None), ANSWER)
    path = write_jsonl(tmp_path / "bad.jsonl", [TOOL_RECORD, bad_arguments, LEGACY_RECORD, no_content])
    with pytest.raises(DataError) as raised:
        load_dataset(path, max_errors=5)
    assert [(e.code, e.line) for e in raised.value.errors] == [("invalid_tool_call", 2), ("empty_content", 4)]


def test_a_long_prompt_is_cut_in_the_middle_and_the_answer_kept(smol_tokenizer):
    """Over-long examples keep their answer (the prompt loses its middle, as LLaMA-Factory truncates the
    source first); the lines of truncated examples are reported."""
    from finetune.data import IGNORE_INDEX, Conversation, Message, tokenize

    log = "Log line: sensor reading nominal. " * 300
    conversation = Conversation(
        [
            Message("user", "Here is the log:\n" + log + "\nWhat is the status?"),
            Message("assistant", "All nominal."),
        ],
        7,
    )
    [example], stats = tokenize([conversation], smol_tokenizer, max_length=128)
    assert len(example.input_ids) == 128 and stats.truncated_lines == [7] and stats.empty_lines == []
    trained = [t for t, label in zip(example.input_ids, example.labels, strict=True) if label != IGNORE_INDEX]
    assert "All nominal." in smol_tokenizer.decode(trained)
    text = smol_tokenizer.decode(example.input_ids)
    assert text.startswith("<|im_start|>system") and "What is the status?" in text


def test_a_file_that_trains_nothing_is_refused(smol_tokenizer):
    """../shared/cases/kb-ft/single_long_prompt.jsonl used to 'succeed' after 0 steps; with weight 0 on
    every answer (or nothing left to train), the file is refused by line with a clear code."""
    from finetune.data import DataError, check_trainable, load_dataset, tokenize

    case = Path(__file__).resolve().parents[2] / "shared" / "cases" / "kb-ft" / "single_long_prompt.jsonl"
    _, stats = tokenize(load_dataset(case), smol_tokenizer, max_length=256)
    check_trainable(stats)  # the prompt is cut, the answer kept: it trains
    assert stats.trained_tokens > 0 and stats.truncated_lines == [1]

    # A file whose examples all lose every trained token (a template whose answers cannot be found, say)
    # is refused before any step, by its first such line; a few such examples are only reported.
    from finetune.data import TokenStats

    empty = TokenStats(2, 100, 0, 60, 0, 2, empty_lines=[1, 2])
    with pytest.raises(DataError) as error:
        check_trainable(empty)
    assert error.value.code == "no_trained_tokens" and error.value.line == 1
    with pytest.raises(DataError) as error:
        check_trainable(TokenStats(4, 100, 30, 60, 0, 3, empty_lines=[2, 3, 4]))
    assert error.value.code == "too_many_empty_examples" and error.value.line == 2
    check_trainable(TokenStats(4, 100, 30, 60, 0, 1, empty_lines=[3]))  # one of four: trained, reported
