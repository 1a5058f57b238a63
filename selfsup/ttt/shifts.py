"""Distribution shifts of the CIFAR-10-C kinds (Hendrycks & Dietterich, ICLR 2019) at severities 1..5.

    shifted = corrupt(images, "gaussian_noise", severity=5, seed=0)    # uint8 N x H x W x 3 in and out

The severity tables are the CIFAR-10-C ones (32-pixel images); the implementations are plain
NumPy / SciPy / Pillow. Every random draw comes from a generator seeded by
(seed, kind, severity, image index), so a shift is deterministic for a given seed, and image i of a
set is shifted the same way whether or not the rest of the set is shifted with it.
"""
from __future__ import annotations

import io
import math
from typing import Callable

import numpy as np
from PIL import Image
from scipy import ndimage

__all__ = ["SHIFTS", "SEVERITIES", "corrupt", "corrupt_image", "shift_rng"]

# CIFAR-10-C severity parameters, severity 1..5
SEVERITIES: dict[str, list] = {
    "gaussian_noise": [0.04, 0.06, 0.08, 0.09, 0.10],                   # noise std
    "shot_noise": [500, 250, 100, 75, 50],                                # photons per unit intensity
    "impulse_noise": [0.01, 0.02, 0.03, 0.05, 0.07],                      # salt-and-pepper fraction
    "speckle_noise": [0.06, 0.10, 0.12, 0.16, 0.20],                      # multiplicative noise std
    "gaussian_blur": [0.4, 0.6, 0.7, 0.8, 1.0],                           # sigma, pixels
    "defocus_blur": [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1.0, 0.2), (1.5, 0.1)],   # disk radius, alias blur
    "motion_blur": [(10, 1.0), (10, 1.5), (10, 2.0), (10, 2.5), (12, 3.0)],         # radius, sigma
    "zoom_blur": [0.06, 0.11, 0.16, 0.21, 0.26],                          # largest zoom - 1 (steps of 0.01)
    "fog": [(0.2, 3.0), (0.5, 3.0), (0.75, 2.5), (1.0, 2.0), (1.5, 1.75)],          # strength, decay
    "brightness": [0.05, 0.1, 0.15, 0.2, 0.3],                            # added to HSV value
    "contrast": [0.75, 0.5, 0.4, 0.3, 0.15],                              # contrast factor
    "saturate": [(0.3, 0.0), (0.1, 0.0), (1.5, 0.0), (2.0, 0.1), (2.5, 0.2)],     # HSV saturation * a + b
    "pixelate": [0.95, 0.9, 0.85, 0.75, 0.65],                            # down-sampling factor
    "jpeg_compression": [80, 65, 58, 50, 40],                             # JPEG quality
}


def shift_rng(seed: int, kind: str, severity: int, index: int) -> np.random.Generator:
    kind_id = list(SEVERITIES).index(kind)
    return np.random.default_rng(np.random.SeedSequence([int(seed), 0xC0DE, kind_id, int(severity), int(index)]))


# --------------------------------------------------------------------------------- helpers
# every function takes a float image H x W x 3 in [0, 1], the severity parameter and a generator

