"""The retention measure: its question set, its answer checker and its confidence interval."""

from __future__ import annotations

import math
import re
import unicodedata

import pytest

from finetune.general import REHEARSAL_PROMPTS, RETENTION_QUESTIONS, is_correct, retention_interval

CJK = re.compile(r"[\u3400-\u9fff]")

# The answer of each factual rehearsal prompt whose answer is a name, not a bare number (numbers are
# shared by unrelated facts), as words in English and Chinese: what a retention question must not ask.
REHEARSED_ANSWERS = {
    "What is the capital of Italy?": "Rome",
    "What is the capital of Spain?": "Madrid",
    "What is the capital of Australia?": "Canberra",
    "What is the capital of Canada's neighbour, the United States?": "Washington",
    "中国的首都是哪里？": "北京 Beijing",
    "What is the tallest mountain in the world?": "Everest 珠穆朗玛峰",
    "Who was the first person to walk on the moon?": "Armstrong 阿姆斯特朗",
    "What language is spoken in Brazil?": "Portuguese 葡萄牙语",
    "What is the longest river in Africa?": "Nile 尼罗河",
    "What is H2O commonly called?": "water 水",
    "What is the fastest land animal?": "cheetah 猎豹",
    "What do you call a baby cat?": "kitten 小猫",
    "What is the closest star to Earth?": "Sun 太阳",
    "What do bees make?": "honey 蜂蜜",
    "What does a thermometer measure?": "temperature 温度",
    "What is the main ingredient of bread?": "flour 面粉",
    "Translate 'thank you' into Spanish.": "gracias",
    "What is the opposite of hot?": "cold 冷",
    "Explain photosynthesis in one sentence.": "carbon dioxide 二氧化碳 oxygen 氧气 sunlight",
    "What is the capital of Canada?": "Ottawa 渥太华",
    "What is the capital of Mexico?": "Mexico City 墨西哥城",
    "What is the capital of Chile?": "Santiago 圣地亚哥",
    "What is the smallest continent?": "Australia 澳大利亚 大洋洲",
    "Which continent is the coldest?": "Antarctica 南极洲",
    "In which country is the Great Wall?": "China 中国",
    "In which country is the Taj Mahal?": "India 印度",
    "In which city is the Colosseum?": "Rome 罗马",
    "What is the longest river in South America?": "Amazon 亚马逊河",
    "What is the largest city in Australia?": "Sydney 悉尼",
    "Which country is shaped like a boot?": "Italy 意大利",
    "What is the largest hot desert in the world?": "Sahara 撒哈拉",
    "What gas do humans breathe out?": "carbon dioxide 二氧化碳",
    "What is the chemical symbol for silver?": "Ag 银",
    "What is the center of an atom called?": "nucleus 原子核",
    "Which organ do we use to think?": "brain 大脑",
    "Who was the first President of the United States?": "Washington 华盛顿",
    "Who invented the telephone?": "Bell 贝尔",
    "Who invented the light bulb?": "Edison 爱迪生",
    "Who formulated the laws of motion?": "Newton",
    "Who painted The Starry Night?": "Van Gogh 梵高",
    "Who wrote Pride and Prejudice?": "Austen 奥斯汀",
    "Who wrote Oliver Twist?": "Dickens 狄更斯",
    "Who composed The Four Seasons?": "Vivaldi 维瓦尔第",
    "What is the largest bird in the world?": "ostrich 鸵鸟",
    "Which animal has black and white stripes?": "zebra 斑马",
    "Which animal can change its color?": "chameleon 变色龙",
    "What is a baby horse called?": "foal 小马",
    "What is a group of wolves called?": "pack 狼群",
    "What sound does a duck make?": "quack 嘎嘎",
    "What do frogs eat?": "insects 昆虫",
    "Where do kangaroos live?": "Australia 澳大利亚",
    "Which animal is called man's best friend?": "dog 狗",
    "What is guacamole made from?": "avocado",
    "Which fruit is used to make wine?": "grapes 葡萄",
    "What is pasta made from?": "wheat flour 小麦 面粉",
    "What is chocolate made from?": "cocoa 可可",
    "Which country is famous for pizza?": "Italy 意大利",
    "What is the plural of child?": "children",
    "What is the plural of tooth?": "teeth",
    "What is the past tense of eat?": "ate",
    "What is the opposite of early?": "late 晚",
    "What is the opposite of empty?": "full 满",
    "Give me a synonym for smart.": "clever intelligent 聪明",
    "How do you say 'hello' in Spanish?": "hola",
    "柬埔寨的首都是哪里？": "金边 Phnom Penh",
    "尼泊尔的首都是哪里？": "加德满都 Kathmandu",
    "沙特阿拉伯的首都是哪里？": "利雅得 Riyadh",
    "黄山位于中国哪个省？": "安徽 Anhui",
    "泰山位于哪个省？": "山东 Shandong",
    "桂林以什么风景闻名？": "山水 landscape",
    "故宫位于哪个城市？": "北京 Beijing",
    "水由哪两种元素组成？": "氢 氧 hydrogen oxygen",
    "声音在什么中传播得最快？": "固体 solid",
    "造纸术是谁改进的？": "蔡伦 Cai Lun",
    "《史记》的作者是谁？": "司马迁 Sima Qian",
    "郑和下西洋发生在哪个朝代？": "明朝 Ming",
    "企鹅生活在哪里？": "南极 Antarctica",
    "豆腐是用什么做的？": "大豆 soybean",
    "哪种水果富含维生素C？": "柑橘 猕猴桃 kiwi",
    "西瓜在哪个季节成熟？": "夏天 summer",
    "“高”的反义词是什么？": "矮 低",
    "“美丽”的近义词是什么？": "漂亮",
    "“你好”用英语怎么说？": "hello",
    "下雨天出门要带什么？": "雨伞 umbrella",
}


