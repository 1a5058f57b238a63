"""Tracking by colourising videos (Vondrick et al. 2018).

The network sees gray frames. To colour target frame j it copies the colours of reference frames
by attention: each target location attends over every reference location with weights
softmax_i(f_i . f_j / T), and its predicted colour distribution is the weighted sum of the
references' quantised colours. The loss is the cross-entropy of the true quantised colour. The
only way to colour well is to find where each target location came from, so the features learn
correspondence; at test time the same attention propagates labels instead of colours.

Colours: CIE Lab (D65); the ab plane is quantised by k-means (16 clusters in the paper), fitted
on the training frames. Clips: 3 reference frames and 1 target (clip length 4); features and
colours at stride 8. Input gray level: BT.601 luma Y (a linear function of RGB), so that after
training the RGB -> gray conversion folds exactly into the first convolution
(`fold_gray_input`): the saved encoder takes ordinary RGB frames like every other checkpoint and
computes what it computed on gray frames during training.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..crw import CRW
from ..crw.model import NORMALIZATION
from .augment import LUMA, affine_sample, flip_theta, resized_crop_theta
from .models import OptimConfig, TrainHistory, optimise

__all__ = ["rgb_to_lab", "lab_to_rgb", "fit_colour_clusters", "quantize_ab", "attention_copy",
           "colorization_loss", "ColorizationConfig", "train_colorization", "fold_gray_input",
           "gray_input", "pixel_embeddings", "clip_colour_targets", "D65_WHITE", "RGB_TO_XYZ"]

# sRGB (D65) -> XYZ, and the D65 reference white (the constants of skimage.color)
RGB_TO_XYZ = ((0.412453, 0.357580, 0.180423),
              (0.212671, 0.715160, 0.072169),
              (0.019334, 0.119193, 0.950227))
D65_WHITE = (0.95047, 1.0, 1.08883)
_EPSILON = 216 / 24389          # (6/29)^3
_KAPPA = 24389 / 27


def _as_tensor(x: Any) -> tuple[torch.Tensor, bool]:
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.asarray(x, dtype=np.float64)), True
    return x, False


def rgb_to_lab(rgb: torch.Tensor | np.ndarray, channel_dim: int = 1) -> torch.Tensor | np.ndarray:
    """sRGB in [0, 1] -> CIE Lab (L in [0, 100], a and b roughly in [-128, 127]).

    Channels along `channel_dim` (1 for N x 3 x H x W tensors, -1 for H x W x 3 arrays).
    NumPy in, NumPy out (float64).
    """
    x, was_numpy = _as_tensor(rgb)
    x = x.movedim(channel_dim, -1)
    lin = torch.where(x > 0.04045, ((x.clamp(min=0) + 0.055) / 1.055) ** 2.4, x / 12.92)
    m = torch.tensor(RGB_TO_XYZ, dtype=x.dtype, device=x.device)
    xyz = lin @ m.t() / torch.tensor(D65_WHITE, dtype=x.dtype, device=x.device)
    f = torch.where(xyz > _EPSILON, xyz.clamp(min=1e-12) ** (1 / 3), (_KAPPA * xyz + 16) / 116)
    fx, fy, fz = f.unbind(-1)
    lab = torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], dim=-1).movedim(-1, channel_dim)
    return lab.numpy() if was_numpy else lab


def lab_to_rgb(lab: torch.Tensor | np.ndarray, channel_dim: int = 1) -> torch.Tensor | np.ndarray:
    """CIE Lab -> sRGB (not clipped: out-of-gamut colours leave [0, 1])."""
    x, was_numpy = _as_tensor(lab)
    x = x.movedim(channel_dim, -1)
    l, a, b = x.unbind(-1)
    fy = (l + 16) / 116
    f = torch.stack([fy + a / 500, fy, fy - b / 200], dim=-1)
    xyz = torch.where(f ** 3 > _EPSILON, f ** 3, (116 * f - 16) / _KAPPA)
    xyz = xyz * torch.tensor(D65_WHITE, dtype=x.dtype, device=x.device)
    m_inv = torch.linalg.inv(torch.tensor(RGB_TO_XYZ, dtype=torch.float64)).to(x.dtype).to(x.device)
    lin = xyz @ m_inv.t()
    rgb = torch.where(lin > 0.0031308, 1.055 * lin.clamp(min=0) ** (1 / 2.4) - 0.055, 12.92 * lin)
    rgb = rgb.movedim(-1, channel_dim)
    return rgb.numpy() if was_numpy else rgb


def fit_colour_clusters(frames: np.ndarray, clusters: int = 16, pixels: int = 100_000, seed: int = 0,
                        ) -> np.ndarray:
    """k-means centres (clusters x 2) of the ab values of `pixels` random pixels of uint8 frames
    F x H x W x 3 (or a flat N x 3 array of colours)."""
    from sklearn.cluster import KMeans

    flat = np.asarray(frames).reshape(-1, 3)
    if len(flat) == 0:
        raise ValueError("no pixels to fit colour clusters on")
    rng = np.random.default_rng(seed)
    take = rng.choice(len(flat), size=min(pixels, len(flat)), replace=False)
    rgb = flat[np.sort(take)].astype(np.float64)
    if np.asarray(frames).dtype == np.uint8:
        rgb /= 255.0
    ab = rgb_to_lab(rgb, channel_dim=-1)[:, 1:]
    distinct = len(np.unique(np.round(ab, 6), axis=0))
    if distinct < clusters:
        raise ValueError(f"only {distinct} distinct colours among the sampled pixels; cannot fit "
                         f"{clusters} colour clusters")
    km = KMeans(n_clusters=clusters, n_init=3, random_state=seed).fit(ab)
    return km.cluster_centers_.astype(np.float32)


def quantize_ab(ab: torch.Tensor, centres: torch.Tensor, channel_dim: int = 1) -> torch.Tensor:
    """Index of the nearest centre (squared Euclidean; first on ties) of every ab pair."""
    x = ab.movedim(channel_dim, -1)
    c = centres.to(x.dtype).to(x.device)
    d = ((x.unsqueeze(-2) - c) ** 2).sum(-1)
    return d.argmin(-1)


def attention_copy(reference: torch.Tensor, target: torch.Tensor, reference_labels: torch.Tensor,
                   temperature: float = 1.0) -> torch.Tensor:
    """Copy labels by attention: B x R x D reference features, B x Q x D target features and
    B x R x K reference label distributions -> B x Q x K, row q = sum_i softmax_i(<t_q, r_i> / T) y_i."""
    if reference.dim() != 3 or target.dim() != 3 or reference_labels.dim() != 3:
        raise ValueError("expected B x R x D, B x Q x D and B x R x K tensors")
    weights = torch.softmax(target @ reference.transpose(1, 2) / temperature, dim=-1)   # B x Q x R
    return weights @ reference_labels.to(weights.dtype)


def colorization_loss(predicted: torch.Tensor, target: torch.Tensor, eps: float = 1e-8
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of predicted colour distributions (B x Q x K) against true colour ids (B x Q)
    -> (loss, accuracy)."""
    p = predicted.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    loss = -torch.log(p + eps).mean()
    return loss, (predicted.argmax(-1) == target).float().mean()


