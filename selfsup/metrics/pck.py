"""JHMDB keypoint propagation: PCK (evaluation spec §2), vectorised.

Per video: a joint counts in frame k ≥ 1 (frame 0 is given, never scored) when its predicted x is
≥ 0; predictions in grid units become pixels by x/grid·W, y/grid·H (no half-cell offset); the
distance to the ground truth is divided by 0.6 × the diagonal of the box around the ground-truth
joints counted in that frame. PCK_j(α) pools joint j's distances over all videos; PCK(α) is the mean
of the 15 per-joint values (in percent).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..data.davis import read_image
from ..data.jhmdb import JOINT_NAMES, JhmdbSet, read_prediction

__all__ = ["ALPHAS", "pck_distances", "PckAccumulator", "evaluate_jhmdb", "decode_size"]

log = logging.getLogger(__name__)

ALPHAS = (0.1, 0.2, 0.3, 0.4, 0.5)
NORMALISER_SCALE = 0.6


def pck_distances(pred: np.ndarray, gt: np.ndarray, width: float, height: float,
                  grid_size: float = 40.0) -> list[np.ndarray]:
    """Normalised distances of one video, one array per joint (frames k ≥ 1, counted joints only).

    pred: 2×J×T' in grid units (T' ≥ T); gt: 2×J×T in 0-based pixels.
    """
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.ndim != 3 or gt.ndim != 3 or pred.shape[:2] != gt.shape[:2] or pred.shape[0] != 2:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} must both be 2×J×T")
    n_frames = gt.shape[2]
    if pred.shape[2] < n_frames:
        raise ValueError(f"prediction covers {pred.shape[2]} frames but the ground truth has {n_frames}")
    pred = pred[:, :, :n_frames]
    visible = pred[0] >= 0                                    # J×T, x only, before scaling
    px = pred[0] / grid_size * width
    py = pred[1] / grid_size * height
    gx, gy = gt[0], gt[1]
    minx = np.minimum(np.where(visible, gx, 1e6).min(0), 1e6)
    miny = np.minimum(np.where(visible, gy, 1e6).min(0), 1e6)
    maxx = np.maximum(np.where(visible, gx, -1.0).max(0), -1.0)
    maxy = np.maximum(np.where(visible, gy, -1.0).max(0), -1.0)
    norm = NORMALISER_SCALE * np.sqrt((maxx - minx) ** 2 + (maxy - miny) ** 2)    # per frame
    with np.errstate(divide="ignore", invalid="ignore"):  # one counted joint: zero box
        dist = np.sqrt((px - gx) ** 2 + (py - gy) ** 2) / norm[None, :]
    keep = visible.copy()
    keep[:, 0] = False                                        # frame 0 is the given frame
    return [dist[j, keep[j]] for j in range(gt.shape[1])]


@dataclass
class PckAccumulator:
    """Pools per-joint distances over videos; `pck(alpha)` is the mean of the per-joint PCKs."""

    n_joints: int = 15
    distances: list[list[np.ndarray]] = field(default_factory=list)
    videos: int = 0

    def __post_init__(self) -> None:
        if not self.distances:
            self.distances = [[] for _ in range(self.n_joints)]

    def add(self, per_joint: Sequence[np.ndarray]) -> None:
        if len(per_joint) != self.n_joints:
            raise ValueError(f"expected {self.n_joints} joints, got {len(per_joint)}")
        for j, d in enumerate(per_joint):
            self.distances[j].append(np.asarray(d, dtype=np.float64))
        self.videos += 1

    def per_joint(self, alpha: float) -> np.ndarray:
        out = np.full(self.n_joints, np.nan)
        for j, parts in enumerate(self.distances):
            d = np.concatenate(parts) if parts else np.zeros(0)
            if d.size:
                out[j] = 100.0 * np.count_nonzero(d <= alpha) / d.size
        return out

    def pck(self, alpha: float) -> float:
        values = self.per_joint(alpha)
        if np.isnan(values).all():
            raise ValueError("no joint was ever scored (no predicted x ≥ 0 in frames after the first)")
        if np.isnan(values).any():
            missing = [JOINT_NAMES[j] if self.n_joints == 15 else str(j) for j in np.flatnonzero(np.isnan(values))]
            log.warning("joints never scored, left out of the mean: %s", ", ".join(missing))
        return float(np.nanmean(values))

    def summary(self, alphas: Sequence[float] = ALPHAS) -> dict:
        out: dict = {f"PCK@{a:g}": self.pck(a) for a in alphas}
        names = JOINT_NAMES if self.n_joints == 15 else [str(j) for j in range(self.n_joints)]
        out["per_joint"] = {f"PCK@{a:g}": dict(zip(names, [None if np.isnan(v) else float(v)
                                                            for v in self.per_joint(a)]))
                            for a in alphas}
        out["videos"] = self.videos
        return out


def decode_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image file."""
    image = read_image(path)
    return image.shape[1], image.shape[0]


def evaluate_jhmdb(root: str | Path, results: str | Path, split: int = 1, grid_size: float = 40.0,
                   alphas: Sequence[float] = ALPHAS) -> dict:
    """PCK of a results folder (`<class>__<video>.npy` or `.dat`, 2×15×T grid units) on a JHMDB split."""
    jhmdb = JhmdbSet(root, split=split)
    results = Path(results)
    if not results.is_dir():
        raise FileNotFoundError(f"{results}: results folder not found")
    acc = PckAccumulator()
    for video in jhmdb.videos:
        path = results / f"{video.key}.npy"
        if not path.exists() and (results / f"{video.key}.dat").exists():
            path = results / f"{video.key}.dat"
        pred = read_prediction(path)
        gt = jhmdb.joints(video)
        width, height = decode_size(jhmdb.frame_paths(video)[0])
        try:
            acc.add(pck_distances(pred, gt, width, height, grid_size))
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
    return acc.summary(alphas)
