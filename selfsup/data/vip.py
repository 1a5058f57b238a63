"""VIP (Video Instance-level Parsing) in its own on-disk layout (the synthetic world writes the same).

    VIP_Fine/Images/<video>/<frame>.jpg
    VIP_Fine/Annotations/Category_ids/<video>/<frame>.png   single-channel class ids 0..19
    VIP_Fine/lists/val_videos.txt                            one video name per line

`VipSet(root)` accepts the `VIP_Fine` folder or a folder holding `VIP_Fine` or `vip/VIP_Fine`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .davis import read_list, read_indexed_png, resolve_root

__all__ = ["VIP_CLASSES", "VipSet"]

VIP_CLASSES = ("background", "hat", "hair", "sun-glasses", "upper-clothes", "dress", "coat", "socks",
               "pants", "gloves", "scarf", "skirt", "torso-skin", "face", "right-arm", "left-arm",
               "right-leg", "left-leg", "right-shoe", "left-shoe")


@dataclass(frozen=True)
class VipSet:
    root: Path
    subset: str = "val"

    def __init__(self, root: str | Path, subset: str = "val"):
        object.__setattr__(self, "root", resolve_root(root, "Images", ("VIP_Fine", "vip/VIP_Fine")))
        object.__setattr__(self, "subset", subset)

    @property
    def list_file(self) -> Path:
        return self.root / "lists" / f"{self.subset}_videos.txt"

    @property
    def videos(self) -> list[str]:
        return read_list(self.list_file)

    def frame_paths(self, video: str) -> list[Path]:
        folder = self.root / "Images" / video
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: frames of video {video!r} not found")
        paths = sorted(folder.glob("*.jpg"))
        if not paths:
            raise ValueError(f"{folder}: no .jpg frames")
        return paths

    def annotation_path(self, video: str, frame: str) -> Path:
        """Ground truth of `frame` (a frame stem or file name)."""
        return self.root / "Annotations" / "Category_ids" / video / f"{Path(frame).stem}.png"

    def read_annotation(self, path: str | Path) -> np.ndarray:
        return read_indexed_png(path)
