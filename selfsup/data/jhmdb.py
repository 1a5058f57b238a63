"""JHMDB in its own on-disk layout (the synthetic world writes the same layout).

    jhmdb/Rename_Images/<class>/<video>/00001.png ...          frames (320×240)
    jhmdb/joint_positions/<class>/<video>/joint_positions.mat  MATLAB v5, `pos_img`: 2×15×T, x first, 1-based
    jhmdb/splits/<class>_test_split<n>.txt                     lines `<video>.avi 1` (train) / `... 2` (test)

Ground truth is `pos_img - 1` (0-based pixels). Predictions are 2×15×T arrays in grid units, written
as `<class>__<video>.npy`; the official `.dat` files (a pickled NumPy array) are read too.
"""
from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io import atomic_path
from .davis import resolve_root

__all__ = ["JOINT_NAMES", "SKELETON", "JhmdbVideo", "JhmdbSet", "read_joint_positions",
           "write_joint_positions", "read_prediction", "write_prediction"]

JOINT_NAMES = ("neck", "belly", "face", "right_shoulder", "left_shoulder", "right_hip", "left_hip",
               "right_elbow", "left_elbow", "right_knee", "left_knee", "right_wrist", "left_wrist",
               "right_ankle", "left_ankle")

# limbs between joint indices (for drawing)
SKELETON = ((2, 0), (0, 1), (0, 3), (0, 4), (3, 7), (7, 11), (4, 8), (8, 12),
            (1, 5), (1, 6), (5, 9), (9, 13), (6, 10), (10, 14))


def read_joint_positions(path: str | Path) -> np.ndarray:
    """`pos_img` of a joint_positions.mat file: float64 2×15×T, x first, 1-based (as stored)."""
    from scipy.io import loadmat

    path = Path(path)
    try:
        mat = loadmat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: joint positions not found") from None
    except (ValueError, TypeError, OSError) as exc:
        raise ValueError(f"{path}: not a readable MATLAB file ({exc})") from None
    if "pos_img" not in mat:
        raise ValueError(f"{path}: no field 'pos_img' (fields: {sorted(k for k in mat if not k.startswith('__'))})")
    pos = np.asarray(mat["pos_img"], dtype=np.float64)
    if pos.ndim == 2:  # a single frame saved without its trailing axis
        pos = pos[:, :, None]
    if pos.ndim != 3 or pos.shape[:2] != (2, 15):
        raise ValueError(f"{path}: pos_img has shape {pos.shape}; expected 2×15×T")
    return pos


def write_joint_positions(path: str | Path, pos_img: np.ndarray) -> Path:
    """Write `pos_img` (2×15×T, 1-based) as a MATLAB v5 joint_positions.mat, atomically."""
    from scipy.io import savemat

    pos = np.asarray(pos_img, dtype=np.float64)
    if pos.ndim != 3 or pos.shape[:2] != (2, 15):
        raise ValueError(f"{path}: pos_img must be 2×15×T, got {pos.shape}")
    with atomic_path(path, suffix=".mat") as tmp:
        with open(tmp, "wb") as f:
            savemat(f, {"pos_img": pos})
    return Path(path)


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickles NumPy arrays and nothing else (the official `.dat` prediction files)."""

    _allowed = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar")}

    def find_class(self, module: str, name: str):
        if (module, name) in self._allowed:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")


def read_prediction(path: str | Path) -> np.ndarray:
    """A keypoint prediction, 2×15×T grid units, from `.npy` or an official pickled `.dat`."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: prediction not found")
    try:
        if path.suffix == ".dat":
            array = np.asarray(_ArrayOnlyUnpickler(io.BytesIO(path.read_bytes())).load())
        else:
            array = np.load(path, allow_pickle=False)
    except (ValueError, pickle.UnpicklingError, EOFError, OSError) as exc:
        raise ValueError(f"{path}: not a readable prediction array ({exc})") from None
    if array.ndim != 3 or array.shape[:2] != (2, 15):
        raise ValueError(f"{path}: prediction has shape {array.shape}; expected 2×15×T (grid units)")
    return array.astype(np.float64)


def write_prediction(path: str | Path, coords: np.ndarray) -> Path:
    coords = np.asarray(coords, dtype=np.float64)
    if coords.ndim != 3 or coords.shape[:2] != (2, 15):
        raise ValueError(f"{path}: prediction must be 2×15×T, got {coords.shape}")
    with atomic_path(path, suffix=".npy") as tmp:
        with open(tmp, "wb") as f:
            np.save(f, coords)
    return Path(path)


@dataclass(frozen=True)
class JhmdbVideo:
    cls: str
    name: str

    @property
    def key(self) -> str:
        """The prediction's file stem: `<class>__<video>`."""
        return f"{self.cls}__{self.name}"


@dataclass(frozen=True)
class JhmdbSet:
    """The videos of one JHMDB split (default: split 1, test)."""

    root: Path
    split: int = 1
    subset: str = "test"

    def __init__(self, root: str | Path, split: int = 1, subset: str = "test"):
        if subset not in ("train", "test"):
            raise ValueError(f"JHMDB subset must be 'train' or 'test', got {subset!r}")
        object.__setattr__(self, "root", resolve_root(root, "Rename_Images", ("jhmdb", "JHMDB")))
        object.__setattr__(self, "split", int(split))
        object.__setattr__(self, "subset", subset)

    @property
    def videos(self) -> list[JhmdbVideo]:
        split_dir = self.root / "splits"
        pattern = f"*_test_split{self.split}.txt"
        files = sorted(split_dir.glob(pattern))
        if not files:
            raise FileNotFoundError(f"{split_dir}: no split files matching {pattern}")
        wanted = "2" if self.subset == "test" else "1"
        videos = []
        for file in files:
            cls = file.name[: -len(f"_test_split{self.split}.txt")]
            for n, line in enumerate(file.read_text().splitlines(), 1):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                    raise ValueError(f"{file}:{n}: expected '<video>.avi <0|1|2>', got {line!r}")
                if parts[1] == wanted:
                    name = parts[0][:-4] if parts[0].endswith(".avi") else parts[0]
                    videos.append(JhmdbVideo(cls, name))
        if not videos:
            raise ValueError(f"{split_dir}: split {self.split} lists no {self.subset} videos")
        return videos

    def frame_dir(self, video: JhmdbVideo) -> Path:
        return self.root / "Rename_Images" / video.cls / video.name

    def joints_path(self, video: JhmdbVideo) -> Path:
        return self.root / "joint_positions" / video.cls / video.name / "joint_positions.mat"

    def frame_paths(self, video: JhmdbVideo) -> list[Path]:
        folder = self.frame_dir(video)
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: frames of {video.key} not found")
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
        if not paths:
            raise ValueError(f"{folder}: no frames")
        return paths

    def joints(self, video: JhmdbVideo) -> np.ndarray:
        """Ground-truth joints, 0-based pixels: `pos_img - 1`, 2×15×T."""
        return read_joint_positions(self.joints_path(video)) - 1.0
