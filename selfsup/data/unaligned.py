"""Unpaired image folders in the CycleGAN layout: `<root>/{trainA,trainB,testA,testB}/`.

- `UnalignedDataset(root, phase="train")` lists `<phase>A` / `<phase>B` (recursive, sorted; phase
  `test` falls back to `valA` / `valB` when `testA` is missing). Item i is A[i mod |A|] with a B
  drawn uniformly at random; an epoch has max(|A|, |B|) items.
- Training transform (independent for A and B): resize to `load_size` (bicubic, aspect not kept)
  → random `crop_size` crop → sides rounded to a multiple of 4 → horizontal flip with p 0.5 →
  [−1, 1]. In the decay phase (`no_crop=True`) images are resized straight to `crop_size`, so the
  crop is a no-op (flip stays on).
- Every random choice comes from the `numpy.random.Generator` passed in, so a batch is a pure
  function of (seed, step): training resumes exactly and any number of loader threads gives the
  same stream.
- `SingleImageCrops`: SinCUT's crops of one image (random zoom per axis, grid-cell 64×64 crops).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from selfsup.io import sha256_file

__all__ = ["IMG_EXTENSIONS", "list_images", "files_fingerprint", "domain_dirs", "load_rgb", "pil_to_tensor",
           "tensor_to_uint8", "TransformSpec", "transform_image", "UnalignedDataset", "SingleImageCrops", "paired_files"]

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".tif", ".tiff", ".webp")


def list_images(folder: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """Image files under `folder` (extensions matched case-insensitively), sorted by path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    if recursive:
        files = [Path(r) / f for r, _, names in os.walk(folder) for f in names]
    else:
        files = [p for p in folder.iterdir() if p.is_file()]
    return sorted(p for p in files if p.suffix.lower() in IMG_EXTENSIONS and not p.name.startswith("."))


def files_fingerprint(groups: Sequence[Sequence[Path]], root: str | os.PathLike) -> str:
    """A hash of the names (relative to `root`) and bytes of every file, group by group: the
    identity of a training set, so a checkpoint is never resumed on other data."""
    h = hashlib.blake2b(digest_size=16)
    for files in groups:
        h.update(f"group {len(files)}\n".encode())
        for path in files:
            h.update(f"{Path(path).relative_to(root).as_posix()}\n".encode())
            h.update(f"{sha256_file(path)}\n".encode())
    return h.hexdigest()


def domain_dirs(root: str | os.PathLike, phase: str) -> tuple[Path, Path]:
    """`<root>/<phase>A`, `<root>/<phase>B`; phase `test` falls back to `val` when testA is absent."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data root not found: {root} (expected trainA/ trainB/ testA/ testB/ inside)")
    a, b = root / f"{phase}A", root / f"{phase}B"
    if phase == "test" and not a.is_dir() and (root / "valA").is_dir():
        a, b = root / "valA", root / "valB"
    return a, b


def load_rgb(path: str | os.PathLike) -> Image.Image:
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except OSError as exc:
        raise ValueError(f"cannot read image {path}: {exc}") from None


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL RGB → float tensor 3×H×W in [−1, 1] ((x − 0.5)/0.5 of [0, 1])."""
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return (torch.from_numpy(arr).permute(2, 0, 1).contiguous() - 0.5) / 0.5


def tensor_to_uint8(x: torch.Tensor, rounding: str = "truncate") -> np.ndarray:
    """3×H×W tensor in [−1, 1] → H×W×3 uint8: clamp, (x + 1)/2·255, truncated (CUT) or rounded."""
    if x.dim() != 3:
        raise ValueError(f"expected a 3×H×W tensor, got shape {tuple(x.shape)}")
    arr = x.detach().clamp(-1.0, 1.0).cpu().float().numpy()
    arr = (np.transpose(arr, (1, 2, 0)) + 1.0) / 2.0 * 255.0
    if rounding == "round":
        arr = np.round(arr)
    elif rounding != "truncate":
        raise ValueError(f"rounding must be 'truncate' or 'round', got {rounding!r}")
    return arr.astype(np.uint8)


