"""selfsup.data.video: the resampling rule, decord reading, the cache formats, bad files."""
from __future__ import annotations

import math
import pickle
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from selfsup.data.video import (ClipCache, VideoError, build_clip_cache, centre_crop, clip_index,
                                find_videos, probe_video, read_resampled, resample_indices,
                                resized_size)
from video_factory import frame_numbers, random_bytes, scramble, truncate, write_video

S = 32  # short side of the cached frames in these tests


# --------------------------------------------------------------------------------------------
# Pure functions against obviously-correct references
# --------------------------------------------------------------------------------------------

def reference_indices(n: int, src: Fraction, dst: Fraction) -> list[int]:
    """The official rule with exact rational arithmetic."""
    step = src / dst
    if step.denominator == 1:
        return [k * int(step) for k in range(n) if k * int(step) < n]
    count = math.floor(n * dst / src)
    return [math.floor(k * step) for k in range(count)]


@pytest.mark.parametrize("n,src,dst", [(30, 24, 8), (30, 30, 8), (31, 25, 8), (100, 60, 8),
                                       (10, 5, 8), (17, 16, 8), (7, 24, 8), (1, 30, 8), (50, 8, 8)])
def test_resample_indices_match_rule(n, src, dst):
    got = resample_indices(n, float(src), float(dst)).tolist()
    assert got == reference_indices(n, Fraction(src), Fraction(dst))


def test_resample_examples_from_the_spec():
    assert resample_indices(30, 24.0, 8.0).tolist() == [0, 3, 6, 9, 12, 15, 18, 21, 24, 27]
    assert resample_indices(30, 30.0, 8.0).tolist() == [0, 3, 7, 11, 15, 18, 22, 26]


def test_resample_ntsc_rate_stays_in_range():
    n, src = 300, 30000 / 1001
    idx = resample_indices(n, src, 8.0)
    assert len(idx) == math.floor(n * 8 / src)
    assert idx[0] == 0 and idx.max() < n and np.all(np.diff(idx) >= 3)
    # float32 products, as the official pipeline computes them
    ref = [math.floor(float(np.float32(k) * np.float32(src / 8))) for k in range(len(idx))]
    assert idx.tolist() == ref


def test_resample_rejects_bad_rates():
    with pytest.raises(ValueError, match="positive"):
        resample_indices(10, 0.0, 8.0)
    assert resample_indices(0, 24.0, 8.0).tolist() == []


@pytest.mark.parametrize("h,w,s,expected", [(480, 854, 256, (256, 455)), (854, 480, 256, (455, 256)),
                                            (48, 64, 32, (32, 43)), (100, 100, 64, (64, 64)),
                                            (10, 20, 40, (40, 80))])
def test_resized_size(h, w, s, expected):
    assert resized_size(h, w, s) == expected


def test_centre_crop_takes_the_middle():
    frames = np.arange(2 * 5 * 7 * 1).reshape(2, 5, 7, 1)
    out = centre_crop(frames, 3)
    assert out.shape == (2, 3, 3, 1)
    assert np.array_equal(out, frames[:, 1:4, 2:5])
    with pytest.raises(ValueError):
        centre_crop(frames, 6)


def test_clip_index_against_loop():
    videos = pd.DataFrame({"offset": [0, 5, 7, 7], "n_frames": [5, 2, 0, 6]})
    got = clip_index(videos, 3)
    expected = []
    for vi, (off, n) in enumerate(zip(videos.offset, videos.n_frames)):
        for start in range(n):
            if start + 3 <= n:
                expected.append((vi, start, [off + start + j for j in range(3)]))
    assert [(int(a), int(b), list(c)) for a, b, c in
            zip(got.video_index, got.start, got.frames)] == expected


