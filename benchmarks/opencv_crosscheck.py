"""Cross-check against OpenCV where the official code uses it (run where `cv2` is installed).

- one-hot label resize to the grid and label upsampling: `mask_labels` / `labels_to_ids` vs
  cv2.resize(INTER_LINEAR) on float32;
- the VIP label-map resize: `resize_label_map` vs cv2.resize on uint8 (INTER_LINEAR: OpenCV's
  fixed-point weights may round differently; INTER_NEAREST: identical);
- DAVIS F: `f_measure` vs the official recipe with cv2.dilate and a disk kernel.

    python benchmarks/opencv_crosscheck.py
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from selfsup.metrics.davis import boundary_map, boundary_tolerance, f_measure  # noqa: E402
from selfsup.propagate import labels_to_ids, mask_labels, resize_label_map  # noqa: E402

try:
    import cv2
except ImportError:
    sys.exit("OpenCV (cv2) is not installed here")


def official_f(gt: np.ndarray, res: np.ndarray) -> float:
    r = boundary_tolerance(*gt.shape)
    gb, sb = boundary_map(gt), boundary_map(res)
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    disk = ((yy ** 2 + xx ** 2) <= r * r).astype(np.uint8)
    gd = cv2.dilate(gb.astype(np.uint8), disk).astype(bool)
    sd = cv2.dilate(sb.astype(np.uint8), disk).astype(bool)
    ng, ns = gb.sum(), sb.sum()
    if ns == 0 and ng > 0:
        p, rc = 1.0, 0.0
    elif ns > 0 and ng == 0:
        p, rc = 0.0, 1.0
    elif ns == 0 and ng == 0:
        p, rc = 1.0, 1.0
    else:
        p, rc = np.sum(sb & gd) / float(ns), np.sum(gb & sd) / float(ng)
    return 0.0 if p + rc == 0 else 2 * p * rc / (p + rc)


def blobs(rng, h, w, n=4):
    m = np.zeros((h, w), np.uint8)
    for k in range(1, n + 1):
        cy, cx = rng.integers(0, h), rng.integers(0, w)
        ry, rx = rng.integers(h // 10, h // 3), rng.integers(w // 10, w // 3)
        yy, xx = np.ogrid[:h, :w]
        m[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] = k
    return m


def main() -> None:
    rng = np.random.default_rng(0)
    print(f"OpenCV {cv2.__version__}, torch {torch.__version__}")
    worst = 0.0
    for size, grid in [((480, 854), (60, 107)), ((480, 910), (60, 114)), ((560, 560), (70, 70)), ((240, 427), (30, 54))]:
        lab = blobs(rng, *size)
        values, soft = mask_labels(lab, grid, dtype=torch.float32)
        for i, v in enumerate(values):
            ref = cv2.resize((lab == v).astype(np.float32), grid[::-1], interpolation=cv2.INTER_LINEAR)
            worst = max(worst, float(np.abs(soft[i].numpy() - ref).max()))
    print(f"one-hot -> grid, max |selfsup − cv2.INTER_LINEAR|: {worst:.2e}")
    mismatch, total = 0, 0
    for size, grid in [((480, 854), (60, 107)), ((560, 560), (70, 70))]:
        soft = torch.rand(5, *grid)
        ids = labels_to_ids(soft, size, np.arange(5))
        up = np.stack([cv2.resize(c.numpy(), size[::-1], interpolation=cv2.INTER_LINEAR) for c in soft])
        mismatch += int((ids != up.argmax(0)).sum())
        total += ids.size
    print(f"grid -> image + argmax, pixels differing from cv2: {mismatch} of {total}")
    for interp, flag in (("nearest", cv2.INTER_NEAREST), ("linear", cv2.INTER_LINEAR)):
        diff, total = 0, 0
        for size in [(720, 1280), (480, 360), (240, 160)]:
            lab = (blobs(rng, *size, n=6) * 3).astype(np.uint8)
            ours = resize_label_map(lab, (560, 560), interp)
            ref = cv2.resize(lab, (560, 560), interpolation=flag)
            diff += int((ours != ref).sum())
            total += ours.size
        print(f"label map -> 560×560 ({interp}), pixels differing from cv2 uint8: {diff} of {total}")
    fs = []
    for _ in range(20):
        gt, res = blobs(rng, 480, 854, 1) > 0, blobs(rng, 480, 854, 1) > 0
        if rng.random() < 0.5:
            res = np.roll(gt, tuple(rng.integers(-12, 13, 2)), (0, 1))
        fs.append(abs(f_measure(gt, res) - official_f(gt, res)))
    print(f"DAVIS F vs cv2.dilate recipe on 20 mask pairs, max |Δ|: {max(fs):.2e}")


if __name__ == "__main__":
    main()
