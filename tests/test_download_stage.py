"""The `download` stage: the real synthetic generator, a manual data set in place, the report, MLflow."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

TINY = """\
seed: 3
download:
  datasets: [synthetic, vip]
  root: data/raw
  cache: data/downloads
  lock: registry.lock.json
  retries: 0
synthetic:
  train_videos: 2
  train_frames: 4
  train_size: 32
  objects_min: 1
  objects_max: 2
  davis_sequences: 1
  davis_frames: 3
  davis_height: 32
  davis_width: 48
  jhmdb_videos: 1
  jhmdb_frames: 2
  jhmdb_height: 64
  jhmdb_width: 48
  vip_videos: 1
  vip_frames: 2
  vip_height: 64
  vip_width: 48
  domain_train: 2
  domain_test: 1
  domain_size: 16
"""


def _vip_in_place(root: Path) -> None:
    base = root / "vip" / "VIP_Fine"
    for rel, data in {"Images/v1/000001.jpg": b"jpg", "Annotations/Category_ids/v1/000001.png": b"png",
                      "lists/val_videos.txt": b"v1\n"}.items():
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_bytes(data)


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "params.yaml").write_text(TINY)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SELFSUP_PARAMS", str(tmp_path / "params.yaml"))
    monkeypatch.delenv("SELFSUP_MIRROR", raising=False)
    monkeypatch.delenv("SELFSUP_TRACKING", raising=False)
    return tmp_path


def _runs(stage_tag: str, run_id: str | None = None):
    import mlflow

    from stages.tracking import EXPERIMENT, tracking_uri

    mlflow.set_tracking_uri(tracking_uri())
    runs = mlflow.search_runs(experiment_names=[EXPERIMENT],
                              filter_string=f"tags.`selfsup.stage` = '{stage_tag}'", order_by=["start_time DESC"])
    return runs


def test_stage_generates_synthetic_accepts_manual_and_reports(project):
    from stages import download as stage

    _vip_in_place(project / "data/raw")
    assert stage.main() == 0

    world = project / "data/raw/synthetic"
    manifest = json.loads((world / "manifest.json").read_text())
    assert manifest["seed"] == 3
    assert (world / "DAVIS/ImageSets/2017/val.txt").is_file()
    assert len(list((world / "unaligned/trainA").glob("*.png"))) == 2
    assert not [p for p in (project / "data/raw").iterdir() if p.name.startswith(".")]  # no half worlds

    report = json.loads((project / "reports/download.json").read_text())
    syn, vip = report["datasets"]["synthetic"], report["datasets"]["vip"]
    n_files = sum(1 for p in world.rglob("*") if p.is_file())
    assert syn["status"] == "generated" and syn["source"] == "generated" and syn["files"] == n_files
    assert syn["bytes"] == sum(p.stat().st_size for p in world.rglob("*") if p.is_file())
    assert vip["status"] == "present" and vip["files"] == 3 and vip["bytes"] == 3 + 3 + 3
    assert report["total"]["files"] == n_files + 3 and report["total"]["datasets"] == 2
    assert syn["seconds"] > 0

    runs = _runs("download")
    latest = runs.iloc[0]
    assert latest["status"] == "FINISHED"
    assert latest["metrics.synthetic.files"] == n_files
    assert latest["metrics.vip.bytes"] == 9
    assert latest["metrics.total.files"] == n_files + 3
    assert latest["metrics.stage_seconds"] > 0
    assert latest["params.datasets"] == "['synthetic', 'vip']"
    assert latest["tags.download.source.vip"] == "present"

    # same params, same seed: the world is current and is not written again
    before = (world / "manifest.json").stat().st_mtime_ns
    assert stage.main() == 0
    assert (world / "manifest.json").stat().st_mtime_ns == before
    assert json.loads((project / "reports/download.json").read_text())["datasets"]["synthetic"]["status"] == "present"


def test_stage_stops_with_instructions_for_a_missing_manual_set(project, capsys):
    from stages import download as stage

    (project / "params.yaml").write_text(TINY.replace("[synthetic, vip]", "[vip]"))
    with pytest.raises(SystemExit) as exit_:
        stage.main()
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert "must be downloaded by hand" in err and "VIP_Fine/lists/val_videos.txt" in err
    assert not (project / "reports/download.json").exists()
    assert _runs("download").iloc[0]["status"] == "FAILED"


def test_stage_rejects_an_unknown_name_naming_the_key(project, capsys):
    from stages import download as stage

    (project / "params.yaml").write_text(TINY.replace("[synthetic, vip]", "[synthetic, davsi]"))
    with pytest.raises(SystemExit):
        stage.main()
    err = capsys.readouterr().err
    assert "download.datasets[1]" in err and "'davsi'" in err and "davis" in err
    assert not (project / "data/raw/synthetic").exists()  # checked before anything is generated
