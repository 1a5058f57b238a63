"""Training videos: decord reading, frame-rate resampling, the clip index and the frame cache.

The cache that `build_clip_cache` writes (and `ClipCache` reads) is a folder:

- `frames.npy`     uint8 (F, S, S, 3), every resampled frame of every readable video, resized while
                   decoding so that the short side is S and centre-cropped to S×S (np.save format,
                   memory-mappable). Absent when `cache_frames=False`.
- `videos.parquet` one row per readable video: video (path relative to the videos folder), offset
                   (first row in frames.npy), n_frames (resampled), fps, source_fps, height, width
                   (original size).
- `clips.parquet`  one row per window of `clip_len` consecutive resampled frames (stride 1):
                   video_index, start, frames (absolute rows of frames.npy).
- `meta.json`      the settings that produced the cache and where the videos were.

Resampling follows the official CRW data pipeline (torchvision's VideoClips): step = source_fps/fps;
an integer step keeps every step-th frame, otherwise frame floor(k·step) for k < ⌊n·fps/source_fps⌋.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd

from selfsup.io import atomic_dir

__all__ = [
    "VIDEO_EXTENSIONS", "VideoError", "VideoInfo", "SkippedVideo", "CacheSummary", "find_videos",
    "resample_indices", "resized_size", "centre_crop", "probe_video", "read_resampled",
    "clip_index", "build_clip_cache", "ClipCache",
]

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm")
# Source frames fetched per decord call: bounds memory (32 × 256×455×3 ≈ 11 MB) while keeping the
# per-call overhead negligible.
DEFAULT_CHUNK = 32
FRAMES_FILE, VIDEOS_FILE, CLIPS_FILE, META_FILE = "frames.npy", "videos.parquet", "clips.parquet", "meta.json"


class VideoError(Exception):
    """A video cannot be used; the message is the reason reported for it."""


@dataclass(frozen=True)
class VideoInfo:
    """What a cheap look at a video tells: its frame count, frame rate and original size."""
    path: Path
    n_source_frames: int
    source_fps: float
    height: int
    width: int


@dataclass(frozen=True)
class SkippedVideo:
    video: str
    reason: str


@dataclass
class CacheSummary:
    """What `build_clip_cache` did (the body of reports/clips.json)."""
    videos_found: int = 0
    videos_read: int = 0
    skipped: list[SkippedVideo] = field(default_factory=list)
    frames: int = 0
    clips: int = 0
    bytes: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"videos_found": self.videos_found, "videos_read": self.videos_read,
                "videos_skipped": len(self.skipped),
                "skipped": [{"video": s.video, "reason": s.reason} for s in self.skipped],
                "frames": self.frames, "clips": self.clips, "bytes": self.bytes,
                "seconds": round(self.seconds, 3)}


# --------------------------------------------------------------------------------------------
# Finding videos and the resampling rule
# --------------------------------------------------------------------------------------------

def _normalise_extensions(extensions: Sequence[str]) -> tuple[str, ...]:
    return tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)


def find_videos(root: str | os.PathLike, extensions: Sequence[str] = VIDEO_EXTENSIONS) -> list[Path]:
    """Every video file under `root` (recursively), as paths relative to `root`, sorted.

    Extensions match case-insensitively, with or without the leading dot.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"videos folder not found: {root}")
    wanted = _normalise_extensions(extensions)
    found = [p.relative_to(root) for p in root.rglob("*")
             if p.suffix.lower() in wanted and p.is_file()]
    return sorted(found, key=lambda p: p.as_posix())


def resample_indices(n_source_frames: int, source_fps: float, fps: float) -> np.ndarray:
    """Source frame indices kept when resampling `n_source_frames` at `source_fps` to `fps`.

    step = source_fps / fps. An integer step keeps frames 0, step, 2·step, … (⌈n/step⌉ frames);
    otherwise frame ⌊k·step⌋ for k < ⌊n·fps/source_fps⌋ (frames repeat when fps > source_fps).
    """
    if n_source_frames <= 0:
        return np.zeros(0, dtype=np.int64)
    if not (source_fps > 0 and fps > 0 and math.isfinite(source_fps)):
        raise ValueError(f"frame rates must be positive, got source_fps={source_fps}, fps={fps}")
    step = source_fps / fps
    if float(step).is_integer():
        return np.arange(0, n_source_frames, int(step), dtype=np.int64)
    count = int(math.floor(n_source_frames * fps / source_fps))
    # float32 products, as the official pipeline computes them: for steps like 29.97/8 a float64
    # product can land on the other side of an integer.
    idx = np.floor(np.arange(count, dtype=np.float32) * np.float32(step)).astype(np.int64)
    return np.minimum(idx, n_source_frames - 1)


