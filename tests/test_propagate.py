"""Label propagation against a dense all-pairs reference written here (masks, keypoints, parts),
the label encodings against the spec's rules, and the feature extractors."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from selfsup import propagate as pg
from selfsup.data.davis import read_indexed_png, write_indexed_png
from selfsup.data.jhmdb import read_prediction, write_joint_positions


@pytest.fixture(autouse=True)
def one_thread():
    # tiny problems: threads only add contention on a shared machine
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ============================================================================ dense reference

def dense_reference(feats, y0, L, k, R, tau=0.05, pad=True, radius_first=False, soft=True):
    """The official computation, literally: padded sequence, one affinity over every context node,
    −1e10 outside the radius on the short-term frames, top-k, softmax, soft recurrence."""
    n, c, h, w = feats.shape
    f = F.normalize(feats, dim=1, eps=1e-12)
    hw = h * w
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    pos = torch.stack([ys.reshape(-1), xs.reshape(-1)], 1).double()
    far = (torch.cdist(pos, pos) >= R).to(feats.dtype)
    if pad:
        keys = [f[0]] * L + list(f)
        labels = [y0] * (L + 1) + [None] * (n - 1)
    outs = [y0]
    feedback = {0: y0}
    for t in range(1, n):
        if pad:
            ctx = [0] + list(range(t, t + L))
            kf = [keys[p] for p in ctx]
            kl = [labels[p] for p in ctx]
        else:
            frames = [0] + list(range(max(0, t - L), t)) if L else [0]
            kf = [f[i] for i in frames]
            kl = [feedback[i] for i in frames]
        kmat = torch.stack([x.reshape(c, hw) for x in kf])                      # M × C × hw
        aff = torch.einsum("cq,mck->qmk", f[t].reshape(c, hw), kmat)
        first = 0 if radius_first else 1
        aff[:, first:, :] += -1e10 * far[:, None, :]
        aff = aff.reshape(hw, -1) / tau
        top, idx = aff.topk(min(k, aff.shape[1]), dim=1)
        wts = torch.softmax(top, dim=1)
        bank = torch.stack([x.reshape(-1, hw) for x in kl]).permute(0, 2, 1).reshape(-1, y0.shape[0])
        y = (wts[..., None] * bank[idx]).sum(1).t().reshape(-1, h, w)
        outs.append(y)
        fb = y if soft else F.one_hot(y.argmax(0), y.shape[0]).permute(2, 0, 1).to(y.dtype)
        if pad:
            labels[L + t] = fb
        feedback[t] = fb
    return outs


def random_problem(n=9, c=8, h=7, w=9, labels=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(n, c, h, w, generator=g, dtype=torch.float64)
    y0 = torch.rand(labels, h, w, generator=g, dtype=torch.float64)
    return feats, y0


def run(feats, y0, cfg):
    return list(pg.propagate_features(list(feats), y0, cfg))


def assert_same(ours, ref):
    assert len(ours) == len(ref)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
        assert torch.equal(a.argmax(0), b.argmax(0))


@pytest.mark.parametrize("L, k, R, tile", [(20, 10, 12.0, 8), (3, 5, 4.0, 3), (4, 7, 2.0, 1), (2, 30, 1.5, 4)])
def test_soft_labels_equal_dense_reference(L, k, R, tile):
    feats, y0 = random_problem(n=24 if L == 20 else 9)
    cfg = pg.PropagationConfig(context=L, topk=k, radius=R, tile=tile)
    assert_same(run(feats, y0, cfg), dense_reference(feats, y0, L, k, R))


def test_small_chunks_give_the_same_labels():
    feats, y0 = random_problem(n=7, h=11, w=13)
    ref = dense_reference(feats, y0, 3, 6, 3.5)
    assert_same(run(feats, y0, pg.PropagationConfig(context=3, topk=6, radius=3.5, chunk_elements=50)), ref)


@pytest.mark.parametrize("variant", ["no_pad", "radius_first", "hard"])
def test_protocol_variants_equal_reference(variant):
    feats, y0 = random_problem(n=8, seed=3)
    kwargs = {"no_pad": dict(pad=False), "radius_first": dict(radius_first=True), "hard": dict(soft=False)}[variant]
    cfg = pg.PropagationConfig(context=3, topk=5, radius=3.0,
                               pad_context_with_first_frame=variant != "no_pad",
                               radius_on_first_frame=variant == "radius_first", soft_recurrence=variant != "hard")
    assert_same(run(feats, y0, cfg), dense_reference(feats, y0, 3, 5, 3.0, **kwargs))


def test_padded_copies_count_as_separate_candidates():
    """With the L copies of frame 0 collapsed into one, early frames get other labels."""
    feats, y0 = random_problem(n=5, seed=5)
    cfg = pg.PropagationConfig(context=4, topk=6, radius=3.0)
    ours = run(feats, y0, cfg)
    deduplicated = dense_reference(feats, y0, 4, 6, 3.0, pad=False)
    assert not torch.allclose(ours[1], deduplicated[1])


def test_frame0_encoded_once_and_memory_bounded():
    feats, y0 = random_problem(n=30, seed=1)
    prop = pg.LabelPropagator(pg.PropagationConfig(context=4, topk=5, radius=3.0))
    prop.reset(feats[0], y0)
    buffers = (prop.ring_keys.data_ptr(), prop.ring_labels.data_ptr())
    assert prop.ring_keys.shape[0] == 4 and prop.ring_labels.shape[0] == 4
    for t in range(1, 30):
        prop.step(feats[t])
        assert prop.ring_size == min(t, 4)
    assert prop.t == 29
    assert (prop.ring_keys.data_ptr(), prop.ring_labels.data_ptr()) == buffers   # no growth


class CountingEncoder:
    """A fixed nonlinear function of the 8×8-pooled pixels (float64); counts encoded frames."""

    def __init__(self, channels=10, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.w1 = torch.randn(16, 3, generator=g, dtype=torch.float64)
        self.w2 = torch.randn(channels, 16, generator=g, dtype=torch.float64)
        self.frames = 0

    def __call__(self, x):
        self.frames += x.shape[0]
        p = F.avg_pool2d(x.double(), 8, 8, ceil_mode=True)
        hidden = torch.tanh(torch.einsum("oc,nchw->nohw", self.w1, p))
        return torch.einsum("oc,nchw->nohw", self.w2, hidden)


def blocky_frames(rng, n, height, width, cell=8):
    """Random colour cells drifting over time, plus pixel noise so that no two pooled features tie
    (tied scores with different labels make top-k implementation-defined)."""
    base = rng.integers(30, 226, (height // cell + 3, width // cell + 3, 3))
    big = np.repeat(np.repeat(base, cell, 0), cell, 1)
    return [np.clip(big[t % 5: t % 5 + height, (2 * t) % 7: (2 * t) % 7 + width]
                    + rng.integers(-30, 31, (height, width, 3)), 0, 255).astype(np.uint8) for t in range(n)]


# ============================================================================ masks (DAVIS)

def make_davis(tmp_path, n=9, height=48, width=72):
    rng = np.random.default_rng(0)
    root = tmp_path / "DAVIS"
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("seq\n")
    frames = blocky_frames(rng, n, height, width)
    for t, frame in enumerate(frames):
        path = root / "JPEGImages" / "480p" / "seq" / f"{t:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(frame).save(path, quality=95)
        lab = np.zeros((height, width), np.uint8)
        lab[5:30, 4:25] = 1
        lab[20:44, 30:60] = 2
        lab[0:6, 60:72] = 255        # void in the first frame is background
        write_indexed_png(root / "Annotations" / "480p" / "seq" / f"{t:05d}.png", lab)
    return root


@pytest.mark.parametrize("L, k, R", [(20, 10, 12.0), (3, 5, 2.5)])
def test_davis_masks_equal_dense_reference(tmp_path, L, k, R):
    n = 24 if L == 20 else 9
    root = make_davis(tmp_path, n=n)
    enc = CountingEncoder()
    cfg = pg.PropagationConfig(context=L, topk=k, radius=R)
    stats = pg.propagate_davis(enc, root, tmp_path / "out", cfg, progress=False)
    assert stats["frames"] == n and enc.frames == n           # frame 0 encoded once
    paths = sorted((root / "JPEGImages" / "480p" / "seq").glob("*.jpg"))
    feats = CountingEncoder()(pg.load_frames(paths))
    first = read_indexed_png(root / "Annotations" / "480p" / "seq" / "00000.png")
    first = np.where(first == 255, 0, first)
    values, y0 = pg.mask_labels(first, feats.shape[-2:], dtype=torch.float64)
    assert values.tolist() == [0, 1, 2]
    ref = dense_reference(feats, y0, L, k, R)
    for t, soft in enumerate(ref):
        out = tmp_path / "out" / "seq" / f"{t:05d}.png"
        with Image.open(out) as img:
            assert img.mode == "P" and img.size == (72, 48)
        np.testing.assert_array_equal(read_indexed_png(out), pg.labels_to_ids(soft, (48, 72), values))


# ============================================================================ keypoints (JHMDB)

def make_jhmdb(tmp_path, n=8):
    rng = np.random.default_rng(1)
    root = tmp_path / "jhmdb"
    (root / "splits").mkdir(parents=True)
    (root / "splits" / "wave_test_split1.txt").write_text("clip_a.avi 2\nclip_b.avi 1\n")
    frame_dir = root / "Rename_Images" / "wave" / "clip_a"
    frame_dir.mkdir(parents=True)
    for t, frame in enumerate(blocky_frames(rng, n, 240, 320, cell=24)):
        Image.fromarray(frame).save(frame_dir / f"{t + 1:05d}.png")
    pos = np.stack([rng.uniform(20, 300, (15, n)), rng.uniform(20, 220, (15, n))]) + 1.0
    pos[:, 14, 0] = (-50.0, 500.0)   # one joint off the frame in frame 0: no heat map
    write_joint_positions(root / "joint_positions" / "wave" / "clip_a" / "joint_positions.mat", pos)
    return root, frame_dir, pos - 1.0


def test_jhmdb_keypoints_equal_dense_reference(tmp_path):
    root, frame_dir, gt = make_jhmdb(tmp_path)
    crop = 96
    cfg = pg.PropagationConfig(context=7, topk=10, radius=12.0)
    pg.propagate_jhmdb(CountingEncoder(seed=2), root, tmp_path / "out", cfg, crop_size=crop, progress=False)
    pred = read_prediction(tmp_path / "out" / "wave__clip_a.npy")
    assert pred.shape == (2, 15, 8)
    paths = sorted(frame_dir.glob("*.png"))
    feats = CountingEncoder(seed=2)(pg.load_frames(paths, crop))
    y0 = pg.joint_heatmaps(gt[:, :, 0], (320, 240), feats.shape[-2:], crop, 8)
    assert y0[14].sum() == 0
    ref = [pg.decode_joints(s) for s in dense_reference(feats, y0, 7, 10, 12.0)]
    np.testing.assert_allclose(pred, np.stack(ref, -1), rtol=0, atol=1e-9)
    assert (pred[:, 14] == -1).all()                       # never any mass


def test_heatmap_worked_example():
    joints = np.full((2, 15), -100.0)
    joints[:, 0] = (130.0, 75.0)
    maps = pg.joint_heatmaps(joints, (320, 240), (40, 40), 320, 8).numpy()
    rows, cols = np.nonzero(maps[0])
    assert sorted(set(cols)) == [14, 15, 16, 17]
    assert sorted(set(rows)) == [11, 12, 13, 14]
    assert np.unravel_index(maps[0].argmax(), maps[0].shape) == (13, 16)
    assert maps[0].max() == 1.0
    assert maps[0, 13, 15] == pytest.approx(math.exp(-2.0))   # one cell off: exp(-1/(2·0.25))
    assert (maps[1:15] == 0).all()
    np.testing.assert_array_equal(maps[15], (maps[0] == 0).astype(float))


def spec_heatmap(c_x, c_y, grid=40, sigma=0.5):
    """The spec's drawing rule, cell by cell."""
    out = np.zeros((grid, grid))
    ulx, uly = math.trunc(c_x - 1.5), math.trunc(c_y - 1.5)
    brx, bry = math.trunc(c_x + 2.5), math.trunc(c_y + 2.5)
    if ulx >= grid or uly >= grid or brx < 0 or bry < 0:
        return out
    for row in range(max(0, uly), min(bry, grid)):
        for col in range(max(0, ulx), min(brx, grid)):
            a, b = row - uly, col - ulx
            out[row, col] = math.exp(-((a - 2) ** 2 + (b - 2) ** 2) / (2 * sigma ** 2))
    return out