NUMBER_WORD = re.compile(
    r"(a |one |two |three )?(hundred|thousand|zero|one|two|three|four|five|six|seven|eight|nine|ten|"
    r"eleven|twelve|\w+teen|\w+ty)([- ]\w+)*"
)
COLOURS = {"red", "orange", "yellow", "green", "blue", "purple", "pink", "white", "black", "grey", "brown"}


def is_number_word(text: str) -> bool:
    return NUMBER_WORD.fullmatch(text.casefold()) is not None


def is_common_answer(text: str) -> bool:
    """Numbers and colours answer many different facts; sharing one says nothing."""
    return is_number_word(text) or text.casefold() in COLOURS


def key(question: str) -> str:
    """A question reduced to its letters and digits, for comparing wordings."""
    return "".join(c for c in unicodedata.normalize("NFKC", question).casefold() if c.isalnum())


# ---- the question set -------------------------------------------------------------------------


def test_there_are_enough_candidates_in_english_and_chinese():
    chinese = [q for q, _ in RETENTION_QUESTIONS if CJK.search(q)]
    assert len(RETENTION_QUESTIONS) >= 120
    assert len(chinese) * 3 >= len(RETENTION_QUESTIONS)


def test_questions_are_distinct_and_each_lists_answers():
    keys = [key(q) for q, _ in RETENTION_QUESTIONS]
    assert len(set(keys)) == len(keys)
    for question, accepted in RETENTION_QUESTIONS:
        assert accepted and all(a.strip() == a and a for a in accepted), question


def test_rehearsal_is_a_large_distinct_pool_in_english_and_chinese():
    keys = [key(p) for p in REHEARSAL_PROMPTS]
    assert len(set(keys)) == len(keys) >= 200
    assert sum(bool(CJK.search(p)) for p in REHEARSAL_PROMPTS) >= 60
    for prompt in REHEARSAL_PROMPTS:
        assert prompt.strip() == prompt and prompt, prompt
        # Short prompts, of the kind a small chat model can answer.
        assert len(prompt) <= 25 if CJK.search(prompt) else len(prompt.split()) <= 15, prompt


def test_retention_and_rehearsal_share_no_question():
    """No rehearsal prompt is a retention question, nor holds one or is held in one: compared as
    letters and digits only (NFKC, case-folded), so white space and punctuation (?？.。) do not count."""
    assert set(REHEARSED_ANSWERS) <= set(REHEARSAL_PROMPTS)
    rehearsal = {key(p) for p in REHEARSAL_PROMPTS}
    for question, _ in RETENTION_QUESTIONS:
        assert not any(key(question) in r or r in key(question) for r in rehearsal), question


