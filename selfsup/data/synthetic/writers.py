"""Byte-reproducible writers for the formats of the synthetic world.

PNG and JPEG through PIL (no timestamps or text chunks), H.264 through PyAV with one encoder
thread and bit-exact muxing, MATLAB v5 through scipy.io.savemat with the header's creation date
replaced by a fixed text (scipy writes the wall-clock time there).
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image


def davis_palette() -> list[int]:
    """The VOC/DAVIS colour palette: 0 black, 1 (128,0,0), 2 (0,128,0), 3 (128,128,0), …"""
    palette = []
    for i in range(256):
        r = g = b = 0
        c = i
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        palette += [r, g, b]
    return palette


_PALETTE = davis_palette()


def _prepare(path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def save_png(path: Path, array: np.ndarray) -> None:
    """RGB (H, W, 3) or single-channel "L" (H, W) uint8 PNG."""
    # level 1: textured frames barely compress better at higher levels, and encode 4x slower
    Image.fromarray(np.ascontiguousarray(array)).save(_prepare(path), format="PNG", compress_level=1)


def save_palette_png(path: Path, ids: np.ndarray) -> None:
    """Indexed ("P") PNG with the DAVIS palette; pixel values are the ids."""
    img = Image.fromarray(np.ascontiguousarray(ids.astype(np.uint8)), mode="L").convert("P")
    img.putpalette(_PALETTE)
    img.save(_prepare(path), format="PNG", compress_level=6)


def save_jpeg(path: Path, rgb: np.ndarray, quality: int) -> None:
    Image.fromarray(np.ascontiguousarray(rgb)).save(_prepare(path), format="JPEG", quality=quality,
                                                    optimize=False, progressive=False)


MAT_HEADER = b"MATLAB 5.0 MAT-file, written by selfsup.data.synthetic"


def save_mat(path: Path, variables: dict) -> None:
    """MATLAB v5 file via scipy.io.savemat, with a fixed header text so the bytes are reproducible."""
    import scipy.io

    buf = io.BytesIO()
    scipy.io.savemat(buf, variables, format="5", do_compression=False, oned_as="column")
    data = bytearray(buf.getvalue())
    data[:116] = MAT_HEADER.ljust(116, b" ")  # the 116-byte description field of the v5 header
    _prepare(path).write_bytes(bytes(data))


def write_mp4(path: Path, frames: list[np.ndarray] | np.ndarray, fps: int, crf: int) -> None:
    """H.264 (libx264, yuv420p) in MP4 from uint8 RGB frames; deterministic for given frames."""
    import av

    path = _prepare(path)
    h, w = frames[0].shape[:2]
    if h % 2 or w % 2:
        raise ValueError(f"{path}: H.264 4:2:0 needs even frame sizes, got {w}x{h}")
    with av.open(str(path), mode="w", format="mp4", options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.thread_count = 1
        stream.options = {"crf": str(crf), "preset": "veryfast", "threads": "1", "bf": "0",
                          "g": str(max(2 * fps, 1))}
        for rgb in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
