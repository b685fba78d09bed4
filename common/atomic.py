"""Atomic writes: a reader sees the old file (or directory) or the new one, never half of either.

The rule is POSIX's: write a temporary sibling, flush it to disk (`fsync`), `rename` it over the target,
then `fsync` the parent directory so the rename itself survives a power loss (see rename(2) and
fsync(2); SQLite's and LMDB's documentation describe the same sequence).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _fsync_path(path: Path) -> None:
    """Flush one file or directory's data and metadata to disk (a no-op where the OS refuses it)."""
    flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):  # some filesystems cannot fsync a directory
            os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary sibling of `path` to write (by any means, e.g. `faiss.write_index`); on a clean
    exit it is fsynced and renamed over `path`, on an exception it is removed and `path` is untouched."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        _fsync_path(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_path(target.parent)


def atomic_write(path: str | os.PathLike[str], data: str | bytes) -> None:
    """Replace the file at `path` with `data` (str is written as UTF-8) atomically and durably."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)


def atomic_write_json(path: str | os.PathLike[str], value: Any, indent: int | None = 2) -> None:
    """`atomic_write` of `value` as JSON (UTF-8, non-ASCII kept as is)."""
    atomic_write(path, json.dumps(value, ensure_ascii=False, indent=indent))


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str], replace: bool = False) -> Iterator[Path]:
    """Yield an empty temporary sibling directory of `path` to fill; on a clean exit every file in it is
    fsynced and the directory renamed to `path`. With `replace`, an existing `path` is swapped out (it is
    moved aside, then removed); without it an existing `path` raises FileExistsError. On an exception
    the temporary directory is removed and `path` is untouched."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        for file in tmp.rglob("*"):
            if file.is_file():
                _fsync_path(file)
        _fsync_path(tmp)
        if target.exists():
            if not replace:
                raise FileExistsError(target)
            old = target.with_name(f".{target.name}.{os.getpid()}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_path(target.parent)
