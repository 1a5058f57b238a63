"""VIP part propagation: mIoU from one confusion matrix (evaluation spec §3).

Every prediction file under `<results>/<video>/` is scored (the frame-0 output too) against
`Category_ids/<video>/<same stem>.png`, after a PIL nearest-neighbour resize to the ground-truth
size. Pixels whose ground truth is outside 0..19 (255 = ignore) are skipped; predicted values ≥ 20
raise. IoU_c = hist[c,c] / (row_c + col_c − hist[c,c]); mIoU = nanmean over the classes, in percent.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from ..data.davis import read_indexed_png
from ..data.vip import VIP_CLASSES, VipSet

__all__ = ["N_CLASSES", "confusion_matrix", "iou_per_class", "mean_iou", "evaluate_vip",
           "read_part_prediction"]

N_CLASSES = 20


def confusion_matrix(gt: np.ndarray, pred: np.ndarray, n_classes: int = N_CLASSES) -> np.ndarray:
    """hist[g, p] over the pixels with 0 ≤ g < n_classes (int64, n_classes × n_classes)."""
    gt = np.asarray(gt).reshape(-1).astype(np.int64)
    pred = np.asarray(pred).reshape(-1).astype(np.int64)
    if gt.shape != pred.shape:
        raise ValueError(f"ground truth and prediction differ in size: {gt.size} vs {pred.size}")
    keep = (gt >= 0) & (gt < n_classes)
    if pred.size and (pred.min() < 0 or pred.max() >= n_classes):
        raise ValueError(f"predicted class ids must lie in 0..{n_classes - 1}, got "
                         f"{pred.min()}..{pred.max()}")
    return np.bincount(n_classes * gt[keep] + pred[keep], minlength=n_classes ** 2).reshape(
        n_classes, n_classes)


def iou_per_class(hist: np.ndarray) -> np.ndarray:
    """IoU of every class; NaN where the class is neither in the ground truth nor predicted."""
    hist = np.asarray(hist, dtype=np.float64)
    diag = np.diag(hist)
    with np.errstate(divide="ignore", invalid="ignore"):
        return diag / (hist.sum(1) + hist.sum(0) - diag)


def mean_iou(hist: np.ndarray) -> float:
    """nanmean of the per-class IoU (a fraction; multiply by 100 for percent)."""
    iou = iou_per_class(hist)
    if np.isnan(iou).all():
        raise ValueError("no pixel was scored (empty confusion matrix)")
    return float(np.nanmean(iou))


def read_part_prediction(path: Path, size: tuple[int, int], n_classes: int = N_CLASSES) -> np.ndarray:
    """A single-channel class-id PNG, resized to `size` (W, H) with PIL nearest if needed."""
    if path.suffix.lower() != ".png":
        raise ValueError(f"{path}: not a PNG; prediction folders hold only single-channel class-id PNGs")
    with Image.open(path) as img:
        if img.mode not in ("L", "P"):
            raise ValueError(f"{path}: prediction has mode {img.mode!r}; expected a single-channel "
                             f"class-id PNG (mode 'L' or 'P')")
        if img.size != tuple(size):
            img = img.resize(tuple(size), Image.NEAREST)
        pred = np.array(img)
    if pred.size and pred.max() >= n_classes:
        raise ValueError(f"{path}: class id {int(pred.max())} ≥ {n_classes} (valid ids 0..{n_classes - 1})")
    return pred


def evaluate_vip(root: str | Path, results: str | Path, subset: str = "val",
                 videos: Sequence[str] | None = None, n_classes: int = N_CLASSES) -> dict:
    """mIoU (percent) of `<results>/<video>/<frame>.png` over the videos of a VIP list."""
    vip = VipSet(root, subset)
    results = Path(results)
    if not results.is_dir():
        raise FileNotFoundError(f"{results}: results folder not found")
    names = list(videos) if videos is not None else vip.videos
    hist = np.zeros((n_classes, n_classes), dtype=np.int64)
    n_files = 0
    for video in names:
        folder = results / video
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no predictions for video {video!r}")
        files = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
        if not files:
            raise ValueError(f"{folder}: no prediction files")
        for path in files:
            gt_path = vip.annotation_path(video, path.name)
            if not gt_path.exists():
                raise FileNotFoundError(f"{path}: no ground truth for this frame ({gt_path} not found)")
            gt = read_indexed_png(gt_path)
            pred = read_part_prediction(path, (gt.shape[1], gt.shape[0]), n_classes)
            hist += confusion_matrix(gt, pred, n_classes)
            n_files += 1
    iou = iou_per_class(hist)
    names_c = VIP_CLASSES if n_classes == len(VIP_CLASSES) else tuple(str(c) for c in range(n_classes))
    return {"mIoU": 100.0 * mean_iou(hist),
            "per_class": {c: (None if np.isnan(v) else 100.0 * float(v)) for c, v in zip(names_c, iou)},
            "frames": n_files, "videos": len(names)}
