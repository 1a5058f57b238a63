"""Structure and appearance measures for unpaired translation with a paired ground truth.

- Structure kept: IoU between a foreground segmentation of the output and the input's shape
  mask. Foreground = pixels whose colour is farther than `threshold` (RGB in [0, 1], Euclidean)
  from every colour of the input's own background (the pixels outside the mask), cleaned by a
  3×3 majority filter. The reference is the input's background, so an output that keeps the
  background and keeps the shapes distinct from it scores high; one that smears the shapes
  into the background, or paints over the background, scores low.
- Target appearance reached: the fraction of outputs a small A-vs-B CNN (trained on trainA /
  trainB) classifies as B; L1 and PSNR against the paired ground truth (testA_gtB).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from selfsup.data.unaligned import list_images, load_rgb

log = logging.getLogger(__name__)

__all__ = ["foreground_mask", "shape_mask", "mask_iou", "l1_distance", "psnr", "DomainClassifier",
           "train_domain_classifier", "load_uint8_folder", "score_translations"]


def _majority3(mask: np.ndarray) -> np.ndarray:
    """3×3 majority vote (edge-replicated), removes isolated pixels and fills pinholes."""
    p = np.pad(mask.astype(np.int32), 1, mode="edge")
    h, w = mask.shape
    votes = sum(p[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3))
    return votes >= 5


def foreground_mask(output: np.ndarray, reference: np.ndarray, background: np.ndarray,
                    threshold: float = 0.15) -> np.ndarray:
    """Pixels of `output` (H×W×3 uint8) whose colour is not within `threshold` of any colour of
    `reference` (H×W×3 uint8, the input) at the `background` pixels (H×W bool)."""
    from scipy.spatial import cKDTree

    ref = np.unique(reference[background].reshape(-1, 3), axis=0).astype(np.float64) / 255.0
    if ref.shape[0] == 0:  # no background at all: everything is foreground
        return np.ones(output.shape[:2], bool)
    out = output.reshape(-1, 3).astype(np.float64) / 255.0
    dist, _ = cKDTree(ref).query(out, k=1, distance_upper_bound=threshold)
    fg = ~np.isfinite(dist)  # no background colour within the threshold
    return _majority3(fg.reshape(output.shape[:2]))


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    out = mask.copy()
    h, w = mask.shape
    p = np.pad(mask, radius)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            out |= p[radius + dy:radius + dy + h, radius + dx:radius + dx + w]
    return out


def shape_mask(output: np.ndarray, shapes: np.ndarray, threshold: float = 0.15, margin: int = 2,
               support: float = 0.01) -> np.ndarray:
    """Pixels of `output` whose colour is not a colour of the output's own background: fewer than
    `support` (a fraction, at least one pixel) of the background pixels (those more than `margin`
    px from every shape), the pixel itself excepted, lie within `threshold` of it.

    Tolerant to a recoloured background, and to a few stray background pixels (a generator's
    border line, a speck) that happen to share the shapes' colours: with `support` 0 one white
    pixel in the background would erase every white stripe. Shapes that dissolve into the
    background, or a background painted with the shapes' texture, leave no distinguishable pixels."""
    from scipy.spatial import cKDTree

    if not 0 <= support < 1:
        raise ValueError(f"support = {support}: expected a fraction in [0, 1)")
    far_bg = ~_dilate(shapes.astype(bool), margin)
    if not far_bg.any():
        return np.ones(output.shape[:2], bool)
    colours = output.reshape(-1, 3).astype(np.float64) / 255.0
    reference = colours[far_bg.ravel()]
    near = cKDTree(reference).query_ball_point(colours, threshold, return_length=True)
    near = near - far_bg.ravel()  # a background pixel does not vouch for itself
    fg = near < max(1.0, support * len(reference))
    return _majority3(fg.reshape(output.shape[:2]))


def mask_iou(pred: np.ndarray, target: np.ndarray) -> float:
    """|pred ∩ target| / |pred ∪ target| (1.0 when both are empty)."""
    pred, target = pred.astype(bool), target.astype(bool)
    union = np.logical_or(pred, target).sum()
    return 1.0 if union == 0 else float(np.logical_and(pred, target).sum() / union)


