"""Joint training of the Y-shaped network: classification + rotation prediction (Sun et al., 2020).

    model = TTTNet(classes=10)
    history = train_joint(model, images, labels, JointConfig(epochs=75))
    accuracy = evaluate(model, test_images, test_labels)["accuracy"]

Rotation labels: label k is a rotation by k x 90 degrees counter-clockwise (as displayed, rows
downwards), i.e. `torch.rot90(x, k, dims=(-2, -1))`. Each training step adds the rotation loss of
the (augmented) batch, rotated by a random label per image ("rand", the paper's default) or by all
four ("expand"), to the classification loss. Defaults are the paper's CIFAR recipe: SGD (momentum
0.9, weight decay 5e-4), lr 0.1, batch 128, 75 epochs, lr / 10 after epochs 50 and 65; random crops
(4-pixel padding) and horizontal flips (`augment`; they slow the first few hundred steps down, so
short runs train better without them).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F

from ..io import torch_save
from .model import TTTNet

__all__ = ["JointConfig", "rotate", "rotation_batch", "augment", "to_tensor", "train_joint", "evaluate",
           "predict", "save_model", "load_model", "make_generator", "IMAGE_MEAN", "IMAGE_STD", "ANGLES"]

log = logging.getLogger(__name__)

IMAGE_MEAN = (0.5, 0.5, 0.5)
IMAGE_STD = (0.25, 0.25, 0.25)
ANGLES = (0, 90, 180, 270)            # label k <-> ANGLES[k] degrees counter-clockwise
MODEL_FORMAT = "selfsup.ttt"

RotationMode = Literal["rand", "expand"]


def make_generator(seed: int, *salt: int) -> torch.Generator:
    value = int(np.random.SeedSequence([int(seed), 0x777, *map(int, salt)]).generate_state(1, np.uint64)[0] >> 1)
    return torch.Generator().manual_seed(value)


def to_tensor(images: np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
    """uint8 N x H x W x 3 -> normalised float N x 3 x H x W (contiguous: GroupNorm's CPU backward
    crashes on channels-last inputs in torch 2.13)."""
    x = torch.as_tensor(np.asarray(images), device=device).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(IMAGE_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD, device=x.device).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous()


def rotate(x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Rotate each image of N x C x H x W by labels[i] x 90 degrees counter-clockwise."""
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"rotation needs square images, got {x.shape[-2]}x{x.shape[-1]}")
    labels = labels.to(x.device)
    if labels.shape != (x.shape[0],) or (labels.numel() and (labels.min() < 0 or labels.max() > 3)):
        raise ValueError("labels must hold one value in 0..3 per image")
    out = torch.empty_like(x)
    for k in range(4):
        index = (labels == k).nonzero().squeeze(1)
        if index.numel():
            out[index] = torch.rot90(x[index], k, dims=(-2, -1))
    return out


