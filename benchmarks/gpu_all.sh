#!/usr/bin/env bash
# Every GPU benchmark in one call, for a machine with one GPU (see benchmarks/RESULTS.md).
#   bash benchmarks/gpu_all.sh            # PYTHON=... to pick the interpreter
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
bash benchmarks/gpu_propagate.sh
bash benchmarks/gpu_crw.sh
bash benchmarks/gpu_cut.sh