def _blur_channels(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    return np.stack([ndimage.convolve(x[..., c], kernel, mode="reflect") for c in range(3)], axis=-1)


def _rgb_to_hsv(x: np.ndarray) -> np.ndarray:
    from matplotlib.colors import rgb_to_hsv

    return rgb_to_hsv(np.clip(x, 0, 1))


def _hsv_to_rgb(x: np.ndarray) -> np.ndarray:
    from matplotlib.colors import hsv_to_rgb

    return hsv_to_rgb(np.clip(x, 0, 1))


def _disk_kernel(radius: float, alias_blur: float) -> np.ndarray:
    r = max(1, math.ceil(radius))
    a = np.arange(-r, r + 1, dtype=np.float64)
    yy, xx = np.meshgrid(a, a, indexing="ij")
    disk = (xx ** 2 + yy ** 2 <= radius ** 2).astype(np.float64)
    disk[r, r] = 1.0                           # a radius below one pixel keeps the centre
    disk /= disk.sum()
    # soften the disk's aliased edge with a small Gaussian (3x3 support)
    disk = ndimage.gaussian_filter(disk, alias_blur, mode="constant", truncate=1.0 / max(alias_blur, 1e-6))
    return disk / disk.sum()


def _motion_kernel(radius: int, sigma: float, angle: float) -> np.ndarray:
    """One-sided line kernel: weights exp(-d^2 / 2 sigma^2) at distances d = 0..radius along `angle`,
    splatted bilinearly onto the pixel grid."""
    size = 2 * radius + 1
    kernel = np.zeros((size, size))
    dx, dy = math.cos(angle), -math.sin(angle)
    for d in range(radius + 1):
        w = math.exp(-d * d / (2 * sigma * sigma))
        x, y = radius + d * dx, radius + d * dy
        x0, y0 = math.floor(x), math.floor(y)
        fx, fy = x - x0, y - y0
        for yi, xi, wi in ((y0, x0, (1 - fx) * (1 - fy)), (y0, x0 + 1, fx * (1 - fy)),
                           (y0 + 1, x0, (1 - fx) * fy), (y0 + 1, x0 + 1, fx * fy)):
            if 0 <= yi < size and 0 <= xi < size:
                kernel[yi, xi] += w * wi
    return kernel / kernel.sum()


def _zoom_centre(x: np.ndarray, factor: float) -> np.ndarray:
    h, w = x.shape[:2]
    zoomed = ndimage.zoom(x, (factor, factor, 1), order=1, mode="nearest")
    top, left = (zoomed.shape[0] - h) // 2, (zoomed.shape[1] - w) // 2
    return zoomed[top:top + h, left:left + w]


def _fractal(rng: np.random.Generator, size: int, decay: float) -> np.ndarray:
    """Fractal value noise in [0, 1] on a size x size grid; amplitude falls by `decay` per octave."""
    out = np.zeros((size, size))
    amplitude, cells = 1.0, 2
    while cells <= size:
        grid = rng.random((cells + 1, cells + 1))
        out += amplitude * ndimage.zoom(grid, size / (cells + 1), order=1, mode="nearest")[:size, :size]
        amplitude /= decay
        cells *= 2
    out -= out.min()
    return out / max(out.max(), 1e-12)


# ------------------------------------------------------------------------------ corruptions

def _gaussian_noise(x, c, rng):
    return x + rng.normal(size=x.shape, scale=c)


def _shot_noise(x, c, rng):
    return rng.poisson(x * c) / c


def _impulse_noise(x, c, rng):
    u = rng.random(x.shape)
    out = x.copy()
    out[u < c / 2] = 0.0
    out[(u >= c / 2) & (u < c)] = 1.0
    return out


def _speckle_noise(x, c, rng):
    return x + x * rng.normal(size=x.shape, scale=c)


def _gaussian_blur(x, c, rng):
    return ndimage.gaussian_filter(x, sigma=(c, c, 0), mode="reflect")


def _defocus_blur(x, c, rng):
    return _blur_channels(x, _disk_kernel(*c))


def _motion_blur(x, c, rng):
    radius, sigma = c
    return _blur_channels(x, _motion_kernel(int(radius), sigma, math.radians(rng.uniform(-45, 45))))


def _zoom_blur(x, c, rng):
    factors = 1.0 + np.arange(0.0, c + 1e-9, 0.01)
    return np.mean([_zoom_centre(x, f) for f in factors] + [x], axis=0)


def _fog(x, c, rng):
    strength, decay = c
    peak = x.max()
    size = max(x.shape[:2])
    fog = _fractal(rng, 1 << math.ceil(math.log2(size)), decay)[: x.shape[0], : x.shape[1]]
    return (x + strength * fog[..., None]) * peak / (peak + strength)


def _brightness(x, c, rng):
    hsv = _rgb_to_hsv(x)
    hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
    return _hsv_to_rgb(hsv)


def _contrast(x, c, rng):
    mean = x.mean()
    return (x - mean) * c + mean


def _saturate(x, c, rng):
    hsv = _rgb_to_hsv(x)
    hsv[..., 1] = np.clip(hsv[..., 1] * c[0] + c[1], 0, 1)
    return _hsv_to_rgb(hsv)


def _to_pil(x: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8))


def _pixelate(x, c, rng):
    h, w = x.shape[:2]
    small = _to_pil(x).resize((max(1, int(w * c)), max(1, int(h * c))), Image.BOX)
    return np.asarray(small.resize((w, h), Image.BOX), dtype=np.float64) / 255.0


def _jpeg_compression(x, c, rng):
    buffer = io.BytesIO()
    _to_pil(x).save(buffer, format="JPEG", quality=int(c))
    buffer.seek(0)
    with Image.open(buffer) as img:
        return np.asarray(img.convert("RGB"), dtype=np.float64) / 255.0


SHIFTS: dict[str, Callable] = {
    "gaussian_noise": _gaussian_noise, "shot_noise": _shot_noise, "impulse_noise": _impulse_noise,
    "speckle_noise": _speckle_noise, "gaussian_blur": _gaussian_blur, "defocus_blur": _defocus_blur,
    "motion_blur": _motion_blur, "zoom_blur": _zoom_blur, "fog": _fog, "brightness": _brightness,
    "contrast": _contrast, "saturate": _saturate, "pixelate": _pixelate, "jpeg_compression": _jpeg_compression,
}


def _check(kind: str, severity: int) -> None:
    if kind not in SHIFTS:
        raise ValueError(f"unknown shift {kind!r}; expected one of {', '.join(SHIFTS)}")
    if not isinstance(severity, (int, np.integer)) or not 1 <= severity <= 5:
        raise ValueError(f"severity must be an integer in 1..5, got {severity!r}")


def corrupt_image(image: np.ndarray, kind: str, severity: int, rng: np.random.Generator) -> np.ndarray:
    """One uint8 H x W x 3 image shifted by `kind` at `severity` (1..5), draws from `rng`."""
    _check(kind, severity)
    x = np.asarray(image, dtype=np.float64) / 255.0
    y = SHIFTS[kind](x, SEVERITIES[kind][severity - 1], rng)
    return np.clip(np.round(np.clip(y, 0, 1) * 255.0), 0, 255).astype(np.uint8)


def corrupt(images: np.ndarray, kind: str, severity: int, seed: int = 0, start: int = 0) -> np.ndarray:
    """Shift a set of uint8 images N x H x W x 3; image i draws from shift_rng(seed, kind, severity, start + i)."""
    _check(kind, severity)
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"expected uint8 images N x H x W x 3, got {images.shape} {images.dtype}")
    return np.stack([corrupt_image(img, kind, severity, shift_rng(seed, kind, severity, start + i))
                     for i, img in enumerate(images)]) if len(images) else images.copy()
