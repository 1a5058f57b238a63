"""Small test videos written with PyAV, each frame carrying its own number.

The top half of frame i is a solid grey level 8·i (robust to H.264 and to resizing), the bottom half
is noise (so that the files have enough bytes for truncation and corruption to land mid-stream).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

LEVEL_STEP = 8


def write_video(path: Path, n_frames: int = 30, fps: int = 24, width: int = 64, height: int = 48,
                faststart: bool = True, seed: int = 0) -> Path:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    options = {"movflags": "+faststart"} if faststart and path.suffix == ".mp4" else {}
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(n_frames):
            img = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            img[: height // 2] = (i * LEVEL_STEP) % 256
            for packet in stream.encode(_frame(img)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _frame(img: np.ndarray):
    import av

    return av.VideoFrame.from_ndarray(img, format="rgb24")


def frame_numbers(frames: np.ndarray) -> list[int]:
    """The number written into each of frames (T, S, S, 3): the grey level of the top band / 8."""
    s = frames.shape[1]
    # Rows well inside the top half of the crop (the crop keeps the full height of a landscape frame).
    band = frames[:, s // 16: s // 2 - s // 8].astype(np.float64)
    return [int(round(v / LEVEL_STEP)) for v in band.mean(axis=(1, 2, 3))]


def truncate(src: Path, dst: Path, fraction: float = 0.6) -> Path:
    data = src.read_bytes()
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def scramble(src: Path, dst: Path, lo: float = 0.6, hi: float = 0.7, seed: int = 1) -> Path:
    """A copy of src whose bytes between fractions lo and hi are random: it opens, then fails mid-read."""
    data = bytearray(src.read_bytes())
    a, b = int(len(data) * lo), int(len(data) * hi)
    data[a:b] = np.random.default_rng(seed).integers(0, 256, b - a, dtype=np.uint8).tobytes()
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(bytes(data))
    return dst


def random_bytes(dst: Path, n: int = 5000, seed: int = 2) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes())
    return dst