def resized_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """(height, width) after scaling so that the short side is `short_side` (aspect kept, rounded)."""
    if height <= width:
        return short_side, max(short_side, int(round(width * short_side / height)))
    return max(short_side, int(round(height * short_side / width))), short_side


def centre_crop(frames: np.ndarray, size: int) -> np.ndarray:
    """The central size×size window of frames (..., H, W, C)."""
    h, w = frames.shape[-3], frames.shape[-2]
    if h < size or w < size:
        raise ValueError(f"cannot crop {size}×{size} from {h}×{w} frames")
    top, left = (h - size) // 2, (w - size) // 2
    return frames[..., top:top + size, left:left + size, :]


# --------------------------------------------------------------------------------------------
# decord
# --------------------------------------------------------------------------------------------

_DECORD_PREFIX = re.compile(r"\[\d\d:\d\d:\d\d\] \S+?:\d+: ")
# FFmpeg error codes that decord prints as bare numbers.
_FFMPEG_ERRORS = {"1094995529": "invalid data: corrupt or truncated stream",
                  "541478725": "unexpected end of file"}


def _reason(exc: BaseException) -> str:
    """One readable line from a decord / FFmpeg error (drops the C++ source locations)."""
    text = _DECORD_PREFIX.sub("", str(exc)).strip()
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    line = line[:300]
    for code, meaning in _FFMPEG_ERRORS.items():
        if code in line:
            line = f"{line} ({meaning})"
            break
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


def _decord():
    import decord

    # FFmpeg's own messages (NAL errors, "partial file") would flood stderr for every broken file;
    # the reasons are collected and reported instead.
    decord.logging.set_level(decord.logging.QUIET)
    return decord


