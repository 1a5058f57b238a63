"""CRW training step: selfsup's step vs a plain fp32 eager step shaped like the published code.

Both variants train the same model from the same initial weights on the same uint8 clips:
- baseline: every frame cropped (RandomResizedCrop) and every patch jittered one at a time in
  Python loops (integer boxes, one interpolate per crop), fp32 contiguous encoder, the walk built
  from Python lists of per-step softmaxes with every palindrome product recomputed from scratch
  (both the right and the left product, as the published loop does) and a host sync per logged
  cycle statistic;
- selfsup (`selfsup.crw.train.step_inputs` + `CRW.forward`): all crop boxes drawn at once, one
  grid_sample for all frames and one for all patches, incremental palindrome products, no host
  sync; on CUDA also bf16 autocast for the encoder (walk in fp32) and channels_last.

Prints clips/s and peak memory of each variant and the selfsup/baseline ratios. Peak memory: CUDA
max allocated; CPU the peak rise of the process's resident set over its level before the
variant (sampled every millisecond, freed heap handed back to the OS between variants).

    python benchmarks/crw_train.py --threads 1            # CPU, the embedded default's sizes
    python benchmarks/crw_train.py --device cuda --frame-size 256 --source-size 256 --patch-size 64 \\
        --patch-stride 32 --width 1 --batch 20 --rounds 3 --steps 3  # paper sizes, one GPU
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import math
import os
import random
import statistics
import sys
import threading
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from selfsup.crw import CRW, CRWConfig                                  # noqa: E402
from selfsup.crw.model import NORMALIZATION                           # noqa: E402
from selfsup.crw.train import build_model, step_inputs                # noqa: E402


# ------------------------------------------------------------------------------- baseline

def rrc_box(height: int, width: int, scale, ratio) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop.get_params with Python's random module (integer box)."""
    area = height * width
    for _ in range(10):
        target = area * random.uniform(*scale)
        aspect = math.exp(random.uniform(math.log(ratio[0]), math.log(ratio[1])))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return random.randint(0, height - h), random.randint(0, width - w), h, w
    return 0, 0, height, width


def baseline_patches(model: CRW, clips: torch.Tensor) -> torch.Tensor:
    """One frame crop and one patch jitter at a time, as the published per-sample transforms."""
    cfg = model.config
    mean, std = NORMALIZATION[cfg.train_normalization]
    mean_t = torch.tensor(mean, device=clips.device).view(3, 1, 1)
    std_t = torch.tensor(std, device=clips.device).view(3, 1, 1)
    b, t, h, w, _ = clips.shape
    g = (cfg.frame_size - cfg.patch_size) // cfg.patch_stride + 1
    out = []
    for bi in range(b):
        for ti in range(t):
            frame = clips[bi, ti].permute(2, 0, 1).float() / 255.0
            y, x, ch, cw = rrc_box(h, w, cfg.frame_scale, cfg.frame_ratio)
            frame = F.interpolate(frame[None, :, y:y + ch, x:x + cw], size=(cfg.frame_size,) * 2,
                                  mode="bilinear", align_corners=False, antialias=True)[0]
            for r in range(g):
                for c in range(g):
                    cell = frame[:, r * cfg.patch_stride:r * cfg.patch_stride + cfg.patch_size,
                                 c * cfg.patch_stride:c * cfg.patch_stride + cfg.patch_size]
                    py, px, ph, pw = rrc_box(cfg.patch_size, cfg.patch_size, cfg.patch_scale, cfg.patch_ratio)
                    patch = F.interpolate(cell[None, :, py:py + ph, px:px + pw], size=(cfg.patch_size,) * 2,
                                          mode="bilinear", align_corners=False)[0]
                    out.append((patch - mean_t) / std_t)
    return torch.stack(out).view(b, t, g * g, 3, cfg.patch_size, cfg.patch_size)


def baseline_loss(model: CRW, patches: torch.Tensor) -> torch.Tensor:
    """Encoder in fp32, then the walk as Python lists of softmaxes and recomputed products."""
    cfg = model.config
    b, t, n = patches.shape[:3]
    fmap = model.encoder(patches.flatten(0, 2), "layer4")
    q = F.normalize(model.head(fmap.mean(dim=(2, 3))), dim=-1).view(b, t, n, -1).permute(0, 3, 1, 2)
    A = torch.einsum("bctn,bctm->btnm", q[:, :, :-1], q[:, :, 1:])

    def stoch(a: torch.Tensor) -> torch.Tensor:
        a[torch.rand_like(a) < cfg.edge_dropout] = -1e20        # in place, as published
        return F.softmax(a / cfg.temperature, dim=-1)

    A12 = [stoch(A[:, i]) for i in range(t - 1)]
    A21 = [stoch(A[:, i].transpose(-1, -2)) for i in range(t - 1)]
    losses = []
    for i in range(1, len(A12)):
        chain = A12[:i + 1] + A21[:i + 1][::-1]
        right = left = chain[0]
        for m in chain[1:]:
            right, left = right @ m, m @ left
        logits = torch.log(right + 1e-20).flatten(0, -2)
        target = torch.arange(n, device=q.device).repeat(b)
        loss = F.cross_entropy(logits, target)
        accuracy = (logits.argmax(-1) == target).float().mean()
        loss.item(), accuracy.item()                             # per-cycle diagnostics on the host
        losses.append(loss)
    return sum(losses) / len(losses)


# ------------------------------------------------------------------------------ measuring

