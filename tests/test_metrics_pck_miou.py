"""JHMDB PCK and VIP mIoU: the spec's worked examples, slow loop references, bad folders."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
from PIL import Image

from selfsup.data.jhmdb import write_joint_positions
from selfsup.metrics import miou as mm
from selfsup.metrics import pck as pm


# ---------------------------------------------------------------- PCK

def example_video():
    """Spec §2 worked example: frame 1, GT box x 100–160, y 60–140; joint 0 predicted at (16.5, 12)."""
    gt = np.zeros((2, 15, 2))
    gt[0, :, :] = 130.0
    gt[1, :, :] = 100.0
    gt[:, 0, 1] = (128, 75)
    gt[:, 1, 1] = (100, 60)
    gt[:, 2, 1] = (160, 140)
    pred = np.full((2, 15, 2), -1.0)
    pred[:, 0, 1] = (16.5, 12.0)
    pred[:, 1, 1] = (100 / 8, 60 / 6)
    pred[:, 2, 1] = (20.0, 140 / 6)
    return pred, gt


def test_pck_worked_example():
    pred, gt = example_video()
    d = pm.pck_distances(pred, gt, 320, 240)
    assert d[0].tolist() == [5 / 60]
    assert d[0][0] <= 0.1
    assert d[1][0] == pytest.approx(0.0, abs=1e-12) and d[2][0] == pytest.approx(0.0, abs=1e-12)
    # joints with predicted x < 0 are not counted anywhere
    assert all(len(d[j]) == 0 for j in range(3, 15))


def test_pck_half_cell_offset_would_fail():
    pred, gt = example_video()
    shifted = pred.copy()
    shifted[:, :3, 1] += 0.5   # what a half-cell offset does: (136, 75) px
    d = pm.pck_distances(shifted, gt, 320, 240)
    assert d[0][0] == pytest.approx(8 / 60) and d[0][0] > 0.1


def test_pck_normaliser_is_0_6_diagonal_of_counted_gt_joints():
    pred, gt = example_video()
    gt[:, 5, 1] = (1000, 1000)   # far away but not counted (its predicted x is -1)
    d = pm.pck_distances(pred, gt, 320, 240)
    assert d[0][0] == 5 / 60


def test_pck_frame0_skipped_and_visibility_from_x_only():
    pred, gt = example_video()
    pred[:, :, 0] = 100.0                       # frame 0 wildly wrong: never scored
    pred[:, 3, 1] = (16.25, -3.0)               # x >= 0, y < 0: counted
    gt[:, 3, 1] = (130, 75)
    d = pm.pck_distances(pred, gt, 320, 240)
    assert len(d[3]) == 1
    assert d[3][0] == pytest.approx(np.hypot(0.0, 75 + 18) / 60)


def test_pck_requires_predictions_to_cover_gt():
    pred, gt = example_video()
    with pytest.raises(ValueError, match="covers 1 frames but the ground truth has 2"):
        pm.pck_distances(pred[:, :, :1], gt, 320, 240)


def slow_pck(videos, alphas):
    """The official loop structure: per video, per frame k ≥ 1, per joint."""
    dists = [[] for _ in range(15)]
    for pred, gt, w, h in videos:
        for k in range(1, gt.shape[2]):
            minx, miny, maxx, maxy = 1e6, 1e6, -1, -1
            for j in range(15):
                if pred[0, j, k] >= 0:
                    minx, maxx = min(minx, gt[0, j, k]), max(maxx, gt[0, j, k])
                    miny, maxy = min(miny, gt[1, j, k]), max(maxy, gt[1, j, k])
            norm = 0.6 * ((maxx - minx) ** 2 + (maxy - miny) ** 2) ** 0.5
            for j in range(15):
                if pred[0, j, k] >= 0:
                    px, py = pred[0, j, k] / 40 * w, pred[1, j, k] / 40 * h
                    dists[j].append(((px - gt[0, j, k]) ** 2 + (py - gt[1, j, k]) ** 2) ** 0.5 / norm)
    out = {}
    for a in alphas:
        per_joint = [100.0 * sum(d <= a for d in dj) / len(dj) for dj in dists]
        out[a] = sum(per_joint) / 15
    return out


def random_video(rng, n_frames=6):
    gt = np.stack([rng.uniform(20, 300, (15, n_frames)), rng.uniform(20, 220, (15, n_frames))])
    pred = np.stack([gt[0] / 8 + rng.normal(0, 1.5, gt[0].shape), gt[1] / 6 + rng.normal(0, 1.5, gt[1].shape)])
    pred[0][rng.random(pred[0].shape) < 0.1] = -1.0
    return pred, gt


def test_pck_matches_slow_reference():
    rng = np.random.default_rng(0)
    videos = [(*random_video(rng, rng.integers(3, 9)), 320, 240) for _ in range(5)]
    acc = pm.PckAccumulator()
    for pred, gt, w, h in videos:
        acc.add(pm.pck_distances(pred, gt, w, h))
    ref = slow_pck(videos, pm.ALPHAS)
    for a in pm.ALPHAS:
        assert acc.pck(a) == pytest.approx(ref[a], abs=1e-9)


def test_pck_is_mean_of_per_joint_not_pooled():
    acc = pm.PckAccumulator()
    per_joint = [np.array([0.05])] + [np.array([0.05, 0.5, 0.5, 0.5])] * 14
    acc.add(per_joint)
    assert acc.pck(0.1) == pytest.approx((100 + 14 * 25) / 15)
    pooled = 100 * (1 + 14) / (1 + 14 * 4)
    assert acc.pck(0.1) != pytest.approx(pooled)


def make_jhmdb(tmp_path, rng, classes=("wave", "run"), per_class=2):
    root = tmp_path / "jhmdb"
    (root / "splits").mkdir(parents=True)
    videos = []
    for cls in classes:
        lines = []
        for i in range(per_class + 1):
            name = f"{cls}_clip{i}"
            lines.append(f"{name}.avi {'1' if i == per_class else '2'}")
            if i == per_class:
                continue
            pred, gt = random_video(rng, 5)
            frame_dir = root / "Rename_Images" / cls / name
            frame_dir.mkdir(parents=True)
            for t in range(5):
                Image.fromarray(np.zeros((240, 320, 3), dtype=np.uint8)).save(frame_dir / f"{t + 1:05d}.png")
            write_joint_positions(root / "joint_positions" / cls / name / "joint_positions.mat", gt + 1.0)
            videos.append((cls, name, pred, gt))
        (root / "splits" / f"{cls}_test_split1.txt").write_text("\n".join(lines) + "\n")
    return root, videos


def test_evaluate_jhmdb_folder(tmp_path):
    rng = np.random.default_rng(1)
    root, videos = make_jhmdb(tmp_path, rng)
    res = tmp_path / "res"
    res.mkdir()
    for i, (cls, name, pred, gt) in enumerate(videos):
        if i == 0:   # the official pickled .dat format is read too
            (res / f"{cls}__{name}.dat").write_bytes(pickle.dumps(pred))
        else:
            np.save(res / f"{cls}__{name}.npy", pred)
    out = pm.evaluate_jhmdb(tmp_path, res)
    ref = slow_pck([(p, g, 320, 240) for _, _, p, g in videos], pm.ALPHAS)
    assert out["videos"] == 4
    for a in pm.ALPHAS:
        assert out[f"PCK@{a:g}"] == pytest.approx(ref[a], abs=1e-9)


def test_evaluate_jhmdb_errors(tmp_path):
    rng = np.random.default_rng(2)
    root, videos = make_jhmdb(tmp_path, rng)
    res = tmp_path / "res"
    res.mkdir()
    for cls, name, pred, _ in videos[:-1]:
        np.save(res / f"{cls}__{name}.npy", pred)
    cls, name, pred, _ = videos[-1]
    with pytest.raises(FileNotFoundError, match=f"{cls}__{name}.npy: prediction not found"):
        pm.evaluate_jhmdb(root, res)
    np.save(res / f"{cls}__{name}.npy", pred[:, :10])
    with pytest.raises(ValueError, match="expected 2×15×T"):
        pm.evaluate_jhmdb(root, res)
    np.save(res / f"{cls}__{name}.npy", pred[:, :, :3])
    with pytest.raises(ValueError, match=f"{name}.npy: prediction covers 3 frames"):
        pm.evaluate_jhmdb(root, res)


def test_dat_reader_refuses_other_pickles(tmp_path):
    from selfsup.data.jhmdb import read_prediction

    path = tmp_path / "x.dat"
    import collections

    path.write_bytes(pickle.dumps(collections.OrderedDict(a=1)))
    with pytest.raises(ValueError, match="not a readable prediction"):
        read_prediction(path)


# ---------------------------------------------------------------- mIoU

def test_miou_example():
    hist = mm.confusion_matrix(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]))
    iou = mm.iou_per_class(hist)
    assert iou[0] == 0.5 and iou[1] == 2 / 3 and np.isnan(iou[2:]).all()
    assert mm.mean_iou(hist) == 0.5833333333333333


def test_miou_ignores_gt_outside_range_and_counts_false_positive_classes():
    gt = np.array([0, 0, 255, 1])
    pred = np.array([0, 3, 5, 1])
    hist = mm.confusion_matrix(gt, pred)
    assert hist.sum() == 3
    iou = mm.iou_per_class(hist)
    assert iou[3] == 0.0 and np.isnan(iou[5])          # predicted only where GT is ignored
    assert mm.mean_iou(hist) == pytest.approx((0.5 + 1.0 + 0.0) / 3)


def test_miou_matches_loop_reference():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 6, 500)
    pred = np.where(rng.random(500) < 0.7, gt, rng.integers(0, 8, 500))
    ious = []
    for c in range(20):
        tp = sum(1 for g, p in zip(gt, pred) if g == c and p == c)
        denom = sum(1 for g, p in zip(gt, pred) if g == c or p == c)
        if denom:
            ious.append(tp / denom)
    assert mm.mean_iou(mm.confusion_matrix(gt, pred)) == pytest.approx(sum(ious) / len(ious), abs=1e-12)


def make_vip(tmp_path, rng, n_videos=2, n_frames=3, size=(24, 16)):
    root = tmp_path / "vip" / "VIP_Fine"
    (root / "lists").mkdir(parents=True)
    names = [f"v{i}" for i in range(n_videos)]
    (root / "lists" / "val_videos.txt").write_text("\n".join(names) + "\n")
    gts = {}
    for v in names:
        (root / "Images" / v).mkdir(parents=True)
        for t in range(n_frames):
            gt = rng.integers(0, 5, (size[1], size[0])).astype(np.uint8)
            gt[0, 0] = 255
            Image.fromarray(np.zeros((size[1], size[0], 3), np.uint8)).save(root / "Images" / v / f"{t:06d}.jpg")
            path = root / "Annotations" / "Category_ids" / v / f"{t:06d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(gt).save(path)
            gts[(v, t)] = gt
    return root, gts


def test_evaluate_vip_resizes_nearest_and_scores_frame0(tmp_path):
    rng = np.random.default_rng(3)
    root, gts = make_vip(tmp_path, rng)
    res = tmp_path / "res"
    hist = np.zeros((20, 20), dtype=np.int64)
    for (v, t), gt in gts.items():
        pred = np.where(rng.random(gt.shape) < 0.6, np.where(gt == 255, 0, gt), 1).astype(np.uint8)
        big = np.repeat(np.repeat(pred, 2, 0), 2, 1)   # written at twice the GT size
        (res / v).mkdir(parents=True, exist_ok=True)
        Image.fromarray(big).save(res / v / f"{t:06d}.png")
        back = np.array(Image.fromarray(big).resize((gt.shape[1], gt.shape[0]), Image.NEAREST))
        hist += mm.confusion_matrix(gt, back)
    out = mm.evaluate_vip(tmp_path, res)
    assert out["frames"] == 6
    assert out["mIoU"] == pytest.approx(100 * mm.mean_iou(hist), abs=1e-12)


def test_evaluate_vip_errors(tmp_path):
    rng = np.random.default_rng(4)
    root, gts = make_vip(tmp_path, rng, n_videos=1, n_frames=1)
    res = tmp_path / "res"
    (res / "v0").mkdir(parents=True)
    bad = np.zeros((16, 24), np.uint8)
    bad[3, 3] = 20
    Image.fromarray(bad).save(res / "v0" / "000000.png")
    with pytest.raises(ValueError, match=r"000000\.png: class id 20"):
        mm.evaluate_vip(root, res)
    Image.fromarray(np.zeros((16, 24, 3), np.uint8)).save(res / "v0" / "000000.png")
    with pytest.raises(ValueError, match="mode 'RGB'"):
        mm.evaluate_vip(root, res)
    (res / "v0" / "000000.png").unlink()
    Image.fromarray(np.zeros((16, 24), np.uint8)).save(res / "v0" / "000009.png")
    with pytest.raises(FileNotFoundError, match="000009.png: no ground truth"):
        mm.evaluate_vip(root, res)
    with pytest.raises(FileNotFoundError, match="no predictions for video 'v0'"):
        mm.evaluate_vip(root, tmp_path / "res2" if (tmp_path / "res2").mkdir() is None else None)
