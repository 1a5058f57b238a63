"""Instance discrimination: Exemplar-CNN surrogate classes and SimCLR's NT-Xent.

Exemplar-CNN (Dosovitskiy et al. 2014): N seed patches, sampled where the image has strong
gradients, each become a class; the members of a class are random augmentations of its seed;
the network classifies an augmented patch into its N-way surrogate class (softmax cross-entropy
over a classification head).

SimCLR (Chen et al. 2020): two augmented views of each image in a batch of B; the embedding of
one view must pick out the other view among the 2B - 1 others (NT-Xent: cross-entropy over
cosine similarities / temperature).

Both learn to be invariant to exactly the augmentation family they are trained with
(`selfsup.baselines.augment`); the leave-one-out ablation measures what each op contributes.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..crw import CRW
from .augment import AugmentConfig, augment
from .models import FramePool, OptimConfig, TrainHistory, optimise, pooled_embedding

__all__ = ["nt_xent", "exemplar_loss", "gradient_energy", "sample_seed_patches", "SimCLRConfig",
           "ExemplarConfig", "train_simclr", "train_exemplar", "EXEMPLAR_AUGMENT"]


# ------------------------------------------------------------------------------------------------
# Losses
# ------------------------------------------------------------------------------------------------

def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """NT-Xent of two views (B x D each, not necessarily normalised) -> (loss, accuracy).

    The 2B embeddings are L2-normalised; for each one, the logits are its cosine similarities to
    the 2B - 1 others divided by `temperature`, the target its other view; loss = mean over 2B.
    Accuracy: share of embeddings whose most similar other is their other view.
    """
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ValueError(f"expected two B x D views of one shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    b = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1, eps=1e-12)
    logits = (z @ z.t()) / temperature
    logits = logits.masked_fill(torch.eye(2 * b, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(z.device)
    loss = F.cross_entropy(logits, target)
    accuracy = (logits.argmax(dim=1) == target).float().mean()
    return loss, accuracy


def exemplar_loss(logits: torch.Tensor, classes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Surrogate-class cross-entropy (B x N logits, B class ids) -> (loss, accuracy)."""
    if logits.dim() != 2 or classes.shape != logits.shape[:1]:
        raise ValueError(f"expected B x N logits and B classes, got {tuple(logits.shape)} and {tuple(classes.shape)}")
    loss = F.cross_entropy(logits, classes)
    return loss, (logits.argmax(dim=1) == classes).float().mean()


# ------------------------------------------------------------------------------------------------
# Exemplar-CNN seed patches
# ------------------------------------------------------------------------------------------------

def gradient_energy(images: torch.Tensor, window: int) -> torch.Tensor:
    """Mean squared gradient (of the luma) over every window x window box: B x (H-w+1) x (W-w+1)."""
    luma = (images * torch.tensor([0.299, 0.587, 0.114], dtype=images.dtype).view(1, 3, 1, 1)).sum(1, keepdim=True)
    gy = F.pad(luma[:, :, 1:] - luma[:, :, :-1], (0, 0, 0, 1))
    gx = F.pad(luma[:, :, :, 1:] - luma[:, :, :, :-1], (0, 1, 0, 0))
    return F.avg_pool2d(gx ** 2 + gy ** 2, window, stride=1)[:, 0]


