"""A labelled image set with a canonical "up": ten shape classes standing on the ground under a sky.

Rotation prediction (the self-supervised task of test-time training) needs images whose upright
orientation can be told from their content, as in natural photographs: every scene here has a
smooth, hazy sky on top (sometimes a sun), textured ground at the bottom, an object resting on the
ground, lit from above and casting a shadow below. Sky and ground colours are drawn from the same
distribution, so the orientation has to be read from structure, not from colour alone, and shifts
that destroy texture or edges also make rotation harder. The object's class is its shape:

    0 circle  1 square  2 triangle  3 diamond  4 star  5 cross  6 ring  7 hexagon  8 dome  9 bar

Every image is a pure function of (seed, split, index): `shape_images(n, seed=0, split="train")`
returns the same pixels on every machine. Rendering is 2x supersampled (anti-aliased edges).
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["CLASSES", "shape_images", "render_shape_image", "shape_mask", "image_rng"]

CLASSES = ("circle", "square", "triangle", "diamond", "star", "cross", "ring", "hexagon", "dome", "bar")
SPLITS = {"train": 0, "test": 1, "val": 2}
SUPERSAMPLE = 2


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    return np.random.default_rng(np.random.SeedSequence([int(seed), 0x5A9E, SPLITS[split], int(index)]))


def _polygon(u: np.ndarray, v: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test of the points (u, v) against the closed polygon `points` (K x 2)."""
    inside = np.zeros(u.shape, dtype=bool)
    k = len(points)
    for i in range(k):
        (u1, v1), (u2, v2) = points[i], points[(i + 1) % k]
        if v1 == v2:
            continue
        crosses = (v1 > v) != (v2 > v)
        at = u1 + (v - v1) * (u2 - u1) / (v2 - v1)
        inside ^= crosses & (u < at)
    return inside


def _regular(n: int, radius: float = 1.0, phase: float = -math.pi / 2) -> np.ndarray:
    a = phase + 2 * math.pi * np.arange(n) / n
    return np.stack([radius * np.cos(a), radius * np.sin(a)], axis=1)


def _star(points: int = 5, inner: float = 0.45) -> np.ndarray:
    outer = _regular(points)
    inner_pts = _regular(points, inner, -math.pi / 2 + math.pi / points)
    return np.stack([outer, inner_pts], axis=1).reshape(-1, 2)


_TRIANGLE = np.array([[0.0, -1.0], [0.95, 0.8], [-0.95, 0.8]])
_STAR = _star()
_HEXAGON = _regular(6, 1.0, 0.0)


