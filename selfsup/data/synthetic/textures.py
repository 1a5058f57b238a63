"""Textures for the synthetic world: procedural noise families and crops of scikit-image's photographs.

Every texture is a float32 array (H, W, 3) in [0, 1]. Randomness comes only from the `rng` passed
in, so a texture is a pure function of the generator state.
"""
from __future__ import annotations

import colorsys
import functools

import numpy as np
from PIL import Image

# Photographs scikit-image ships inside its wheel (no download needed). Colour ones are used as
# they are; grey ones are coloured through a random colour map.
COLOUR_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry",
                 "hubble_deep_field", "retina", "colorwheel")
GREY_PHOTOS = ("brick", "grass", "gravel", "camera", "coins", "moon", "cell", "clock", "page", "text")
PHOTO_SIDE = 256  # photographs are shrunk once to about this size: crops never need more

PROCEDURAL_KINDS = ("fractal", "stripes", "checker", "cells", "blobs")


@functools.lru_cache(maxsize=None)
def _photo(name: str) -> np.ndarray:
    """A photograph from skimage.data as float32 (H, W, 3) or (H, W), shrunk to ~PHOTO_SIDE."""
    import skimage.data

    try:
        img = np.asarray(getattr(skimage.data, name)())
    except Exception as exc:  # a trimmed scikit-image install may lack a file
        raise RuntimeError(f"skimage.data.{name}() could not be loaded ({exc}); the synthetic world "
                           f"needs scikit-image's bundled images") from exc
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[..., :3]
    if name == "retina":  # the fundus sits in a black disc: keep its centre
        h, w = img.shape[:2]
        img = img[h // 4: 3 * h // 4, w // 4: 3 * w // 4]
    pil = Image.fromarray(img)
    scale = PHOTO_SIDE / min(pil.size)
    if scale < 1:
        pil = pil.resize((max(1, round(pil.size[0] * scale)), max(1, round(pil.size[1] * scale))),
                         Image.Resampling.BILINEAR)
    return np.asarray(pil, dtype=np.float32) / 255.0


def available_photos() -> tuple[str, ...]:
    return COLOUR_PHOTOS + GREY_PHOTOS


# ------------------------------------------------------------------------------------------------
# Building blocks
# ------------------------------------------------------------------------------------------------

def resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear resize of a float (H, W[, C]) array (pixel centres aligned)."""
    src_h, src_w = img.shape[:2]
    ys = (np.arange(h, dtype=np.float32) + 0.5) * (src_h / h) - 0.5
    xs = (np.arange(w, dtype=np.float32) + 0.5) * (src_w / w) - 0.5
    return sample_bilinear(img, ys[:, None], xs[None, :])


def sample_bilinear(img: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Sample `img` (H, W[, C]) at float coordinates (broadcast together), edges clamped."""
    h, w = img.shape[:2]
    ys, xs = np.broadcast_arrays(np.asarray(ys, np.float32), np.asarray(xs, np.float32))
    # clamp just inside the last row/column so that the +1 neighbours always exist
    ys = np.clip(ys, 0, max(h - 1.001, 0))
    xs = np.clip(xs, 0, max(w - 1.001, 0))
    y0 = ys.astype(np.intp)
    x0 = xs.astype(np.intp)
    fy = (ys - y0)[..., None]
    fx = (xs - x0)[..., None]
    flat = np.ascontiguousarray(img, dtype=np.float32).reshape(h * w, -1)
    step_x = 1 if w > 1 else 0
    step_y = w if h > 1 else 0
    i00 = y0 * w + x0
    a, b = flat[i00], flat[i00 + step_x]
    c, d = flat[i00 + step_y], flat[i00 + step_y + step_x]
    top = a + (b - a) * fx
    out = top + (c + (d - c) * fx - top) * fy
    return out if img.ndim == 3 else out[..., 0]


def shift_bilinear(img: np.ndarray, oy: float, ox: float, h: int, w: int) -> np.ndarray:
    """The (h, w) window of `img` starting at the fractional offset (oy, ox): a pure translation,
    so bilinear interpolation is a blend of four integer-shifted slices."""
    iy, ix = int(np.floor(oy)), int(np.floor(ox))
    fy, fx = np.float32(oy - iy), np.float32(ox - ix)
    if iy < 0 or ix < 0 or iy + h + 1 > img.shape[0] or ix + w + 1 > img.shape[1]:
        raise ValueError(f"window ({oy:.2f}, {ox:.2f}) + {h}x{w} leaves the {img.shape[0]}x{img.shape[1]} image")
    a = img[iy:iy + h, ix:ix + w]
    b = img[iy:iy + h, ix + 1:ix + w + 1]
    c = img[iy + 1:iy + h + 1, ix:ix + w]
    d = img[iy + 1:iy + h + 1, ix + 1:ix + w + 1]
    top = a + (b - a) * fx
    return (top + (c + (d - c) * fx - top) * fy).astype(np.float32)


def _interp_matrix(n: int, cells: float, offset: float, grid: int) -> np.ndarray:
    """(n, grid) linear-interpolation weights sampling a grid at (i + offset) / cells."""
    pos = np.clip((np.arange(n, dtype=np.float64) + offset) / cells, 0, grid - 1.001)
    i0 = pos.astype(np.intp)
    f = pos - i0
    m = np.zeros((n, grid), np.float32)
    m[np.arange(n), i0] = 1 - f
    m[np.arange(n), i0 + 1] = f
    return m


def value_noise(rng: np.random.Generator, h: int, w: int, cells: float) -> np.ndarray:
    """Smooth random field in [0, 1]: a coarse random grid upsampled bilinearly (separably)."""
    gh = max(2, int(np.ceil(h / cells)) + 2)
    gw = max(2, int(np.ceil(w / cells)) + 2)
    grid = rng.random((gh, gw), dtype=np.float32)
    oy, ox = rng.random(2) * cells
    return _interp_matrix(h, cells, oy, gh) @ grid @ _interp_matrix(w, cells, ox, gw).T


def fractal_noise(rng: np.random.Generator, h: int, w: int, base_cells: float | None = None,
                  octaves: int = 5, persistence: float = 0.55) -> np.ndarray:
    """Sum of value-noise octaves, normalised to [0, 1]."""
    cells = base_cells if base_cells is not None else max(h, w) / rng.uniform(2.0, 5.0)
    total = np.zeros((h, w), np.float32)
    amp = 1.0
    for _ in range(octaves):
        total += amp * value_noise(rng, h, w, max(cells, 1.0))
        amp *= persistence
        cells /= 2.0
    return _normalise(total)


def _normalise(x: np.ndarray) -> np.ndarray:
    lo, hi = float(x.min()), float(x.max())
    return ((x - lo) / (hi - lo + 1e-8)).astype(np.float32)


def random_colour(rng: np.random.Generator, saturation: tuple[float, float] = (0.35, 1.0),
                  value: tuple[float, float] = (0.25, 1.0)) -> np.ndarray:
    """A random RGB colour (float32, 3) drawn in HSV space."""
    return hsv_colour(rng.random(), rng.uniform(*saturation), rng.uniform(*value))


def hsv_colour(h: float, s: float, v: float) -> np.ndarray:
    """One HSV colour → RGB float32 (3,)."""
    return np.array(colorsys.hsv_to_rgb(float(h) % 1.0, float(s), float(v)), np.float32)


def colour_map(rng: np.random.Generator, stops: int | None = None) -> np.ndarray:
    """A random piecewise-linear colour map: (stops, 3) colours at evenly spaced levels."""
    n = stops if stops is not None else int(rng.integers(2, 5))
    return np.stack([random_colour(rng) for _ in range(n)])


def apply_colour_map(field: np.ndarray, cmap: np.ndarray) -> np.ndarray:
    """Map a [0, 1] field (H, W) through colour map `cmap` (N, 3) → (H, W, 3)."""
    pos = np.clip(field, 0, 1) * (len(cmap) - 1)
    i0 = np.minimum(np.floor(pos).astype(np.intp), len(cmap) - 2)
    f = (pos - i0)[..., None]
    return (cmap[i0] * (1 - f) + cmap[i0 + 1] * f).astype(np.float32)


# ------------------------------------------------------------------------------------------------
# Texture families
# ------------------------------------------------------------------------------------------------

def _coords(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates rotated by a random angle (for oriented patterns)."""
    angle = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return (xx * np.cos(angle) + yy * np.sin(angle), -xx * np.sin(angle) + yy * np.cos(angle))


def fractal_texture(rng, h, w):
    return apply_colour_map(fractal_noise(rng, h, w), colour_map(rng))


def stripes_texture(rng, h, w):
    u, _ = _coords(rng, h, w)
    period = rng.uniform(5, 18)
    warp = fractal_noise(rng, h, w, octaves=3) * rng.uniform(0, 2.5) * np.pi
    wave = 0.5 + 0.5 * np.sin(2 * np.pi * u / period + warp)
    sharp = rng.uniform(1, 6)  # from soft waves to hard stripes
    field = 1 / (1 + np.exp(-sharp * (wave - 0.5) * 4))
    return apply_colour_map(field, colour_map(rng, 2))


def checker_texture(rng, h, w):
    u, v = _coords(rng, h, w)
    size = rng.uniform(6, 20)
    check = ((np.floor(u / size) + np.floor(v / size)) % 2).astype(np.float32)
    shade = fractal_noise(rng, h, w, octaves=3)
    return apply_colour_map(0.75 * check + 0.25 * shade, colour_map(rng, 3))


def cells_texture(rng, h, w):
    """Voronoi cells, each with its own colour, darkened towards the cell borders."""
    n = int(rng.integers(8, 40))
    pts = rng.random((n, 2)).astype(np.float32) * np.array([h, w], np.float32)
    colours = np.stack([random_colour(rng) for _ in range(n)])
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    d = (yy[..., None] - pts[:, 0]) ** 2 + (xx[..., None] - pts[:, 1]) ** 2
    part = np.partition(d, 1, axis=-1)
    nearest = np.argmin(d, axis=-1)
    edge = np.clip((np.sqrt(part[..., 1]) - np.sqrt(part[..., 0])) / 3.0, 0, 1)
    return (colours[nearest] * (0.55 + 0.45 * edge[..., None])).astype(np.float32)


def blobs_texture(rng, h, w):
    """Thresholded noise: irregular patches of a few flat colours with soft shading."""
    field = fractal_noise(rng, h, w, octaves=4)
    levels = int(rng.integers(2, 5))
    quant = np.floor(field * levels * 0.999) / max(levels - 1, 1)
    shade = fractal_noise(rng, h, w, base_cells=6, octaves=2)
    return apply_colour_map(np.clip(0.85 * quant + 0.15 * shade, 0, 1), colour_map(rng, levels))


_FAMILIES = {"fractal": fractal_texture, "stripes": stripes_texture, "checker": checker_texture,
             "cells": cells_texture, "blobs": blobs_texture}


def procedural_texture(rng: np.random.Generator, h: int, w: int, kind: str | None = None) -> np.ndarray:
    kind = kind if kind is not None else PROCEDURAL_KINDS[int(rng.integers(len(PROCEDURAL_KINDS)))]
    return _FAMILIES[kind](rng, h, w)


def photo_texture(rng: np.random.Generator, h: int, w: int, name: str | None = None) -> np.ndarray:
    """A random crop of a scikit-image photograph, flipped/rotated and colour-jittered."""
    names = available_photos()
    name = name if name is not None else names[int(rng.integers(len(names)))]
    photo = _photo(name)
    if photo.ndim == 2:
        photo = apply_colour_map(photo, colour_map(rng, int(rng.integers(2, 4))))
    if rng.random() < 0.5:
        photo = np.ascontiguousarray(np.swapaxes(photo, 0, 1))
    ph, pw = photo.shape[:2]
    # Crop with the target aspect ratio, between a third and all of the photo's short side.
    aspect = w / h
    frac = rng.uniform(0.35, 1.0)
    ch = min(ph, pw / aspect) * frac
    cw = ch * aspect
    y0 = rng.uniform(0, ph - ch)
    x0 = rng.uniform(0, pw - cw)
    ys = y0 + (np.arange(h, dtype=np.float32) + 0.5) * (ch / h) - 0.5
    xs = x0 + (np.arange(w, dtype=np.float32) + 0.5) * (cw / w) - 0.5
    if rng.random() < 0.5:
        xs = xs[::-1]
    if rng.random() < 0.5:
        ys = ys[::-1]
    crop = sample_bilinear(photo, ys[:, None], xs[None, :])
    gain = rng.uniform(0.8, 1.2, size=3).astype(np.float32)
    return np.clip(crop * gain, 0, 1)


def random_texture(rng: np.random.Generator, h: int, w: int, photo_fraction: float = 0.4) -> np.ndarray:
    """A texture from either family; a fine grain is added so no region is perfectly flat."""
    if rng.random() < photo_fraction:
        tex = photo_texture(rng, h, w)
    else:
        tex = procedural_texture(rng, h, w)
    grain = (rng.random((h, w, 1), dtype=np.float32) - 0.5) * 0.06
    return np.clip(tex + grain, 0, 1).astype(np.float32)


def flat_texture(rng: np.random.Generator, h: int, w: int, colour: np.ndarray,
                 variation: float = 0.08) -> np.ndarray:
    """A nearly uniform colour with a faint smooth shading (skin, plain cloth)."""
    shade = fractal_noise(rng, h, w, base_cells=max(h, w) / 3, octaves=3) - 0.5
    return np.clip(colour[None, None, :] * (1 + variation * 2 * shade[..., None]), 0, 1).astype(np.float32)