def sample_seed_patches(pool: FramePool, n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """`n` seed regions (n x 3 x size x size, float in [0, 1]), one per randomly drawn frame, placed
    with probability proportional to the region's gradient energy (Exemplar-CNN samples "regions
    containing considerable gradients")."""
    frames = pool.sample(n, generator)
    _, _, h, w = frames.shape
    if size > min(h, w):
        raise ValueError(f"seed size {size} is larger than the frames ({h}x{w})")
    energy = gradient_energy(frames, size).flatten(1).double() + 1e-12
    pos = torch.multinomial(energy / energy.sum(1, keepdim=True), 1, generator=generator)[:, 0]
    ew = w - size + 1
    ys, xs = (pos // ew).tolist(), (pos % ew).tolist()
    return torch.stack([frames[i, :, y:y + size, x:x + size] for i, (y, x) in enumerate(zip(ys, xs))])


# ------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------

# Exemplar-CNN's transformations: translation and scale (a resized crop of the seed region),
# rotation up to 20 degrees, contrast / colour changes; no flips in the original
EXEMPLAR_AUGMENT = AugmentConfig(ops=("crop", "rotation", "color"), size=32, crop_scale=(0.3, 1.0),
                                 crop_ratio=(0.8, 1.25), rotation_degrees=20.0, color_p=1.0,
                                 brightness=0.4, contrast=0.5, saturation=0.7, hue=0.1)


@dataclass(frozen=True)
class SimCLRConfig:
    """SimCLR: batch of `batch_size` images, two views each; defaults from the paper (the ImageNet
    temperature 0.1, batch 256; Adam replaces LARS)."""

    batch_size: int = 256
    temperature: float = 0.1
    augment: AugmentConfig = AugmentConfig()
    optim: OptimConfig = OptimConfig()
    seed: int = 0

    def __post_init__(self) -> None:
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 (negatives come from the batch), got {self.batch_size}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")

    def to_dict(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size, "temperature": self.temperature,
                "augment": self.augment.to_dict(), "optim": dataclasses.asdict(self.optim), "seed": self.seed}


@dataclass(frozen=True)
class ExemplarConfig:
    """Exemplar-CNN: `classes` surrogate classes (the paper: 8000 seeds of 32x32 pixels, 150
    augmentations each; here the augmentations are drawn afresh every step)."""

    classes: int = 8000
    seed_size: int = 64              # side of the seed region the augmented patches are cut from
    batch_size: int = 128
    augment: AugmentConfig = EXEMPLAR_AUGMENT
    optim: OptimConfig = OptimConfig()
    seed: int = 0

    def __post_init__(self) -> None:
        if self.classes < 2:
            raise ValueError(f"classes must be >= 2, got {self.classes}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    def to_dict(self) -> dict[str, Any]:
        return {"classes": self.classes, "seed_size": self.seed_size, "batch_size": self.batch_size,
                "augment": self.augment.to_dict(), "optim": dataclasses.asdict(self.optim), "seed": self.seed}


def _normalise(model: CRW, images: torch.Tensor, device: torch.device) -> torch.Tensor:
    return model.normalize_frames(images.to(device))


def train_simclr(model: CRW, pool: FramePool, config: SimCLRConfig, *, progress: bool = False,
                 desc: str = "simclr") -> TrainHistory:
    """Train `model` (head: the projection MLP) with NT-Xent on frames of `pool`."""
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(config.seed)

    def step(_: int) -> tuple[torch.Tensor, dict[str, float]]:
        images = pool.sample(config.batch_size, generator)
        views = augment(torch.cat([images, images]), config.augment, generator)   # two independent views
        z = pooled_embedding(model, _normalise(model, views, device))
        loss, acc = nt_xent(z[: config.batch_size], z[config.batch_size:], config.temperature)
        return loss, {"accuracy": float(acc)}

    return optimise(model, step, config.optim, desc=desc, progress=progress)


def train_exemplar(model: CRW, pool: FramePool, config: ExemplarConfig, *, progress: bool = False,
                   desc: str = "exemplar") -> TrainHistory:
    """Train `model` (head: the N-way surrogate-class classifier) on seed patches from `pool`."""
    if model.head is None or model.config.embed_dim != config.classes:
        raise ValueError(f"the model's head must have one output per surrogate class ({config.classes}), "
                         f"got embed_dim {model.config.embed_dim}")
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(config.seed)
    seeds = sample_seed_patches(pool, config.classes, config.seed_size, generator)

    def step(_: int) -> tuple[torch.Tensor, dict[str, float]]:
        classes = torch.randint(config.classes, (config.batch_size,), generator=generator)
        views = augment(seeds[classes], config.augment, generator)
        logits = pooled_embedding(model, _normalise(model, views, device))
        loss, acc = exemplar_loss(logits, classes.to(device))
        return loss, {"accuracy": float(acc)}

    return optimise(model, step, config.optim, desc=desc, progress=progress)
