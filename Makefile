# Targets are the README's commands. TORCH_SPEC pins torch *before* anything else is
# installed so that pip never pulls a CUDA build; a GPU user overrides it, e.g.
#   make demo TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
MODEL ?= assets/organism
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: demo test lint typecheck notebooks bench install dev organism clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q -e .
	touch $@

$(VENV)/.dev: $(VENV)/.installed
	$(PIP) install -q -e ".[dev,notebooks]"
	touch $@

install: $(VENV)/.installed
dev: $(VENV)/.dev

demo: $(VENV)/.installed
	$(PY) -m interp report --model $(MODEL) --out report/

test: $(VENV)/.dev lint typecheck
	$(PY) -m pytest -q -x --durations=15; rc=$$?; if [ $$rc -eq 5 ]; then exit 0; else exit $$rc; fi

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check interp tests benchmarks notebooks
	$(VENV)/bin/ruff format --check interp tests benchmarks notebooks

typecheck: $(VENV)/.dev
	$(VENV)/bin/mypy

bench: $(VENV)/.dev
	$(PY) benchmarks/run.py --out benchmarks/results.json

organism: $(VENV)/.installed
	$(PY) -m interp organism train --out $(MODEL) --seed 0

clean:
	rm -rf report .pytest_cache .ruff_cache .mypy_cache