@contextlib.contextmanager
def _stderr_to(sink: Any) -> Iterator[None]:
    """Send file descriptor 2 to `sink` (decord prints why it cannot open a file there, and
    raises only "Error reading <path>")."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        os.dup2(sink.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _open(path: Path, width: int = -1, height: int = -1):
    decord = _decord()
    with tempfile.TemporaryFile() as sink:
        try:
            with _stderr_to(sink):
                # fault_tol > 0: decord raises instead of silently duplicating frames it could not
                # decode.
                return decord.VideoReader(str(path), ctx=decord.cpu(0), width=width, height=height,
                                          num_threads=0, fault_tol=1e-6)
        except Exception as exc:
            sink.seek(0)
            printed = _DECORD_PREFIX.sub("", sink.read().decode(errors="replace")).strip()
            # "ERROR opening: <path>, <why>" -> "<why>"
            why = printed.splitlines()[-1].split(f"{path}, ", 1)[-1] if printed else ""
            raise VideoError(f"cannot open: {why or _reason(exc)}") from None


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Open `path` with decord and read its frame count, frame rate and size (decodes one frame).

    Raises VideoError with the reason when decord cannot open it.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise VideoError(f"cannot read file: {exc.strerror}") from None
    if size == 0:
        raise VideoError("empty file (0 bytes)")
    vr = _open(path)
    try:
        n = len(vr)
        fps = float(vr.get_avg_fps())
        first = vr[0].shape if n > 0 else None
    except Exception as exc:  # decord raises DECORDError, RuntimeError, AssertionError, ...
        raise VideoError(f"cannot read the first frame: {_reason(exc)}") from None
    if n <= 0 or first is None:
        raise VideoError("no frames")
    if not (fps > 0 and math.isfinite(fps)):
        raise VideoError(f"unknown frame rate ({fps})")
    return VideoInfo(path=path, n_source_frames=n, source_fps=fps, height=int(first[0]),
                     width=int(first[1]))


def read_resampled(info: VideoInfo, indices: np.ndarray, short_side: int,
                   chunk: int = DEFAULT_CHUNK) -> Iterator[np.ndarray]:
    """Yield the frames at source `indices` (non-decreasing) in order, as uint8 (n, S, S, 3) chunks.

    decord resizes while decoding (short side = `short_side`), then the centre S×S is cut. Frames
    are fetched in increasing order, a chunk at a time, so decord decodes forward and never seeks
    back; a repeated index (upsampling) is decoded once. Raises VideoError when decoding fails.
    """
    indices = np.asarray(indices, dtype=np.int64)
    if len(indices) == 0:
        return
    if np.any(np.diff(indices) < 0):
        raise ValueError("indices must be non-decreasing")
    out_h, out_w = resized_size(info.height, info.width, short_side)
    vr = _open(info.path, width=out_w, height=out_h)
    unique, repeats = np.unique(indices, return_counts=True)
    if unique[-1] >= len(vr):
        raise VideoError(f"frame {unique[-1]} requested but the video has {len(vr)}")
    for a in range(0, len(unique), chunk):
        wanted = unique[a:a + chunk]
        try:
            batch = vr.get_batch(wanted.tolist()).asnumpy()
        except Exception as exc:
            raise VideoError(f"decoding failed near frame {int(wanted[0])} of {info.n_source_frames}: "
                             f"{_reason(exc)}") from None
        if batch.shape[0] != len(wanted) or batch.shape[1:3] != (out_h, out_w):
            raise VideoError(f"decoder returned {batch.shape} for {len(wanted)} frames of "
                             f"{out_h}×{out_w}")
        frames = np.ascontiguousarray(centre_crop(batch, short_side))
        reps = repeats[a:a + chunk]
        yield frames if np.all(reps == 1) else np.repeat(frames, reps, axis=0)


# --------------------------------------------------------------------------------------------
# The clip index
# --------------------------------------------------------------------------------------------

def clip_index(videos: pd.DataFrame, clip_len: int) -> pd.DataFrame:
    """Every window of `clip_len` consecutive resampled frames of every video (stride 1).

    `videos` needs the columns offset and n_frames. Returns video_index, start (within the video)
    and frames (absolute rows of frames.npy), in video order then start order.
    """
    if clip_len < 1:
        raise ValueError(f"clip_len must be >= 1, got {clip_len}")
    video_index, starts = [], []
    for i, n in enumerate(videos["n_frames"].to_numpy(dtype=np.int64)):
        count = max(0, int(n) - clip_len + 1)
        video_index.append(np.full(count, i, dtype=np.int64))
        starts.append(np.arange(count, dtype=np.int64))
    vi = np.concatenate(video_index) if video_index else np.zeros(0, np.int64)
    st = np.concatenate(starts) if starts else np.zeros(0, np.int64)
    first = videos["offset"].to_numpy(dtype=np.int64)[vi] + st if len(vi) else st
    rows = first[:, None] + np.arange(clip_len, dtype=np.int64)[None, :]
    return pd.DataFrame({"video_index": vi, "start": st, "frames": list(rows)})


# --------------------------------------------------------------------------------------------
# Writing the cache
# --------------------------------------------------------------------------------------------

def _shrink_npy(path: Path, dtype: np.dtype, shape: tuple[int, ...], data_offset: int) -> None:
    """Rewrite the header of an .npy file for fewer rows and cut the file to match.

    numpy pads .npy headers so that the leading dimension can change without changing the header's
    length (that is what lets rows be dropped in place instead of copying the whole array).
    """
    with open(path, "r+b") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape})
        if f.tell() != data_offset:
            raise RuntimeError(f"{path}: rewritten header is {f.tell()} bytes, expected {data_offset}")
        f.truncate(data_offset + int(np.prod(shape)) * dtype.itemsize)


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def build_clip_cache(videos: str | os.PathLike, out: str | os.PathLike, *, fps: float = 8.0,
                     short_side: int = 256, clip_len: int = 4, cache_frames: bool = True,
                     extensions: Sequence[str] = VIDEO_EXTENSIONS, chunk: int = DEFAULT_CHUNK,
                     progress: bool = False) -> CacheSummary:
    """Scan `videos`, resample each to `fps`, and write the clip index (and frame cache) to `out`.

    Two passes: the first opens every video to count its resampled frames, so that frames.npy can
    be allocated once and written in place; the second decodes. A video that decord cannot open or
    decode, or that has fewer than `clip_len` resampled frames, is skipped and listed with its
    reason. `out` is replaced atomically when everything is written.
    """
    from tqdm import tqdm

    if fps <= 0 or short_side < 1 or clip_len < 1 or chunk < 1:
        raise ValueError(f"need fps > 0, short_side >= 1, clip_len >= 1, chunk >= 1; got fps={fps}, "
                         f"short_side={short_side}, clip_len={clip_len}, chunk={chunk}")
    start_time = time.perf_counter()
    root = Path(videos)
    found = find_videos(root, extensions)
    if not found:
        raise FileNotFoundError(f"no videos with extensions {', '.join(_normalise_extensions(extensions))} "
                                f"under {root}")
    summary = CacheSummary(videos_found=len(found))

    def skip(rel: Path, reason: str) -> None:
        log.warning("skipping %s: %s", rel.as_posix(), reason)
        summary.skipped.append(SkippedVideo(rel.as_posix(), reason))

    # Pass 1: frame counts.
    planned: list[tuple[Path, VideoInfo, np.ndarray]] = []
    for rel in tqdm(found, desc="probing videos", unit="video", disable=not progress):
        try:
            info = probe_video(root / rel)
        except VideoError as exc:
            skip(rel, str(exc))
            continue
        indices = resample_indices(info.n_source_frames, info.source_fps, fps)
        if len(indices) < clip_len:
            skip(rel, f"too short: {len(indices)} frames at {fps:g} fps "
                      f"({info.n_source_frames} at {info.source_fps:g} fps), clip_len is {clip_len}")
            continue
        planned.append((rel, info, indices))
    capacity = sum(len(ix) for _, _, ix in planned)

    with atomic_dir(out) as tmp:
        frames_path = tmp / FRAMES_FILE
        frames = None
        if cache_frames and capacity > 0:
            frames = np.lib.format.open_memmap(frames_path, mode="w+", dtype=np.uint8,
                                               shape=(capacity, short_side, short_side, 3))
        rows: list[dict[str, Any]] = []
        cursor = 0
        # Pass 2: decode (only where the frames are cached; the index needs only the counts).
        bar = tqdm(total=capacity, desc="decoding", unit="frame", disable=not progress)
        for rel, info, indices in planned:
            written = 0
            if frames is not None:
                try:
                    for block in read_resampled(info, indices, short_side, chunk):
                        frames[cursor + written:cursor + written + len(block)] = block
                        written += len(block)
                        bar.update(len(block))
                except VideoError as exc:
                    # Rows written for this video are overwritten by the next one.
                    skip(rel, str(exc))
                    bar.update(len(indices) - written)
                    continue
                if written != len(indices):
                    skip(rel, f"decoded {written} of {len(indices)} frames")
                    continue
            else:
                bar.update(len(indices))
            rows.append({"video": rel.as_posix(), "offset": cursor, "n_frames": len(indices),
                         "fps": float(fps), "source_fps": info.source_fps,
                         "height": info.height, "width": info.width})
            cursor += len(indices)
        bar.close()
        if frames is not None:
            frames.flush()
            data_offset = frames.offset
            del frames
            if cursor < capacity:
                _shrink_npy(frames_path, np.dtype(np.uint8), (cursor, short_side, short_side, 3),
                            data_offset)
        elif cache_frames:
            np.save(frames_path, np.zeros((0, short_side, short_side, 3), np.uint8))

        video_table = pd.DataFrame(rows, columns=["video", "offset", "n_frames", "fps", "source_fps",
                                                  "height", "width"]).astype(
            {"offset": "int64", "n_frames": "int64", "fps": "float64", "source_fps": "float64",
             "height": "int64", "width": "int64"})
        clips = clip_index(video_table, clip_len)
        video_table.to_parquet(tmp / VIDEOS_FILE, index=False)
        clips.to_parquet(tmp / CLIPS_FILE, index=False)
        meta = {"videos": str(root.resolve()), "fps": float(fps), "short_side": short_side,
                "clip_len": clip_len, "cache_frames": cache_frames,
                "extensions": list(_normalise_extensions(extensions))}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        summary.videos_read = len(video_table)
        summary.frames = cursor
        summary.clips = len(clips)
        summary.bytes = _dir_bytes(tmp)
    # Sorted, so that the report does not depend on which pass found the problem.
    summary.skipped.sort(key=lambda s: s.video)
    summary.seconds = time.perf_counter() - start_time
    log.info("%d of %d videos read, %d skipped: %d frames, %d clips of %d, %.1f MB in %.1f s",
             summary.videos_read, summary.videos_found, len(summary.skipped), summary.frames,
             summary.clips, clip_len, summary.bytes / 1e6, summary.seconds)
    return summary


# --------------------------------------------------------------------------------------------
# Reading the cache
# --------------------------------------------------------------------------------------------

class ClipCache:
    """The clips of a cache folder: `cache[i]` is clip i as uint8 (T, S, S, 3).

    frames.npy is memory-mapped (opened lazily, so the object pickles cheaply into data-loader
    workers). A cache written with `cache_frames=False` decodes each clip from its video with
    decord instead; the videos folder is the one recorded when the cache was written, or `videos`.
    `clip_len` re-windows the cache for another clip length (default: the length it was built for).
    """

    def __init__(self, path: str | os.PathLike, clip_len: int | None = None,
                 videos: str | os.PathLike | None = None):
        self.path = Path(path)
        for name in (VIDEOS_FILE, CLIPS_FILE):
            if not (self.path / name).is_file():
                raise FileNotFoundError(f"{self.path}: not a clip cache ({name} missing)")
        meta_file = self.path / META_FILE
        self.meta: dict[str, Any] = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
        self.videos = pd.read_parquet(self.path / VIDEOS_FILE)
        self._videos_root = Path(videos) if videos is not None else (
            Path(self.meta["videos"]) if "videos" in self.meta else None)
        stored_len = self.meta.get("clip_len")
        if clip_len is None or clip_len == stored_len:
            table = pd.read_parquet(self.path / CLIPS_FILE)
            clip_len = stored_len if stored_len is not None else (
                len(table["frames"].iloc[0]) if len(table) else 1)
        else:
            table = clip_index(self.videos, clip_len)
        self.clip_len = int(clip_len)
        self.index = table
        self._video_index = table["video_index"].to_numpy(dtype=np.int64)
        self._start = table["start"].to_numpy(dtype=np.int64)
        self._first_row = self.videos["offset"].to_numpy(dtype=np.int64)[self._video_index] + self._start \
            if len(table) else np.zeros(0, np.int64)
        self._frames: np.ndarray | None = None
        self.has_frames = (self.path / FRAMES_FILE).is_file()

    # Memory maps and decoders do not travel to worker processes; they reopen there.
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_frames"] = None
        return state

    def __len__(self) -> int:
        return len(self._first_row)

    def __repr__(self) -> str:
        return (f"ClipCache({str(self.path)!r}, {len(self)} clips of {self.clip_len}, "
                f"{len(self.videos)} videos)")

    @property
    def frames(self) -> np.ndarray:
        """All cached frames, memory-mapped: uint8 (F, S, S, 3)."""
        if self._frames is None:
            if not self.has_frames:
                raise FileNotFoundError(f"{self.path / FRAMES_FILE} missing: the cache was written "
                                        "with cache_frames=False")
            self._frames = np.load(self.path / FRAMES_FILE, mmap_mode="r")
        return self._frames

    def clips(self, clip_len: int) -> "ClipCache":
        """The same cache windowed into clips of `clip_len` frames."""
        return ClipCache(self.path, clip_len=clip_len, videos=self._videos_root)

    def __getitem__(self, i: int) -> np.ndarray:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"clip {i} out of range for {n} clips")
        i = int(i) % n
        if self.has_frames:
            first = int(self._first_row[i])
            return np.array(self.frames[first:first + self.clip_len])
        return self._decode(int(self._video_index[i]), int(self._start[i]))

    def video_frames(self, video_index: int) -> np.ndarray:
        """Every resampled frame of one video (T, S, S, 3)."""
        row = self.videos.iloc[video_index]
        if self.has_frames:
            return np.array(self.frames[int(row.offset):int(row.offset) + int(row.n_frames)])
        return self._decode(video_index, 0, int(row.n_frames))

    def _decode(self, video_index: int, start: int, length: int | None = None) -> np.ndarray:
        if self._videos_root is None:
            raise FileNotFoundError(f"{self.path}: no frames.npy and no videos folder to decode from")
        row = self.videos.iloc[video_index]
        info = probe_video(self._videos_root / row.video)
        indices = resample_indices(info.n_source_frames, info.source_fps, float(row.fps))
        wanted = indices[start:start + (length or self.clip_len)]
        short_side = int(self.meta["short_side"])
        return np.concatenate(list(read_resampled(info, wanted, short_side)), axis=0)
