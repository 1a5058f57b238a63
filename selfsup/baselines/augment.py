"""The hand-made augmentation family of instance discrimination, as batched tensor ops.

Every op maps a batch of float images B x 3 x H x W in [0, 1] to a batch in [0, 1] and draws its
random numbers for the whole batch at once from a `torch.Generator`, so a batch is a pure function
of the images and the generator state. `augment(images, config, generator)` applies the ops named
in `config.ops` in a fixed order:

    crop -> flip -> rotation        one affine resampling (grid_sample) per batch
    color -> grayscale -> blur -> noise -> cutout

Every op's random numbers are drawn whether or not the op is enabled, so that dropping one op
(the leave-one-out ablation) leaves the draws of all the others unchanged.

Defaults follow SimCLR (Chen et al. 2020): random resized crop (scale 0.08-1, ratio 3/4-4/3),
horizontal flip p=0.5, colour jitter of strength 1 (brightness, contrast, saturation 0.8, hue 0.2)
with p=0.8 in a random order per image, grayscale p=0.2, Gaussian blur p=0.5 with sigma in
[0.1, 2.0] and a kernel of 10 % of the image side. Rotation (+-20 degrees) is Exemplar-CNN's
(Dosovitskiy et al. 2014); additive Gaussian noise and cutout (DeVries & Taylor 2017, a square of
half the image side) complete the family.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F

__all__ = ["OPS", "AugmentConfig", "augment", "to_float_images", "resized_crop_theta", "affine_sample",
           "flip_theta", "rotation_theta", "adjust_brightness", "adjust_contrast", "adjust_saturation",
           "adjust_hue", "rgb_to_hsv", "hsv_to_rgb", "grayscale", "gaussian_kernels", "gaussian_blur",
           "color_jitter", "add_noise", "cutout", "LUMA"]

OPS = ("crop", "flip", "rotation", "color", "grayscale", "blur", "noise", "cutout")
LUMA = (0.299, 0.587, 0.114)     # ITU-R BT.601 luma weights (torchvision's rgb_to_grayscale)


@dataclass(frozen=True)
class AugmentConfig:
    """Which ops run and how strong they are. Defaults: SimCLR's family at 224 pixels."""

    ops: tuple[str, ...] = ("crop", "flip", "color", "grayscale", "blur")
    size: int = 224                                   # output side
    crop_scale: tuple[float, float] = (0.08, 1.0)     # area fraction of the crop
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    rotation_degrees: float = 20.0                    # uniform in [-d, d]
    rotation_p: float = 1.0
    color_p: float = 0.8
    brightness: float = 0.8
    contrast: float = 0.8
    saturation: float = 0.8
    hue: float = 0.2
    grayscale_p: float = 0.2
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_kernel_fraction: float = 0.1                 # kernel side as a fraction of the image side
    noise_p: float = 0.5
    noise_std: float = 0.05
    cutout_p: float = 0.5
    cutout_fraction: float = 0.5                      # square side as a fraction of the image side
    cutout_fill: float = 0.5

    def __post_init__(self) -> None:
        for name in ("crop_scale", "crop_ratio", "blur_sigma"):
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
        object.__setattr__(self, "ops", tuple(self.ops))
        unknown = [op for op in self.ops if op not in OPS]
        if unknown:
            raise ValueError(f"unknown augmentation {unknown[0]!r}; expected some of {', '.join(OPS)}")
        if len(set(self.ops)) != len(self.ops):
            raise ValueError(f"augmentation listed twice in {list(self.ops)}")
        if self.size < 1:
            raise ValueError(f"size must be >= 1, got {self.size}")
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < min <= max <= 1, got {self.crop_scale}")
        if not 0 < self.crop_ratio[0] <= self.crop_ratio[1]:
            raise ValueError(f"crop_ratio must satisfy 0 < min <= max, got {self.crop_ratio}")
        for name in ("flip_p", "rotation_p", "color_p", "grayscale_p", "blur_p", "noise_p", "cutout_p",
                     "cutout_fraction", "cutout_fill"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        for name in ("brightness", "contrast", "saturation", "noise_std", "rotation_degrees"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.hue <= 0.5:
            raise ValueError(f"hue must lie in [0, 0.5], got {self.hue}")
        if not 0 < self.blur_sigma[0] <= self.blur_sigma[1]:
            raise ValueError(f"blur_sigma must satisfy 0 < min <= max, got {self.blur_sigma}")

    def without(self, op: str) -> "AugmentConfig":
        """The same family with `op` left out (the leave-one-out ablation)."""
        if op not in self.ops:
            raise ValueError(f"{op!r} is not among the ops {list(self.ops)}")
        return dataclasses.replace(self, ops=tuple(o for o in self.ops if o != op))

    def replace(self, **changes: Any) -> "AugmentConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "AugmentConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown augmentation settings: {', '.join(unknown)}")
        return cls(**dict(data))


def to_float_images(frames: torch.Tensor) -> torch.Tensor:
    """uint8 frames B x H x W x 3 (as stored in the clip cache) -> float B x 3 x H x W in [0, 1]."""
    if frames.dim() != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames B x H x W x 3, got shape {tuple(frames.shape)}")
    return frames.permute(0, 3, 1, 2).float().div_(255.0)


# ------------------------------------------------------------------------------------------------
# Geometry: crop, flip and rotation compose into one affine map per image
# ------------------------------------------------------------------------------------------------

def _uniform(n: int, lo: float, hi: float, generator: torch.Generator | None) -> torch.Tensor:
    return torch.empty(n, dtype=torch.float64).uniform_(lo, hi, generator=generator)


def resized_crop_theta(n: int, height: int, width: int, scale: tuple[float, float],
                       ratio: tuple[float, float], generator: torch.Generator | None = None,
                       attempts: int = 10) -> torch.Tensor:
    """RandomResizedCrop boxes as affine matrices n x 2 x 3 (output [-1, 1] -> input [-1, 1]).

    As torchvision: area fraction ~ U(scale), log aspect ~ U(log ratio), the first of `attempts`
    draws that fits, else the central crop with the aspect ratio clamped into `ratio`.
    """
    area = float(height * width)
    frac = torch.empty(n, attempts, dtype=torch.float64).uniform_(scale[0], scale[1], generator=generator)
    log_r = torch.empty(n, attempts, dtype=torch.float64).uniform_(
        math.log(ratio[0]), math.log(ratio[1]), generator=generator)
    pos = torch.rand(n, 2, dtype=torch.float64, generator=generator)
    w = torch.sqrt(frac * area * torch.exp(log_r))
    h = torch.sqrt(frac * area / torch.exp(log_r))
    fits = (w <= width) & (h <= height)
    first = torch.argmax(fits.to(torch.int8), dim=1)
    rows = torch.arange(n)
    w, h, ok = w[rows, first], h[rows, first], fits.any(dim=1)
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fw, fh = float(width), width / ratio[0]
    elif in_ratio > ratio[1]:
        fw, fh = height * ratio[1], float(height)
    else:
        fw, fh = float(width), float(height)
    w = torch.where(ok, w, torch.full_like(w, fw))
    h = torch.where(ok, h, torch.full_like(h, fh))
    y0 = torch.where(ok, pos[:, 0] * (height - h), (height - h) / 2)
    x0 = torch.where(ok, pos[:, 1] * (width - w), (width - w) / 2)
    theta = torch.zeros(n, 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = w / width
    theta[:, 0, 2] = (2 * x0 + w) / width - 1
    theta[:, 1, 1] = h / height
    theta[:, 1, 2] = (2 * y0 + h) / height - 1
    return theta


def flip_theta(flip: torch.Tensor) -> torch.Tensor:
    """Horizontal mirror where `flip` is True: n x 2 x 3 in output coordinates."""
    theta = torch.zeros(flip.shape[0], 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = 1.0 - 2.0 * flip.double()
    theta[:, 1, 1] = 1.0
    return theta


def rotation_theta(degrees: torch.Tensor) -> torch.Tensor:
    """Rotation about the image centre by `degrees` (counter-clockwise on screen): n x 2 x 3."""
    a = torch.deg2rad(degrees.double())
    c, s = torch.cos(a), torch.sin(a)
    theta = torch.zeros(degrees.shape[0], 2, 3, dtype=torch.float64)
    # output (x, y) samples the input at (c x - s y, s x + c y); with y pointing down this turns
    # the picture counter-clockwise as seen on screen (as torch.rot90 does for +90)
    theta[:, 0, 0], theta[:, 0, 1] = c, -s
    theta[:, 1, 0], theta[:, 1, 1] = s, c
    return theta


def _compose(outer: torch.Tensor, inner: torch.Tensor) -> torch.Tensor:
    """Affine maps composed: x -> outer(inner(x)) (both n x 2 x 3)."""
    a = outer[:, :, :2] @ inner[:, :, :2]
    b = outer[:, :, :2] @ inner[:, :, 2:] + outer[:, :, 2:]
    return torch.cat([a, b], dim=2)


def affine_sample(images: torch.Tensor, theta: torch.Tensor, size: int) -> torch.Tensor:
    """Resample each image through its affine map to size x size (bilinear, border padding).

    A map that shrinks the image by more than 2x is preceded by an antialiasing resize of the
    whole batch (bilinear sampling alone would alias).
    """
    n, c, h, w = images.shape
    # input pixels per output pixel, the largest over the batch and both axes
    lin = theta[:, :, :2].abs().sum(dim=2)                            # n x 2 (x row, y row)
    shrink = max(float(lin[:, 0].max()) * w, float(lin[:, 1].max()) * h) / size if n else 1.0
    if shrink > 2:
        images = F.interpolate(images, size=(max(1, round(h / shrink * 2)), max(1, round(w / shrink * 2))),
                               mode="bilinear", align_corners=False, antialias=True)
    grid = F.affine_grid(theta.to(images.device, torch.float32), [n, c, size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


# ------------------------------------------------------------------------------------------------
# Colour
# ------------------------------------------------------------------------------------------------

def grayscale(images: torch.Tensor) -> torch.Tensor:
    """BT.601 luma, replicated to 3 channels."""
    w = torch.tensor(LUMA, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images * w).sum(dim=1, keepdim=True).expand_as(images).contiguous()


def adjust_brightness(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return (images * factor.view(-1, 1, 1, 1)).clamp(0, 1)


def adjust_contrast(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with the image's mean gray level (torchvision's rule)."""
    mean = grayscale(images)[:, :1].mean(dim=(1, 2, 3), keepdim=True)
    f = factor.view(-1, 1, 1, 1)
    return (f * images + (1 - f) * mean).clamp(0, 1)


def adjust_saturation(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with the grayscale image."""
    f = factor.view(-1, 1, 1, 1)
    return (f * images + (1 - f) * grayscale(images)).clamp(0, 1)


def rgb_to_hsv(rgb: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1] (B x 3 x H x W) -> HSV, every channel in [0, 1]."""
    r, g, b = rgb.unbind(1)
    maxc, _ = rgb.max(dim=1)
    minc, _ = rgb.min(dim=1)
    delta = maxc - minc
    v = maxc
    s = torch.where(maxc > 0, delta / maxc.clamp(min=1e-12), torch.zeros_like(maxc))
    safe = delta.clamp(min=1e-12)
    h = torch.where(maxc == r, (g - b) / safe,
                    torch.where(maxc == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
    h = torch.where(delta > 0, (h / 6.0) % 1.0, torch.zeros_like(h))
    return torch.stack([h, s, v], dim=1)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """HSV in [0, 1] -> RGB in [0, 1]."""
    h, s, v = hsv.unbind(1)
    k = torch.stack([(5.0 + h * 6.0) % 6.0, (3.0 + h * 6.0) % 6.0, (1.0 + h * 6.0) % 6.0], dim=1)
    t = torch.minimum(k, 4.0 - k).clamp(0, 1)
    return v.unsqueeze(1) - (v * s).unsqueeze(1) * t


def adjust_hue(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the hue by `shift` turns (in [-0.5, 0.5])."""
    hsv = rgb_to_hsv(images)
    h = (hsv[:, 0] + shift.view(-1, 1, 1)) % 1.0
    return hsv_to_rgb(torch.stack([h, hsv[:, 1], hsv[:, 2]], dim=1)).clamp(0, 1)


def color_jitter(images: torch.Tensor, factors: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Brightness, contrast, saturation and hue adjustments in a per-image order.

    factors: B x 4 (brightness, contrast, saturation factors; hue shift); order: B x 4, a
    permutation of 0..3 per image (torchvision's ColorJitter draws one per call). At each of the
    four steps every image gets its own op; the linear ones run on the whole batch with identity
    factors for the images whose op it is not, the hue rotation only on its images.
    """
    identity = torch.tensor([1.0, 1.0, 1.0, 0.0], dtype=factors.dtype)
    x = images
    for step in range(4):
        active = order[:, step]
        f = torch.where(F.one_hot(active, 4).bool(), factors, identity)
        x = adjust_saturation(adjust_contrast(adjust_brightness(x, f[:, 0].to(x.dtype)), f[:, 1].to(x.dtype)),
                              f[:, 2].to(x.dtype))
        rows = (active == 3).nonzero().flatten()
        if len(rows):
            x = x.clone()
            x[rows] = adjust_hue(x[rows], f[rows, 3].to(x.dtype))
    return x


# ------------------------------------------------------------------------------------------------
# Blur, noise, cutout
# ------------------------------------------------------------------------------------------------

def gaussian_kernels(sigma: torch.Tensor, size: int) -> torch.Tensor:
    """Normalised 1-D Gaussian kernels (B x size) of odd length `size`."""
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    k = torch.exp(-(r[None] ** 2) / (2 * sigma.double()[:, None] ** 2))
    return k / k.sum(dim=1, keepdim=True)


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor, size: int) -> torch.Tensor:
    """Separable Gaussian blur with one sigma per image, reflect padding."""
    if size <= 1:
        return images
    b, c, h, w = images.shape
    k = gaussian_kernels(sigma, size).to(images.dtype).to(images.device)
    k = k.repeat_interleave(c, dim=0)                                 # (B*C) x size
    pad = size // 2
    x = images.reshape(1, b * c, h, w)
    mode = "reflect" if min(h, w) > pad else "replicate"
    x = F.conv2d(F.pad(x, (pad, pad, 0, 0), mode=mode), k.view(b * c, 1, 1, size), groups=b * c)
    x = F.conv2d(F.pad(x, (0, 0, pad, pad), mode=mode), k.view(b * c, 1, size, 1), groups=b * c)
    return x.view(b, c, h, w)


def add_noise(images: torch.Tensor, noise: torch.Tensor, std: float) -> torch.Tensor:
    return (images + std * noise.to(images.dtype)).clamp(0, 1)


def cutout(images: torch.Tensor, centres: torch.Tensor, side: float, fill: float) -> torch.Tensor:
    """Fill a side x side square (pixels) centred at `centres` (B x 2, (y, x) in pixels); the square
    may leave the image, as in DeVries & Taylor."""
    b, _, h, w = images.shape
    ys = torch.arange(h, device=images.device, dtype=torch.float64).view(1, h, 1) + 0.5
    xs = torch.arange(w, device=images.device, dtype=torch.float64).view(1, 1, w) + 0.5
    cy = centres[:, 0].to(images.device).view(b, 1, 1)
    cx = centres[:, 1].to(images.device).view(b, 1, 1)
    inside = ((ys - cy).abs() < side / 2) & ((xs - cx).abs() < side / 2)
    return images.masked_fill(inside.unsqueeze(1), fill)


# ------------------------------------------------------------------------------------------------
# The family
# ------------------------------------------------------------------------------------------------

def _where(mask: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.where(mask.to(a.device).view(-1, 1, 1, 1), a, b)


def augment(images: torch.Tensor, config: AugmentConfig, generator: torch.Generator | None = None
            ) -> torch.Tensor:
    """One random view of each image: B x 3 x H x W in [0, 1] -> B x 3 x size x size in [0, 1].

    Without "crop" the whole image is resized to `size`. The random numbers drawn do not depend
    on which ops are enabled (only on the batch size, the image size and `config.size`).
    """
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images B x 3 x H x W, got shape {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        raise ValueError("expected float images in [0, 1], got uint8 (use to_float_images)")
    cfg, ops = config, set(config.ops)
    b, _, h, w = images.shape
    size = cfg.size

    # every draw, in a fixed order
    crop = resized_crop_theta(b, h, w, cfg.crop_scale, cfg.crop_ratio, generator)
    flip = torch.rand(b, generator=generator) < cfg.flip_p
    angle = _uniform(b, -cfg.rotation_degrees, cfg.rotation_degrees, generator)
    rotate = torch.rand(b, generator=generator) < cfg.rotation_p
    jitter = torch.rand(b, generator=generator) < cfg.color_p
    factors = torch.stack([
        _uniform(b, max(0.0, 1 - cfg.brightness), 1 + cfg.brightness, generator),
        _uniform(b, max(0.0, 1 - cfg.contrast), 1 + cfg.contrast, generator),
        _uniform(b, max(0.0, 1 - cfg.saturation), 1 + cfg.saturation, generator),
        _uniform(b, -cfg.hue, cfg.hue, generator)], dim=1)
    order = torch.argsort(torch.rand(b, 4, generator=generator), dim=1)
    gray = torch.rand(b, generator=generator) < cfg.grayscale_p
    blur = torch.rand(b, generator=generator) < cfg.blur_p
    sigma = _uniform(b, cfg.blur_sigma[0], cfg.blur_sigma[1], generator)
    noisy = torch.rand(b, generator=generator) < cfg.noise_p
    noise = torch.randn(b, 3, size, size, generator=generator)
    cut = torch.rand(b, generator=generator) < cfg.cutout_p
    centres = torch.rand(b, 2, dtype=torch.float64, generator=generator) * size

    theta = torch.zeros(b, 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    if "crop" in ops:
        theta = crop
    if "rotation" in ops:
        theta = _compose(theta, rotation_theta(torch.where(rotate, angle, torch.zeros_like(angle))))
    if "flip" in ops:
        theta = _compose(theta, flip_theta(flip))
    x = affine_sample(images, theta, size)

    if "color" in ops and bool(jitter.any()):
        x = _where(jitter, color_jitter(x, factors, order), x)
    if "grayscale" in ops and bool(gray.any()):
        x = _where(gray, grayscale(x), x)
    if "blur" in ops and bool(blur.any()):
        k = max(1, int(round(cfg.blur_kernel_fraction * size)))
        k += 1 - k % 2                                                  # odd
        x = _where(blur, gaussian_blur(x, sigma, k), x)
    if "noise" in ops and bool(noisy.any()):
        x = _where(noisy, add_noise(x, noise.to(x.device), cfg.noise_std), x)
    if "cutout" in ops and bool(cut.any()):
        x = _where(cut, cutout(x, centres, cfg.cutout_fraction * size, cfg.cutout_fill), x)
    return x.clamp_(0, 1)


def parse_ops(names: Sequence[str]) -> tuple[str, ...]:
    """Validate a list of op names (clear error naming the bad one)."""
    return AugmentConfig(ops=tuple(names)).ops