def asks_a_rehearsed_fact(question: str, accepted: tuple[str, ...], prompt: str) -> bool:
    """The same fact as the rehearsal prompt: the same answer, or the question and the answer swapped
    ("What is H2O commonly called?" → water, "What is the chemical formula of water?" → H2O)."""
    rehearsed = REHEARSED_ANSWERS[prompt]
    swapped = is_correct(prompt, accepted) and is_correct(question, tuple(rehearsed.split()))
    return is_correct(rehearsed, accepted) or swapped


def test_the_same_fact_detector_finds_known_pairs():
    assert asks_a_rehearsed_fact("What is the capital of China?", ("Beijing",), "中国的首都是哪里？")
    assert asks_a_rehearsed_fact("北京是哪个国家的首都？", ("中国",), "中国的首都是哪里？")
    assert asks_a_rehearsed_fact("What is the formula of water?", ("H2O",), "What is H2O commonly called?")
    assert not asks_a_rehearsed_fact(
        "On which continent is Egypt?", ("Africa",), "What is the longest river in Africa?"
    )


@pytest.mark.parametrize("prompt", sorted(REHEARSED_ANSWERS))
def test_no_retention_question_asks_a_rehearsed_fact(prompt):
    for question, accepted in RETENTION_QUESTIONS:
        assert not asks_a_rehearsed_fact(question, accepted, prompt), (question, prompt)


def test_no_question_gives_away_its_answer():
    """An answer that repeats the question must not count as correct."""
    for question, accepted in RETENTION_QUESTIONS:
        assert not is_correct(question, accepted), question


def test_english_and_chinese_questions_ask_different_facts():
    """A Chinese question accepts the English answer too, so a translated pair would share it
    ("法国的首都是哪里？" and "What is the capital of France?" both accept "Paris")."""
    english = {a.casefold() for q, ok in RETENTION_QUESTIONS if not CJK.search(q) for a in ok}
    for question, accepted in RETENTION_QUESTIONS:
        if CJK.search(question):
            names = [
                a for a in accepted if re.fullmatch(r"[A-Za-z][A-Za-z' -]*", a) and not is_common_answer(a)
            ]
            assert not any(a.casefold() in english for a in names), question


def test_numeric_answers_list_their_spelled_out_forms():
    """Digits alone would miss "twelve" or "十二": each number is listed in words as well."""
    for question, accepted in RETENTION_QUESTIONS:
        if any(a.isdigit() for a in accepted):
            assert any(is_number_word(a) for a in accepted), question
            if CJK.search(question):
                assert any(re.fullmatch("[〇零一二两兩三四五六七八九十百千]+", a) for a in accepted), question


# ---- the checker ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "accepted"),
    [
        ("The capital of France is Paris.", ("Paris",)),
        ("PARIS", ("paris",)),
        ("2 + 2 = 4", ("4", "four")),
        ("The answer is 4.", ("4",)),
        ("It is 4.0", ("4",)),
        ("It is 4.00 exactly", ("4",)),
        ("Four.", ("4", "four")),
        ("There are 1,000 grams in a kilogram.", ("1000",)),
        ("There are 1000 grams in a kilogram.", ("1,000",)),
        ("２ + ２ ＝ ４", ("4",)),  # full-width forms (NFKC)
        ("The formula is H₂O.", ("H2O",)),  # subscript digits (NFKC)
        ("It was painted by Leonardo  da\nVinci.", ("da Vinci",)),
        ("Straße", ("STRASSE",)),  # case folding, not lower()
        ("一年有十二个月。", ("十二", "12")),
        ("一年有12个月。", ("十二", "12")),
        ("一年有 十 二 个月", ("十二",)),
        ("日本的首都是東京。", ("东京", "東京")),
        ("答案是四。", ("四",)),
        ("中文回答：Paris。", ("巴黎", "Paris")),
        ("Ｐａｒｉｓ", ("Paris",)),
        ("A right angle is a 90-degree angle.", ("90",)),
        ("A dog is a four-legged animal.", ("four",)),
        ("鸡有两条腿。", ("两", "二")),
        ("一加一等于二", ("二",)),
        ("一年有十二个月，也就是四季", ("四",)),
        ("一小时有六十分钟", ("六十",)),
        ("The capital is not Paris.", ("Paris",)),  # negation is not handled (documented)
    ],
)
def test_correct_answers_are_accepted(answer, accepted):
    assert is_correct(answer, accepted)


