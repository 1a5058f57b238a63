"""Evaluation metrics with the official protocols: DAVIS J&F, JHMDB PCK, VIP mIoU (and FID in `fid`).

Each protocol's module holds the small pure functions (per frame, per object, per video) and an
`evaluate_*` function that reads a results folder in the data set's official result format.
"""
from .davis import DavisScores, evaluate_davis, f_measure, jaccard
from .miou import confusion_matrix, evaluate_vip, mean_iou
from .pck import PckAccumulator, evaluate_jhmdb, pck_distances

__all__ = ["DavisScores", "evaluate_davis", "f_measure", "jaccard", "confusion_matrix", "evaluate_vip",
           "mean_iou", "PckAccumulator", "evaluate_jhmdb", "pck_distances"]
