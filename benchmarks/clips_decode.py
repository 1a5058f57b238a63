"""Decoding speed of the clip cache's reader: chunked forward reads vs random-order get_batch.

    python -m benchmarks.clips_decode [--frames 240] [--width 456] [--height 256]

Writes a test video with PyAV, then reads the same frames three ways with decord and prints
frames/s and the ratios against random-order get_batch (the baseline, run in the same process).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from selfsup.data.video import _open, probe_video, read_resampled, resample_indices


def write_test_video(path: Path, n_frames: int, width: int, height: int, fps: int = 24) -> None:
    import av

    # smooth blobs plus mild grain: closer to natural video than pure noise (which decodes slowly)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.zeros((height, width, 3))
    for _ in range(12):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(10, height / 3)
        base += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))[..., None] * rng.uniform(0, 255, 3)
    base = np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(n_frames):  # a panning texture: realistic motion-compensated frames
            frame = av.VideoFrame.from_ndarray(np.roll(base, 3 * i, axis=1), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=192)
    ap.add_argument("--width", type=int, default=456)
    ap.add_argument("--height", type=int, default=256)
    ap.add_argument("--chunk", type=int, default=32)
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.mp4"
        write_test_video(path, args.frames, args.width, args.height)
        info = probe_video(path)
        short = min(args.width, args.height)
        every = np.arange(info.n_source_frames)
        at8 = resample_indices(info.n_source_frames, info.source_fps, 8.0)
        order = np.random.default_rng(0).permutation(every)
        n_random = min(len(order), 4 * args.chunk)  # the baseline is slow: time a sample of it

        def chunked(indices):
            return lambda: sum(len(b) for b in read_resampled(info, indices, short, args.chunk))

        def random_batches():
            # each batch sorted, as a loader fetching random frames would ask for them
            vr = _open(path)
            for a in range(0, n_random, args.chunk):
                vr.get_batch(np.sort(order[a:a + args.chunk]).tolist()).asnumpy()

        random_batches()  # warm the file cache
        t_random = _time(random_batches)
        t_all = _time(chunked(every))
        t_8 = _time(chunked(at8))

    n = info.n_source_frames
    print(f"video {args.width}x{args.height}, {n} frames at {info.source_fps:g} fps; chunk {args.chunk}")
    random_fps, all_fps, at8_fps = n_random / t_random, n / t_all, len(at8) / t_8
    print(f"random-index get_batch (baseline): {random_fps:8.0f} frames/s")
    print(f"chunked forward read, every frame: {all_fps:8.0f} frames/s   x{all_fps / random_fps:.1f}")
    print(f"chunked forward read, 8 fps:       {at8_fps:8.0f} kept frames/s   x{at8_fps / random_fps:.1f} "
          f"({len(at8)} of {n} frames kept; {n / t_8:.0f} source frames/s)")


if __name__ == "__main__":
    main()