@pytest.mark.parametrize(
    ("answer", "accepted"),
    [
        ("14", ("4",)),
        ("In 2024 the answer changed.", ("4",)),
        ("It is 4.5", ("4",)),
        ("It is 1.4", ("4",)),
        ("It is -4", ("4",)),
        ("It is 40", ("4",)),
        ("Romeo", ("Rome",)),
        ("Parisian cafes", ("Paris",)),
        ("fourteen", ("four",)),
        ("twenty-four", ("four",)),
        ("fifty-six", ("fifty",)),
        ("Forty-Two", ("two",)),
        ("植物吸收二氧化碳", ("二",)),
        ("一些人", ("一",)),
        ("someone", ("one",)),
        ("It is 100", ("1000",)),
        ("十四", ("四",)),
        ("四十", ("四",)),
        ("二十四", ("四",)),
        ("四百", ("四",)),
        ("I don't know.", ("Paris", "巴黎")),
        ("", ("Paris",)),
    ],
)
def test_wrong_answers_are_refused(answer, accepted):
    assert not is_correct(answer, accepted)


def test_nothing_accepted_accepts_nothing():
    assert not is_correct("Paris", ())
    assert not is_correct("Paris", ("", " "))


# ---- the interval -----------------------------------------------------------------------------


def wilson(k: int, n: int, z: float) -> tuple[float, float]:
    """Wilson (1927), written as the roots of (p̂ − p)² = z² p (1 − p) / n, a quadratic in p."""
    a, b, c = 1 + z * z / n, -(2 * k / n + z * z / n), (k / n) ** 2
    root = math.sqrt(b * b - 4 * a * c)
    return (-b - root) / (2 * a), (-b + root) / (2 * a)


@pytest.mark.parametrize(("kept", "known"), [(54, 60), (60, 60), (0, 60), (1, 60), (30, 60), (7, 9)])
def test_interval_solves_the_wilson_quadratic(kept, known):
    low, high = retention_interval(kept, known)
    expected = wilson(kept, known, 1.959963984540054)
    assert low == pytest.approx(expected[0], abs=1e-12) and high == pytest.approx(expected[1], abs=1e-12)
    assert 0 <= low <= kept / known <= high <= 1


@pytest.mark.parametrize(
    ("kept", "known", "low", "high"),
    # Newcombe (1998), Statistics in Medicine 17:857, Table I, method 3 (score, no continuity correction)
    [(81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718)],
)
def test_interval_matches_published_values(kept, known, low, high):
    assert retention_interval(kept, known) == pytest.approx((low, high), abs=5e-5)


def test_interval_matches_scipy_wilson():
    stats = pytest.importorskip("scipy.stats")
    for kept, known, confidence in [(54, 60, 0.95), (58, 60, 0.9), (3, 61, 0.99)]:
        ci = stats.binomtest(kept, known).proportion_ci(confidence, method="wilson")
        assert retention_interval(kept, known, confidence) == pytest.approx((ci.low, ci.high), abs=1e-12)


def test_interval_narrows_with_more_questions_and_widens_with_confidence():
    # scipy.stats.binomtest(54, 60).proportion_ci(0.95, method="wilson") gives 0.798505…, 0.953357…
    assert retention_interval(54, 60) == pytest.approx((0.79850535, 0.95335717), abs=5e-9)
    wide, narrow = retention_interval(9, 10), retention_interval(540, 600)
    assert wide[1] - wide[0] > narrow[1] - narrow[0]
    low90, high90 = retention_interval(54, 60, 0.90)
    low99, high99 = retention_interval(54, 60, 0.99)
    assert low99 < low90 and high90 < high99


def test_interval_without_known_questions_is_everything():
    assert retention_interval(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize(("kept", "known", "confidence"), [(61, 60, 0.95), (-1, 60, 0.95), (5, 10, 1.0)])
def test_interval_refuses_impossible_counts(kept, known, confidence):
    with pytest.raises(ValueError):
        retention_interval(kept, known, confidence)