@pytest.mark.parametrize("x, y", [(8.0, 6.0), (0.0, 0.0), (-10.0, 100.0), (319.0, 239.0), (316.0, 3.0),
                                  (-19.0, -14.0), (-20.0, 120.0), (333.0, 251.0), (57.3, 181.9)])
def test_heatmap_trunc_rules(x, y):
    joints = np.full((2, 15), -1000.0)
    joints[:, 3] = (x, y)
    maps = pg.joint_heatmaps(joints, (320, 240), (40, 40), 320, 8).numpy()
    np.testing.assert_allclose(maps[3], spec_heatmap(x / 8, y * 320 / 240 / 8), rtol=0, atol=0)


def test_heatmap_short_patch_near_origin():
    # c = 1.0: ul = trunc(-0.5) = 0, br = trunc(3.5) = 3 -> columns 0..2, patch columns 0..2 (peak at 2)
    joints = np.full((2, 15), -1000.0)
    joints[:, 0] = (8.0, 80.0)
    maps = pg.joint_heatmaps(joints, (320, 240), (40, 40), 320, 8).numpy()
    assert sorted(set(np.nonzero(maps[0])[1])) == [0, 1, 2]
    assert maps[0].max(0).argmax() == 2


def test_decode_joints_matches_loop_reference():
    g = torch.Generator().manual_seed(0)
    soft = torch.rand(16, 12, 14, generator=g, dtype=torch.float64) ** 4
    soft[5] = 0.0
    out = pg.decode_joints(soft)
    for j in range(15):
        cells = sorted(((soft[j, r, c].item(), r, c) for r in range(12) for c in range(14)), reverse=True)[:3]
        total = sum(v for v, _, _ in cells)
        if total == 0:
            assert tuple(out[:, j]) == (-1.0, -1.0)
            continue
        x = sum(v / total * c for v, _, c in cells)
        y = sum(v / total * r for v, r, _ in cells)
        assert out[0, j] == pytest.approx(x, abs=1e-12) and out[1, j] == pytest.approx(y, abs=1e-12)


