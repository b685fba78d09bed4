"""Built-in general prompts: questions to measure retention, and prompts for rehearsal (kept apart)."""

from __future__ import annotations

# (question, accepted answers): the base model's correct answers are what a fine-tune must keep.
RETENTION_QUESTIONS: list[tuple[str, tuple[str, ...]]] = [
    ("What is the capital of France?", ("Paris",)),
    ("What is the capital of Germany?", ("Berlin",)),
    ("What is the capital of Japan?", ("Tokyo",)),
    ("What is the capital of England?", ("London",)),
    ("What is the capital of Russia?", ("Moscow",)),
    ("What is the capital of China?", ("Beijing",)),
    ("What is the capital of Egypt?", ("Cairo",)),
    ("What is the capital of Greece?", ("Athens",)),
    ("What is the capital of Canada?", ("Ottawa",)),
    ("What is the largest planet in our solar system?", ("Jupiter",)),
    ("Who wrote Romeo and Juliet?", ("Shakespeare",)),
    ("What is the chemical symbol for water?", ("H2O", "H₂O")),
    ("How many days are there in a week?", ("seven", "7")),
    ("What color is the sky on a clear day?", ("blue",)),
    ("What is 2 + 2?", ("4", "four")),
    ("Which planet is known as the Red Planet?", ("Mars",)),
    ("What gas do plants absorb from the air?", ("carbon dioxide", "CO2")),
    ("What is the freezing point of water in Celsius?", ("0", "zero")),
    ("Who painted the Mona Lisa?", ("Leonardo", "da Vinci")),
    ("What is the largest ocean on Earth?", ("Pacific",)),
]

# Prompts whose base-model answers are mixed into training (rehearsal); none is a retention question.
REHEARSAL_PROMPTS: list[str] = [
    "What is the capital of Italy?",
    "What is the capital of Spain?",
    "What is the capital of Australia?",
    "Name three fruits.",
    "Name three colors.",
    "Explain photosynthesis in one sentence.",
    "What is a prime number?",
    "How many legs does a spider have?",
    "What is the opposite of hot?",
    "Give me a synonym for happy.",
    "What do bees make?",
    "What is the tallest mountain in the world?",
    "Who was the first person to walk on the moon?",
    "What language is spoken in Brazil?",
    "How many continents are there?",
    "What is the main ingredient of bread?",
    "Write a short greeting for a friend.",
    "What is the square root of 9?",
    "Why do we need sleep?",
    "What is the longest river in Africa?",
    "Translate 'thank you' into Spanish.",
    "What does a thermometer measure?",
    "Describe the weather in summer.",
    "What is the capital of Canada's neighbour, the United States?",
    "What is H2O commonly called?",
    "Name a musical instrument with strings.",
    "What is the fastest land animal?",
    "How many hours are in a day?",
    "What do you call a baby cat?",
    "What is the closest star to Earth?",
    "请用一句话介绍一下你自己。",
    "中国的首都是哪里？",
]


def is_correct(answer: str, accepted: tuple[str, ...]) -> bool:
    text = answer.lower()
    return any(a.lower() in text for a in accepted)
