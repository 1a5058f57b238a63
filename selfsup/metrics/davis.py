"""DAVIS-2017 semi-supervised evaluation: region similarity J and boundary accuracy F.

Identical to the official evaluator on identical results (evaluation spec §1):
- void (255) counts as background; K = max id of the first GT frame; first and last frames are not
  scored (their result files are never read); objects missing from the results are empty masks;
- J = |S∧G|/|S∨G| (1 when both are empty); F from one-pixel boundary maps matched within a disk of
  radius ceil(0.008·diagonal) of the frame's own size;
- Mean / Recall (> 0.5) / Decay (inclusive bins from round(linspace) + 1e-10) per object, then the
  plain mean over all objects of all sequences.

The disk dilation is exact but computed with a Euclidean distance transform restricted to the
bounding box of the two boundary maps, instead of two full-frame dilations per object and frame.
Bad result folders (missing frames, colour PNGs, wrong sizes, extra object ids) raise with the path.
"""
from __future__ import annotations

import logging
import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from scipy import ndimage

from ..data.davis import DavisSet, read_indexed_png

__all__ = ["jaccard", "boundary_map", "boundary_tolerance", "f_measure", "decay_indices",
           "object_statistics", "evaluate_sequence", "SequenceScores", "DavisScores", "evaluate_davis",
           "GLOBAL_KEYS"]

log = logging.getLogger(__name__)

GLOBAL_KEYS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")
BOUNDARY_FRACTION = 0.008
DAVIS17_VAL_OBJECTS = 61


# --------------------------------------------------------------------------------------------
# Per frame
# --------------------------------------------------------------------------------------------

def jaccard(gt: np.ndarray, res: np.ndarray) -> np.ndarray | float:
    """J of binary masks (…×H×W); 1 where both masks are empty."""
    gt = np.asarray(gt, dtype=bool)
    res = np.asarray(res, dtype=bool)
    inter = np.sum(gt & res, axis=(-2, -1))
    union = np.sum(gt | res, axis=(-2, -1))
    with np.errstate(divide="ignore", invalid="ignore"):
        j = inter / union
    j = np.where(union == 0, 1.0, j)
    return float(j) if j.ndim == 0 else j


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """One-pixel boundary of a binary mask (…×H×W), offset half a pixel towards the origin.

    b[y,x] = M[y,x]≠M[y,x+1] ∨ M[y,x]≠M[y+1,x] ∨ M[y,x]≠M[y+1,x+1] inside; the last row compares
    only to the right, the last column only downwards, the bottom-right pixel is never a boundary.
    """
    m = np.asarray(mask, dtype=bool)
    b = np.zeros_like(m)
    b[..., :-1, :-1] = ((m[..., :-1, :-1] != m[..., :-1, 1:]) | (m[..., :-1, :-1] != m[..., 1:, :-1])
                        | (m[..., :-1, :-1] != m[..., 1:, 1:]))
    b[..., -1, :-1] = m[..., -1, :-1] != m[..., -1, 1:]
    b[..., :-1, -1] = m[..., :-1, -1] != m[..., 1:, -1]
    return b


def boundary_tolerance(height: int, width: int, fraction: float = BOUNDARY_FRACTION) -> int:
    """Match radius in pixels: ceil(fraction·√(H² + W²)) (a fraction ≥ 1 is taken as pixels)."""
    if fraction >= 1:
        return int(fraction)
    return int(math.ceil(fraction * float(np.linalg.norm([height, width]))))


def _matched_within(source: np.ndarray, target: np.ndarray, radius: int) -> int:
    """|target ∧ D_r(source)|: target pixels within Euclidean distance ≤ radius of a source pixel.

    `source` must be non-empty. Every source and target pixel lies inside the bounding box of their
    union, so a distance transform of that box alone is exact (pixels outside the image hold no
    source pixel, which is OpenCV's default dilation border).
    """
    ys, xs = np.nonzero(source | target)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    src = source[y0:y1, x0:x1]
    tgt = target[y0:y1, x0:x1]
    # distance of every pixel to the nearest source pixel (exact Euclidean: sqrt of an integer)
    dist = ndimage.distance_transform_edt(~src)
    return int(np.count_nonzero(tgt & (dist <= radius)))


