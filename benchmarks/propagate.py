"""Label propagation at DAVIS resolution: selfsup's local-window top-k vs the dense all-pairs reference.

Both run the same step — a target frame against a full context (the long-memory frame plus L
distinct short-term frames), as for every target after the first L of a video — on random
features (480×854 input → 60×107 grid, C = 256, L = 20, top-k 10, radius 12). The dense reference
is the official computation: one affinity over all (L+1)·h·w candidates, −1e10 outside the radius
on the short-term frames, top-k, softmax. Each method runs in its own process so that its peak
memory is its own; the outputs are compared (max |Δ| of the soft labels, argmax agreement).

    python benchmarks/propagate.py                       # CPU
    python benchmarks/propagate.py --device cuda --targets 20
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from selfsup.propagate import LabelPropagator, PropagationConfig  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def make_inputs(args, device):
    g = torch.Generator().manual_seed(0)
    n = args.context + 1 + args.warmup + args.targets
    feats = torch.randn(n, args.channels, args.height, args.width, generator=g).to(device)
    labels = torch.rand(args.context + 1, args.labels, args.height, args.width, generator=g).to(device)
    return feats, labels


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_local(args, device, feats, labels):
    cfg = PropagationConfig(context=args.context, topk=args.topk, radius=args.radius,
                            temperature=0.05, tile=args.tile, chunk_elements=args.chunk)
    prop = LabelPropagator(cfg)

    def prime():
        prop.reset(feats[0], labels[0])
        for i in range(1, args.context + 1):
            prop.push(feats[i], labels[i])

    outs, times = [], []
    first = args.context + 1
    for j in range(args.warmup + args.targets):
        prime()   # every timed step sees the same full context
        sync(device)
        t0 = time.perf_counter()
        out = prop.step(feats[first + j])
        sync(device)
        if j >= args.warmup:
            times.append(time.perf_counter() - t0)
            outs.append(out.cpu())
    return outs, times


def run_dense(args, device, feats, labels):
    h, w, L = args.height, args.width, args.context
    hw = h * w
    f = F.normalize(feats, dim=1)
    keys = f[: L + 1].reshape(L + 1, args.channels, hw)                     # long memory + L frames
    bank = labels.reshape(L + 1, args.labels, hw).permute(0, 2, 1).reshape(-1, args.labels)
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    pos = torch.stack([ys.reshape(-1), xs.reshape(-1)], 1).float()
    penalty = (torch.cdist(pos, pos) >= args.radius).float() * -1e10      # hw × hw, short-term frames
    rows = max(1, (args.chunk or (1 << 26)) // ((L + 1) * hw))
    outs, times = [], []
    for j in range(args.warmup + args.targets):
        q = f[L + 1 + j].reshape(args.channels, hw).t()
        sync(device)
        t0 = time.perf_counter()
        out = torch.empty(hw, args.labels, device=device)
        for r0 in range(0, hw, rows):
            aff = torch.einsum("qc,mck->qmk", q[r0: r0 + rows], keys)
            aff[:, 1:] += penalty[r0: r0 + rows, None]
            top, idx = (aff.reshape(aff.shape[0], -1) / 0.05).topk(args.topk, dim=1)
            wts = torch.softmax(top, dim=1)
            out[r0: r0 + rows] = torch.einsum("nk,nkc->nc", wts, bank[idx])
        out = out.t().reshape(args.labels, h, w)
        sync(device)
        if j >= args.warmup:
            times.append(time.perf_counter() - t0)
            outs.append(out.cpu())
    return outs, times


def run_video(args, device):
    """A whole video through `propagate_features` (early frames included), features made on the fly."""
    from selfsup.propagate import propagate_features

    cfg = PropagationConfig(context=args.context, topk=args.topk, radius=args.radius,
                            temperature=0.05, tile=args.tile, chunk_elements=args.chunk)
    g = torch.Generator(device=device).manual_seed(1)

    def frames():
        for _ in range(args.video):
            yield torch.randn(args.channels, args.height, args.width, generator=g, device=device)

    y0 = torch.rand(args.labels, args.height, args.width, device=device)
    sync(device)
    t0 = time.perf_counter()
    n = 0
    for out in propagate_features(frames(), y0, cfg):
        n += 1
    out.sum().item()
    sync(device)
    return n / (time.perf_counter() - t0)


def child(args) -> None:
    torch.set_grad_enabled(False)
    device = torch.device(args.device)
    if args.method == "video":
        torch.zeros(1, device=device)   # CUDA context before the baseline
    else:
        feats, labels = make_inputs(args, device)
    base = rss_mb()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base_gpu = torch.cuda.memory_allocated() / 2**20
    if args.method == "video":
        fps = run_video(args, device)
        outs, times = [], [1.0 / fps]
    else:
        outs, times = (run_local if args.method == "local" else run_dense)(args, device, feats, labels)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {"method": args.method, "seconds_per_frame": sum(times) / len(times),
              "frames_per_second": len(times) / sum(times), "peak_rss_mb": peak, "setup_rss_mb": base}
    if device.type == "cuda":
        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
        result["setup_gpu_mb"] = base_gpu
        result["gpu"] = torch.cuda.get_device_name()
    torch.save(outs, args.out + ".pt")
    Path(args.out + ".json").write_text(json.dumps(result))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--height", type=int, default=60)
    p.add_argument("--width", type=int, default=107)
    p.add_argument("--channels", type=int, default=256)
    p.add_argument("--context", type=int, default=20)
    p.add_argument("--topk", type=int, default=10)
    p.add_argument("--radius", type=float, default=12.0)
    p.add_argument("--labels", type=int, default=6)
    p.add_argument("--targets", type=int, default=3, help="timed target frames")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--tile", type=int, default=8)
    p.add_argument("--chunk", type=int, default=None, help="score-block bound (elements)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--skip-dense", action="store_true")
    p.add_argument("--video-lengths", type=int, nargs="*", default=[],
                   help="also run whole videos of these lengths (local only): frames/s and peak memory")
    p.add_argument("--video", type=int, help=argparse.SUPPRESS)
    p.add_argument("--method", choices=["local", "dense", "video"], help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.method:
        child(args)
        return

    print(f"grid {args.height}×{args.width}, C={args.channels}, context {args.context}, top-k {args.topk}, "
          f"radius {args.radius}, device {args.device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads; {args.targets} timed target frames after {args.warmup} warm-up")
    results, outputs = {}, {}
    passed = [a for a in sys.argv[1:] if a != "--skip-dense"]
    if "--video-lengths" in passed:   # the child gets one --video N instead
        i = passed.index("--video-lengths")
        j = i + 1
        while j < len(passed) and not passed[j].startswith("--"):
            j += 1
        passed = passed[:i] + passed[j:]
    with tempfile.TemporaryDirectory() as tmp:
        runs = [(m, m, []) for m in ["local"] + ([] if args.skip_dense else ["dense"])]
        runs += [(f"video{n}", "video", ["--video", str(n)]) for n in args.video_lengths]
        for name, method, extra in runs:
            out = os.path.join(tmp, name)
            subprocess.run([sys.executable, __file__, "--method", method, "--out", out] + extra + passed,
                           check=True)
            results[name] = json.loads(Path(out + ".json").read_text())
            outputs[name] = torch.load(out + ".pt")
    for method, r in results.items():
        line = (f"{method:>9}: {r['frames_per_second']:8.3f} frames/s  ({1000 * r['seconds_per_frame']:9.1f} ms/frame)  "
                f"peak RSS {r['peak_rss_mb']:8.0f} MB (setup {r['setup_rss_mb']:.0f} MB)")
        if "peak_gpu_mb" in r:
            line += f"  peak GPU {r['peak_gpu_mb']:.0f} MB (setup {r['setup_gpu_mb']:.0f} MB) on {r['gpu']}"
        print(line)
    if "dense" in results:
        lo, de = results["local"], results["dense"]
        speedup = de["seconds_per_frame"] / lo["seconds_per_frame"]
        mem_key = "peak_gpu_mb" if "peak_gpu_mb" in lo else "peak_rss_mb"
        setup_key = "setup_gpu_mb" if "peak_gpu_mb" in lo else "setup_rss_mb"
        work_lo = lo[mem_key] - lo[setup_key]
        work_de = de[mem_key] - de[setup_key]
        diff = max((a - b).abs().max().item() for a, b in zip(outputs["local"], outputs["dense"]))
        agree = sum((a.argmax(0) == b.argmax(0)).float().mean().item()
                    for a, b in zip(outputs["local"], outputs["dense"])) / len(outputs["local"])
        print(f"speed-up local/dense: {speedup:.1f}x; working memory {work_lo:.0f} MB vs {work_de:.0f} MB "
              f"({work_de / max(work_lo, 1e-9):.1f}x less); max |Δ soft label| {diff:.2e}, "
              f"argmax agreement {100 * agree:.4f} %")
        if not math.isfinite(diff) or agree < 0.999:
            sys.exit("local and dense propagation disagree")


if __name__ == "__main__":
    main()
