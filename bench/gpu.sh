#!/usr/bin/env bash
# `make bench` on a CUDA machine: same corpus, baseline, undertone run and MFU, with the device set to cuda
# (bf16/fp16 autocast, the 65,536-token budget). Needs ../shared/data, the default bundle and an environment
# with the CUDA build of torch==2.13.0 plus requirements.lock (PYTHON, default .venv/bin/python).
# Writes bench/results/cuda.json; stopped after 5 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
"$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'torch sees no CUDA GPU')"
exec timeout 300 "$PYTHON" -m bench.run --device cuda "$@"
