#!/bin/bash
# CUT / FastCUT training step on one GPU at the paper's size (256², ngf 64, batch 1):
# selfsup's step vs the official-style fp32 eager step, each in its own process.
#   bash benchmarks/gpu_cut.sh            (from the project root)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
for mode in cut fastcut; do
  $PY benchmarks/cut_train.py --device cuda --mode "$mode" --size 256 --ngf 64 --ndf 64 --steps ${STEPS:-40} --warmup ${WARMUP:-10}
done
