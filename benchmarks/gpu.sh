#!/usr/bin/env bash
# The GPU benchmark (issue #18, item 5): a random-weight model of Llama-3-8B's shapes in bf16 on
# one CUDA device; caching, decoding, ablation hooks, the probe sweep and peak memory, each
# against its baseline in the same run. Writes the `gpu/...` entries of benchmarks/results.json
# (merged; other entries are kept). Without a CUDA device it marks them "not measured: no device".
#
# Needs what `make dev` installs, with a CUDA build of torch. The Makefile pins torch through
# TORCH_SPEC before anything else, so on a fresh checkout:
#   make dev TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
# (in an existing .venv, `rm .venv/.torch` first and add --force-reinstall to TORCH_SPEC).
# Needs about 40 GiB of GPU memory (the model and its plain HF baseline copy, 15 GiB each) and
# 16 GiB of disk for the temporary checkpoint (--workdir DIR puts it elsewhere).
#
# Usage: benchmarks/gpu.sh [--reps N] [--out FILE] [--workdir DIR]
#        benchmarks/gpu.sh --tiny --device cpu --out /tmp/gpu.json   # the whole path, on a CPU
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
"$PYTHON" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda,
    "device", torch.cuda.get_device_name() if torch.cuda.is_available() else None)'
exec "$PYTHON" benchmarks/bench_gpu.py "$@"