def f_measure(gt: np.ndarray, res: np.ndarray, tolerance: float = BOUNDARY_FRACTION) -> float:
    """Boundary F of one binary mask pair (H×W), with the official edge cases."""
    gt = np.asarray(gt, dtype=bool)
    res = np.asarray(res, dtype=bool)
    if gt.shape != res.shape or gt.ndim != 2:
        raise ValueError(f"f_measure needs two H×W masks of one size, got {gt.shape} and {res.shape}")
    radius = boundary_tolerance(*gt.shape, fraction=tolerance)
    gt_b = boundary_map(gt)
    res_b = boundary_map(res)
    n_res = int(np.count_nonzero(res_b))
    n_gt = int(np.count_nonzero(gt_b))
    if n_res == 0 and n_gt > 0:
        precision, recall = 1.0, 0.0
    elif n_res > 0 and n_gt == 0:
        precision, recall = 0.0, 1.0
    elif n_res == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    else:
        precision = _matched_within(gt_b, res_b, radius) / float(n_res)
        recall = _matched_within(res_b, gt_b, radius) / float(n_gt)
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


# --------------------------------------------------------------------------------------------
# Per object
# --------------------------------------------------------------------------------------------

def decay_indices(n: int, bins: int = 4) -> np.ndarray:
    """Bin edges over n scored frames: round(linspace(1, n, bins + 1) + 1e-10) − 1 (int64)."""
    return (np.round(np.linspace(1, n, bins + 1) + 1e-10) - 1).astype(np.int64)


def object_statistics(values: Sequence[float]) -> tuple[float, float, float]:
    """(Mean, Recall, Decay) of one object's per-frame J or F values."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise ValueError("no scored frames: a DAVIS sequence needs at least 3 frames")
    mean = float(np.nanmean(v))
    recall = float(np.nanmean(v > 0.5))
    ids = decay_indices(v.size)
    bins = [v[ids[i]: ids[i + 1] + 1] for i in range(len(ids) - 1)]
    decay = float(np.nanmean(bins[0]) - np.nanmean(bins[-1]))
    return mean, recall, decay


# --------------------------------------------------------------------------------------------
# Per sequence
# --------------------------------------------------------------------------------------------

def evaluate_sequence(gt: np.ndarray, res: np.ndarray, n_objects: int,
                      tolerance: float = BOUNDARY_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame J and F (each n_objects × T) of id maps `gt`, `res` (T×H×W) for objects 1..K."""
    gt = np.asarray(gt)
    res = np.asarray(res)
    if gt.shape != res.shape or gt.ndim != 3:
        raise ValueError(f"ground truth {gt.shape} and results {res.shape} must both be T×H×W")
    n_frames = gt.shape[0]
    j = np.zeros((n_objects, n_frames))
    f = np.zeros((n_objects, n_frames))
    for k in range(1, n_objects + 1):
        g = gt == k
        s = res == k
        j[k - 1] = jaccard(g, s)
        for t in range(n_frames):
            f[k - 1, t] = f_measure(g[t], s[t], tolerance)
    return j, f


@dataclass
class SequenceScores:
    name: str
    j: np.ndarray          # n_objects × T' per-frame J
    f: np.ndarray          # n_objects × T' per-frame F
    frames: list[str] = field(default_factory=list)   # scored frame names

    @property
    def n_objects(self) -> int:
        return int(self.j.shape[0])


def _check_result(path: Path, shape: tuple[int, int]) -> np.ndarray:
    if not path.exists():
        raise FileNotFoundError(f"{path}: result frame missing (every frame but the first and the last "
                                f"is scored; name results like the ground truth)")
    labels = read_indexed_png(path)
    if labels.shape != shape:
        raise ValueError(f"{path}: result is {labels.shape[1]}×{labels.shape[0]} (W×H) but the ground "
                         f"truth is {shape[1]}×{shape[0]}; write results at the ground-truth size")
    return labels


def score_sequence(davis: DavisSet, results: Path, seq: str, exclude_first_last: bool = True,
                   tolerance: float = BOUNDARY_FRACTION) -> SequenceScores:
    """Read one sequence's ground truth and results (checking them) and score it."""
    gt_paths = davis.annotation_paths(seq)
    first = davis.read_annotation(gt_paths[0])
    n_objects = int(first.max())
    scored = gt_paths[1:-1] if exclude_first_last else gt_paths
    if not scored:
        raise ValueError(f"{davis.annotation_dir(seq)}: {len(gt_paths)} frames; at least 3 are needed "
                         f"(the first and the last are not scored)")
    seq_dir = results / seq
    if not seq_dir.is_dir():
        raise FileNotFoundError(f"{seq_dir}: no results for sequence {seq!r}")
    gt = np.stack([davis.read_annotation(p) for p in scored])
    res = np.stack([_check_result(seq_dir / p.name, gt.shape[1:]) for p in scored])
    n_res = int(res.max()) if res.size else 0
    if n_res > n_objects:
        frame = scored[int(np.argmax(res.reshape(len(scored), -1).max(1)))].name
        raise ValueError(f"{seq_dir}: results hold object id {n_res} (e.g. in {frame}) but the first "
                         f"ground-truth frame has only {n_objects} object(s)")
    j, f = evaluate_sequence(gt, res, n_objects, tolerance)
    return SequenceScores(seq, j, f, [p.stem for p in scored])