# ------------------------------------------------------------------------------------------------
# The encoder on gray frames
# ------------------------------------------------------------------------------------------------

def gray_input(images: torch.Tensor) -> torch.Tensor:
    """Float RGB B x 3 x H x W in [0, 1] -> luma replicated to 3 channels."""
    w = torch.tensor(LUMA, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images * w).sum(1, keepdim=True).expand(-1, 3, -1, -1)


def pixel_embeddings(model: CRW, images: torch.Tensor) -> torch.Tensor:
    """Per-location embeddings B x D x h x w: the head applied at every cell of the layer4 map."""
    if model.head is None:
        raise ValueError("the colourisation model needs a head (the per-pixel embedding)")
    fmap = model.encoder(images, "layer4")
    return model.head(fmap.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


@torch.no_grad()
def fold_gray_input(model: CRW) -> CRW:
    """Make the encoder take RGB frames and compute exactly what it computed on their luma.

    Trained on x_c = (Y - mean_c) / std_c, conv1 computes sum_c W_c * x_c. With
    W'_c = std_c * luma_c * sum_k W_k / std_k it computes the same from x_c = (rgb_c - mean_c) / std_c
    up to a constant per output channel (reflect padding keeps a constant input offset constant),
    which is moved into bn1's running mean. Exact in eval mode.
    """
    enc = model.encoder
    mean, std = [torch.tensor(v, dtype=torch.float64) for v in NORMALIZATION[model.config.test_normalization]]
    luma = torch.tensor(LUMA, dtype=torch.float64)
    w = enc.conv1.weight.double()                                          # O x 3 x k x k
    collapsed = (w / std.view(1, 3, 1, 1)).sum(1, keepdim=True)            # O x 1 x k x k
    new_w = collapsed * (std * luma).view(1, 3, 1, 1)
    # constant terms of the two convolutions (per output channel)
    old_const = -(w.sum(dim=(2, 3)) * (mean / std)).sum(1)
    new_const = -(new_w.sum(dim=(2, 3)) * (mean / std)).sum(1)
    enc.conv1.weight.copy_(new_w.to(enc.conv1.weight.dtype))
    enc.bn1.running_mean.sub_((old_const - new_const).to(enc.bn1.running_mean.dtype))
    return model


# ------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ColorizationConfig:
    """Defaults from the paper: 16 colour clusters, clips of 3 reference frames + 1 target,
    256-pixel frames (32 x 32 features), temperature 1, batch 32 clips."""

    clusters: int = 16
    kmeans_pixels: int = 100_000
    frame_size: int = 256
    crop_scale: tuple[float, float] = (0.6, 1.0)       # one random crop per clip (all frames alike)
    flip: bool = True
    temperature: float = 1.0
    batch_size: int = 32
    optim: OptimConfig = OptimConfig()
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "crop_scale", tuple(float(v) for v in self.crop_scale))
        if self.clusters < 2:
            raise ValueError(f"clusters must be >= 2, got {self.clusters}")
        if self.frame_size < 8:
            raise ValueError(f"frame_size must be >= 8, got {self.frame_size}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["crop_scale"] = list(self.crop_scale)
        return d


def clip_colour_targets(frames: torch.Tensor, centres: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Quantised colour ids on the feature grid: float RGB N x 3 x H x W -> N x h x w (ab averaged over
    each cell, then the nearest centre)."""
    ab = rgb_to_lab(frames.double())[:, 1:].float()
    ab = F.adaptive_avg_pool2d(ab, grid)
    return quantize_ab(ab, centres)


def _clip_views(clips: torch.Tensor, config: ColorizationConfig, generator: torch.Generator) -> torch.Tensor:
    """uint8 clips B x T x H x W x 3 -> float B*T x 3 x s x s, one crop (and flip) per clip."""
    b, t, h, w, _ = clips.shape
    theta = resized_crop_theta(b, h, w, config.crop_scale, (3 / 4, 4 / 3), generator)
    flip = torch.rand(b, generator=generator) < 0.5
    if config.flip:
        theta = torch.cat([theta[:, :, :2] @ flip_theta(flip)[:, :, :2], theta[:, :, 2:]], dim=2)
    frames = clips.reshape(b * t, h, w, 3).permute(0, 3, 1, 2).float().div_(255.0)
    return affine_sample(frames, theta.repeat_interleave(t, dim=0), config.frame_size)


def train_colorization(model: CRW, cache: Any, centres: np.ndarray | torch.Tensor, config: ColorizationConfig,
                       *, progress: bool = False, desc: str = "colorization") -> TrainHistory:
    """Train `model` (head: the per-pixel embedding) to colour the last frame of each clip of
    `cache` (anything with `len()` and `cache[i] -> T x H x W x 3 uint8`) from the others."""
    device = next(model.parameters()).device
    centres_t = torch.as_tensor(np.asarray(centres), dtype=torch.float32)
    k = centres_t.shape[0]
    generator = torch.Generator().manual_seed(config.seed)
    n_clips = len(cache)
    if n_clips == 0:
        raise ValueError("no clips to train on")

    def step(_: int) -> tuple[torch.Tensor, dict[str, float]]:
        index = torch.randint(n_clips, (config.batch_size,), generator=generator).tolist()
        clips = torch.from_numpy(np.stack([cache[i] for i in index]))
        b, t = clips.shape[:2]
        if t < 2:
            raise ValueError(f"clips need at least 2 frames (references + target), got {t}")
        frames = _clip_views(clips, config, generator)                          # B*T x 3 x s x s
        emb = pixel_embeddings(model, model.normalize_frames(gray_input(frames).to(device)))
        d, h, w = emb.shape[1:]
        ids = clip_colour_targets(frames, centres_t, (h, w)).to(device).view(b, t, h * w)
        emb = emb.view(b, t, d, h * w).permute(0, 1, 3, 2)                      # B x T x hw x D
        reference = emb[:, :-1].reshape(b, (t - 1) * h * w, d)
        labels = F.one_hot(ids[:, :-1].reshape(b, -1), k).float()
        predicted = attention_copy(reference, emb[:, -1], labels, config.temperature)
        loss, acc = colorization_loss(predicted, ids[:, -1])
        return loss, {"accuracy": float(acc)}

    return optimise(model, step, config.optim, desc=desc, progress=progress)
