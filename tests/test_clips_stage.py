"""The clips stage end to end: params file → clip cache, reports/clips.json, an MLflow run."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from selfsup.data.video import ClipCache
from video_factory import frame_numbers, random_bytes, scramble, truncate, write_video


def _params(tmp_path: Path, videos: Path, **clips) -> Path:
    lines = [f"  videos: {videos}", "  out: data/clips", "  fps: 8.0", "  short_side: 32", "  clip_len: 4"]
    lines += [f"  {k}: {json.dumps(v)}" for k, v in clips.items()]
    path = tmp_path / "params.yaml"
    path.write_text("clips:\n" + "\n".join(lines) + "\n")
    return path


def _run(tmp_path: Path, params: Path, monkeypatch) -> int:
    from stages import clips

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SELFSUP_PARAMS", str(params))
    return clips.main()


@pytest.fixture()
def videos(tmp_path) -> Path:
    root = tmp_path / "kinetics"
    good = write_video(root / "jumping" / "clip_a.mp4", n_frames=30, fps=24)
    write_video(root / "jumping" / "clip_b.mp4", n_frames=30, fps=30, seed=1)
    write_video(root / "surfing" / "long.mp4", n_frames=48, fps=24, seed=2)
    shutil.copy(good, root / "surfing" / "copy.mp4")
    scramble(root / "surfing" / "long.mp4", root / "surfing" / "broken_mid.mp4")
    truncate(good, root / "surfing" / "cut.mp4")
    random_bytes(root / "surfing" / "noise.mp4")
    (root / "surfing" / "empty.mp4").write_bytes(b"")
    write_video(root / "surfing" / "tiny.mp4", n_frames=6, fps=24, seed=3)
    return root


def test_stage_end_to_end(tmp_path, videos, monkeypatch):
    params = _params(tmp_path, videos)
    assert _run(tmp_path, params, monkeypatch) == 0

    report = json.loads((tmp_path / "reports" / "clips.json").read_text())
    assert report["videos_found"] == 9 and report["videos_read"] == 4 and report["videos_skipped"] == 5
    reasons = {s["video"]: s["reason"] for s in report["skipped"]}
    assert set(reasons) == {"surfing/broken_mid.mp4", "surfing/cut.mp4", "surfing/noise.mp4",
                            "surfing/empty.mp4", "surfing/tiny.mp4"}
    assert "decoding failed" in reasons["surfing/broken_mid.mp4"]
    assert reasons["surfing/cut.mp4"].startswith("cannot open")
    assert reasons["surfing/noise.mp4"].startswith("cannot open")
    assert "empty" in reasons["surfing/empty.mp4"]
    assert "too short" in reasons["surfing/tiny.mp4"]
    # 10 (24 fps) + 8 (30 fps) + 10 (copy) + 16 (48 frames at 24 fps)
    assert report["frames"] == 44 and report["clips"] == 7 + 5 + 7 + 13
    assert report["bytes"] > 44 * 32 * 32 * 3 and report["seconds"] > 0

    out = tmp_path / "data" / "clips"
    cache = ClipCache(out)
    assert cache.videos.video.tolist() == ["jumping/clip_a.mp4", "jumping/clip_b.mp4",
                                           "surfing/copy.mp4", "surfing/long.mp4"]
    assert cache.frames.shape == (44, 32, 32, 3)
    assert frame_numbers(cache[0]) == [0, 3, 6, 9]
    assert frame_numbers(cache[7]) == [0, 3, 7, 11]  # first clip of the 30 fps video
    assert np.array_equal(cache.video_frames(0), cache.video_frames(2))

    import mlflow

    runs = mlflow.search_runs(experiment_names=["selfsup"],
                              filter_string="tags.`selfsup.stage` = 'clips' and params.short_side = '32'")
    mine = runs[runs["params.videos"] == str(videos)]
    assert len(mine) == 1
    row = mine.iloc[0]
    assert row["metrics.clips"] == 32 and row["metrics.videos_skipped"] == 5
    assert row["metrics.frames"] == 44 and row["metrics.bytes"] == report["bytes"]
    assert "surfing/cut.mp4" in row["tags.clips.skipped"]
    artifacts = mlflow.MlflowClient().list_artifacts(row["run_id"])
    assert "clips.json" in [a.path for a in artifacts]


def test_stage_index_only(tmp_path, videos, monkeypatch):
    params = _params(tmp_path, videos, cache_frames=False, clip_len=5)
    monkeypatch.setenv("SELFSUP_TRACKING", "off")
    assert _run(tmp_path, params, monkeypatch) == 0
    out = tmp_path / "data" / "clips"
    assert not (out / "frames.npy").exists()
    report = json.loads((tmp_path / "reports" / "clips.json").read_text())
    # Not decoded, so the mid-stream corruption goes unnoticed; the rest is found by opening.
    assert report["videos_read"] == 5 and report["clip_len"] == 5
    cache = ClipCache(out)
    assert frame_numbers(cache[0]) == [0, 3, 6, 9, 12]


def test_stage_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SELFSUP_TRACKING", "off")
    assert _run(tmp_path, _params(tmp_path, tmp_path / "nowhere"), monkeypatch) == 2
    err = capsys.readouterr().err
    assert "videos folder not found" in err and str(tmp_path / "nowhere") in err

    bad = tmp_path / "bad"
    random_bytes(bad / "x" / "a.mp4")
    assert _run(tmp_path, _params(tmp_path, bad), monkeypatch) == 1
    assert "no clip" in capsys.readouterr().err
    report = json.loads((tmp_path / "reports" / "clips.json").read_text())
    assert report["skipped"][0]["video"] == "x/a.mp4"

    (tmp_path / "params.yaml").write_text("clips:\n  extensions: []\n")
    with pytest.raises(SystemExit) as exc:
        _run(tmp_path, tmp_path / "params.yaml", monkeypatch)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "clips" in err and "extensions is empty" in err