def l1_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two uint8 images, on the [0, 1] scale."""
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean() / 255.0)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB for uint8 images (peak 255); inf when identical."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


class DomainClassifier(nn.Module):
    """A small CNN: 4 stride-2 conv blocks, global average pooling, one logit (B vs A)."""

    def __init__(self, width: int = 8):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for i in range(4):
            c_out = width * 2 ** i
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(True)]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c_in, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3))).squeeze(1)

    @torch.no_grad()
    def prob_b(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """P(domain B) for N×H×W×3 uint8 images."""
        self.eval()
        out = []
        for i in range(0, len(images), batch_size):
            x = _to_input(images[i:i + batch_size])
            out.append(torch.sigmoid(self(x)).numpy())
        return np.concatenate(out)


def _to_input(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def load_uint8_folder(folder: str | Path, size: int | None = None, names: Sequence[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """N×H×W×3 uint8 images of a folder (sorted; or the given stems), resized bicubic to `size`."""
    from PIL import Image

    files = list_images(folder)
    if names is not None:
        by_stem = {f.stem: f for f in files}
        missing = [n for n in names if n not in by_stem]
        if missing:
            raise FileNotFoundError(f"{folder}: missing {len(missing)} images, e.g. {missing[0]}")
        files = [by_stem[n] for n in names]
    ims = []
    for f in files:
        im = load_rgb(f)
        if size is not None and im.size != (size, size):
            im = im.resize((size, size), Image.BICUBIC)
        ims.append(np.asarray(im))
    return np.stack(ims), [f.stem for f in files]


def load_masks(folder: str | Path, names: Sequence[str], size: int | None = None) -> np.ndarray:
    """N×H×W bool shape masks (any non-zero value is foreground), resized nearest to `size`."""
    from PIL import Image

    by_stem = {f.stem: f for f in list_images(folder)}
    out = []
    for n in names:
        if n not in by_stem:
            raise FileNotFoundError(f"{folder}: no mask for {n}")
        with Image.open(by_stem[n]) as im:
            im = im.convert("L") if im.mode not in ("L", "P", "I", "1") else im
            if size is not None and im.size != (size, size):
                im = im.resize((size, size), Image.NEAREST)
            out.append(np.asarray(im) > 0)
    return np.stack(out)


@dataclass
class ClassifierReport:
    model: DomainClassifier
    train_accuracy: float
    test_accuracy: float | None


def train_domain_classifier(images_a: np.ndarray, images_b: np.ndarray, *, steps: int = 200,
                            batch_size: int = 32, lr: float = 2e-3, width: int = 8, seed: int = 0,
                            test_a: np.ndarray | None = None, test_b: np.ndarray | None = None) -> ClassifierReport:
    """Train the A-vs-B CNN with flips (Adam); report accuracies on the training and test sets."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = DomainClassifier(width)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x = _to_input(np.concatenate([images_a, images_b]))
    y = torch.cat([torch.zeros(len(images_a)), torch.ones(len(images_b))])
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, x.shape[0], (batch_size,), generator=gen)
        xb = x[idx]
        flip = torch.rand(batch_size, generator=gen) < 0.5
        xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
        loss = F.binary_cross_entropy_with_logits(model(xb), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def accuracy(a: np.ndarray, b: np.ndarray) -> float:
        pa, pb = model.prob_b(a), model.prob_b(b)
        return float((np.sum(pa < 0.5) + np.sum(pb >= 0.5)) / (len(pa) + len(pb)))

    train_acc = accuracy(images_a, images_b)
    test_acc = accuracy(test_a, test_b) if test_a is not None and test_b is not None else None
    return ClassifierReport(model, train_acc, test_acc)


def score_translations(outputs: np.ndarray, inputs: np.ndarray, masks: np.ndarray,
                       classifier: DomainClassifier | None = None, gts: np.ndarray | None = None,
                       threshold: float = 0.15, support: float = 0.01) -> dict[str, float]:
    """Structure / appearance scores of N translated images (N×H×W×3 uint8 each)."""
    if outputs.shape != inputs.shape:
        raise ValueError(f"outputs {outputs.shape} and inputs {inputs.shape} differ in shape")
    ious = [mask_iou(foreground_mask(o, x, ~m, threshold), m) for o, x, m in zip(outputs, inputs, masks)]
    shape_ious = [mask_iou(shape_mask(o, m, threshold, support=support), m) for o, m in zip(outputs, masks)]
    scores = {"structure_iou": float(np.mean(ious)), "shape_iou": float(np.mean(shape_ious)),
              "n_images": float(len(outputs))}
    if classifier is not None:
        p = classifier.prob_b(outputs)
        scores["appearance_acc"] = float(np.mean(p >= 0.5))
        scores["appearance_prob"] = float(np.mean(p))
    if gts is not None:
        scores["gt_l1"] = float(np.mean([l1_distance(o, g) for o, g in zip(outputs, gts)]))
        values = [psnr(o, g) for o, g in zip(outputs, gts)]
        scores["gt_psnr"] = float(np.mean([min(v, 100.0) for v in values]))
    return scores