# ============================================================================ parts (VIP)

def make_vip(tmp_path, n=6, height=40, width=32):
    rng = np.random.default_rng(2)
    root = tmp_path / "vip" / "VIP_Fine"
    (root / "lists").mkdir(parents=True)
    (root / "lists" / "val_videos.txt").write_text("v1\n")
    (root / "Images" / "v1").mkdir(parents=True)
    (root / "Annotations" / "Category_ids" / "v1").mkdir(parents=True)
    for t, frame in enumerate(blocky_frames(rng, n, height, width)):
        Image.fromarray(frame).save(root / "Images" / "v1" / f"{t:06d}.jpg")
        lab = np.zeros((height, width), np.uint8)
        lab[4:20, 3:14] = 2
        lab[18:36, 10:28] = 13
        lab[30:40, 0:8] = 5
        Image.fromarray(lab).save(root / "Annotations" / "Category_ids" / "v1" / f"{t:06d}.png")
    return root


def test_vip_parts_equal_dense_reference(tmp_path):
    root = make_vip(tmp_path)
    crop = 64
    cfg = pg.PropagationConfig(context=4, topk=10, radius=12.0)
    pg.propagate_vip(CountingEncoder(seed=4), tmp_path, tmp_path / "out", cfg, crop_size=crop, progress=False)
    paths = sorted((root / "Images" / "v1").glob("*.jpg"))
    feats = CountingEncoder(seed=4)(pg.load_frames(paths, crop))
    first = np.array(Image.open(root / "Annotations" / "Category_ids" / "v1" / "000000.png"))
    first = pg.resize_label_map(first, (crop, crop), "linear")
    values, y0 = pg.mask_labels(first, feats.shape[-2:], dtype=torch.float64)
    assert len(values) > 4          # the bilinear label resize blends ids into extra labels
    for t, soft in enumerate(dense_reference(feats, y0, 4, 10, 12.0)):
        out = tmp_path / "out" / "v1" / f"{t:06d}.png"
        with Image.open(out) as img:
            assert img.mode == "L" and img.size == (crop, crop)
        np.testing.assert_array_equal(np.array(Image.open(out)), pg.labels_to_ids(soft, (crop, crop), values))


