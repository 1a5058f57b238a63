"""Tiny unpaired sets in the CycleGAN layout for the translation tests.

A = flat-coloured discs and squares, B = black-and-white striped ones, over a smooth coloured
background; testA_gtB holds each testA scene rendered in B's appearance, testA_masks its shapes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def _scene(rng: np.random.Generator, size: int):
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = rng.uniform(0.2, 0.6, 3)
    tilt = rng.uniform(-0.2, 0.2, 3)
    background = np.clip(base + tilt * (xx[..., None] - 0.5) + 0.05 * np.sin(9 * yy)[..., None], 0, 1)
    cx, cy, r = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7), rng.uniform(0.15, 0.3)
    if rng.random() < 0.5:
        mask = (xx - cx) ** 2 + (yy - cy) ** 2 < r ** 2
    else:
        mask = (np.abs(xx - cx) < r) & (np.abs(yy - cy) < r)
    colour = rng.uniform(0.3, 1.0, 3)
    angle, period = rng.uniform(0, np.pi), rng.uniform(0.12, 0.2)
    stripes = (np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period) > 0).astype(np.float32)
    return background, mask, colour, stripes


def render(background, mask, colour, stripes, appearance: str) -> np.ndarray:
    img = background.copy()
    fill = np.broadcast_to(colour, img.shape) if appearance == "A" else np.repeat(stripes[..., None], 3, -1)
    img[mask] = fill[mask]
    return (img * 255).astype(np.uint8)


def make_unaligned(root: Path, n_train: int = 6, n_test: int = 3, size: int = 24, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for split, n in (("trainA", n_train), ("trainB", n_train), ("testA", n_test), ("testB", n_test)):
        (root / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            scene = _scene(rng, size)
            Image.fromarray(render(*scene, split[-1])).save(root / split / f"{i:03d}.png")
            if split == "testA":
                for folder, arr in (("testA_gtB", render(*scene, "B")), ("testA_masks", scene[1].astype(np.uint8) * 255)):
                    (root / folder).mkdir(exist_ok=True)
                    Image.fromarray(arr).save(root / folder / f"{i:03d}.png")
    return root


def make_single_pair(root: Path, size: int = 80, seed: int = 0) -> Path:
    """SinCUT layout: one image in trainA/, one in trainB/ (and the A image as testA)."""
    rng = np.random.default_rng(seed)
    scene = _scene(rng, size)
    for split, appearance in (("trainA", "A"), ("trainB", "B"), ("testA", "A")):
        (root / split).mkdir(parents=True, exist_ok=True)
        Image.fromarray(render(*scene, appearance)).save(root / split / "only.png")
    return root