def _hw(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


@dataclass(frozen=True)
class TransformSpec:
    load_size: int | tuple[int, int] = 286   # (h, w) or a square side
    crop_size: int = 256
    flip: bool = True
    no_crop: bool = False                    # decay phase: resize straight to crop_size
    base: int = 4                            # sides rounded to a multiple of this


def transform_image(img: Image.Image, spec: TransformSpec, rng: np.random.Generator | None) -> torch.Tensor:
    """Resize (bicubic) → random crop → multiple-of-`base` sides → random flip → [−1, 1] tensor."""
    if spec.no_crop:
        th, tw = _hw(spec.crop_size)
    else:
        th, tw = _hw(spec.load_size)
    if img.size != (tw, th):
        img = img.resize((tw, th), Image.BICUBIC)
    ch, cw = min(spec.crop_size, th), min(spec.crop_size, tw)
    if (ch, cw) != (th, tw):
        if rng is None:
            top, left = (th - ch) // 2, (tw - cw) // 2
        else:
            top, left = int(rng.integers(0, th - ch + 1)), int(rng.integers(0, tw - cw + 1))
        img = img.crop((left, top, left + cw, top + ch))
    w, h = img.size
    rh, rw = max(spec.base, int(round(h / spec.base) * spec.base)), max(spec.base, int(round(w / spec.base) * spec.base))
    if (rh, rw) != (h, w):
        img = img.resize((rw, rh), Image.BICUBIC)
    if spec.flip and rng is not None and rng.random() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    return pil_to_tensor(img)


class UnalignedDataset:
    """Domain A and domain B images of one phase, read in the CycleGAN layout."""

    def __init__(self, root: str | os.PathLike, phase: str = "train", preload: bool = False):
        self.root = Path(root)
        self.phase = phase
        self.dir_A, self.dir_B = domain_dirs(root, phase)
        self.A_paths = list_images(self.dir_A)
        self.B_paths = list_images(self.dir_B)
        for d, paths in ((self.dir_A, self.A_paths), (self.dir_B, self.B_paths)):
            if not paths:
                raise ValueError(f"no images in {d} (extensions: {', '.join(IMG_EXTENSIONS)})")
        self._cache: dict[Path, Image.Image] | None = {} if preload else None
        if preload:
            for p in self.A_paths + self.B_paths:
                self._cache[p] = load_rgb(p)

    def __len__(self) -> int:
        return max(len(self.A_paths), len(self.B_paths))

    def fingerprint(self) -> str:
        """`files_fingerprint` of the A and B files."""
        return files_fingerprint([self.A_paths, self.B_paths], self.root)

    def image(self, path: Path) -> Image.Image:
        if self._cache is not None:
            if path not in self._cache:
                self._cache[path] = load_rgb(path)
            return self._cache[path]
        return load_rgb(path)

    def item(self, index: int, rng: np.random.Generator, spec: TransformSpec) -> tuple[torch.Tensor, torch.Tensor]:
        """(A[index mod |A|], a uniformly random B), each transformed with its own random draws."""
        path_a = self.A_paths[index % len(self.A_paths)]
        path_b = self.B_paths[int(rng.integers(0, len(self.B_paths)))]
        a = transform_image(self.image(path_a), spec, rng)
        b = transform_image(self.image(path_b), spec, rng)
        return a, b


def paired_files(root: str | os.PathLike, folder: str, names: Sequence[Path]) -> list[Path] | None:
    """Files of `<root>/<folder>/` with the same stem as each of `names` (None if the folder is absent)."""
    d = Path(root) / folder
    if not d.is_dir():
        return None
    by_stem = {p.stem: p for p in list_images(d, recursive=False)}
    missing = [n.stem for n in names if n.stem not in by_stem]
    if missing:
        raise FileNotFoundError(f"{d}: no file for {len(missing)} inputs, e.g. {missing[0]}")
    return [by_stem[n.stem] for n in names]


class SingleImageCrops:
    """SinCUT training crops of one image: per crop, a random zoom per axis uniform in
    [zoom_min, 1] (never below the crop size), bilinear; a crop from a grid cell picked by a
    pre-shuffled index list with a random grid offset; a random horizontal flip."""

    def __init__(self, path: str | os.PathLike, crop_size: int = 64, zoom_min: float = 1 / 3,
                 flip: bool = True, epoch_length: int = 100_000):
        self.path = Path(path)
        self.image = load_rgb(path)
        self.crop_size, self.zoom_min, self.flip = crop_size, zoom_min, flip
        self.epoch_length = epoch_length

    def cell_order(self, rng: np.random.Generator) -> np.ndarray:
        return rng.permutation(self.epoch_length)

    def crop(self, rng: np.random.Generator, cell_index: int, zoom: tuple[float, float] | None = None) -> torch.Tensor:
        w, h = self.image.size
        c = self.crop_size
        if zoom is None:
            zoom = (float(rng.uniform(self.zoom_min, 1.0)), float(rng.uniform(self.zoom_min, 1.0)))
        zw, zh = max(c, int(round(w * zoom[0]))), max(c, int(round(h * zoom[1])))
        img = self.image.resize((zw, zh), Image.BILINEAR) if (zw, zh) != (w, h) else self.image
        nx, ny = zw // c, zh // c
        ox, oy = int(rng.integers(0, zw - nx * c + 1)), int(rng.integers(0, zh - ny * c + 1))
        cell = int(cell_index) % (nx * ny)
        left, top = ox + (cell % nx) * c, oy + (cell // nx) * c
        img = img.crop((left, top, left + c, top + c))
        if self.flip and rng.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        return pil_to_tensor(img)

    def whole(self, base: int = 4) -> torch.Tensor:
        """The whole image with both sides rounded to a multiple of `base` (test-time input)."""
        w, h = self.image.size
        rw, rh = max(base, int(round(w / base) * base)), max(base, int(round(h / base) * base))
        img = self.image.resize((rw, rh), Image.BICUBIC) if (rw, rh) != (w, h) else self.image
        return pil_to_tensor(img)
