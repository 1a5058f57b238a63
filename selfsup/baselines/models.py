"""What every baseline shares: the encoder, the checkpoint marking, the data and the optimiser.

Every baseline trains the same module as CRW (`selfsup.crw.CRW`: the stride-8 ResNet-18 variant
plus a head on layer4), and is saved with `selfsup.crw.save_checkpoint`, so its checkpoint loads
into propagation, retrieval and the probes exactly like a CRW checkpoint. The method and its
settings ride along as an extra entry `baseline = {"method": ..., ...}`.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn

from ..crw import CRW, CRWConfig, save_checkpoint
from ..crw.checkpoint import read_state_dict

__all__ = ["METHODS", "baseline_config", "build_model", "save_baseline", "baseline_info", "pooled_embedding",
           "FramePool", "OptimConfig", "TrainHistory", "optimise", "resolve_device", "NonFiniteLossError"]

log = logging.getLogger(__name__)

METHODS = ("exemplar", "simclr", "colorization")


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    if str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available")
    return device


def baseline_config(width: float = 1.0, head_dim: int = 128, head_depth: int = 1,
                    padding_mode: str = "reflect") -> CRWConfig:
    """CRW's architecture with a baseline's head: depth d = d x [Linear, ReLU] + Linear(-> head_dim).

    Training and test both see ImageNet-normalised images; BatchNorm uses the whole batch.
    """
    return CRWConfig(width=width, padding_mode=padding_mode, head_depth=head_depth, embed_dim=head_dim,
                     train_normalization="imagenet", test_normalization="imagenet", bn_group_size=0)


def build_model(config: CRWConfig, seed: int) -> CRW:
    """A freshly initialised model, a pure function of `seed` (the global RNG is left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return CRW(config)


def save_baseline(model: nn.Module, path: str | Path, method: str, settings: Mapping[str, Any],
                  **extra: Any) -> Path:
    """`save_checkpoint` with the method marked: extra entry `baseline = {"method": ..., **settings}`."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    return save_checkpoint(model, path, baseline={"method": method, **dict(settings)}, **extra)


def baseline_info(path: str | Path) -> dict[str, Any] | None:
    """The `baseline` entry of a checkpoint (None for CRW and foreign checkpoints)."""
    _, meta = read_state_dict(path)
    info = meta.get("extra", {}).get("baseline")
    return dict(info) if isinstance(info, Mapping) else None


def pooled_embedding(model: CRW, images: torch.Tensor, normalize: bool = False) -> torch.Tensor:
    """Normalised images B x 3 x H x W -> head(mean of the layer4 map) (B x head_dim)."""
    if model.head is None:
        raise ValueError("this model has no head; build it with with_head=True")
    fmap = model.encoder(images, "layer4")
    z = model.head(fmap.mean(dim=(2, 3)))
    return nn.functional.normalize(z, dim=1) if normalize else z


class FramePool:
    """Random frames of the clip cache (uint8 F x S x S x 3, memory-mapped), optionally restricted
    to some videos (`rows` = the frame rows allowed)."""

    def __init__(self, frames: np.ndarray, rows: np.ndarray | None = None):
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"expected uint8 frames F x H x W x 3, got {frames.dtype} {frames.shape}")
        self.frames = frames
        self.rows = np.arange(len(frames)) if rows is None else np.asarray(rows, dtype=np.int64)
        if len(self.rows) == 0:
            raise ValueError("no frames to sample from")

    @classmethod
    def from_cache(cls, cache: Any, videos: np.ndarray | None = None) -> "FramePool":
        """All frames of a `ClipCache` (or only those of the video indices `videos`)."""
        table = cache.videos
        if videos is None:
            return cls(cache.frames)
        rows = np.concatenate([np.arange(int(table.offset.iloc[v]), int(table.offset.iloc[v] + table.n_frames.iloc[v]))
                               for v in videos]) if len(videos) else np.zeros(0, np.int64)
        return cls(cache.frames, rows)

    def __len__(self) -> int:
        return len(self.rows)

    def take(self, rows: np.ndarray) -> torch.Tensor:
        """Float images B x 3 x S x S in [0, 1] of the given positions in this pool."""
        index = self.rows[np.asarray(rows, dtype=np.int64)]
        order = np.argsort(index)                         # sorted reads from the memory map
        block = np.empty((len(index),) + self.frames.shape[1:], np.uint8)
        block[order] = self.frames[index[order]]
        return torch.from_numpy(block).permute(0, 3, 1, 2).float().div_(255.0)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        rows = torch.randint(len(self.rows), (n,), generator=generator).numpy()
        return self.take(rows)


@dataclass(frozen=True)
class OptimConfig:
    """Adam with linear warm-up and cosine decay (SimCLR's schedule, with Adam in place of LARS)."""

    steps: int = 1000
    lr: float = 1e-3
    weight_decay: float = 1e-6
    warmup: float = 0.05             # fraction of the steps
    log_every: int = 10

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.warmup < 1:
            raise ValueError(f"warmup must lie in [0, 1), got {self.warmup}")

    def lr_at(self, step: int) -> float:
        """Learning rate of 0-based `step`."""
        warm = int(round(self.warmup * self.steps))
        if step < warm:
            return self.lr * (step + 1) / warm
        progress = (step - warm) / max(1, self.steps - warm)
        return self.lr * 0.5 * (1 + math.cos(math.pi * progress))


@dataclass
class TrainHistory:
    rows: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def final(self) -> dict[str, float]:
        return self.rows[-1] if self.rows else {}


def optimise(model: nn.Module, step_fn: Callable[[int], tuple[torch.Tensor, dict[str, float]]],
             config: OptimConfig, *, desc: str = "train", progress: bool = False) -> TrainHistory:
    """Run `config.steps` Adam steps of `step_fn(step) -> (loss, stats)`; the model ends in eval mode.

    Logged every `log_every` steps and at the last: step, loss, lr and the stats (means since
    the previous row).
    """
    from tqdm import tqdm

    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    history = TrainHistory()
    sums: dict[str, float] = {}
    count = 0
    start = time.perf_counter()
    model.train()
    bar = tqdm(range(config.steps), desc=desc, unit="step", disable=not progress, leave=False)
    for step in bar:
        lr = config.lr_at(step)
        for group in opt.param_groups:
            group["lr"] = lr
        loss, stats = step_fn(step)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"{desc}: loss is {loss.item()} at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        for k, v in {"loss": float(loss.detach()), **stats}.items():
            sums[k] = sums.get(k, 0.0) + float(v)
        count += 1
        if (step + 1) % config.log_every == 0 or step + 1 == config.steps:
            row = {"step": step + 1, "lr": lr, **{k: v / count for k, v in sums.items()}}
            history.rows.append(row)
            bar.set_postfix(loss=f"{row['loss']:.3f}")
            log.debug("%s step %d: %s", desc, step + 1, row)
            sums, count = {}, 0
    history.seconds = time.perf_counter() - start
    model.eval()
    return history
