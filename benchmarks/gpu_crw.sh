#!/usr/bin/env bash
# CRW training on one GPU at the paper's sizes (256-pixel frames, 7x7 patches of 64, ResNet-18,
# batch 20 x 4 frames): the plain fp32 eager baseline vs selfsup's step in fp32 and with bf16
# autocast + channels_last (walk in fp32), then a short end-to-end train() run on CUDA that must
# stay finite and lower its loss. About 3 minutes on an H100 (5 with COMPILE=1).
#
#   bash benchmarks/gpu_crw.sh                 # PYTHON=... to pick the interpreter
#   COMPILE=1 bash benchmarks/gpu_crw.sh       # also time a torch.compile'd encoder
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
$PY -c "import torch; print('torch', torch.__version__, '|', torch.cuda.get_device_name(0))"

$PY benchmarks/crw_train.py --device cuda --frame-size 256 --source-size 256 --patch-size 64 \
    --patch-stride 32 --width 1 --batch 20 --steps 3 --rounds 3 --warmup 3 ${COMPILE:+--compile}

# end to end on CUDA: loader, bf16 autocast, channels_last, resume state, NaN checks
$PY - <<'EOF'
import tempfile, time
import numpy as np, torch
from selfsup.crw import CRWConfig
from selfsup.crw.train import TrainConfig, train

rng = np.random.default_rng(0)
clips = []
for _ in range(64):                       # drifting random textures, 4 frames of 256 pixels
    base = rng.integers(0, 256, (72, 72, 3), dtype=np.uint8).repeat(4, 0).repeat(4, 1)
    dy, dx = rng.integers(-6, 7, 2)
    clips.append(np.stack([np.roll(base, (dy * t, dx * t), (0, 1))[:256, :256] for t in range(4)]))
with tempfile.TemporaryDirectory() as tmp:
    cfg = TrainConfig(batch_size=20, clip_len=4, clips_per_video=1, steps=30, lr=3e-4,
                      lr_milestones=(24,), log_every=10, checkpoint_every=15, workers=4, device="cuda")
    start = time.perf_counter()
    result = train(CRWConfig(bn_group_size=10), cfg, clips, resume_path=f"{tmp}/state.pt", progress=False)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
for row in result.history:
    print({k: round(v, 4) for k, v in row.items()})
first, last = result.history[0], result.history[-1]
print(f"train() on CUDA: 30 steps in {seconds:.1f} s, loss {first['loss']:.3f} -> {last['loss']:.3f}, "
      f"accuracy {first['accuracy']:.3f} -> {last['accuracy']:.3f}")
assert np.isfinite(last["loss"]) and last["loss"] < first["loss"], "loss did not fall on CUDA"
EOF