def shape_mask(cls: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside test of class `cls` in object coordinates (u right, v down, unit radius)."""
    if cls == 0:
        return u * u + v * v <= 1.0
    if cls == 1:
        return np.maximum(np.abs(u), np.abs(v)) <= 0.85
    if cls == 2:
        return _polygon(u, v, _TRIANGLE)
    if cls == 3:
        return np.abs(u) + np.abs(v) <= 1.0
    if cls == 4:
        return _polygon(u, v, _STAR)
    if cls == 5:
        return ((np.abs(u) <= 0.3) & (np.abs(v) <= 0.95)) | ((np.abs(v) <= 0.3) & (np.abs(u) <= 0.95))
    if cls == 6:
        r2 = u * u + v * v
        return (r2 <= 1.0) & (r2 >= 0.55 ** 2)
    if cls == 7:
        return _polygon(u, v, _HEXAGON)
    if cls == 8:
        return (u * u + (v - 0.5) ** 2 <= 1.0) & (v <= 0.5)
    if cls == 9:
        return (np.abs(u) <= 0.35) & (np.abs(v) <= 1.0)
    raise ValueError(f"unknown shape class {cls}; expected 0..{len(CLASSES) - 1}")


# lowest point of each shape in object coordinates (so that it rests on the ground line)
_BOTTOM = {0: 1.0, 1: 0.85, 2: 0.8, 3: 1.0, 4: float(_STAR[:, 1].max()), 5: 0.95, 6: 1.0,
           7: float(_HEXAGON[:, 1].max()), 8: 0.5, 9: 1.0}


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    i = int(h * 6.0) % 6
    f = h * 6.0 - math.floor(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i], dtype=np.float32)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Bilinearly upsampled uniform noise on a (cells+1)^2 lattice, in [0, 1]."""
    grid = rng.random((cells + 1, cells + 1)).astype(np.float32)
    ys = np.linspace(0, cells, h, dtype=np.float32)
    xs = np.linspace(0, cells, w, dtype=np.float32)
    y0 = np.minimum(ys.astype(int), cells - 1)
    x0 = np.minimum(xs.astype(int), cells - 1)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    a, b = grid[y0][:, x0], grid[y0][:, x0 + 1]
    c, d = grid[y0 + 1][:, x0], grid[y0 + 1][:, x0 + 1]
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy


def render_shape_image(cls: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """One uint8 size x size x 3 image of class `cls`, every random choice drawn from `rng`."""
    s = size * SUPERSAMPLE
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / SUPERSAMPLE + 0.5 / SUPERSAMPLE   # pixel units
    horizon = rng.uniform(0.68, 0.8) * size
    # sky and ground colours come from the same distribution, so brightness or hue alone does not
    # tell up from down; the cues are the smooth hazy sky over textured ground, the object resting
    # on the ground, its shadow below it, light from above and, sometimes, a sun
    top = _hsv(rng.random(), rng.uniform(0.2, 0.7), rng.uniform(0.4, 0.95))
    haze = 0.7 * top + 0.3 * np.float32(rng.uniform(0.5, 1.0))
    mix = np.clip(yy / horizon, 0, 1)[..., None]
    img = top * (1 - mix) + haze * mix
    if rng.random() < 0.2:
        sun_x, sun_y, sun_r = rng.uniform(0.1, 0.9) * size, rng.uniform(0.08, 0.3) * size, rng.uniform(0.06, 0.1) * size
        sun = ((xx - sun_x) ** 2 + (yy - sun_y) ** 2 <= sun_r ** 2) & (yy < horizon)
        img[sun] = np.array([1.0, 0.95, 0.7], np.float32)
    # ground: textured, darker further down
    ground_colour = _hsv(rng.random(), rng.uniform(0.3, 0.8), rng.uniform(0.35, 0.9))
    strength = rng.uniform(0.15, 0.4)
    texture = 1.0 - strength / 2 + strength * _smooth_noise(rng, s, s, int(rng.integers(4, 9)))
    depth = np.clip((yy - horizon) / max(size - horizon, 1.0), 0, 1)
    ground = ground_colour * (texture * (1.0 - 0.3 * depth))[..., None]
    below = (yy >= horizon)[..., None]
    img = np.where(below, ground, img)
    # the object, resting on the ground, lit from above, with a shadow on the ground
    radius = rng.uniform(0.26, 0.34) * size
    angle = rng.uniform(-10, 10) * math.pi / 180
    cx = rng.uniform(0.36, 0.64) * size
    cy = horizon + rng.uniform(0.0, 0.12) * size - _BOTTOM[cls] * radius
    shadow = ((xx - cx) / (1.1 * radius)) ** 2 + ((yy - (cy + _BOTTOM[cls] * radius)) / (0.22 * radius)) ** 2 <= 1
    img = np.where((shadow & (yy >= horizon))[..., None], img * 0.55, img)
    c, sn = math.cos(angle), math.sin(angle)
    dx, dy = xx - cx, yy - cy
    u = (c * dx + sn * dy) / radius
    v = (-sn * dx + c * dy) / radius
    inside = shape_mask(cls, u, v)
    colour = _hsv(rng.random(), rng.uniform(0.5, 0.95), rng.uniform(0.55, 0.95))
    light = np.clip(1.15 - 0.3 * (v + 1.0) / 2.0, 0.75, 1.2)[..., None]
    img = np.where(inside[..., None], np.clip(colour * light, 0, 1), img)
    # 2x2 supersampling -> anti-aliased pixels
    img = img.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE, 3).mean(axis=(1, 3))
    return np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)


def shape_images(n: int, size: int = 32, seed: int = 0, split: str = "train", classes: int = len(CLASSES),
                 start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images n x size x size x 3 uint8 and labels n (int64), balanced (label = index mod classes).

    Image i depends only on (seed, split, start + i): a prefix of a set equals a smaller set."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 1 <= classes <= len(CLASSES):
        raise ValueError(f"classes must lie in 1..{len(CLASSES)}, got {classes}")
    if size < 8:
        raise ValueError(f"size must be >= 8 pixels, got {size}")
    labels = (np.arange(start, start + n) % classes).astype(np.int64)
    images = np.zeros((n, size, size, 3), np.uint8)
    for i in range(n):
        images[i] = render_shape_image(int(labels[i]), size, image_rng(seed, split, start + i))
    return images, labels