def test_resize_label_map_nearest_is_opencv_floor_rule():
    lab = np.arange(7 * 5, dtype=np.uint8).reshape(7, 5)
    out = pg.resize_label_map(lab, (16, 3), "nearest")
    rows = [min(math.floor(y * (1.0 / (16 / 7))), 6) for y in range(16)]
    cols = [min(math.floor(x * (1.0 / (3 / 5))), 4) for x in range(3)]
    np.testing.assert_array_equal(out, lab[np.ix_(rows, cols)])


def test_resize_label_map_linear_blends_and_nearest_does_not():
    lab = np.array([[0, 10], [0, 10]], np.uint8)
    linear = pg.resize_label_map(lab, (2, 8), "linear")
    assert set(np.unique(linear)) > {0, 10}
    nearest = pg.resize_label_map(lab, (2, 8), "nearest")
    assert set(np.unique(nearest)) == {0, 10}
    np.testing.assert_array_equal(nearest[0], [0, 0, 0, 0, 10, 10, 10, 10])


# ============================================================================ encodings

def opencv_linear(src, out_h, out_w):
    """OpenCV INTER_LINEAR on float input: half-pixel centres (source coordinate rounded to
    float32), clamped at the borders."""
    h, w = src.shape
    out = np.zeros((out_h, out_w))
    for dy in range(out_h):
        sy = float(np.float32((dy + 0.5) * (1.0 / (out_h / h)) - 0.5))
        y0 = math.floor(sy)
        fy = float(np.float32(sy - y0))
        if y0 < 0:
            y0, fy = 0, 0.0
        if y0 >= h - 1:
            y0, fy = h - 1, 0.0
        y1 = min(y0 + 1, h - 1)
        for dx in range(out_w):
            sx = float(np.float32((dx + 0.5) * (1.0 / (out_w / w)) - 0.5))
            x0 = math.floor(sx)
            fx = float(np.float32(sx - x0))
            if x0 < 0:
                x0, fx = 0, 0.0
            if x0 >= w - 1:
                x0, fx = w - 1, 0.0
            x1 = min(x0 + 1, w - 1)
            a0, a1 = float(np.float32(1 - fx)), fx
            b0, b1 = float(np.float32(1 - fy)), fy
            out[dy, dx] = b0 * (a0 * src[y0, x0] + a1 * src[y0, x1]) + b1 * (a0 * src[y1, x0] + a1 * src[y1, x1])
    return out


