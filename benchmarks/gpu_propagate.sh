#!/usr/bin/env bash
# Label propagation on one GPU: selfsup's local-window top-k vs the dense all-pairs reference at
# DAVIS resolution (480×854 → 60×107 grid, C = 256, context 20), whole videos of two lengths
# (frames/s, peak memory independent of the length), and CUDA-vs-CPU equality on a small problem.
#
#   bash benchmarks/gpu_propagate.sh [extra options for benchmarks/propagate.py]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" - <<'PYEOF'
import torch
from selfsup.propagate import PropagationConfig, propagate_features
print("torch", torch.__version__, torch.cuda.get_device_name())
g = torch.Generator().manual_seed(0)
feats = torch.randn(30, 32, 23, 41, generator=g, dtype=torch.float64)
y0 = torch.rand(5, 23, 41, generator=g, dtype=torch.float64)
cfg = PropagationConfig(context=20, topk=10, radius=12.0)
cpu = list(propagate_features(list(feats), y0, cfg))
gpu = list(propagate_features(list(feats.cuda()), y0.cuda(), cfg))
diff = max((a - b.cpu()).abs().max().item() for a, b in zip(cpu, gpu))
same = all(torch.equal(a.argmax(0), b.cpu().argmax(0)) for a, b in zip(cpu, gpu))
print(f"CUDA vs CPU (float64, 30 frames): max |Δ| {diff:.1e}, identical argmax: {same}")
assert diff < 1e-9 and same
PYEOF
"$PY" benchmarks/propagate.py --device cuda --targets 20 --warmup 3 --video-lengths 50 150 "$@"
