"""The check of a job's files, written once: the scheduler runs it on a job in `validating_files`, and
`POST /v1/fine_tuning/validate` runs it as a dry run, so the two can never disagree."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common.encoding import detect_encoding
from finetune.config import TrainConfig, resolve_auto
from finetune.data import DataError, TokenStats, check_trainable, describe, load_dataset, tokenize

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

SHOWN_LINES = 10  # line numbers a warning lists before "…"


@dataclass
class FileCheck:
    """What checking a job's files found. `errors` is empty when they can train: then `stats`,
    `hyperparameters` (`auto` resolved) and `config` are set; a file that fails after tokenizing (nothing
    to train on) keeps its `stats` too."""

    errors: list[DataError] = field(default_factory=list)
    """The file's invalid records (the first is the one a job fails with), or one error for the file."""
    param: str = "training_file"
    """The request field of the file `errors` are about (`training_file` or `validation_file`)."""
    stats: TokenStats | None = None
    """The training file's token counts, from the job's tokenizer and `max_length`."""
    hyperparameters: dict[str, Any] | None = None
    """OpenAI's hyper-parameters with `auto` turned into the numbers the job would train with."""
    config: TrainConfig | None = None
    """The job's whole training config once `auto` is resolved."""
    encoding: str | None = None
    """The training file's text encoding as the loader reads it (common/encoding.py)."""

    @property
    def error(self) -> DataError | None:
        """The error a job on these files fails with (None: they are valid)."""
        return self.errors[0] if self.errors else None

    @property
    def message(self) -> str:
        """The job's event for valid files: 'Files validated: 40 examples, 2,310 tokens (…) …'."""
        if self.stats is None or self.config is None:
            raise ValueError("only valid files have a 'Files validated' message")
        return f"Files validated: {describe(self.stats, self.config.max_length)}."

    def warnings(self, max_length: int) -> list[str]:
        """What a job would do to the data without failing: cut long examples, skip empty ones, read a
        file that is not UTF-8 in the encoding detected."""
        found = []
        if self.encoding and not self.encoding.startswith("utf-8"):
            found.append(f"The training file is not UTF-8; it is read as {self.encoding}.")
        stats = self.stats
        if stats and stats.truncated:
            found.append(
                f"{_count(stats.truncated, 'example')} longer than {max_length} tokens will be cut to fit: "
                f"the answer is kept and the middle of the prompt dropped{_at_lines(stats.truncated_lines)}."
            )
        if stats and stats.empty_lines and not self.errors:
            found.append(
                f"{_count(len(stats.empty_lines), 'example')} with nothing to train on within {max_length} "
                f"tokens will be skipped{_at_lines(stats.empty_lines)}."
            )
        return found


def check_files(
    training_file: Path,
    validation_file: Path | None,
    tokenizer: PreTrainedTokenizerBase,
    requested: Mapping[str, Any],
    base: TrainConfig,
    max_errors: int = 1,
    report_encoding: bool = False,
) -> FileCheck:
    """Check a job's files as training will read them: load both (`finetune.data.load_dataset`), tokenize
    the training file with the job's tokenizer, `max_length` and `train_on_prompts`, refuse one that would
    train nothing (`check_trainable`), and resolve `auto` in `requested` (the job's hyper-parameters) from
    its size into `base` (`resolve_auto`). CPU-bound (seconds for thousands of examples): call it off the
    event loop. `max_errors` > 1 lists more invalid records of a file; the first is the same.
    `report_encoding` sets `encoding` (a second read and detection of the training file: a dry run
    reports it, a job does not need it).

    Never raises for bad data: a DataError is returned in `errors`; a ValueError (a tokenizer without a
    chat template, a setting out of bounds) as an `invalid_training_file` error."""
    check = FileCheck(encoding=detect_encoding(training_file.read_bytes()) if report_encoding else None)
    try:
        conversations = load_dataset(training_file, max_errors)
        if validation_file is not None:
            check.param = "validation_file"
            load_dataset(validation_file, max_errors)
            check.param = "training_file"
    except DataError as exc:
        check.errors = exc.errors
        return check
    try:
        _, check.stats = tokenize(conversations, tokenizer, base.max_length, base.train_on_prompts)
        check_trainable(check.stats)  # a file that would train nothing never gets a job that "succeeds"
        check.hyperparameters, check.config = resolve_auto(requested, len(conversations), base)
    except DataError as exc:
        check.errors = [exc]
    except ValueError as exc:
        check.errors = [DataError("invalid_training_file", str(exc))]
    return check


def _at_lines(lines: list[int]) -> str:
    """` (line 3)`, ` (lines 3, 5, …)` or nothing."""
    if not lines:
        return ""
    shown = ", ".join(map(str, lines[:SHOWN_LINES])) + (" …" if len(lines) > SHOWN_LINES else "")
    return f" (line{'s' if len(lines) > 1 else ''} {shown})"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
