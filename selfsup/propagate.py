"""Label propagation from the first frame (CRW protocol, spec crw.md §5): masks, keypoints, parts.

For target frame t the context is the first frame ("long memory", every node a candidate) plus the
previous L frames, where the L slots before the video starts are copies of frame 0 (the padded
sequence of the official code). For the L short-term frames only keys closer than `radius` grid
cells (‖Δ‖ < R) are candidates. Affinities are dot products of L2-normalised features; the top-k
candidates over all (frame, node) pairs jointly are softmax-weighted (temperature τ) and their soft
labels averaged. The result is fed back as the soft label of frame t.

How it runs (same labels as the dense all-pairs computation, far less work):
- only in-radius keys are scored: the query grid is cut into tiles, each tile's neighbourhood
  window is correlated with one batched matrix product and the disc of offsets gathered from it;
- top-k is taken per context frame first, then over the (1 + L)·k survivors (the same set);
- the memory is a ring buffer of L feature maps and labels on the device, plus frame 0; frame 0 is
  encoded once, its L padded copies reuse its scores yet still fill separate top-k slots, as in the
  official code (a frame-0 node may be selected several times).

A feature extractor is any callable: normalised frames N×3×H×W → N×C×h×w. `build_extractor` makes
the CRW checkpoint, random-init, raw-pixel and ImageNet ResNet-18 ones.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "PropagationConfig", "LabelPropagator", "LocalWindow", "propagate_features",
    "PROTOCOLS", "protocol", "FeatureExtractor", "build_extractor", "PixelFeatures",
    "load_frames", "encode_frames", "mask_labels", "labels_to_ids", "joint_heatmaps", "decode_joints",
    "resize_label_map", "resize_linear", "propagate_davis", "propagate_jhmdb", "propagate_vip", "resolve_device",
    "IMAGENET_MEAN", "IMAGENET_STD",
]

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

FeatureExtractor = Callable[[torch.Tensor], torch.Tensor]


# ============================================================================================
# Configuration
# ============================================================================================

@dataclass(frozen=True)
class PropagationConfig:
    """The propagation protocol. Defaults: the official DAVIS settings."""

    context: int = 20                 # L: short-term frames before the target
    topk: int = 10
    radius: float = 12.0              # grid cells; keys with distance >= radius are not candidates
    temperature: float = 0.05
    pad_context_with_first_frame: bool = True    # L copies of frame 0 before the video
    radius_on_first_frame: bool = False          # the long-memory frame is dense by default
    soft_recurrence: bool = True                 # False: feed back one-hot argmax labels
    tile: int = 8                                # query tile side of the local correlation
    chunk_elements: int | None = None            # bound on one score block; None: 2^24 CPU, 2^27 GPU

    def __post_init__(self) -> None:
        if self.context < 0:
            raise ValueError(f"context must be >= 0, got {self.context}")
        if self.topk < 1:
            raise ValueError(f"topk must be >= 1, got {self.topk}")
        if not self.radius > 0:
            raise ValueError(f"radius must be > 0, got {self.radius}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.chunk_elements is not None and self.chunk_elements < 1:
            raise ValueError(f"chunk_elements must be >= 1, got {self.chunk_elements}")
        if self.tile < 1:
            raise ValueError(f"tile must be >= 1, got {self.tile}")


# Per data set protocol (crw.md §5): context, input size (crop_size; -1 = native size).
PROTOCOLS = {
    "davis": {"context": 20, "crop_size": -1},
    "jhmdb": {"context": 7, "crop_size": 320},
    "vip": {"context": 4, "crop_size": 560},
}


def protocol(set_name: str, **overrides) -> PropagationConfig:
    """The official config of one data set, with `overrides` (None values are ignored)."""
    if set_name not in PROTOCOLS:
        raise ValueError(f"unknown data set {set_name!r}; expected one of {', '.join(PROTOCOLS)}")
    cfg = PropagationConfig(context=PROTOCOLS[set_name]["context"])
    return replace(cfg, **{k: v for k, v in overrides.items() if v is not None})


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available")
    return device


# ============================================================================================
# Local-window correlation
# ============================================================================================

class LocalWindow:
    """Scores of every query against the keys within `radius` of its own grid position.

    The query grid, padded to a multiple of `tile`, is cut into tile×tile blocks. A block's keys all
    lie in a (tile + 2m)² window around it (m = largest offset): one batched matrix product scores
    the block against its window, keys outside the disc ‖Δ‖ < radius or outside the image are masked
    to −inf, and top-k is taken right there, so no h·w × (2m+1)² score map is ever kept.
    """

    def __init__(self, height: int, width: int, radius: float, tile: int, device: torch.device):
        self.h, self.w, self.tile = height, width, tile
        m = max(0, math.ceil(radius) - 1)
        while math.sqrt(m * m) >= radius and m > 0:   # largest |offset| with distance < radius
            m -= 1
        self.m = m
        self.n_offsets = sum(1 for dy in range(-m, m + 1) for dx in range(-m, m + 1)
                             if math.sqrt(dy * dy + dx * dx) < radius)
        win = self.window = tile + 2 * m
        self.nty, self.ntx = -(-height // tile), -(-width // tile)
        self.ph, self.pw = self.nty * tile, self.ntx * tile
        ar = torch.arange
        # query (a_y, a_x) of tile (t_y, t_x) against window cell (w_y, w_x): key offset w - m - a
        a = ar(tile, device=device)
        wv = ar(win, device=device)
        dy = wv.view(1, -1) - m - a.view(-1, 1)                          # tile × win  (a_y, w_y)
        dist2 = (dy.view(tile, 1, win, 1) ** 2 + dy.view(1, tile, 1, win) ** 2).double()
        in_disc = dist2.sqrt() < radius                                  # a_y, a_x, w_y, w_x
        ky = ar(self.nty, device=device).view(-1, 1) * tile - m + wv     # nty × win (key rows)
        kx = ar(self.ntx, device=device).view(-1, 1) * tile - m + wv     # ntx × win (key cols)
        row_ok = (ky >= 0) & (ky < height)
        col_ok = (kx >= 0) & (kx < width)
        inside = row_ok.view(self.nty, 1, win, 1) & col_ok.view(1, self.ntx, 1, win)   # tiles × window
        # masked[ty, tx, a_y·tile + a_x, w_y·win + w_x]: not a candidate
        self.masked = ~(inside.view(self.nty, self.ntx, 1, 1, win, win)
                        & in_disc.view(1, 1, tile, tile, win, win)
                        ).reshape(self.nty, self.ntx, tile * tile, win * win)
        self.tile_base = (ky[:, :1] * width).view(-1, 1) + kx[:, :1].view(1, -1)   # id of window (0, 0)
        self.window_offset = (wv.view(-1, 1) * width + wv.view(1, -1)).reshape(-1)  # win²

    @property
    def padded_shape(self) -> tuple[int, int]:
        """Size of a key map padded for `topk`: m cells before, m + tile padding after."""
        return self.ph + 2 * self.m, self.pw + 2 * self.m

    def pad_keys(self, keys: torch.Tensor) -> torch.Tensor:
        """h×w×C (or U×h×w×C) key map -> its zero-padded copy for `topk`."""
        m = self.m
        return F.pad(keys, (0, 0, m, m + self.pw - self.w, m, m + self.ph - self.h))

    def topk(self, queries: torch.Tensor, padded_keys: torch.Tensor, k: int, chunk_elements: int
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k over the in-radius keys of U key frames jointly, for queries h×w×C.

        `padded_keys`: U × (ph+2m) × (pw+2m) × C (see `pad_keys`). Returns scores and ids
        (u·h·w + key node) of shape h·w × k' — k' = k, or a multiple of k when the frames had to be
        split into groups to bound memory (the union of the groups' top-k holds the overall top-k).
        Scores are −inf where a query has fewer than k keys inside the image.
        """
        n_frames, c = padded_keys.shape[0], queries.shape[-1]
        t, win = self.tile, self.window
        w2, hw = win * win, self.h * self.w
        # channels last: a window row is one contiguous run of win·C values, so copies are cheap
        qp = F.pad(queries, (0, 0, 0, self.pw - self.w, 0, self.ph - self.h))
        per_frame_row = self.ntx * max(c, t * t) * w2      # window / score elements, one tile row
        group = max(1, min(n_frames, chunk_elements // per_frame_row))
        rows = max(1, chunk_elements // (per_frame_row * group))
        n_groups = -(-n_frames // group)
        kk = min(k, group * w2)
        vals = queries.new_empty(n_groups, self.nty, self.ntx, t * t, kk)
        ids = torch.empty(n_groups, self.nty, self.ntx, t * t, kk, dtype=torch.long, device=queries.device)
        su, sy, sx, sc = padded_keys.stride()
        for gi, f0 in enumerate(range(0, n_frames, group)):
            f1 = min(n_frames, f0 + group)
            g = f1 - f0
            k_g = min(kk, g * w2)
            for r0 in range(0, self.nty, rows):
                r1 = min(self.nty, r0 + rows)
                band = padded_keys[f0:f1, r0 * t:]
                # tiles_y × tiles_x × frames × win × win × C view of the windows, then one copy
                windows = band.as_strided((r1 - r0, self.ntx, g, win, win, c),
                                          (t * sy, t * sx, su, sy, sx, sc), band.storage_offset())
                windows = windows.reshape(r1 - r0, self.ntx, g * w2, c)
                q = (qp[r0 * t: r1 * t].view(r1 - r0, t, self.ntx, t, c)
                     .permute(0, 2, 1, 3, 4).reshape(r1 - r0, self.ntx, t * t, c))
                s = torch.matmul(q, windows.transpose(-1, -2))       # ty × tx × tile² × (frames·win²)
                s.view(r1 - r0, self.ntx, t * t, g, w2).masked_fill_(self.masked[r0:r1, :, :, None],
                                                                     float("-inf"))
                v, pos = s.topk(k_g, dim=-1)
                frame = torch.div(pos, w2, rounding_mode="floor")
                node = self.tile_base[r0:r1, :, None, None] + self.window_offset[pos - frame * w2]
                vals[gi, r0:r1, ..., :k_g] = v
                ids[gi, r0:r1, ..., :k_g] = (f0 + frame) * hw + node.clamp_(0, hw - 1)
            if k_g < kk:
                vals[gi, ..., k_g:] = float("-inf")
                ids[gi, ..., k_g:] = f0 * hw

        # groups × tiles_y × tiles_x × tile × tile × k -> row-major queries × (groups·k)
        def to_grid(x: torch.Tensor) -> torch.Tensor:
            x = x.view(n_groups, self.nty, self.ntx, t, t, kk).permute(1, 3, 2, 4, 0, 5)
            return x.reshape(self.ph, self.pw, n_groups * kk)[: self.h, : self.w].reshape(hw, -1)

        return to_grid(vals), to_grid(ids)


def dense_topk(queries: torch.Tensor, keys: torch.Tensor, k: int, chunk_elements: int
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k over all key nodes of one frame (the long memory), features h×w×C: h·w × k scores, ids."""
    c = queries.shape[-1]
    q = queries.reshape(-1, c)
    kk = keys.reshape(-1, c).t()
    n = kk.shape[1]
    k = min(k, n)
    rows = max(1, chunk_elements // max(1, n))
    vals, ids = [], []
    for r0 in range(0, q.shape[0], rows):
        v, i = (q[r0: r0 + rows] @ kk).topk(k, dim=1)
        vals.append(v)
        ids.append(i)
    return torch.cat(vals), torch.cat(ids)


# ============================================================================================
# The propagator
# ============================================================================================

def _channels_last(features: torch.Tensor) -> torch.Tensor:
    """C×h×w features -> L2-normalised over channels (eps 1e-12), stored h×w×C."""
    return F.normalize(features, dim=0, eps=1e-12).permute(1, 2, 0).contiguous()


class LabelPropagator:
    """Stateful propagation over one video: `reset(f0, y0)`, then `step(f_t)` for t = 1, 2, …

    Features are C×h×w (L2-normalised here, kept channels-last); labels K×h×w soft labels.
    Memory: frame 0 plus a ring buffer of `context` key maps (stored padded for the local window)
    and their labels, whatever the video length.
    """

    def __init__(self, config: PropagationConfig | None = None):
        self.config = config or PropagationConfig()
        self._window: LocalWindow | None = None
        self.t = 0

    # ---------------------------------------------------------------------------- memory
    def reset(self, features0: torch.Tensor, labels0: torch.Tensor) -> None:
        if features0.dim() != 3 or labels0.dim() != 3 or features0.shape[1:] != labels0.shape[1:]:
            raise ValueError(f"features C×h×w {tuple(features0.shape)} and labels K×h×w "
                             f"{tuple(labels0.shape)} must share the grid")
        c, h, w = features0.shape
        win = self._window
        if win is None or (win.h, win.w) != (h, w) or win.masked.device != features0.device:
            win = self._window = LocalWindow(h, w, self.config.radius, self.config.tile, features0.device)
        keys0 = _channels_last(features0)
        self.first_keys = keys0
        self.first_padded = win.pad_keys(keys0)[None]
        self.first_labels = labels0.to(features0.dtype).reshape(labels0.shape[0], -1).t().contiguous()
        size = max(self.config.context, 1)
        self.ring_keys = features0.new_zeros((size, *win.padded_shape, c))
        self.ring_labels = features0.new_zeros((size, h * w, labels0.shape[0]))
        self.t = 0

    @property
    def ring_size(self) -> int:
        """Frames now held in the ring (frames max(1, t−L+1) .. t)."""
        return min(self.t, self.config.context)

    def push(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Append frame t+1 with known labels (K×h×w) to the context, as `step` does with its output."""
        self.t += 1
        if self.config.context > 0:
            slot = (self.t - 1) % self.config.context
            m, h, w = self._window.m, self._window.h, self._window.w
            self.ring_keys[slot, m: m + h, m: m + w] = _channels_last(features)
            self.ring_labels[slot] = labels.reshape(labels.shape[0], -1).t()

    def first_frame_copies(self) -> int:
        """How many short-term context slots of the next target hold frame 0."""
        target, L = self.t + 1, self.config.context
        if self.config.pad_context_with_first_frame:
            return max(0, min(L, L - target + 1))
        return 1 if 0 < target <= L else 0

    # ---------------------------------------------------------------------------- one step
    @torch.no_grad()
    def step(self, features: torch.Tensor) -> torch.Tensor:
        """Labels of the next frame (K×h×w); they become its context labels."""
        if self._window is None:
            raise RuntimeError("call reset(features0, labels0) first")
        cfg, win = self.config, self._window
        q = _channels_last(features)
        h, w, c = q.shape
        hw, k = h * w, cfg.topk
        chunk = cfg.chunk_elements or (1 << 27 if q.is_cuda else 1 << 24)
        # candidate ids index the label bank [frame 0, ring slot 0, ring slot 1, ...]
        if cfg.radius_on_first_frame:
            v0, i0 = win.topk(q, self.first_padded, k, chunk)
        else:
            v0, i0 = dense_topk(q, self.first_keys, k, chunk)
        vals, ids = [v0], [i0]
        copies = self.first_frame_copies()
        if copies:
            v, i = (v0, i0) if cfg.radius_on_first_frame else win.topk(q, self.first_padded, k, chunk)
            vals += [v] * min(copies, k)          # padded copies fill separate top-k slots
            ids += [i] * min(copies, k)
        n = self.ring_size
        if n:
            v, i = win.topk(q, self.ring_keys[:n], k, chunk)
            vals.append(v)
            ids.append(i + hw)
        allv = torch.cat(vals, dim=1)
        alli = torch.cat(ids, dim=1)
        top, pos = allv.topk(min(k, allv.shape[1]), dim=1)
        weights = torch.softmax(top / cfg.temperature, dim=1)               # h·w × k
        bank = torch.cat([self.first_labels, self.ring_labels[:n].reshape(-1, self.first_labels.shape[1])])
        picked = bank[alli.gather(1, pos)]                                   # h·w × k × K
        out = torch.einsum("nk,nkc->nc", weights, picked).t().reshape(-1, h, w)
        if cfg.soft_recurrence:
            feedback = out
        else:
            feedback = F.one_hot(out.argmax(0), out.shape[0]).permute(2, 0, 1).to(out.dtype)
        self.push(features, feedback)
        return out


def propagate_features(features: Iterable[torch.Tensor],
                       initial_labels: torch.Tensor | Callable[[int, int], torch.Tensor],
                       config: PropagationConfig | None = None) -> Iterator[torch.Tensor]:
    """Soft labels K×h×w of every frame (frame 0: the given labels) from per-frame features C×h×w.

    `initial_labels` is the K×h×w label tensor of frame 0 or a function (h, w) -> that tensor.
    """
    it = iter(features)
    try:
        f0 = next(it)
    except StopIteration:
        return
    y0 = initial_labels(*f0.shape[1:]) if callable(initial_labels) else initial_labels
    y0 = y0.to(f0.device, f0.dtype)
    prop = LabelPropagator(config)
    prop.reset(f0, y0)
    yield y0
    for f in it:
        yield prop.step(f)


# ============================================================================================
# Feature extractors and frames
# ============================================================================================

class PixelFeatures:
    """Raw pixels as features: the normalised image (or CIE Lab) average-pooled over stride×stride."""

    def __init__(self, stride: int = 8, colorspace: str = "rgb"):
        if colorspace not in ("rgb", "lab"):
            raise ValueError(f"colorspace must be 'rgb' or 'lab', got {colorspace!r}")
        self.stride, self.colorspace = stride, colorspace

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames
        if self.colorspace == "lab":
            mean = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
            std = torch.tensor(IMAGENET_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
            x = rgb_to_lab((x * std + mean).clamp(0, 1))
        return F.avg_pool2d(x, self.stride, self.stride, ceil_mode=True)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB in [0,1] (N×3×H×W) -> CIE Lab (D65), scaled to L/100, a/128, b/128."""
    lin = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    m = torch.tensor([[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169],
                      [0.019334, 0.119193, 0.950227]], dtype=rgb.dtype, device=rgb.device)
    xyz = torch.einsum("ij,njhw->nihw", m, lin)
    white = torch.tensor([0.950456, 1.0, 1.088754], dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    t = xyz / white
    f = torch.where(t > 0.008856, t.clamp(min=1e-12) ** (1 / 3), 7.787 * t + 16 / 116)
    lab = torch.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], 1)
    return lab / torch.tensor([100.0, 128.0, 128.0], dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)


def build_extractor(kind: str, checkpoint: str | Path | None = None, *, seed: int = 0,
                    device: str | torch.device = "cpu", crw_config=None,
                    pixel_colorspace: str = "rgb") -> FeatureExtractor:
    """A feature extractor by name.

    - "checkpoint": a CRW checkpoint of any supported layout (`selfsup.crw.load_checkpoint`)
    - "imagenet": torchvision-layout ImageNet ResNet-18 weights through the same loader
    - "random": a randomly initialised CRW encoder (seeded; the architecture of `crw_config`, or of
      `checkpoint` when given, else the published one)
    - "pixels": the frame itself, average-pooled to stride 8
    """
    device = resolve_device(device)
    if kind == "pixels":
        return PixelFeatures(8, pixel_colorspace)
    from . import crw

    if kind in ("checkpoint", "imagenet", "crw"):
        if checkpoint is None:
            raise ValueError(f"model {kind!r} needs a checkpoint / weights path")
        path = Path(checkpoint)
        if not path.exists():
            raise FileNotFoundError(f"{path}: checkpoint not found")
        model = crw.load_checkpoint(path, map_location="cpu", propagation_only=True).to(device)
        return model.eval().features
    if kind == "random":
        config = crw_config
        if config is None and checkpoint is not None and Path(checkpoint).exists():
            config = crw.load_checkpoint(checkpoint, map_location="cpu", propagation_only=True).config
        config = (config or crw.CRWConfig()).replace(with_layer4=False, with_head=False)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = crw.CRW(config)
        return model.to(device).eval().features
    raise ValueError(f"unknown model {kind!r}; expected checkpoint, imagenet, random or pixels")


def load_frames(paths: Sequence[str | Path], crop_size: int = -1, device: str | torch.device = "cpu"
                ) -> torch.Tensor:
    """Frames as ImageNet-normalised float N×3×H×W; `crop_size > 0` resizes to a square (bilinear)."""
    from .data.davis import read_image

    images = np.stack([read_image(p) for p in paths])
    x = torch.from_numpy(images).to(device).permute(0, 3, 1, 2).float().div_(255.0)
    if crop_size and crop_size > 0:
        x = F.interpolate(x, size=(crop_size, crop_size), mode="bilinear", align_corners=False,
                          antialias=False)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def encode_frames(extractor: FeatureExtractor, paths: Sequence[str | Path], crop_size: int = -1,
                  device: str | torch.device = "cpu", batch_size: int = 8) -> Iterator[torch.Tensor]:
    """Per-frame features C×h×w, reading and encoding `batch_size` frames at a time."""
    device = resolve_device(device)
    for start in range(0, len(paths), batch_size):
        frames = load_frames(paths[start: start + batch_size], crop_size, device)
        with torch.no_grad():
            feats = extractor(frames)
        if feats.dim() != 4 or feats.shape[0] != frames.shape[0]:
            raise ValueError(f"feature extractor returned shape {tuple(feats.shape)} for "
                             f"{frames.shape[0]} frames; expected N×C×h×w")
        for f in feats.to(device):
            yield f.clone()


# ============================================================================================
# Label encodings
# ============================================================================================

def _linear_taps(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """OpenCV INTER_LINEAR taps along one axis: half-pixel centres, the source coordinate rounded
    to float32 as OpenCV does, clamped at the borders (weight 0 on the missing neighbour)."""
    scale = 1.0 / (dst / src)
    coord = ((np.arange(dst) + 0.5) * scale - 0.5).astype(np.float32)
    first = np.floor(coord).astype(np.int64)
    frac = (coord - first.astype(np.float32)).astype(np.float32)
    low, high = first < 0, first >= src - 1
    frac[low | high] = 0.0
    first[low] = 0
    first[high] = src - 1
    return first, np.minimum(first + 1, src - 1), (np.float32(1) - frac).astype(np.float32), frac


def resize_linear(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ...×H×W to `size` (h, w) with OpenCV INTER_LINEAR arithmetic (horizontal
    pass, then vertical; no antialiasing), in the dtype of `x`."""
    (out_h, out_w), (in_h, in_w) = size, x.shape[-2:]
    out = x
    if out_w != in_w:
        i0, i1, w0, w1 = (torch.from_numpy(a).to(x.device) for a in _linear_taps(in_w, out_w))
        out = out[..., i0] * w0.to(x.dtype) + out[..., i1] * w1.to(x.dtype)
    if out_h != in_h:
        j0, j1, v0, v1 = (torch.from_numpy(a).to(x.device) for a in _linear_taps(in_h, out_h))
        out = out[..., j0, :] * v0.to(x.dtype)[:, None] + out[..., j1, :] * v1.to(x.dtype)[:, None]
    return out


def mask_labels(label_map: np.ndarray, grid: tuple[int, int], device: str | torch.device = "cpu",
                dtype: torch.dtype = torch.float32) -> tuple[np.ndarray, torch.Tensor]:
    """(label values, soft labels K×h×w): one-hot of the distinct values (sorted, background first)
    at image resolution, resized bilinearly (OpenCV INTER_LINEAR) to the grid."""
    values = np.unique(np.asarray(label_map))
    ids = torch.from_numpy(np.searchsorted(values, label_map).astype(np.int64)).to(device)
    onehot = F.one_hot(ids, len(values)).permute(2, 0, 1).to(dtype)
    return values, resize_linear(onehot, tuple(grid))


def labels_to_ids(soft: torch.Tensor, size: tuple[int, int], values: np.ndarray) -> np.ndarray:
    """Upsample soft labels K×h×w bilinearly (OpenCV INTER_LINEAR) to `size` (H, W), argmax (first
    maximum wins, so all-zero is background), map back to label values."""
    up = resize_linear(soft.float(), tuple(size))
    if up.is_cuda:   # reduce on the device, move only the indices
        index = up.argmax(0).to(torch.uint8 if up.shape[0] <= 256 else torch.int64).cpu().numpy()
    else:            # NumPy's reduction over the leading axis is the faster one on the CPU
        index = np.argmax(up.numpy(), axis=0)
    return np.asarray(values)[index]


def resize_label_map(labels: np.ndarray, size: tuple[int, int], interp: str = "linear") -> np.ndarray:
    """Resize an id map to `size` (H, W). "nearest": OpenCV INTER_NEAREST (src = floor(dst / (dst/src)));
    "linear": bilinear blend of the ids, rounded (the official square-crop path), so boundaries
    between two classes get the ids in between (OpenCV's 11-bit fixed-point weights for uint8 may
    round a boundary pixel differently)."""
    labels = np.asarray(labels)
    (out_h, out_w), (in_h, in_w) = size, labels.shape
    if interp == "nearest":
        rows = np.minimum(np.floor(np.arange(out_h) * (1.0 / (out_h / in_h))).astype(np.int64), in_h - 1)
        cols = np.minimum(np.floor(np.arange(out_w) * (1.0 / (out_w / in_w))).astype(np.int64), in_w - 1)
        return labels[rows[:, None], cols[None, :]]
    if interp == "linear":
        out = resize_linear(torch.from_numpy(labels.astype(np.float32)), (out_h, out_w))
        return torch.floor(out + 0.5).numpy().astype(labels.dtype)
    raise ValueError(f"label_resize_interp must be 'linear' or 'nearest', got {interp!r}")


def joint_heatmaps(joints: np.ndarray, image_size: tuple[int, int], grid: tuple[int, int],
                   crop_size: int = 320, stride: int = 8, sigma: float = 0.5) -> torch.Tensor:
    """Frame-0 keypoint labels on the grid: 15 joint channels + background (last), (J+1)×h×w.

    Joint (x, y) in 0-based pixels of a W×H image -> c = x·crop/W/stride; a 4×4 Gaussian patch
    (peak at patch index 2) covers grid cells [trunc(c − 1.5), trunc(c + 2.5)), clipped to the grid;
    joints entirely off the grid are skipped. Background = 1 where every joint channel is 0.
    """
    joints = np.asarray(joints, dtype=np.float64)
    width, height = image_size
    gh, gw = grid
    a = np.arange(4)
    patch = np.exp(-((a[:, None] - 2) ** 2 + (a[None, :] - 2) ** 2) / (2 * sigma ** 2))
    maps = np.zeros((joints.shape[1] + 1, gh, gw))
    for j in range(joints.shape[1]):
        cx = joints[0, j] * crop_size / width / stride
        cy = joints[1, j] * crop_size / height / stride
        ulx, uly = math.trunc(cx - 1.5), math.trunc(cy - 1.5)
        brx, bry = math.trunc(cx + 2.5), math.trunc(cy + 2.5)
        if ulx >= gw or uly >= gh or brx < 0 or bry < 0:
            continue
        x0, x1 = max(0, ulx), min(brx, gw)
        y0, y1 = max(0, uly), min(bry, gh)
        px0, py0 = max(0, -ulx), max(0, -uly)
        maps[j, y0:y1, x0:x1] = patch[py0: py0 + (y1 - y0), px0: px0 + (x1 - x0)]
    maps[-1] = (maps[:-1] == 0).all(0)
    return torch.from_numpy(maps)


def decode_joints(soft: torch.Tensor, n_joints: int = 15, top: int = 3) -> np.ndarray:
    """Grid coordinates (2×J: x = column, y = row) from propagated joint maps (background dropped):
    weighted mean of each joint's top-3 cells; (−1, −1) for a joint with no mass."""
    maps = soft[:n_joints].reshape(n_joints, -1).double()
    w = soft.shape[-1]
    v, idx = maps.topk(top, dim=1)
    total = v.sum(1, keepdim=True)
    weights = v / total.clamp(min=torch.finfo(torch.float64).tiny)
    cols = (weights * (idx % w).double()).sum(1)
    rows = (weights * torch.div(idx, w, rounding_mode="floor").double()).sum(1)
    out = torch.stack([cols, rows]).cpu().numpy()
    out[:, (total[:, 0] <= 0).cpu().numpy()] = -1.0
    return out


# ============================================================================================
# Data sets
# ============================================================================================

def _progress(items, desc: str, enabled: bool):
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="video", disable=None)   # bars on terminals only


def _stats(videos: int, frames: int, seconds: float) -> dict:
    return {"videos": videos, "frames": frames, "seconds": seconds,
            "frames_per_second": frames / seconds if seconds > 0 else float("nan")}


def propagate_davis(extractor: FeatureExtractor, root: str | Path, out: str | Path,
                    config: PropagationConfig | None = None, *, set_name: str = "val",
                    sequences: Sequence[str] | None = None, crop_size: int = -1,
                    device: str | torch.device = "cpu", batch_size: int = 8,
                    progress: bool = True) -> dict:
    """Masks: writes `<out>/<seq>/<frame>.png` (indexed, DAVIS palette, GT size) for every frame."""
    from .data.davis import DAVIS_PALETTE, DavisSet, write_indexed_png

    config = config or protocol("davis")
    device = resolve_device(device)
    davis = DavisSet(root, set_name)
    names = list(sequences) if sequences is not None else davis.sequences
    out = Path(out)
    n_frames, start = 0, time.perf_counter()
    for seq in _progress(names, "DAVIS", progress):
        paths = davis.frame_paths(seq)
        first = davis.read_annotation(davis.annotation_paths(seq)[0])
        size = first.shape
        values: list[np.ndarray] = []

        def labels0(h: int, w: int) -> torch.Tensor:
            vals, soft = mask_labels(first, (h, w), device)
            values.append(vals)
            return soft

        feats = encode_frames(extractor, paths, crop_size, device, batch_size)
        for path, soft in zip(paths, propagate_features(feats, labels0, config)):
            write_indexed_png(out / seq / f"{path.stem}.png", labels_to_ids(soft, size, values[0]),
                              DAVIS_PALETTE)
            n_frames += 1
    return _stats(len(names), n_frames, time.perf_counter() - start)


def propagate_jhmdb(extractor: FeatureExtractor, root: str | Path, out: str | Path,
                    config: PropagationConfig | None = None, *, split: int = 1,
                    videos: Sequence[str] | None = None, crop_size: int = 320, stride: int = 8,
                    device: str | torch.device = "cpu", batch_size: int = 8, progress: bool = True) -> dict:
    """Keypoints: writes `<out>/<class>__<video>.npy`, 2×15×T grid units (frame 0 decoded as given)."""
    from .data.davis import read_image
    from .data.jhmdb import JhmdbSet, write_prediction

    config = config or protocol("jhmdb")
    device = resolve_device(device)
    jhmdb = JhmdbSet(root, split=split)
    selected = [v for v in jhmdb.videos if videos is None or v.key in set(videos)]
    out = Path(out)
    n_frames, start = 0, time.perf_counter()
    for video in _progress(selected, "JHMDB", progress):
        paths = jhmdb.frame_paths(video)
        first = read_image(paths[0])
        joints0 = jhmdb.joints(video)[:, :, 0]

        def labels0(h: int, w: int) -> torch.Tensor:
            return joint_heatmaps(joints0, (first.shape[1], first.shape[0]), (h, w), crop_size, stride)

        feats = encode_frames(extractor, paths, crop_size, device, batch_size)
        coords = [decode_joints(soft) for soft in propagate_features(feats, labels0, config)]
        write_prediction(out / f"{video.key}.npy", np.stack(coords, axis=-1))
        n_frames += len(coords)
    return _stats(len(selected), n_frames, time.perf_counter() - start)


def propagate_vip(extractor: FeatureExtractor, root: str | Path, out: str | Path,
                  config: PropagationConfig | None = None, *, subset: str = "val",
                  videos: Sequence[str] | None = None, crop_size: int = 560,
                  label_resize_interp: str = "linear", device: str | torch.device = "cpu",
                  batch_size: int = 8, progress: bool = True) -> dict:
    """Parts: writes `<out>/<video>/<frame>.png` (class ids, single channel) at the input size."""
    from .data.davis import write_indexed_png
    from .data.vip import VipSet

    config = config or protocol("vip")
    device = resolve_device(device)
    vip = VipSet(root, subset)
    names = list(videos) if videos is not None else vip.videos
    out = Path(out)
    n_frames, start = 0, time.perf_counter()
    for video in _progress(names, "VIP", progress):
        paths = vip.frame_paths(video)
        first = vip.read_annotation(vip.annotation_path(video, paths[0].name))
        if crop_size and crop_size > 0:
            first = resize_label_map(first, (crop_size, crop_size), label_resize_interp)
        size = first.shape
        values: list[np.ndarray] = []

        def labels0(h: int, w: int) -> torch.Tensor:
            vals, soft = mask_labels(first, (h, w), device)
            values.append(vals)
            return soft

        feats = encode_frames(extractor, paths, crop_size, device, batch_size)
        for path, soft in zip(paths, propagate_features(feats, labels0, config)):
            write_indexed_png(out / video / f"{path.stem}.png", labels_to_ids(soft, size, values[0]), None)
            n_frames += 1
    return _stats(len(names), n_frames, time.perf_counter() - start)
