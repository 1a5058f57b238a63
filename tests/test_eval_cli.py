"""`selfsup propagate` and `selfsup eval` end to end on tiny data sets; the propagate and evaluate
stages on the same data; errors as one line naming the file."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from selfsup.cli import main as cli
from selfsup.data.davis import write_indexed_png
from selfsup.data.jhmdb import write_joint_positions
from selfsup.metrics.davis import evaluate_davis
from selfsup.metrics.miou import evaluate_vip
from selfsup.metrics.pck import evaluate_jhmdb


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def moving_frames(rng, n, height, width, cell=8):
    base = rng.integers(30, 226, (height // cell + 4, width // cell + 4, 3))
    big = np.repeat(np.repeat(base, cell, 0), cell, 1)
    return [np.clip(big[t: t + height, t: t + width] + rng.integers(-20, 21, (height, width, 3)), 0, 255)
            .astype(np.uint8) for t in range(n)]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """DAVIS (2 sequences), JHMDB (2 test videos) and VIP (1 video) in their own layouts."""
    root = tmp_path_factory.mktemp("world")
    rng = np.random.default_rng(0)
    davis = root / "DAVIS"
    (davis / "ImageSets" / "2017").mkdir(parents=True)
    (davis / "ImageSets" / "2017" / "val.txt").write_text("aa\nbb\n")
    for s, seq in enumerate(["aa", "bb"]):
        for t, frame in enumerate(moving_frames(rng, 6, 40, 56)):
            path = davis / "JPEGImages" / "480p" / seq / f"{t:05d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(frame).save(path)
            lab = np.zeros((40, 56), np.uint8)
            lab[5 + t: 20 + t, 6 + t: 24 + t] = 1
            if s == 1:
                lab[22:36, 30 + t: 50] = 2
            write_indexed_png(davis / "Annotations" / "480p" / seq / f"{t:05d}.png", lab)
    jhmdb = root / "jhmdb"
    (jhmdb / "splits").mkdir(parents=True)
    (jhmdb / "splits" / "clap_test_split1.txt").write_text("c1.avi 2\nc2.avi 2\nc3.avi 1\n")
    for name in ("c1", "c2"):
        folder = jhmdb / "Rename_Images" / "clap" / name
        folder.mkdir(parents=True)
        for t, frame in enumerate(moving_frames(rng, 5, 48, 64)):
            Image.fromarray(frame).save(folder / f"{t + 1:05d}.png")
        pos = np.stack([rng.uniform(5, 60, (15, 1)) + np.arange(5), rng.uniform(5, 44, (15, 1)) + np.arange(5)])
        write_joint_positions(jhmdb / "joint_positions" / "clap" / name / "joint_positions.mat", pos + 1)
    vip = root / "vip" / "VIP_Fine"
    (vip / "lists").mkdir(parents=True)
    (vip / "lists" / "val_videos.txt").write_text("v\n")
    for t, frame in enumerate(moving_frames(rng, 4, 40, 32)):
        (vip / "Images" / "v").mkdir(parents=True, exist_ok=True)
        Image.fromarray(frame).save(vip / "Images" / "v" / f"{t:03d}.jpg")
        lab = np.zeros((40, 32), np.uint8)
        lab[4 + t: 24 + t, 4:20] = 4
        lab[24:38, 8:28] = 16
        (vip / "Annotations" / "Category_ids" / "v").mkdir(parents=True, exist_ok=True)
        Image.fromarray(lab).save(vip / "Annotations" / "Category_ids" / "v" / f"{t:03d}.png")
    return root


def test_propagate_and_eval_davis(world, tmp_path, capsys):
    out = tmp_path / "davis"
    assert cli(["propagate", "davis", "--model", "pixels", "--root", str(world / "DAVIS"), "--out", str(out),
                "--context", "3", "--radius", "4", "--json", str(tmp_path / "timing.json")]) == 0
    timing = json.loads((tmp_path / "timing.json").read_text())
    assert timing["frames"] == 12 and timing["model"] == "pixels"
    assert sorted(p.name for p in (out / "aa").iterdir()) == [f"{t:05d}.png" for t in range(6)]
    capsys.readouterr()
    assert cli(["eval", "davis", "--root", str(world), "--results", str(out), "--json",
                str(tmp_path / "scores.json")]) == 0
    printed = capsys.readouterr().out
    for key in ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"):
        assert key in printed
    assert "aa_1" in printed and "bb_2" in printed
    scores = json.loads((tmp_path / "scores.json").read_text())
    expected = evaluate_davis(world, out).summary()
    for key, value in expected.items():
        assert scores[key] == value
    assert scores["objects"] == 3 and set(scores["per_object"]) == {"aa_1", "bb_1", "bb_2"}


def test_eval_davis_bad_folder_is_one_line(world, tmp_path, capsys):
    out = tmp_path / "davis"
    assert cli(["propagate", "davis", "--model", "pixels", "--root", str(world), "--out", str(out),
                "--context", "2"]) == 0
    Image.fromarray(np.zeros((40, 56, 3), np.uint8)).save(out / "bb" / "00002.png")
    capsys.readouterr()
    assert cli(["eval", "davis", "--root", str(world), "--results", str(out)]) == 1
    errors = [line for line in capsys.readouterr().err.replace("\r", "\n").splitlines() if "error" in line]
    assert len(errors) == 1
    assert "selfsup eval: error:" in errors[0] and "bb/00002.png" in errors[0] and "mode 'RGB'" in errors[0]
    (out / "bb" / "00002.png").unlink()
    assert cli(["eval", "davis", "--root", str(world), "--results", str(out)]) == 1
    assert "00002.png: result frame missing" in capsys.readouterr().err


def test_propagate_and_eval_jhmdb(world, tmp_path, capsys):
    out = tmp_path / "jhmdb"
    assert cli(["propagate", "jhmdb", "--model", "pixels", "--root", str(world), "--out", str(out),
                "--crop-size", "64"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["clap__c1.npy", "clap__c2.npy"]
    assert np.load(out / "clap__c1.npy").shape == (2, 15, 5)
    capsys.readouterr()
    assert cli(["eval", "jhmdb", "--root", str(world / "jhmdb"), "--results", str(out), "--grid-size", "8",
                "--json", str(tmp_path / "pck.json")]) == 0
    printed = capsys.readouterr().out
    assert "PCK@0.1" in printed and "right_wrist" in printed
    got = json.loads((tmp_path / "pck.json").read_text())
    expected = evaluate_jhmdb(world, out, grid_size=8)
    assert got["PCK@0.1"] == expected["PCK@0.1"] and got["PCK@0.2"] == expected["PCK@0.2"]


def test_propagate_and_eval_vip(world, tmp_path, capsys):
    out = tmp_path / "vip"
    assert cli(["propagate", "vip", "--model", "pixels", "--root", str(world), "--out", str(out),
                "--crop-size", "48", "--label-resize-interp", "nearest"]) == 0
    with Image.open(out / "v" / "000.png") as img:
        assert img.mode == "L" and img.size == (48, 48)
    capsys.readouterr()
    assert cli(["eval", "vip", "--root", str(world), "--results", str(out), "--json", str(tmp_path / "m.json")]) == 0
    assert "mIoU" in capsys.readouterr().out
    assert json.loads((tmp_path / "m.json").read_text())["mIoU"] == evaluate_vip(world, out)["mIoU"]


def test_propagate_needs_a_model(world, tmp_path, capsys):
    assert cli(["propagate", "davis", "--root", str(world), "--out", str(tmp_path / "x")]) == 1
    assert "--checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_eval_fid_dispatches_to_the_fid_module(monkeypatch):
    from selfsup.metrics import fid

    seen = {}
    monkeypatch.setattr(fid, "main_cli", lambda args: seen.setdefault("args", args) and 0)
    assert cli(["eval", "fid", "real_dir", "fake_dir", "--kid", "--mode", "clean"]) == 0
    args = seen["args"]
    assert (args.real, args.fake, args.kid, args.mode) == ("real_dir", "fake_dir", True, "clean")


def test_eval_fid_help_comes_from_the_fid_module(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli(["eval", "fid", "-h"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "selfsup eval fid" in out and "--kid" in out


# ---------------------------------------------------------------------------- stages

def test_propagate_and_evaluate_stages(world, tmp_path, monkeypatch, root):
    from selfsup.crw import CRW, CRWConfig, save_checkpoint

    torch.manual_seed(0)
    save_checkpoint(CRW(CRWConfig(width=0.125)), tmp_path / "ck.pt")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["propagate"].update(data=str(world), checkpoint=str(tmp_path / "ck.pt"),
                               out=str(tmp_path / "outputs"), figures=str(tmp_path / "figures"),
                               timing=str(tmp_path / "propagate.json"), gif_videos=1, context=3,
                               radius=4.0, jhmdb_crop_size=64, vip_crop_size=48, device="cpu")
    params["evaluate"].update(out=str(tmp_path / "metrics.json"), details=str(tmp_path / "details"))
    params["translate"]["modes"] = []
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.setenv("SELFSUP_PARAMS", str(tmp_path / "params.yaml"))
    monkeypatch.setenv("SELFSUP_TRACKING", "off")
    from stages import evaluate as evaluate_stage
    from stages import propagate as propagate_stage

    # the adapt / ttt / test_time / baselines reports have not been written (tests/test_evaluate_stage.py)
    monkeypatch.setattr(evaluate_stage, "TEST_TIME_REPORT", tmp_path / "absent" / "test_time.json")
    monkeypatch.setattr(evaluate_stage, "TEST_TIME_PARTS", (tmp_path / "absent" / "crw.json",
                                                            tmp_path / "absent" / "ttt.json"))
    monkeypatch.setattr(evaluate_stage, "BASELINES_REPORT", tmp_path / "absent" / "baselines.json")
    assert propagate_stage.main() == 0
    for model in ("crw", "random", "pixels"):
        assert (tmp_path / "outputs" / model / "davis" / "aa" / "00005.png").exists()
        assert (tmp_path / "outputs" / model / "jhmdb" / "clap__c2.npy").exists()
        assert (tmp_path / "outputs" / model / "vip" / "v" / "003.png").exists()
        assert (tmp_path / "figures" / model / "davis" / "aa.gif").exists()
        assert (tmp_path / "figures" / model / "jhmdb" / "clap__c1.gif").exists()
        assert (tmp_path / "figures" / model / "vip" / "v.gif").exists()
    timing = json.loads((tmp_path / "propagate.json").read_text())
    assert timing["pixels"]["davis"]["frames"] == 12
    assert evaluate_stage.main() == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics) == {"propagation"}
    prop = metrics["propagation"]
    assert set(prop) == {"davis", "jhmdb", "vip"}
    assert set(prop["davis"]["crw"]) == {"J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall",
                                         "F-Decay"}
    assert set(prop["jhmdb"]["random"]) == {"PCK@0.1", "PCK@0.2"} and set(prop["vip"]["pixels"]) == {"mIoU"}
    expected = evaluate_davis(world, tmp_path / "outputs" / "pixels" / "davis").summary()["J&F-Mean"]
    assert prop["davis"]["pixels"]["J&F-Mean"] == expected
    assert (tmp_path / "details" / "davis-crw.json").exists()


def test_evaluate_stage_reports_missing_results(world, tmp_path, monkeypatch, root, capsys):
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["propagate"].update(data=str(world), out=str(tmp_path / "nothing"), sets=["vip"], models=["pixels"])
    params["evaluate"].update(out=str(tmp_path / "metrics.json"), details=str(tmp_path / "details"))
    params["translate"]["modes"] = []
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.setenv("SELFSUP_PARAMS", str(tmp_path / "params.yaml"))
    monkeypatch.setenv("SELFSUP_TRACKING", "off")
    from stages import evaluate as evaluate_stage

    assert evaluate_stage.main() == 2
    assert "nothing/pixels/vip: no propagation results" in capsys.readouterr().err
    assert not (tmp_path / "metrics.json").exists()
