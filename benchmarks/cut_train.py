"""CUT training step: selfsup's step vs a plain fp32 eager step shaped like the official code.

Both steps run the same algorithm on the same networks and the same initial weights:
- baseline ("official-style"): fp32, contiguous tensors; patch positions drawn with NumPy on the
  host and copied to the device for each layer of each NCE term; the input images re-encoded
  with autograd for the keys (4 encoder passes per CUT step); separate D calls for fake and real;
- selfsup (`CUTModel.train_step`): positions drawn on the device, keys reused from the main
  forward (no re-encoding), queries of fake_B and idt_B in one encoder pass, one D call for the
  D step; on CUDA also bf16 autocast (PatchNCE in fp32) and channels_last.

Each variant runs in its own process, so that its peak memory (CUDA: max allocated; CPU: peak
RSS) is its own. Prints iterations/s, peak memory and selfsup/baseline ratios.

    python benchmarks/cut_train.py                                 # CPU, 128², ngf 32
    python benchmarks/cut_train.py --device cuda --size 256 --ngf 64 --steps 50
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from selfsup.cut.losses import lsgan_d_loss, lsgan_g_loss, patch_nce  # noqa: E402
from selfsup.cut.model import CUTConfig, CUTModel  # noqa: E402


def rss_peak_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class OfficialStyleStep:
    """The official training step's structure on selfsup's networks (fp32, eager)."""

    def __init__(self, model: CUTModel):
        self.m = model
        self.rng = np.random.RandomState(0)

    def _sample(self, feats, ids=None):
        f = self.m.netF
        out, out_ids = [], []
        for i, x in enumerate(feats):
            b, c, h, w = x.shape
            flat = x.permute(0, 2, 3, 1).flatten(1, 2)
            if ids is None:
                pid = self.rng.permutation(h * w)[: min(self.m.cfg.num_patches, h * w)]
                pid = torch.tensor(pid, dtype=torch.long, device=x.device)  # host → device copy
            else:
                pid = ids[i]
            out.append(f.project(i, flat[:, pid, :].flatten(0, 1))[None])  # B·P×C as one "image"
            out_ids.append(pid)
        return out, out_ids

    def _nce(self, src, tgt, flipped):
        c, g = self.m.cfg, self.m.netG
        feat_q = g.encode(tgt, c.nce_layers)
        if flipped:
            feat_q = [torch.flip(q, [3]) for q in feat_q]
        feat_k = g.encode(src, c.nce_layers)  # re-encoded with autograd on
        k_pool, ids = self._sample(feat_k)
        q_pool, _ = self._sample(feat_q, ids)
        total = 0.0
        for q, k in zip(q_pool, k_pool):
            total = total + patch_nce(q, k, c.nce_T).mean() * c.lambda_NCE
        return total / len(c.nce_layers)

    def __call__(self, real_A, real_B, flip=False):
        m, c = self.m, self.m.cfg
        flip = flip and c.flip_equivariance
        real = torch.cat([real_A, real_B]) if c.nce_idt else real_A
        if flip:
            real = torch.flip(real, [3])
        fake = m.netG(real)
        n = real_A.shape[0]
        fake_B, idt_B = fake[:n], fake[n:]
        for p in m.netD.parameters():
            p.requires_grad_(True)
        m.optimizer_D.zero_grad()
        loss_D = lsgan_d_loss(m.netD(fake_B.detach()), m.netD(real_B))
        loss_D.backward()
        m.optimizer_D.step()
        for p in m.netD.parameters():
            p.requires_grad_(False)
        m.optimizer_G.zero_grad()
        m.optimizer_F.zero_grad()
        loss = lsgan_g_loss(m.netD(fake_B)) * c.lambda_GAN
        nce = self._nce(real_A, fake_B, flip)
        if c.nce_idt:
            nce = 0.5 * (nce + self._nce(real_B, idt_B, False))
        (loss + nce).backward()
        m.optimizer_G.step()
        m.optimizer_F.step()
        return {"G": loss.detach()}


def run_variant(args) -> dict:
    device = torch.device(args.device)
    if device.type == "cpu" and args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    selfsup = args.variant == "selfsup"
    cfg = CUTConfig(mode=args.mode, ngf=args.ngf, ndf=args.ndf, bf16=selfsup, channels_last=selfsup)
    model = CUTModel(cfg, device)
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(1, 3, args.size, args.size, generator=g), torch.randn(1, 3, args.size, args.size, generator=g))
               for _ in range(4)]
    if selfsup:
        gen = torch.Generator(device=device).manual_seed(0)
        step = lambda a, b, flip: model.train_step(a, b, flip=flip, generator=gen)
    else:
        base = OfficialStyleStep(model)
        step = lambda a, b, flip: base(a.to(device), b.to(device), flip)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for i in range(args.warmup):
        a, b = batches[i % 4]
        step(a, b, i % 2 == 0)
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for i in range(args.steps):
        a, b = batches[i % 4]
        out = step(a, b, i % 2 == 0)
    float(out["G"])
    sync()
    dt = time.perf_counter() - t0
    mem = (torch.cuda.max_memory_allocated() / 2**20) if device.type == "cuda" else rss_peak_mb()
    return {"variant": args.variant, "it_per_s": args.steps / dt, "ms_per_it": 1000 * dt / args.steps,
            "peak_mb": mem, "memory": "cuda max allocated" if device.type == "cuda" else "peak RSS"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--mode", default="cut", choices=["cut", "fastcut"])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--ngf", type=int, default=32)
    ap.add_argument("--ndf", type=int, default=32)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    ap.add_argument("--variant", default="both", choices=["both", "selfsup", "baseline"])
    ap.add_argument("--json", action="store_true", help="print one JSON line (used for the child processes)")
    args = ap.parse_args()
    if args.variant != "both":
        res = run_variant(args)
        print(json.dumps(res) if args.json else res)
        return
    results = {}
    for variant in ("baseline", "selfsup"):
        cmd = [sys.executable, __file__, *sys.argv[1:], "--variant", variant, "--json"]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ.copy())
        results[variant] = json.loads(out.stdout.strip().splitlines()[-1])
    b, s = results["baseline"], results["selfsup"]
    dev = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else f"CPU ({os.cpu_count()} cores visible, threads {args.threads or torch.get_num_threads()})"
    print(f"CUT training step, mode {args.mode}, {args.size}², ngf {args.ngf}, ndf {args.ndf}, batch 1, "
          f"{args.steps} timed steps after {args.warmup} warm-up, on {dev}")
    print(f"{'variant':<10} {'it/s':>8} {'ms/it':>9} {'peak MB':>9}  ({b['memory']})")
    for name, r in (("baseline", b), ("selfsup", s)):
        print(f"{name:<10} {r['it_per_s']:8.2f} {r['ms_per_it']:9.1f} {r['peak_mb']:9.0f}")
    print(f"ratio selfsup/baseline: speed {s['it_per_s'] / b['it_per_s']:.2f}x, "
          f"peak memory {s['peak_mb'] / b['peak_mb']:.2f}x")


if __name__ == "__main__":
    main()