@pytest.mark.parametrize("size, grid", [((48, 85), (6, 11)), ((20, 20), (7, 3)), ((9, 14), (18, 30))])
def test_mask_labels_are_opencv_linear_resizes_of_one_hot(size, grid):
    rng = np.random.default_rng(0)
    lab = rng.choice([0, 3, 7], size=size).astype(np.uint8)
    values, soft = pg.mask_labels(lab, grid, dtype=torch.float64)
    assert values.tolist() == [0, 3, 7]
    for i, v in enumerate(values):
        np.testing.assert_allclose(soft[i].numpy(), opencv_linear((lab == v).astype(float), *grid), atol=1e-12)


def test_labels_to_ids_first_maximum_wins():
    soft = torch.zeros(3, 2, 2, dtype=torch.float64)
    soft[1, 0, 0] = 0.5
    soft[2, 0, 0] = 0.5
    soft[2, 1, 1] = 0.2
    ids = pg.labels_to_ids(soft, (2, 2), np.array([0, 4, 9]))
    np.testing.assert_array_equal(ids, [[4, 0], [0, 9]])     # ties -> first; all-zero -> background


# ============================================================================ extractors

def test_pixel_features_stride8_ceil():
    x = torch.randn(2, 3, 50, 67)
    f = pg.PixelFeatures()(x)
    assert f.shape == (2, 3, 7, 9)
    torch.testing.assert_close(f[:, :, 0, 0], x[:, :, :8, :8].mean((2, 3)))
    torch.testing.assert_close(f[:, :, 6, 8], x[:, :, 48:, 64:].mean((2, 3)))   # partial cell: own mean
    white = (torch.ones(1, 3, 8, 8) - torch.tensor(pg.IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(
        pg.IMAGENET_STD).view(1, 3, 1, 1)
    lab = pg.PixelFeatures(colorspace="lab")(white)[0, :, 0, 0]
    assert lab[0].item() == pytest.approx(1.0, abs=1e-3) and lab[1:].abs().max() < 1e-2


def test_random_and_checkpoint_extractors(tmp_path):
    from selfsup.crw import CRW, CRWConfig, save_checkpoint

    cfg = CRWConfig(width=0.125)
    x = torch.randn(2, 3, 40, 52)
    a = pg.build_extractor("random", seed=3, crw_config=cfg)(x)
    b = pg.build_extractor("random", seed=3, crw_config=cfg)(x)
    c = pg.build_extractor("random", seed=4, crw_config=cfg)(x)
    assert a.shape == (2, 32, 5, 7)
    assert torch.equal(a, b) and not torch.allclose(a, c)
    torch.manual_seed(0)
    model = CRW(cfg)
    save_checkpoint(model, tmp_path / "ck.pt")
    feats = pg.build_extractor("checkpoint", tmp_path / "ck.pt")(x)
    torch.testing.assert_close(feats, model.features(x))
    # "random" with a checkpoint takes that checkpoint's architecture, not its weights
    r = pg.build_extractor("random", tmp_path / "ck.pt", seed=3)(x)
    assert r.shape == feats.shape and not torch.allclose(r, feats)
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        pg.build_extractor("checkpoint", tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="unknown model"):
        pg.build_extractor("resnet50")


def test_imagenet_extractor_loads_torchvision_layout(tmp_path):
    from selfsup.crw import CRW, CRWConfig

    torch.manual_seed(1)
    model = CRW(CRWConfig(padding_mode="zeros", with_head=False))
    state = {k[len("encoder."):]: v for k, v in model.state_dict().items()}
    state["fc.weight"] = torch.zeros(1000, 512)
    state["fc.bias"] = torch.zeros(1000)
    torch.save(state, tmp_path / "resnet18.pth")
    x = torch.randn(1, 3, 32, 40)
    feats = pg.build_extractor("imagenet", tmp_path / "resnet18.pth")(x)
    torch.testing.assert_close(feats, model.features(x))


def test_config_validation():
    with pytest.raises(ValueError, match="radius"):
        pg.PropagationConfig(radius=0)
    with pytest.raises(ValueError, match="topk"):
        pg.PropagationConfig(topk=0)
    assert pg.protocol("jhmdb").context == 7 and pg.protocol("vip", radius=5.0).radius == 5.0
    with pytest.raises(ValueError, match="unknown data set"):
        pg.protocol("kitti")
