"""Exemplar-SVM retrieval (Malisiewicz et al. 2011; Shrivastava et al. 2011) against cosine nearest
neighbours.

A collection of images is encoded once into descriptors (the layer3 map of an encoder, average
pooled to a grid x grid layout, flattened and L2-normalised); the descriptors are cached on disk,
keyed by the checkpoint's SHA-256, the file list (names, sizes, modification times) and the
descriptor settings. For a query, a linear SVM separates the query (plus, optionally, jittered
copies of it) from the whole collection, with the Exemplar-SVM's asymmetric regularisation: a
large C for the few positives, a small C for the many negatives (0.5 and 0.01 in the paper). The
collection is ranked by the SVM's decision value: the query's *discriminative* directions weigh
more than the ones every image shares. Cosine retrieval ranks by the plain dot product instead.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..io import atomic_path, sha256_file
from .augment import AugmentConfig, augment

__all__ = ["IMAGE_EXTENSIONS", "list_images", "read_images", "describe", "DescriptorConfig",
           "collection_key", "encode_collection", "ExemplarSVMConfig", "exemplar_svm", "rank_esvm",
           "rank_cosine", "precision_at_k", "mean_precision_at_k", "query_jitter", "default_cache_dir",
           "model_identity", "QUERY_JITTER"]

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp")
CACHE_VERSION = 1
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

FeatureExtractor = Callable[[torch.Tensor], torch.Tensor]

# Small shifts, scalings and flips of the query (the "jittered" positives of the data-driven
# similarity paper)
QUERY_JITTER = AugmentConfig(ops=("crop", "flip"), crop_scale=(0.7, 1.0), crop_ratio=(0.9, 1.1))


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "selfsup" / "retrieval"


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside `folder` and its sub-folders, sorted by relative path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: collection folder not found")
    files = sorted(p for p in folder.rglob("*")
                   if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if not files:
        raise ValueError(f"{folder}: no images ({', '.join(IMAGE_EXTENSIONS)}) found")
    return files


def read_images(paths: Sequence[str | Path], size: int) -> torch.Tensor:
    """RGB images resized to size x size (bilinear, antialiased): float N x 3 x size x size in [0, 1]."""
    from PIL import Image, UnidentifiedImageError

    out = []
    for p in paths:
        try:
            with Image.open(p) as img:
                arr = np.array(img.convert("RGB"), dtype=np.uint8)
        except (UnidentifiedImageError, OSError) as exc:
            raise ValueError(f"{p}: not a readable image ({exc})") from None
        x = torch.from_numpy(arr).permute(2, 0, 1).float().div_(255.0)[None]
        out.append(F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True))
    return torch.cat(out) if out else torch.zeros(0, 3, size, size)


@dataclass(frozen=True)
class DescriptorConfig:
    size: int = 64          # images are resized to size x size before encoding
    grid: int = 2           # layer3 map average pooled to grid x grid (1 = global average)

    def __post_init__(self) -> None:
        if self.size < 8 or self.grid < 1:
            raise ValueError(f"need size >= 8 and grid >= 1, got size={self.size}, grid={self.grid}")


@torch.no_grad()
def describe(extractor: FeatureExtractor, images: torch.Tensor, grid: int = 1, batch_size: int = 64) -> np.ndarray:
    """Descriptors (N x C*grid*grid, L2-normalised, float32) of float images N x 3 x H x W in [0, 1]."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    out = []
    for start in range(0, len(images), batch_size):
        x = (images[start:start + batch_size] - mean) / std
        fmap = extractor(x).float().cpu()
        d = F.adaptive_avg_pool2d(fmap, grid).flatten(1)
        out.append(F.normalize(d, dim=1, eps=1e-12))
    if not out:
        raise ValueError("no images to describe")
    return torch.cat(out).numpy().astype(np.float32)


def collection_key(model_id: str, root: Path, files: Sequence[Path], config: DescriptorConfig) -> str:
    """Cache key: the model's identity (a checkpoint's SHA-256), every file's relative name, size and
    modification time, and the descriptor settings."""
    listing = []
    for p in files:
        st = p.stat()
        listing.append([p.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns])
    blob = json.dumps({"version": CACHE_VERSION, "model": model_id, "files": listing,
                       "size": config.size, "grid": config.grid}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


def encode_collection(extractor: FeatureExtractor, folder: str | Path, *, model_id: str,
                      config: DescriptorConfig = DescriptorConfig(), cache_dir: str | Path | None = None,
                      batch_size: int = 64) -> tuple[list[Path], np.ndarray, bool]:
    """(files, descriptors, loaded_from_cache) of every image of `folder`.

    `model_id` names the encoder (use `sha256_file(checkpoint)`); with `cache_dir` the
    descriptors are read from / written to `<cache_dir>/<key>.npz`.
    """
    folder = Path(folder)
    files = list_images(folder)
    key = collection_key(model_id, folder, files, config)
    path = Path(cache_dir) / f"{key}.npz" if cache_dir is not None else None
    if path is not None and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as data:
                names = [str(n) for n in data["files"]]
                desc = data["descriptors"]
            if names == [p.relative_to(folder).as_posix() for p in files] and len(desc) == len(files):
                log.info("descriptors of %d images from cache %s", len(files), path)
                return files, desc, True
        except (OSError, ValueError, KeyError) as exc:
            log.warning("%s: unreadable descriptor cache (%s); recomputing", path, exc)
    desc = np.concatenate([describe(extractor, read_images(files[i:i + batch_size], config.size), config.grid)
                           for i in range(0, len(files), batch_size)])
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, suffix=".npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, files=np.array([p.relative_to(folder).as_posix() for p in files]),
                         descriptors=desc)
    return files, desc, False