def _score_job(args: tuple) -> SequenceScores:
    root, set_name, resolution, results, seq, exclude, tolerance = args
    return score_sequence(DavisSet(root, set_name, resolution), Path(results), seq, exclude, tolerance)


# --------------------------------------------------------------------------------------------
# Whole set
# --------------------------------------------------------------------------------------------

@dataclass
class DavisScores:
    sequences: list[SequenceScores]
    set_name: str = "val"

    def _objects(self) -> Iterable[tuple[str, np.ndarray, np.ndarray]]:
        for seq in self.sequences:
            for k in range(seq.n_objects):
                yield f"{seq.name}_{k + 1}", seq.j[k], seq.f[k]

    def per_object(self) -> dict[str, dict[str, float]]:
        out = {}
        for name, j, f in self._objects():
            jm, jr, jd = object_statistics(j)
            fm, fr, fd = object_statistics(f)
            out[name] = {"J-Mean": jm, "J-Recall": jr, "J-Decay": jd,
                         "F-Mean": fm, "F-Recall": fr, "F-Decay": fd}
        return out

    def summary(self) -> dict[str, float]:
        objs = self.per_object()
        if not objs:
            raise ValueError("no objects to score (every first ground-truth frame is empty)")
        stats = {key: float(np.mean([o[key] for o in objs.values()])) for key in GLOBAL_KEYS[1:]}
        return {"J&F-Mean": (stats["J-Mean"] + stats["F-Mean"]) / 2.0, **stats}

    @property
    def n_objects(self) -> int:
        return sum(s.n_objects for s in self.sequences)

    def to_dict(self) -> dict:
        per = self.per_object()
        return {**self.summary(), "objects": self.n_objects, "sequences": len(self.sequences),
                "per_object": per}

    def table(self) -> str:
        """The official printout: global results, then one row per object `<seq>_<k>`."""
        summary = self.summary()
        lines = [f"{'-' * 27} Global results for {self.set_name} {'-' * 27}",
                 "  ".join(f"{k:>9}" for k in GLOBAL_KEYS),
                 "  ".join(f"{summary[k]:>9.3f}" for k in GLOBAL_KEYS), "",
                 f"{'-' * 10} Per sequence results for {self.set_name} {'-' * 10}"]
        per = self.per_object()
        width = max([len("Sequence")] + [len(n) for n in per])
        lines.append(f"{'Sequence':>{width}}  {'J-Mean':>7}  {'F-Mean':>7}")
        for name, o in per.items():
            lines.append(f"{name:>{width}}  {o['J-Mean']:>7.3f}  {o['F-Mean']:>7.3f}")
        return "\n".join(lines)


def evaluate_davis(root: str | Path, results: str | Path, set_name: str = "val",
                   sequences: Sequence[str] | None = None, resolution: str = "480p",
                   exclude_first_last: bool = True, workers: int = 1,
                   tolerance: float = BOUNDARY_FRACTION, progress: bool = False) -> DavisScores:
    """Score a results folder (`<results>/<seq>/<frame>.png`) against DAVIS ground truth."""
    davis = DavisSet(root, set_name, resolution)
    results = Path(results)
    if not results.is_dir():
        raise FileNotFoundError(f"{results}: results folder not found")
    names = list(sequences) if sequences is not None else davis.sequences
    jobs = [(davis.root, set_name, resolution, results, s, exclude_first_last, tolerance) for s in names]
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            scores = list(pool.map(_score_job, jobs))
    else:
        it: Iterable = jobs
        if progress:
            from tqdm import tqdm

            it = tqdm(jobs, desc="DAVIS J&F", unit="seq", disable=None)   # bars on terminals only
        scores = [_score_job(job) for job in it]
    out = DavisScores(scores, set_name)
    if set_name == "val" and len(names) == 30 and out.n_objects != DAVIS17_VAL_OBJECTS:
        log.warning("DAVIS-2017 val has %d objects, %d counted on this copy: check the annotations",
                    DAVIS17_VAL_OBJECTS, out.n_objects)
    return out