def test_find_videos_class_folders(tmp_path):
    for rel in ["b/x.mp4", "a/z.MP4", "a/y.mkv", "a/notes.txt", "c/d/deep.webm", "top.avi"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    got = [p.as_posix() for p in find_videos(tmp_path)]
    assert got == ["a/y.mkv", "a/z.MP4", "b/x.mp4", "c/d/deep.webm", "top.avi"]
    assert [p.as_posix() for p in find_videos(tmp_path, ["mp4"])] == ["a/z.MP4", "b/x.mp4"]
    with pytest.raises(FileNotFoundError, match="missing"):
        find_videos(tmp_path / "missing")


# --------------------------------------------------------------------------------------------
# decord reading of real files
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def vids(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("src")
    good = write_video(d / "good24.mp4", n_frames=30, fps=24)
    return {
        "good24": good,
        "good30": write_video(d / "good30.mp4", n_frames=30, fps=30, seed=3),
        "portrait": write_video(d / "portrait.mp4", n_frames=12, fps=24, width=48, height=64, seed=4),
        "long": write_video(d / "long.mp4", n_frames=60, fps=24, seed=5),
    }


def test_probe(vids):
    info = probe_video(vids["good30"])
    assert (info.n_source_frames, info.source_fps, info.height, info.width) == (30, 30.0, 48, 64)


def _read_all(path: Path, fps: float, chunk: int = 4) -> np.ndarray:
    info = probe_video(path)
    idx = resample_indices(info.n_source_frames, info.source_fps, fps)
    return np.concatenate(list(read_resampled(info, idx, S, chunk=chunk)))


def test_integer_step_keeps_every_third_frame(vids):
    frames = _read_all(vids["good24"], 8.0)
    assert frames.shape == (10, S, S, 3) and frames.dtype == np.uint8
    assert frame_numbers(frames) == [0, 3, 6, 9, 12, 15, 18, 21, 24, 27]


def test_non_integer_step_uses_floor(vids):
    frames = _read_all(vids["good30"], 8.0)
    assert frame_numbers(frames) == [math.floor(k * 3.75) for k in range(8)]


def test_upsampling_repeats_frames(vids):
    frames = _read_all(vids["portrait"], 40.0)  # step 0.6
    assert frame_numbers(frames) == [math.floor(k * 0.6) for k in range(20)]
    assert np.array_equal(frames[0], frames[1])  # frame 0 twice, decoded once


def test_portrait_is_centre_cropped(vids):
    frames = _read_all(vids["portrait"], 24.0, chunk=5)
    assert frames.shape == (12, S, S, 3)
    assert frame_numbers(frames) == list(range(12))


def test_chunked_read_equals_one_batch(vids):
    assert np.array_equal(_read_all(vids["long"], 8.0, chunk=3), _read_all(vids["long"], 8.0, chunk=64))


def test_probe_reasons(vids, tmp_path):
    # index at the front: the packets run out; index at the end: the index is missing
    with pytest.raises(VideoError, match="cannot open: .*invalid data: corrupt or truncated"):
        probe_video(truncate(vids["good24"], tmp_path / "t.mp4"))
    moov_last = write_video(tmp_path / "moov_last.mp4", faststart=False)
    with pytest.raises(VideoError, match="cannot open: Invalid data"):
        probe_video(truncate(moov_last, tmp_path / "t2.mp4"))
    with pytest.raises(VideoError, match="cannot open: Invalid data"):
        probe_video(random_bytes(tmp_path / "r.mp4"))
    (tmp_path / "e.mp4").write_bytes(b"")
    with pytest.raises(VideoError, match="empty file"):
        probe_video(tmp_path / "e.mp4")
    with pytest.raises(VideoError, match="cannot read file"):
        probe_video(tmp_path / "missing.mp4")


def test_corrupt_stream_fails_mid_read(vids, tmp_path):
    bad = scramble(vids["long"], tmp_path / "bad.mp4")
    info = probe_video(bad)  # the index is intact: it opens
    got = 0
    with pytest.raises(VideoError, match="decoding failed near frame"):
        for block in read_resampled(info, np.arange(info.n_source_frames), S, chunk=4):
            got += len(block)
    assert 0 < got < info.n_source_frames


# --------------------------------------------------------------------------------------------
# The cache
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def world(tmp_path_factory, vids) -> Path:
    """A Kinetics-style folder: good videos, and every kind of bad one."""
    root = tmp_path_factory.mktemp("videos")
    (root / "walk").mkdir()
    (root / "run").mkdir()
    shutil.copy(vids["good24"], root / "walk" / "v1.mp4")
    shutil.copy(vids["good30"], root / "walk" / "v2.mp4")
    # sorts before a good video of the same class: its partly written rows must be reused
    scramble(vids["long"], root / "run" / "a_corrupt_mid.mp4")
    write_video(root / "run" / "b_good.mkv", n_frames=24, fps=24, seed=7)
    truncate(vids["good24"], root / "run" / "c_truncated.mp4")
    random_bytes(root / "run" / "d_random.mp4")
    (root / "run" / "e_empty.mp4").write_bytes(b"")
    write_video(root / "run" / "f_short.mp4", n_frames=8, fps=24, seed=8)  # 3 frames at 8 fps
    (root / "run" / "readme.txt").write_text("not a video")
    return root


@pytest.fixture(scope="module")
def built(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "clips"
    summary = build_clip_cache(world, out, fps=8.0, short_side=S, clip_len=4, chunk=4)
    return out, summary


def test_summary_lists_every_bad_file(built):
    _, summary = built
    reasons = {s.video: s.reason for s in summary.skipped}
    assert set(reasons) == {"run/a_corrupt_mid.mp4", "run/c_truncated.mp4", "run/d_random.mp4",
                            "run/e_empty.mp4", "run/f_short.mp4"}
    assert "decoding failed" in reasons["run/a_corrupt_mid.mp4"]
    assert "cannot open" in reasons["run/c_truncated.mp4"]
    assert "cannot open" in reasons["run/d_random.mp4"]
    assert "empty" in reasons["run/e_empty.mp4"]
    assert "too short: 3 frames" in reasons["run/f_short.mp4"]
    assert (summary.videos_found, summary.videos_read) == (8, 3)
    assert summary.frames == 8 + 10 + 8 and summary.clips == 5 + 7 + 5


def test_videos_table(built):
    out, _ = built
    videos = pd.read_parquet(out / "videos.parquet")
    assert list(videos.columns) == ["video", "offset", "n_frames", "fps", "source_fps", "height", "width"]
    assert videos.video.tolist() == ["run/b_good.mkv", "walk/v1.mp4", "walk/v2.mp4"]
    assert videos.offset.tolist() == [0, 8, 18]
    assert videos.n_frames.tolist() == [8, 10, 8]
    assert videos.fps.tolist() == [8.0] * 3
    assert videos.source_fps.tolist() == [24.0, 24.0, 30.0]
    assert videos.height.tolist() == [48] * 3 and videos.width.tolist() == [64] * 3


def test_frames_file_holds_the_resampled_frames(built):
    out, _ = built
    frames = np.load(out / "frames.npy", mmap_mode="r")
    assert frames.shape == (26, S, S, 3) and frames.dtype == np.uint8
    # Written in place over the corrupt video's partial rows, then the file shrunk to 26 rows.
    assert (out / "frames.npy").stat().st_size == frames.offset + 26 * S * S * 3
    assert frame_numbers(frames[0:8]) == [0, 3, 6, 9, 12, 15, 18, 21]
    assert frame_numbers(frames[8:18]) == [0, 3, 6, 9, 12, 15, 18, 21, 24, 27]
    assert frame_numbers(frames[18:26]) == [0, 3, 7, 11, 15, 18, 22, 26]
    assert not any(p.name.startswith(".") for p in out.parent.iterdir())  # no temp folders left


def test_clips_table_and_reader(built):
    out, _ = built
    clips = pd.read_parquet(out / "clips.parquet")
    videos = pd.read_parquet(out / "videos.parquet")
    frames = np.load(out / "frames.npy")
    expected = [(vi, s, list(range(off + s, off + s + 4)))
                for vi, (off, n) in enumerate(zip(videos.offset, videos.n_frames)) for s in range(n - 3)]
    assert [(int(a), int(b), list(c)) for a, b, c in zip(clips.video_index, clips.start, clips.frames)] \
        == expected
    cache = ClipCache(out)
    assert len(cache) == len(expected) == 17 and cache.clip_len == 4
    assert cache.videos.video.tolist() == videos.video.tolist()
    for i, (_, _, rows) in enumerate(expected):
        clip = cache[i]
        assert clip.shape == (4, S, S, 3) and clip.dtype == np.uint8
        assert np.array_equal(clip, frames[rows])
    assert np.array_equal(cache[-1], frames[22:26])
    with pytest.raises(IndexError):
        cache[17]


def test_rewindow_and_pickle(built):
    out, _ = built
    cache = ClipCache(out)
    six = cache.clips(6)
    assert six.clip_len == 6 and len(six) == 3 + 5 + 3
    frames = np.load(out / "frames.npy")
    assert np.array_equal(six[3], frames[8:14])  # first clip of the second video
    again = pickle.loads(pickle.dumps(cache))
    assert len(pickle.dumps(cache)) < 100_000  # the memory map does not travel
    assert np.array_equal(again[5], cache[5])
    assert np.array_equal(cache.video_frames(2), frames[18:26])


def test_index_only_cache_decodes_the_same_frames(world, built, tmp_path):
    out, _ = built
    summary = build_clip_cache(world, tmp_path / "index", fps=8.0, short_side=S, clip_len=4,
                               cache_frames=False, chunk=4)
    assert not (tmp_path / "index" / "frames.npy").exists()
    # Without decoding, a mid-stream corruption is not found: the index lists that video too.
    assert summary.videos_read == 4
    cached = ClipCache(out)
    lazy = ClipCache(tmp_path / "index")
    assert lazy.videos.video.tolist()[1:] == cached.videos.video.tolist()
    # clip 0 of walk/v1.mp4 in both
    first_v1_lazy = int(np.flatnonzero(lazy.index.video_index.to_numpy() == 2)[0])
    first_v1_cached = int(np.flatnonzero(cached.index.video_index.to_numpy() == 1)[0])
    assert np.array_equal(lazy[first_v1_lazy], cached[first_v1_cached])


def test_failed_build_keeps_the_previous_cache(world, built, tmp_path, monkeypatch):
    import selfsup.data.video as video

    out = tmp_path / "clips"
    build_clip_cache(world, out, fps=8.0, short_side=S, clip_len=4, chunk=4)
    before = (out / "frames.npy").read_bytes()

    def boom(*args, **kwargs):
        raise KeyboardInterrupt
        yield  # a generator, like the real one

    monkeypatch.setattr(video, "read_resampled", boom)
    with pytest.raises(KeyboardInterrupt):
        build_clip_cache(world, out, fps=8.0, short_side=S, clip_len=4)
    assert (out / "frames.npy").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clips"]


def test_no_videos_is_an_error(tmp_path):
    (tmp_path / "v").mkdir()
    with pytest.raises(FileNotFoundError, match="no videos"):
        build_clip_cache(tmp_path / "v", tmp_path / "out")
