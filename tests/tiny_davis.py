"""Tiny DAVIS-layout sets and tiny CRW models for the test-time tests.

Each sequence shows one or two textured squares moving over a textured background; annotations are
indexed PNGs (0 background, 1..K objects) in the real DAVIS layout.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from selfsup.crw import CRW, CRWConfig
from selfsup.data.davis import write_indexed_png

TINY_CONFIG = CRWConfig(width=0.125, frame_size=64, patch_size=32, patch_stride=16)


def tiny_model(seed: int = 0, config: CRWConfig = TINY_CONFIG) -> CRW:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return CRW(config)


def moving_frames(n_frames: int = 10, height: int = 48, width: int = 64, objects: int = 2, seed: int = 0
                  ) -> tuple[np.ndarray, np.ndarray]:
    """uint8 frames T x H x W x 3 and id maps T x H x W."""
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 256, (height, width + n_frames, 3), dtype=np.uint8)
    textures = [rng.integers(0, 256, (14, 14, 3), dtype=np.uint8) for _ in range(objects)]
    starts = [(4 + 20 * k, 6 + 8 * k) for k in range(objects)]
    frames = np.zeros((n_frames, height, width, 3), np.uint8)
    ids = np.zeros((n_frames, height, width), np.uint8)
    for t in range(n_frames):
        frames[t] = background[:, t:t + width]
        for k, (x0, y0) in enumerate(starts):
            x, y = (x0 + 2 * t) % (width - 14), (y0 + t) % (height - 14)
            frames[t, y:y + 14, x:x + 14] = textures[k]
            ids[t, y:y + 14, x:x + 14] = k + 1
    return frames, ids


def write_davis(root: Path, sequences: int = 2, n_frames: int = 8, height: int = 48, width: int = 64) -> Path:
    """A DAVIS-layout folder `root/DAVIS` with `sequences` val sequences; returns `root`."""
    davis = root / "DAVIS"
    names = []
    for s in range(sequences):
        name = f"seq{s}"
        frames, ids = moving_frames(n_frames, height, width, objects=1 + s % 2, seed=s)
        for t in range(n_frames):
            img_dir = davis / "JPEGImages" / "480p" / name
            img_dir.mkdir(parents=True, exist_ok=True)
            Image.fromarray(frames[t]).save(img_dir / f"{t:05d}.jpg", quality=95)
            write_indexed_png(davis / "Annotations" / "480p" / name / f"{t:05d}.png", ids[t])
        names.append(name)
    (davis / "ImageSets" / "2017").mkdir(parents=True, exist_ok=True)
    (davis / "ImageSets" / "2017" / "val.txt").write_text("".join(f"{n}\n" for n in names))
    return root


def state_equal(a: dict, b: dict) -> bool:
    return set(a) == set(b) and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)


def clone_state(model: torch.nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