def model_identity(checkpoint: str | Path) -> str:
    return sha256_file(checkpoint)


# ------------------------------------------------------------------------------------------------
# Ranking
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ExemplarSVMConfig:
    """The Exemplar-SVM: minimise ||w||^2 + C_pos sum_pos h(w.x + b) + C_neg sum_neg h(-w.x - b), hinge
    h(s) = max(0, 1 - s); the paper's C_pos = 0.5, C_neg = 0.01. The paper's bias is not regularised;
    liblinear regularises it as the weight of a constant feature `intercept_scaling`, so a large value
    approximates the free bias."""

    c_positive: float = 0.5
    c_negative: float = 0.01
    intercept_scaling: float = 10.0
    max_iter: int = 10_000

    def __post_init__(self) -> None:
        if not (self.c_positive > 0 and self.c_negative > 0):
            raise ValueError(f"C values must be > 0, got {self.c_positive}, {self.c_negative}")


def exemplar_svm(positives: np.ndarray, negatives: np.ndarray,
                 config: ExemplarSVMConfig = ExemplarSVMConfig()) -> tuple[np.ndarray, float]:
    """Train the Exemplar-SVM (positives label 1, negatives label 0) -> (weights w, bias b).

    LinearSVC minimises 1/2 ||w||^2 + sum_i C_i h(y_i (w.x_i + b)): half the paper's objective, so
    the per-class C (C = 1 scaled by `class_weight`) are C_pos / 2 and C_neg / 2.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import LinearSVC

    positives = np.atleast_2d(np.asarray(positives, dtype=np.float64))
    negatives = np.atleast_2d(np.asarray(negatives, dtype=np.float64))
    if len(positives) == 0 or len(negatives) == 0:
        raise ValueError("an Exemplar-SVM needs at least one positive and one negative")
    x = np.concatenate([positives, negatives])
    y = np.concatenate([np.ones(len(positives), int), np.zeros(len(negatives), int)])
    svm = LinearSVC(C=1.0, loss="hinge", dual=True, class_weight={1: config.c_positive / 2, 0: config.c_negative / 2},
                    intercept_scaling=config.intercept_scaling, max_iter=config.max_iter, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        svm.fit(x, y)
    return svm.coef_[0].astype(np.float64), float(svm.intercept_[0])


def rank_esvm(query: np.ndarray, collection: np.ndarray, extra_positives: np.ndarray | None = None,
              config: ExemplarSVMConfig = ExemplarSVMConfig(), negatives_mask: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """(order, scores): the collection ranked by the query's Exemplar-SVM decision value (best first).

    Negatives: the collection (or the rows where `negatives_mask` is True)."""
    pos = np.atleast_2d(query)
    if extra_positives is not None and len(extra_positives):
        pos = np.concatenate([pos, extra_positives])
    neg = collection if negatives_mask is None else collection[np.asarray(negatives_mask, bool)]
    w, b = exemplar_svm(pos, neg, config)
    scores = collection.astype(np.float64) @ w + b
    return np.argsort(-scores, kind="stable"), scores


def rank_cosine(query: np.ndarray, collection: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(order, scores): the collection ranked by cosine similarity to the query (best first)."""
    q = np.asarray(query, np.float64).ravel()
    c = np.asarray(collection, np.float64)
    scores = (c @ q) / (np.linalg.norm(c, axis=1) * np.linalg.norm(q) + 1e-12)
    return np.argsort(-scores, kind="stable"), scores


def precision_at_k(relevant_in_rank_order: Sequence[bool] | np.ndarray, k: int) -> float:
    """Share of relevant items among the first k of a ranking (k larger than the ranking counts
    the missing places as misses)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    rel = np.asarray(relevant_in_rank_order, dtype=bool)[:k]
    return float(rel.sum()) / k


def mean_precision_at_k(rankings: Sequence[np.ndarray], relevance: Sequence[np.ndarray], k: int) -> float:
    """Mean over queries of precision@k; `relevance[q]` is the boolean relevance of every collection
    item for query q, `rankings[q]` the collection order."""
    if not rankings:
        raise ValueError("no queries")
    return float(np.mean([precision_at_k(rel[order], k) for order, rel in zip(rankings, relevance)]))


def query_jitter(image: torch.Tensor, n: int, seed: int = 0, config: AugmentConfig = QUERY_JITTER) -> torch.Tensor:
    """`n` jittered copies (small crops and flips) of one square float image 3 x S x S, at size S."""
    if image.dim() != 3 or image.shape[-1] != image.shape[-2]:
        raise ValueError(f"expected a square image 3 x S x S, got shape {tuple(image.shape)}")
    if n <= 0:
        return image.new_zeros(0, *image.shape)
    generator = torch.Generator().manual_seed(seed)
    return augment(image[None].expand(n, -1, -1, -1).contiguous(), config.replace(size=image.shape[-1]), generator)
