"""DAVIS J&F: the worked examples of the evaluation spec, slow reference loops, bad result folders."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from selfsup.data.davis import write_indexed_png
from selfsup.metrics import davis as dm


def box(h, w, r0, r1, c0, c1):
    m = np.zeros((h, w), dtype=bool)
    m[r0:r1 + 1, c0:c1 + 1] = True
    return m


# ---------------------------------------------------------------- worked examples (spec §1)

@pytest.mark.parametrize("res_box, size, j_expected, f_expected", [
    ((100, 199, 212, 411), (480, 854), 0.8867924528301887, 0.6833333333333333),
    ((100, 199, 209, 408), (480, 854), 0.9138755980861244, 0.6933333333333334),
    ((100, 199, 209, 408), (480, 910), 0.9138755980861244, 1.0),
    ((104, 203, 205, 404), (480, 854), 0.8796992481203008, 1.0),
])
def test_worked_examples(res_box, size, j_expected, f_expected):
    gt = box(*size, 100, 199, 200, 399)
    res = box(*size, *res_box)
    assert dm.jaccard(gt, res) == j_expected
    assert dm.f_measure(gt, res) == f_expected


def test_j_first_example_is_188_over_212():
    gt = box(480, 854, 100, 199, 200, 399)
    res = box(480, 854, 100, 199, 212, 411)
    assert dm.jaccard(gt, res) == 188 / 212


def test_empty_masks():
    gt = box(480, 854, 100, 199, 200, 399)
    empty = np.zeros_like(gt)
    assert dm.jaccard(gt, empty) == 0.0 and dm.f_measure(gt, empty) == 0.0
    assert dm.jaccard(empty, empty) == 1.0 and dm.f_measure(empty, empty) == 1.0
    # n_G = 0 < n_S: P = 0, R = 1 -> F = 0
    assert dm.f_measure(empty, gt) == 0.0
    # a full-frame mask has no boundary: both empty boundary maps -> F = 1
    full = np.ones_like(gt)
    assert dm.f_measure(full, full) == 1.0 and dm.f_measure(full, empty) == 1.0


@pytest.mark.parametrize("h, w, r", [(480, 854, 8), (480, 910, 9), (480, 1152, 10), (240, 427, 4)])
def test_tolerance(h, w, r):
    assert dm.boundary_tolerance(h, w) == r


def test_boundary_map_examples():
    m = np.zeros((4, 4), dtype=bool)
    m[1:3, 1:3] = True
    expected = np.array([[1, 1, 1, 0], [1, 0, 1, 0], [1, 1, 1, 0], [0, 0, 0, 0]], dtype=bool)
    np.testing.assert_array_equal(dm.boundary_map(m), expected)
    m2 = np.array([[1, 1, 0], [1, 1, 0], [1, 1, 1]], dtype=bool)
    np.testing.assert_array_equal(dm.boundary_map(m2), np.array([[0, 1, 0], [0, 1, 1], [0, 0, 0]], dtype=bool))


def test_disk_has_197_pixels_for_r8():
    yy, xx = np.mgrid[-8:9, -8:9]
    assert np.count_nonzero(yy ** 2 + xx ** 2 <= 64) == 197


def test_decay_example():
    v = [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]
    mean, recall, decay = dm.object_statistics(v)
    assert mean == 0.55
    assert recall == 0.5
    assert decay == 0.7000000000000001


@pytest.mark.parametrize("n, edges", [(10, [0, 2, 5, 7, 9]), (48, [0, 12, 24, 35, 47]),
                                      (102, [0, 25, 51, 76, 101])])
def test_decay_bins(n, edges):
    assert dm.decay_indices(n).tolist() == edges


def test_decay_bins_need_the_epsilon():
    # without +1e-10, NumPy's half-to-even rounding gives 23 for T' = 48
    assert (np.round(np.linspace(1, 48, 5)) - 1).astype(int).tolist()[2] == 23


def test_recall_is_strictly_greater():
    assert dm.object_statistics([0.5, 0.5, 0.51])[1] == pytest.approx(1 / 3)


# ---------------------------------------------------------------- slow references

def slow_boundary(m):
    h, w = m.shape
    b = np.zeros((h, w), dtype=bool)
    for y in range(h):
        for x in range(w):
            if y < h - 1 and x < w - 1:
                b[y, x] = m[y, x] != m[y, x + 1] or m[y, x] != m[y + 1, x] or m[y, x] != m[y + 1, x + 1]
            elif y == h - 1 and x < w - 1:
                b[y, x] = m[y, x] != m[y, x + 1]
            elif x == w - 1 and y < h - 1:
                b[y, x] = m[y, x] != m[y + 1, x]
    return b


def slow_dilate(b, r):
    h, w = b.shape
    out = np.zeros_like(b)
    for y in range(h):
        for x in range(w):
            if not b[y, x]:
                continue
            for dy in range(-r, r + 1):
                for dx in range(-r, r + 1):
                    if dy * dy + dx * dx <= r * r and 0 <= y + dy < h and 0 <= x + dx < w:
                        out[y + dy, x + dx] = True
    return out


def slow_f(gt, res, r):
    gb, sb = slow_boundary(gt), slow_boundary(res)
    ng, ns = gb.sum(), sb.sum()
    if ns == 0 and ng > 0:
        p, rc = 1.0, 0.0
    elif ns > 0 and ng == 0:
        p, rc = 0.0, 1.0
    elif ns == 0 and ng == 0:
        p, rc = 1.0, 1.0
    else:
        p = (sb & slow_dilate(gb, r)).sum() / float(ns)
        rc = (gb & slow_dilate(sb, r)).sum() / float(ng)
    return 0.0 if p + rc == 0 else 2 * p * rc / (p + rc)


def random_mask(rng, h, w):
    m = np.zeros((h, w), dtype=bool)
    for _ in range(rng.integers(0, 4)):
        r0, c0 = rng.integers(0, h), rng.integers(0, w)
        m[r0:r0 + rng.integers(1, h), c0:c0 + rng.integers(1, w)] ^= True
    if rng.random() < 0.3:
        m ^= rng.random((h, w)) < 0.05
    return m


def test_boundary_map_matches_loop():
    rng = np.random.default_rng(0)
    for _ in range(20):
        m = random_mask(rng, 9, 13)
        np.testing.assert_array_equal(dm.boundary_map(m), slow_boundary(m))


@pytest.mark.parametrize("radius", [1, 2, 3, 5])
def test_f_matches_slow_loop_reference(radius):
    rng = np.random.default_rng(radius)
    for _ in range(12):
        gt, res = random_mask(rng, 14, 19), random_mask(rng, 14, 19)
        assert dm.f_measure(gt, res, tolerance=radius) == slow_f(gt, res, radius)


def test_f_with_fractional_tolerance_matches_reference():
    rng = np.random.default_rng(7)
    gt, res = random_mask(rng, 120, 200), random_mask(rng, 120, 200)
    r = dm.boundary_tolerance(120, 200)
    assert r == 2
    assert dm.f_measure(gt, res) == slow_f(gt, res, r)


def test_matched_within_equals_binary_dilation_with_disk():
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[-6:7, -6:7]
    disk = yy ** 2 + xx ** 2 <= 36
    for _ in range(10):
        a, b = dm.boundary_map(random_mask(rng, 40, 60)), dm.boundary_map(random_mask(rng, 40, 60))
        if not a.any():
            continue
        dil = ndimage.binary_dilation(a, structure=disk, border_value=0)
        assert dm._matched_within(a, b, 6) == int((b & dil).sum())


# ---------------------------------------------------------------- whole-folder evaluation

SEQS = {"alpha": (3, 7), "beta": (2, 5)}   # name: (objects, frames)
H, W = 40, 60


def make_davis(tmp_path, rng):
    root = tmp_path / "DAVIS"
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("\n".join(SEQS) + "\n")
    gts = {}
    for seq, (k, n) in SEQS.items():
        (root / "JPEGImages" / "480p" / seq).mkdir(parents=True)
        frames = []
        for t in range(n):
            lab = np.zeros((H, W), dtype=np.uint8)
            for obj in range(1, k + 1):
                r0, c0 = 4 + 3 * obj + t, 5 + 9 * obj
                lab[r0:r0 + 8, c0:c0 + 7] = obj
            if t == 2:
                lab[0:2, 0:3] = 255                       # void counts as background
            Image.fromarray(np.zeros((H, W, 3), dtype=np.uint8)).save(
                root / "JPEGImages" / "480p" / seq / f"{t:05d}.jpg")
            write_indexed_png(root / "Annotations" / "480p" / seq / f"{t:05d}.png", lab)
            frames.append(np.where(lab == 255, 0, lab))
        gts[seq] = np.stack(frames)
    return root, gts


def perturb(rng, lab, k):
    out = lab.copy()
    shift = rng.integers(-2, 3, size=2)
    out = np.roll(out, tuple(shift), axis=(0, 1))
    if k > 1:
        out[out == k] = 0                                  # one object sometimes lost
    return out


def write_results(tmp_path, gts, rng):
    res_root = tmp_path / "results"
    results = {}
    for seq, gt in gts.items():
        frames = []
        for t in range(gt.shape[0]):
            r = perturb(rng, gt[t], SEQS[seq][0] if t % 2 else 0)
            write_indexed_png(res_root / seq / f"{t:05d}.png", r)
            frames.append(r)
        results[seq] = np.stack(frames)
    return res_root, results


def test_evaluate_folder_equals_per_frame_functions(tmp_path, capsys):
    rng = np.random.default_rng(0)
    root, gts = make_davis(tmp_path, rng)
    res_root, results = write_results(tmp_path, gts, rng)
    scores = dm.evaluate_davis(root, res_root)
    assert scores.n_objects == 5
    per_object = {}
    for seq, gt in gts.items():
        k = SEQS[seq][0]
        for obj in range(1, k + 1):
            js = [dm.jaccard(gt[t] == obj, results[seq][t] == obj) for t in range(1, gt.shape[0] - 1)]
            fs = [dm.f_measure(gt[t] == obj, results[seq][t] == obj) for t in range(1, gt.shape[0] - 1)]
            per_object[f"{seq}_{obj}"] = (dm.object_statistics(js), dm.object_statistics(fs))
    summary = scores.summary()
    jm = np.mean([v[0][0] for v in per_object.values()])
    fm = np.mean([v[1][0] for v in per_object.values()])
    assert summary["J-Mean"] == pytest.approx(jm, abs=1e-12)
    assert summary["F-Mean"] == pytest.approx(fm, abs=1e-12)
    assert summary["J-Decay"] == pytest.approx(np.mean([v[0][2] for v in per_object.values()]), abs=1e-12)
    assert summary["F-Recall"] == pytest.approx(np.mean([v[1][1] for v in per_object.values()]), abs=1e-12)
    assert summary["J&F-Mean"] == pytest.approx((jm + fm) / 2, abs=1e-12)
    assert list(summary) == list(dm.GLOBAL_KEYS)
    d = scores.to_dict()
    assert set(d["per_object"]) == set(per_object)
    table = scores.table()
    for key in dm.GLOBAL_KEYS:
        assert key in table
    assert "alpha_3" in table and "beta_2" in table


def test_first_and_last_results_never_read(tmp_path):
    rng = np.random.default_rng(1)
    root, gts = make_davis(tmp_path, rng)
    res_root, _ = write_results(tmp_path, gts, rng)
    before = dm.evaluate_davis(root, res_root).summary()
    for seq, (_, n) in SEQS.items():
        (res_root / seq / "00000.png").unlink()
        (res_root / seq / f"{n - 1:05d}.png").write_bytes(b"not a png")
    assert dm.evaluate_davis(root, res_root).summary() == before


def test_missing_objects_are_empty_masks(tmp_path):
    rng = np.random.default_rng(2)
    root, gts = make_davis(tmp_path, rng)
    res_root = tmp_path / "results"
    for seq, gt in gts.items():
        for t in range(gt.shape[0]):
            write_indexed_png(res_root / seq / f"{t:05d}.png", np.where(gt[t] == 1, 1, 0))
    per = dm.evaluate_davis(root, res_root).per_object()
    assert per["alpha_1"]["J-Mean"] == 1.0 and per["alpha_1"]["F-Mean"] == 1.0
    assert per["alpha_2"]["J-Mean"] == 0.0 and per["alpha_3"]["F-Mean"] == 0.0


@pytest.fixture
def davis_and_results(tmp_path):
    rng = np.random.default_rng(4)
    root, gts = make_davis(tmp_path, rng)
    res_root, _ = write_results(tmp_path, gts, rng)
    return root, res_root


def test_error_missing_frame(davis_and_results):
    root, res = davis_and_results
    (res / "alpha" / "00003.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"alpha/00003\.png: result frame missing"):
        dm.evaluate_davis(root, res)


def test_error_missing_sequence(davis_and_results):
    root, res = davis_and_results
    import shutil

    shutil.rmtree(res / "beta")
    with pytest.raises(FileNotFoundError, match=r"no results for sequence 'beta'"):
        dm.evaluate_davis(root, res)


def test_error_wrong_size(davis_and_results):
    root, res = davis_and_results
    write_indexed_png(res / "alpha" / "00002.png", np.zeros((H, W + 1), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"alpha/00002\.png: result is 61×40.*ground truth is 60×40"):
        dm.evaluate_davis(root, res)


def test_error_rgb_png(davis_and_results):
    root, res = davis_and_results
    Image.fromarray(np.zeros((H, W, 3), dtype=np.uint8)).save(res / "beta" / "00001.png")
    with pytest.raises(ValueError, match=r"beta/00001\.png: label image has mode 'RGB'"):
        dm.evaluate_davis(root, res)


def test_error_more_objects_than_gt(davis_and_results):
    root, res = davis_and_results
    lab = np.zeros((H, W), dtype=np.uint8)
    lab[5:9, 5:9] = 3
    write_indexed_png(res / "beta" / "00002.png", lab)
    with pytest.raises(ValueError, match=r"beta: results hold object id 3 .*00002.*only 2 object"):
        dm.evaluate_davis(root, res)


def test_error_missing_results_folder(tmp_path):
    root, _ = make_davis(tmp_path, np.random.default_rng(0))
    with pytest.raises(FileNotFoundError, match="results folder not found"):
        dm.evaluate_davis(root, tmp_path / "nope")


def test_parallel_equals_serial(davis_and_results):
    root, res = davis_and_results
    a = dm.evaluate_davis(root, res).to_dict()
    b = dm.evaluate_davis(root, res, workers=2).to_dict()
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
