"""DAVIS-2017 in its own on-disk layout (the synthetic world writes the same layout).

    DAVIS/JPEGImages/480p/<seq>/00000.jpg ...
    DAVIS/Annotations/480p/<seq>/00000.png ...   palette ("P") PNGs: 0 background, 1..K objects, 255 void
    DAVIS/ImageSets/2017/{train,val}.txt          one sequence name per line

`DavisSet(root)` accepts either the `DAVIS` folder itself or a folder that holds it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..io import atomic_path

__all__ = ["DAVIS_PALETTE", "DavisSet", "voc_palette", "read_image", "read_indexed_png",
           "write_indexed_png", "resolve_root", "read_list"]


def voc_palette(n: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map (DAVIS annotations use it): index bits spread over R, G, B."""
    palette = np.zeros((n, 3), dtype=np.uint8)
    for index in range(n):
        c, r, g, b = index, 0, 0, 0
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        palette[index] = (r, g, b)
    return palette


DAVIS_PALETTE = voc_palette()


def read_image(path: str | Path) -> np.ndarray:
    """An RGB image as uint8 H×W×3."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: image not found") from None
    except OSError as exc:
        raise ValueError(f"{path}: not a readable image ({exc})") from None


def read_indexed_png(path: str | Path) -> np.ndarray:
    """A label map stored as a single-channel PNG ("P" or "L"): uint8 H×W of ids.

    Colour (RGB) label images are refused: converting colours to ids depends on a palette and on
    the order colours are met, which is how label ids get silently shuffled.
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            if img.mode not in ("P", "L"):
                raise ValueError(f"{path}: label image has mode {img.mode!r}; expected a single-channel "
                                 f"indexed PNG (mode 'P' or 'L', value = id), not a colour image")
            return np.array(img)  # "P" gives the palette indices
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: label image not found") from None
    except OSError as exc:
        raise ValueError(f"{path}: not a readable PNG ({exc})") from None


def write_indexed_png(path: str | Path, labels: np.ndarray, palette: np.ndarray | None = DAVIS_PALETTE) -> Path:
    """Write ids (H×W, values 0..255) as a "P" PNG with `palette` (or an "L" PNG when None), atomically."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"{path}: label map must be 2-D, got shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise ValueError(f"{path}: label ids must lie in 0..255, got {labels.min()}..{labels.max()}")
    ids = np.ascontiguousarray(labels, dtype=np.uint8)
    height, width = ids.shape
    if palette is None:
        img = Image.frombytes("L", (width, height), ids.tobytes())
    else:
        img = Image.frombytes("P", (width, height), ids.tobytes())
        img.putpalette(np.asarray(palette, dtype=np.uint8).reshape(-1).tolist())
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        img.save(tmp, format="PNG")
    return path


def resolve_root(root: str | Path, marker: str, names: tuple[str, ...]) -> Path:
    """`root` itself if it holds `marker`, else the first `root/<name>` that does."""
    root = Path(root)
    if (root / marker).exists():
        return root
    for name in names:
        if (root / name / marker).exists():
            return root / name
    tried = ", ".join(str(root / n / marker) for n in ("",) + names)
    raise FileNotFoundError(f"{root}: not a data set folder (looked for {tried})")


def read_list(path: Path) -> list[str]:
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: list file not found") from None
    names = [line.strip() for line in lines if line.strip()]
    if not names:
        raise ValueError(f"{path}: list file is empty")
    return names


@dataclass(frozen=True)
class DavisSet:
    """One DAVIS image set (default: 2017 val at 480p)."""

    root: Path
    set: str = "val"
    resolution: str = "480p"
    year: str = "2017"

    def __init__(self, root: str | Path, set: str = "val", resolution: str = "480p", year: str = "2017"):
        object.__setattr__(self, "root", resolve_root(root, "JPEGImages", ("DAVIS",)))
        object.__setattr__(self, "set", set)
        object.__setattr__(self, "resolution", resolution)
        object.__setattr__(self, "year", year)

    @property
    def list_file(self) -> Path:
        return self.root / "ImageSets" / self.year / f"{self.set}.txt"

    @property
    def sequences(self) -> list[str]:
        return read_list(self.list_file)

    def image_dir(self, seq: str) -> Path:
        return self.root / "JPEGImages" / self.resolution / seq

    def annotation_dir(self, seq: str) -> Path:
        return self.root / "Annotations" / self.resolution / seq

    def frame_paths(self, seq: str) -> list[Path]:
        folder = self.image_dir(seq)
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: frames of sequence {seq!r} not found")
        paths = sorted(folder.glob("*.jpg"))
        if not paths:
            raise ValueError(f"{folder}: no .jpg frames")
        return paths

    def annotation_paths(self, seq: str) -> list[Path]:
        folder = self.annotation_dir(seq)
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: annotations of sequence {seq!r} not found")
        paths = sorted(folder.glob("*.png"))
        if not paths:
            raise ValueError(f"{folder}: no .png annotations")
        return paths

    def read_annotation(self, path: str | Path, void_to_background: bool = True) -> np.ndarray:
        """Object ids (uint8 H×W); void (255) becomes background as in the semi-supervised task."""
        labels = read_indexed_png(path)
        if void_to_background:
            labels = np.where(labels == 255, 0, labels).astype(np.uint8)
        return labels
