"""Atomic writes: the target is the old content or the new, never half; a failure leaves no debris."""

from __future__ import annotations

import json

import pytest

from common.atomic import atomic_dir, atomic_path, atomic_write, atomic_write_json


def test_atomic_write_replaces_whole_files(tmp_path):
    target = tmp_path / "sub" / "job.json"
    atomic_write_json(target, {"n": "番茄"})
    assert json.loads(target.read_text(encoding="utf-8")) == {"n": "番茄"}
    atomic_write(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert [p.name for p in target.parent.iterdir()] == ["job.json"]


def test_a_failed_write_leaves_the_old_file(tmp_path):
    target = tmp_path / "index.faiss"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["index.faiss"]


def test_atomic_dir_swaps_a_whole_directory(tmp_path):
    target = tmp_path / "adapter"
    with atomic_dir(target) as tmp:
        (tmp / "a.safetensors").write_text("v1")
    with pytest.raises(FileExistsError), atomic_dir(target) as tmp:
        (tmp / "a.safetensors").write_text("v2")
    assert (target / "a.safetensors").read_text() == "v1"
    with pytest.raises(RuntimeError), atomic_dir(target, replace=True) as tmp:
        (tmp / "a.safetensors").write_text("v2")
        raise RuntimeError("crash before the rename")
    assert (target / "a.safetensors").read_text() == "v1"
    with atomic_dir(target, replace=True) as tmp:
        (tmp / "b.safetensors").write_text("v2")
    assert sorted(p.name for p in target.iterdir()) == ["b.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]
