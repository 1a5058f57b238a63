"""Test-time training with rotation prediction (Sun et al., ICML 2020), standard and online.

For a test image x, the shared encoder and the rotation head take a few SGD steps on the rotation
loss of a batch of augmented copies of x (each copy rotated by a random multiple of 90 degrees);
then the classification head predicts x's class from the updated encoder.

- standard: every test image starts from the trained weights (restored exactly after each image),
  `steps` SGD steps per image (paper: 10 steps, lr 0.001, batch 32);
- online: the test images form a stream; weights and optimiser state carry over from one image to
  the next, `online_steps` steps per image (paper: 1). The trained weights are restored at the end.

Both return per-image correctness before ("baseline") and after adaptation.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..crw.adapt import preserved
from .model import TTTNet
from .train import RotationMode, augment, make_generator, predict, rotation_batch, to_tensor

__all__ = ["TTTConfig", "ttt_standard", "ttt_online", "rotation_steps"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TTTConfig:
    steps: int = 10              # standard: SGD steps per test image
    online_steps: int = 1        # online: SGD steps per test image
    lr: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 32         # augmented copies of the test image per step
    rotation: RotationMode = "rand"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 0 or self.online_steps < 0 or self.batch_size < 1 or not self.lr > 0:
            raise ValueError("steps >= 0, online_steps >= 0, batch_size >= 1 and lr > 0 are required")
        if self.rotation not in ("rand", "expand"):
            raise ValueError(f"rotation must be 'rand' or 'expand', got {self.rotation!r}")


def _optimizer(model: TTTNet, config: TTTConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.self_supervised_parameters(), lr=config.lr, momentum=config.momentum,
                           weight_decay=config.weight_decay)


def rotation_steps(model: TTTNet, image: torch.Tensor, optimizer: torch.optim.Optimizer, steps: int,
                   config: TTTConfig, generator: torch.Generator) -> list[float]:
    """`steps` SGD steps on the rotation loss of augmented copies of one normalised image (3 x H x W)."""
    losses = []
    model.train()        # GroupNorm behaves the same; BatchNorm uses the copies' statistics
    for _ in range(steps):
        x = augment(image.unsqueeze(0).expand(config.batch_size, -1, -1, -1), generator)
        rx, ry = rotation_batch(x, config.rotation, generator)
        loss = F.cross_entropy(model.predict_rotation(rx), ry)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    return losses


def _result(baseline: torch.Tensor, adapted: torch.Tensor, labels: torch.Tensor, seconds: float,
            losses: list[float]) -> dict[str, Any]:
    before, after = (baseline == labels), (adapted == labels)
    return {"baseline": before.float().mean().item(), "accuracy": after.float().mean().item(),
            "images": int(len(labels)), "seconds": seconds,
            "seconds_per_image": seconds / max(1, len(labels)),
            "rotation_loss": float(np.mean(losses)) if losses else float("nan"),
            "correct_before": before.cpu().numpy(), "correct_after": after.cpu().numpy()}


def _bar(total: int, desc: str, progress: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=not progress, dynamic_ncols=True, leave=False)


def ttt_standard(model: TTTNet, images: np.ndarray, labels: np.ndarray, config: TTTConfig | None = None, *,
                 device: str | torch.device = "cpu", progress: bool = True) -> dict[str, Any]:
    """Standard TTT: adapt to each test image from the trained weights, predict, restore."""
    config = config or TTTConfig()
    x = to_tensor(images, device)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long, device=x.device)
    model.to(x.device)
    baseline, _ = predict(model, x, rotations=False)
    adapted = torch.empty_like(y)
    losses: list[float] = []
    start = time.perf_counter()
    with _bar(len(x), "TTT standard", progress) as bar:
        for i in range(len(x)):
            with preserved(model):
                optimizer = _optimizer(model, config)
                losses += rotation_steps(model, x[i], optimizer, config.steps, config, make_generator(config.seed, 2, i))
                with torch.no_grad():
                    adapted[i] = model.classify(x[i:i + 1]).argmax(1)[0]
            bar.update(1)
    return _result(baseline, adapted, y, time.perf_counter() - start, losses)


def ttt_online(model: TTTNet, images: np.ndarray, labels: np.ndarray, config: TTTConfig | None = None, *,
               device: str | torch.device = "cpu", progress: bool = True) -> dict[str, Any]:
    """Online TTT: the test images in order as a stream, weights carried over; restored at the end."""
    config = config or TTTConfig()
    x = to_tensor(images, device)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long, device=x.device)
    model.to(x.device)
    baseline, _ = predict(model, x, rotations=False)
    adapted = torch.empty_like(y)
    losses: list[float] = []
    start = time.perf_counter()
    with preserved(model), _bar(len(x), "TTT online", progress) as bar:
        optimizer = _optimizer(model, config)
        for i in range(len(x)):
            losses += rotation_steps(model, x[i], optimizer, config.online_steps, config,
                                     make_generator(config.seed, 3, i))
            with torch.no_grad():
                adapted[i] = model.classify(x[i:i + 1]).argmax(1)[0]
            bar.update(1)
    return _result(baseline, adapted, y, time.perf_counter() - start, losses)