class PeakRSS:
    """Peak resident-set rise over the level at start, sampled by a thread."""

    def __init__(self, interval: float = 1e-3):
        self.interval = interval

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self) -> "PeakRSS":
        gc.collect()
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except OSError:
            pass
        self.start = self.peak = self.rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(self.interval)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())

    @property
    def rise(self) -> int:
        return self.peak - self.start


class Variant:
    """One variant's model, optimiser and step; `time(n)` runs n steps and returns per-step times."""

    def __init__(self, name: str, model: CRW, clips: torch.Tensor, device: torch.device, bf16: bool,
                 channels_last: bool, seed: int = 0):
        self.name, self.clips, self.device, self.seed = name, clips, device, seed
        self.model = model.to(device).train()
        if channels_last:
            self.model.set_channels_last(True)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-4)
        self.autocast = torch.bfloat16 if bf16 else None
        self.step_index = 0
        self.prep: list[float] = []
        self.model_time: list[float] = []
        self.peak_mb = 0.0

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def step(self) -> tuple[float, float]:
        t0 = time.perf_counter()
        if self.name == "baseline":
            patches, noise = baseline_patches(self.model, self.clips), None
        else:
            patches, noise = step_inputs(self.model, self.clips, self.seed, self.step_index,
                                         self.clips.shape[0], 0, self.device)
        self._sync()
        t1 = time.perf_counter()
        if self.name == "baseline":
            loss = baseline_loss(self.model, patches)
        else:
            loss, _ = self.model(patches, noise, self.autocast)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self._sync()
        self.step_index += 1
        return t1 - t0, time.perf_counter() - t1

    def run(self, steps: int, record: bool = True, measure_memory: bool = False) -> None:
        if measure_memory and self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            base = torch.cuda.memory_allocated(self.device)
        with PeakRSS() as mem:
            for _ in range(steps):
                prep, model_s = self.step()
                if record:
                    self.prep.append(prep)
                    self.model_time.append(model_s)
        if measure_memory:
            self.peak_mb = ((torch.cuda.max_memory_allocated(self.device) - base) if self.device.type == "cuda"
                            else mem.rise) / 2**20

    def summary(self) -> dict:
        prep, model_s = statistics.median(self.prep), statistics.median(self.model_time)
        return {"clips_per_s": self.clips.shape[0] / (prep + model_s), "prep_ms": 1e3 * prep,
                "model_ms": 1e3 * model_s, "peak_mb": self.peak_mb}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--frame-size", type=int, default=64)
    ap.add_argument("--source-size", type=int, default=128, help="stored frame side (the clip cache's)")
    ap.add_argument("--patch-size", type=int, default=16)
    ap.add_argument("--patch-stride", type=int, default=16)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--clip-len", type=int, default=4)
    ap.add_argument("--steps", type=int, default=2, help="timed steps per variant and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--compile", action="store_true", help="also time selfsup with a compiled encoder")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    if gpu:
        torch.backends.cudnn.benchmark = True
    cfg = CRWConfig(width=args.width, frame_size=args.frame_size, patch_size=args.patch_size,
                    patch_stride=args.patch_stride, bn_group_size=0)
    source = args.source_size or args.frame_size
    g = torch.Generator().manual_seed(0)
    clips = torch.randint(0, 256, (args.batch, args.clip_len, source, source, 3), dtype=torch.uint8,
                          generator=g).to(device)
    random.seed(0)
    torch.manual_seed(0)

    specs = [("baseline", False, False), ("selfsup-fp32", False, False)]
    if gpu:
        specs.append(("selfsup", True, True))
    variants = [Variant(name, build_model(cfg, seed=0), clips, device, bf16, cl) for name, bf16, cl in specs]
    if args.compile:
        compiled = Variant("selfsup-compiled", build_model(cfg, seed=0), clips, device, gpu, gpu)
        compiled.model.encoder.compile()
        variants.append(compiled)
    # warm-up and peak memory one variant at a time, then timed rounds in turn, so that a change
    # of machine load hits every variant alike (medians per step are reported)
    for v in variants:
        v.run(args.warmup, record=False)
        v.run(1, measure_memory=True)
    for _ in range(args.rounds):
        for v in variants:
            v.run(args.steps)
    results = {v.name: v.summary() for v in variants}

    name = torch.cuda.get_device_name(device) if gpu else f"CPU, {torch.get_num_threads()} threads"
    print(f"CRW training step on {name}: batch {args.batch} x {args.clip_len} frames, {cfg.nodes} patches of "
          f"{args.patch_size}px from {args.frame_size}px frames (stored {source}px), width {args.width}, "
          f"median of {args.steps * args.rounds + 1} timed steps in {args.rounds} interleaved rounds after "
          f"{args.warmup} warm-up")
    print(f"{'variant':18s} {'clips/s':>9s} {'prep ms':>9s} {'model ms':>9s} {'peak MB':>9s}")
    for name, r in results.items():
        print(f"{name:18s} {r['clips_per_s']:9.2f} {r['prep_ms']:9.1f} {r['model_ms']:9.1f} {r['peak_mb']:9.1f}")
    base = results["baseline"]
    for name, r in results.items():
        if name == "baseline":
            continue
        print(f"{name} / baseline: {r['clips_per_s'] / base['clips_per_s']:.2f}x clips/s, "
              f"{base['prep_ms'] / max(r['prep_ms'], 1e-9):.1f}x faster input prep, "
              f"{base['model_ms'] / r['model_ms']:.2f}x faster model step, "
              f"{r['peak_mb'] / max(base['peak_mb'], 1e-9):.2f}x peak memory")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
