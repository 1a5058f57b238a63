"""The CRW model: encoder, projection head, clip augmentation and the walk loss.

    cfg = CRWConfig()                 # the published recipe (256-pixel frames, 7x7 patches of 64)
    model = CRW(cfg)
    patches = model.make_patches(clips_uint8, generator)     # B x T x N x 3 x p x p, normalised
    loss, stats = model(patches)                             # training loss and per-cycle stats
    feats = model.features(frames)    # frames N x 3 x H x W (ImageNet-normalised) -> layer3 map
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from . import augment
from .encoder import ResNetEncoder
from .walk import contrastive_walk

__all__ = ["CRWConfig", "CRW", "IMAGENET_MEAN", "IMAGENET_STD", "CIFAR_MEAN", "CIFAR_STD",
           "NORMALIZATION"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)
NORMALIZATION = {"imagenet": (IMAGENET_MEAN, IMAGENET_STD), "cifar10": (CIFAR_MEAN, CIFAR_STD)}


@dataclass(frozen=True)
class CRWConfig:
    """Model and walk settings. Defaults are the published recipe (README command, §4 of the spec)."""

    # encoder
    width: float = 1.0                       # channel multiplier (1.0 = ResNet-18)
    padding_mode: Literal["reflect", "zeros"] = "reflect"
    with_layer4: bool = True                 # False: propagation-only model (layer3 features)
    # head: head_depth=0 -> Linear(512, embed_dim); d > 0 -> d x [Linear(512, 512), ReLU] + Linear
    with_head: bool = True
    head_depth: int = 0
    embed_dim: int = 128
    # clip geometry
    frame_size: int = 256
    patch_size: int = 64
    patch_stride: int = 32
    frame_scale: tuple[float, float] = (0.8, 0.95)
    frame_ratio: tuple[float, float] = (0.7, 1.3)
    patch_scale: tuple[float, float] = (0.7, 0.9)
    patch_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    train_normalization: Literal["cifar10", "imagenet"] = "cifar10"
    test_normalization: Literal["cifar10", "imagenet"] = "imagenet"
    # walk
    temperature: float = 0.05
    edge_dropout: float = 0.1
    leaky_backward_dropout: bool = True
    include_shortest_cycle: bool = False
    walk_start: Literal["first", "all"] = "first"
    # BatchNorm statistics over groups of this many clips (the published model: 10 clips per GPU
    # on 2 GPUs without SyncBN); 0 = the whole (per-device) batch
    bn_group_size: int = 10

    def __post_init__(self) -> None:
        # tuples survive a round trip through a plain dict / JSON as lists
        for name in ("frame_scale", "frame_ratio", "patch_scale", "patch_ratio"):
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
        augment.grid_size(self.frame_size, self.patch_size, self.patch_stride)
        if self.padding_mode not in ("reflect", "zeros"):
            raise ValueError(f"padding_mode must be 'reflect' or 'zeros', got {self.padding_mode!r}")
        if self.walk_start not in ("first", "all"):
            raise ValueError(f"walk_start must be 'first' or 'all', got {self.walk_start!r}")
        for name in ("train_normalization", "test_normalization"):
            if getattr(self, name) not in NORMALIZATION:
                raise ValueError(f"{name} must be one of {sorted(NORMALIZATION)}, got {getattr(self, name)!r}")
        if self.with_head and not self.with_layer4:
            raise ValueError("a head needs layer4 (with_head=True requires with_layer4=True)")

    @property
    def nodes(self) -> int:
        g = augment.grid_size(self.frame_size, self.patch_size, self.patch_stride)
        return g * g

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CRWConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown CRW config keys: {', '.join(unknown)}")
        return cls(**dict(data))

    def replace(self, **changes: Any) -> "CRWConfig":
        return dataclasses.replace(self, **changes)


def make_head(in_dim: int, depth: int, out_dim: int) -> nn.Sequential:
    """depth 0: Linear(in, out); depth d: d x [Linear(in, in), ReLU] + Linear(in, out)."""
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(in_dim, in_dim), nn.ReLU()]
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class CRW(nn.Module):
    """Encoder + head trained by the contrastive random walk."""

    def __init__(self, config: CRWConfig | None = None):
        super().__init__()
        self.config = config or CRWConfig()
        cfg = self.config
        self.encoder = ResNetEncoder(cfg.width, cfg.padding_mode, with_layer4=cfg.with_layer4)
        self.head = make_head(self.encoder.out_channels, cfg.head_depth, cfg.embed_dim) if cfg.with_head else None
        self.channels_last = False

    # ---------------------------------------------------------------------------------- test
    @property
    def feature_channels(self) -> int:
        return self.encoder.feature_channels

    @torch.no_grad()
    def features(self, frames: torch.Tensor) -> torch.Tensor:
        """Layer3 feature maps of normalised frames: N x 3 x H x W -> N x C x ceil(H/8) x ceil(W/8).

        Runs in eval mode (BatchNorm running statistics) and restores the previous mode.
        The maps are not L2-normalised.
        """
        if frames.dim() != 4 or frames.shape[1] != 3:
            raise ValueError(f"expected frames N x 3 x H x W, got shape {tuple(frames.shape)}")
        was_training = self.training
        self.eval()
        try:
            param = next(self.parameters())
            x = frames.to(param.device, param.dtype)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            return self.encoder(x, "layer3").contiguous()
        finally:
            self.train(was_training)

    def normalize_frames(self, frames: torch.Tensor, which: str | None = None) -> torch.Tensor:
        """[0, 1] float frames ... x 3 x H x W -> normalised with the test (or `which`) statistics."""
        mean, std = NORMALIZATION[which or self.config.test_normalization]
        return augment.normalize(frames, mean, std)

    # --------------------------------------------------------------------------------- train
    def make_patches(self, clips: torch.Tensor, generator: torch.Generator | None = None,
                     boxes: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Augmented, normalised patch grids of uint8 clips.

        clips: B x T x H x W x 3 uint8 (as stored in the clip cache), on any device.
        Returns B x T x N x 3 x p x p float32 on the clips' device. `boxes` (frame boxes
        (B*T) x 4 and patch boxes (B*T) x N x 4, see `sample_boxes`) overrides the draws.
        """
        cfg = self.config
        b, t, h, w, _ = clips.shape
        if boxes is None:
            boxes = self.sample_boxes(b * t, h, w, generator)
        frame_boxes, patch_boxes = boxes
        frames = clips.reshape(b * t, h, w, 3).permute(0, 3, 1, 2).float().div_(255.0)
        if min(h, w) > cfg.frame_size:
            # Stored frames larger than the training size: shrink them first with antialiasing
            # (as PIL's resize does when the published pipeline downscales a crop), so that the
            # crop below only enlarges. Boxes are in stored-frame pixels: rescale them.
            factor = cfg.frame_size / min(h, w)
            size = (max(1, round(h * factor)), max(1, round(w * factor)))
            frames = F.interpolate(frames, size=size, mode="bilinear", antialias=True, align_corners=False)
            scale = torch.tensor([size[0] / h, size[1] / w, size[0] / h, size[1] / w])
            frame_boxes = frame_boxes * scale
        frames = augment.crop_resize(frames, frame_boxes, cfg.frame_size)
        patches = augment.jitter_patches(frames, patch_boxes, cfg.patch_size)
        mean, std = NORMALIZATION[cfg.train_normalization]
        patches = augment.normalize(patches, mean, std)
        return patches.reshape(b, t, *patches.shape[1:])

    def sample_boxes(self, n_frames: int, height: int, width: int,
                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Frame crop boxes (n_frames x 4) and jittered patch boxes (n_frames x N x 4), CPU."""
        cfg = self.config
        frame_boxes = augment.sample_resized_crops(n_frames, height, width, cfg.frame_scale,
                                                   cfg.frame_ratio, generator)
        grid = augment.grid_boxes(cfg.frame_size, cfg.patch_size, cfg.patch_stride)   # N x 4
        n = grid.shape[0]
        jitter = augment.sample_resized_crops(n_frames * n, cfg.patch_size, cfg.patch_size,
                                              cfg.patch_scale, cfg.patch_ratio, generator)
        jitter = jitter.view(n_frames, n, 4)
        patch_boxes = jitter + torch.cat([grid[:, :2], torch.zeros(n, 2)], dim=1)
        return frame_boxes, patch_boxes

    def embed(self, patches: torch.Tensor, autocast_dtype: torch.dtype | None = None) -> torch.Tensor:
        """Node embeddings of patch grids: B x T x N x 3 x p x p -> B x C x T x N (L2-normalised).

        The encoder sees the batch in BatchNorm groups of `bn_group_size` clips. With
        `autocast_dtype` the encoder runs under autocast; pooling, head and normalisation run fp32.
        """
        if self.head is None:
            raise ValueError("this model has no head (propagation-only); it cannot be trained")
        b, t, n = patches.shape[:3]
        group = self.config.bn_group_size or b
        pooled = []
        for start in range(0, b, group):
            x = patches[start:start + group].flatten(0, 2)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(x.device.type, dtype=autocast_dtype or torch.float32,
                                enabled=autocast_dtype is not None):
                fmap = self.encoder(x, "layer4")
            pooled.append(fmap.float().mean(dim=(2, 3)))
        z = self.head(torch.cat(pooled))                       # (B*T*N) x C
        z = F.normalize(z, dim=-1, eps=1e-12)
        return z.view(b, t, n, -1).permute(0, 3, 1, 2)

    def forward(self, patches: torch.Tensor, noise: tuple[torch.Tensor, torch.Tensor] | None = None,
                autocast_dtype: torch.dtype | None = None
                ) -> tuple[torch.Tensor, dict[int, tuple[torch.Tensor, torch.Tensor]]]:
        """Walk loss of patch grids (B x T x N x 3 x p x p). `noise` = the edge-dropout draws
        (two B x (T-1) x N x N uniform fields); drawn from the global RNG when omitted."""
        cfg = self.config
        q = self.embed(patches, autocast_dtype)
        # edge dropout only while training (the published code also dropped in eval mode)
        rate = cfg.edge_dropout if self.training else 0.0
        return contrastive_walk(q, cfg.temperature, rate, noise,
                                cfg.leaky_backward_dropout, cfg.include_shortest_cycle,
                                cfg.walk_start)

    def set_channels_last(self, enabled: bool = True) -> "CRW":
        self.channels_last = enabled
        self.to(memory_format=torch.channels_last if enabled else torch.contiguous_format)
        return self