def rotation_batch(x: torch.Tensor, mode: RotationMode = "rand", generator: torch.Generator | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotated images and their labels: one random rotation per image ("rand") or all four ("expand",
    4N images: every image at 0, then every image at 90, ...)."""
    n = x.shape[0]
    if mode == "rand":
        labels = torch.randint(0, 4, (n,), generator=generator).to(x.device)
    elif mode == "expand":
        labels = torch.arange(4, device=x.device).repeat_interleave(n)
        x = x.repeat(4, 1, 1, 1)
    else:
        raise ValueError(f"rotation mode must be 'rand' or 'expand', got {mode!r}")
    return rotate(x, labels), labels


def augment(x: torch.Tensor, generator: torch.Generator | None = None, pad: int = 4) -> torch.Tensor:
    """Random crops of the zero-padded (normalised) images and random horizontal flips."""
    n, c, h, w = x.shape
    offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5
    padded = F.pad(x, (pad, pad, pad, pad))
    rows = (offsets[:, 0:1] + torch.arange(h)).to(x.device)              # n x h
    cols = (offsets[:, 1:2] + torch.arange(w)).to(x.device)              # n x w
    cols = torch.where(flips.to(x.device)[:, None], cols.flip(1), cols)
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    channel = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]


@dataclass(frozen=True)
class JointConfig:
    epochs: int = 75
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    milestones: tuple[int, ...] = (50, 65)        # epochs where lr /= 10
    gamma: float = 0.1
    rotation: RotationMode = "rand"
    augment: bool = True                          # random crops (4-pixel padding) and flips
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "milestones", tuple(int(m) for m in self.milestones))
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0:
            raise ValueError("epochs >= 1, batch_size >= 1 and lr > 0 are required")
        if self.rotation not in ("rand", "expand"):
            raise ValueError(f"rotation must be 'rand' or 'expand', got {self.rotation!r}")


def train_joint(model: TTTNet, images: np.ndarray, labels: np.ndarray, config: JointConfig | None = None, *,
                device: str | torch.device = "cpu", progress: bool = True,
                on_epoch: Callable[[int, dict[str, float]], None] | None = None) -> list[dict[str, float]]:
    """Train classification + rotation jointly on uint8 images (N x H x W x 3) and labels (N).
    Deterministic for a given seed on the CPU. Returns one row per epoch."""
    config = config or JointConfig()
    if len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"{len(images)} images and {len(labels)} labels: need equal, non-zero counts")
    device = torch.device(device)
    model.to(device).train()
    x_all = to_tensor(images, device)
    y_all = torch.as_tensor(np.asarray(labels), dtype=torch.long, device=device)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(config.milestones), config.gamma)
    generator = make_generator(config.seed, 1)
    history: list[dict[str, float]] = []
    n = len(x_all)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=config.epochs, desc="ttt joint training", unit="epoch", dynamic_ncols=True)
    try:
        for epoch in range(config.epochs):
            start = time.perf_counter()
            order = torch.randperm(n, generator=generator).to(device)
            sums = torch.zeros(5, dtype=torch.float64)
            seen = 0
            for b0 in range(0, n, config.batch_size):
                index = order[b0:b0 + config.batch_size]
                x = augment(x_all[index], generator) if config.augment else x_all[index]
                y = y_all[index]
                rx, ry = rotation_batch(x, config.rotation, generator)
                logits = model.classify(x)
                rot_logits = model.predict_rotation(rx)
                cls_loss = F.cross_entropy(logits, y)
                rot_loss = F.cross_entropy(rot_logits, ry)
                loss = cls_loss + rot_loss
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                k = len(index)
                sums += torch.tensor([loss.item() * k, cls_loss.item() * k, rot_loss.item() * k,
                                      (logits.argmax(1) == y).sum().item(),
                                      (rot_logits.argmax(1) == ry).float().mean().item() * k], dtype=torch.float64)
                seen += k
            lr = optimizer.param_groups[0]["lr"]
            scheduler.step()
            row = {"epoch": epoch + 1, "loss": sums[0].item() / seen, "class_loss": sums[1].item() / seen,
                   "rotation_loss": sums[2].item() / seen, "accuracy": sums[3].item() / seen,
                   "rotation_accuracy": sums[4].item() / seen, "lr": lr, "seconds": time.perf_counter() - start}
            history.append(row)
            if not np.isfinite(row["loss"]):
                raise FloatingPointError(f"joint training loss became {row['loss']} in epoch {epoch + 1}; lower lr")
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{row['loss']:.3f}", acc=f"{row['accuracy']:.3f}",
                                rot=f"{row['rotation_accuracy']:.3f}")
            if on_epoch is not None:
                on_epoch(epoch + 1, row)
    finally:
        if bar is not None:
            bar.close()
    model.eval()
    return history


@torch.no_grad()
def predict(model: TTTNet, x: torch.Tensor, batch_size: int = 256, rotations: bool = True
            ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Class predictions of normalised images and (with `rotations`) the 4 x N rotation predictions
    of the images turned by each angle."""
    was_training = model.training
    model.eval()
    try:
        classes, rotated = [], []
        for b0 in range(0, len(x), batch_size):
            xb = x[b0:b0 + batch_size]
            classes.append(model.classify(xb).argmax(1))
            if rotations:
                rotated.append(torch.stack([model.predict_rotation(torch.rot90(xb, k, dims=(-2, -1))).argmax(1)
                                            for k in range(4)]))
        return torch.cat(classes), (torch.cat(rotated, dim=1) if rotations else None)
    finally:
        model.train(was_training)


def evaluate(model: TTTNet, images: np.ndarray, labels: np.ndarray, device: str | torch.device = "cpu",
             batch_size: int = 256) -> dict[str, Any]:
    """Classification accuracy and rotation-prediction accuracy (all four rotations) on uint8 images."""
    x = to_tensor(images, device)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long, device=x.device)
    classes, rotations = predict(model, x, batch_size)
    correct = (classes == y)
    rot_correct = (rotations == torch.arange(4, device=x.device)[:, None]).float().mean()
    return {"accuracy": correct.float().mean().item(), "rotation_accuracy": rot_correct.item(),
            "correct": correct.cpu().numpy()}


def save_model(model: TTTNet, path: str | Path, **extra: Any) -> Path:
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return torch_save({"format": MODEL_FORMAT, "config": model.config(), "model": state, **extra}, path)


def load_model(path: str | Path, map_location: Any = "cpu") -> TTTNet:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model file not found")
    blob = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(blob, dict) or blob.get("format") != MODEL_FORMAT:
        raise ValueError(f"{path}: not a test-time-training model file (format {MODEL_FORMAT!r})")
    model = TTTNet(**blob["config"])
    model.load_state_dict(blob["model"], strict=True)
    return model.eval()
