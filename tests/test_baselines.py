"""selfsup.baselines: losses, augmentation ops, colour quantisation, attention copy, retrieval."""
from __future__ import annotations

import colorsys
import math

import numpy as np
import pytest
import torch

from selfsup.baselines import augment as aug
from selfsup.baselines.colorization import (ColorizationConfig, attention_copy, colorization_loss,
                                            fit_colour_clusters, fold_gray_input, gray_input, lab_to_rgb,
                                            quantize_ab, rgb_to_lab, train_colorization)
from selfsup.baselines.instance import (ExemplarConfig, SimCLRConfig, exemplar_loss, gradient_energy, nt_xent,
                                        sample_seed_patches, train_exemplar, train_simclr)
from selfsup.baselines.lecture import (grating_task, identity_of, linear_probe, render_table, split_videos,
                                       tint_task)
from selfsup.baselines.models import (FramePool, OptimConfig, baseline_config, baseline_info, build_model,
                                      save_baseline)
from selfsup.baselines.retrieval import (DescriptorConfig, encode_collection, exemplar_svm, mean_precision_at_k,
                                         precision_at_k, rank_cosine, rank_esvm)

@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small convolutions run fastest on one thread (and no thread waits on another)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)



# ------------------------------------------------------------------------------------------------
# Losses against slow loops
# ------------------------------------------------------------------------------------------------

def test_nt_xent_matches_loop():
    g = torch.Generator().manual_seed(0)
    b, d, tau = 5, 7, 0.3
    z1, z2 = torch.randn(b, d, generator=g), torch.randn(b, d, generator=g)
    loss, acc = nt_xent(z1, z2, tau)

    z = [[x / math.sqrt(sum(y * y for y in v)) for x in v] for v in torch.cat([z1, z2]).tolist()]
    total, hits = 0.0, 0
    for i in range(2 * b):
        pos = i + b if i < b else i - b
        sims = {k: sum(a * c for a, c in zip(z[i], z[k])) / tau for k in range(2 * b) if k != i}
        total += -math.log(math.exp(sims[pos]) / sum(math.exp(s) for s in sims.values()))
        hits += max(sims, key=sims.get) == pos
    assert loss.item() == pytest.approx(total / (2 * b), rel=1e-5)
    assert acc.item() == pytest.approx(hits / (2 * b))


def test_nt_xent_perfect_views_have_low_loss():
    z = torch.eye(4) * 3
    loss, acc = nt_xent(z, z.clone(), 0.1)
    assert acc.item() == 1.0 and loss.item() < 1e-3
    with pytest.raises(ValueError, match="temperature"):
        nt_xent(z, z, 0.0)


def test_exemplar_loss_matches_loop():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 9, generator=g)
    classes = torch.tensor([0, 3, 8, 3, 1, 5])
    loss, acc = exemplar_loss(logits, classes)
    ref = 0.0
    for row, c in zip(logits.tolist(), classes.tolist()):
        ref += -(row[c] - math.log(sum(math.exp(v) for v in row)))
    assert loss.item() == pytest.approx(ref / 6, rel=1e-6)
    expected = np.mean([int(np.argmax(r) == c) for r, c in zip(logits.tolist(), classes.tolist())])
    assert acc.item() == pytest.approx(expected)


# ------------------------------------------------------------------------------------------------
# Augmentation ops
# ------------------------------------------------------------------------------------------------

def _images(b=4, h=24, w=30, seed=0):
    return torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("ops", [aug.OPS, ("crop",), ("color", "grayscale"), ("blur", "noise", "cutout"), ()])
def test_augment_shapes_ranges_and_determinism(ops):
    x = _images()
    cfg = aug.AugmentConfig(ops=ops, size=16, rotation_p=1.0)
    a = aug.augment(x, cfg, torch.Generator().manual_seed(5))
    b = aug.augment(x, cfg, torch.Generator().manual_seed(5))
    c = aug.augment(x, cfg, torch.Generator().manual_seed(6))
    assert a.shape == (4, 3, 16, 16) and a.dtype == torch.float32
    assert a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b)
    if ops:
        assert not torch.equal(a, c)


def test_dropping_an_op_leaves_the_other_draws_alone():
    x = _images()
    full = aug.AugmentConfig(ops=("crop", "flip", "color", "blur"), size=16)
    # a disabled op and an op with probability 0 give the same batch: no draw depends on the op list
    a = aug.augment(x, full.without("color"), torch.Generator().manual_seed(3))
    b = aug.augment(x, full.replace(color_p=0.0), torch.Generator().manual_seed(3))
    assert torch.allclose(a, b, atol=1e-6)
    with pytest.raises(ValueError, match="not among"):
        full.without("noise")


def test_augment_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown augmentation 'sharpen'"):
        aug.AugmentConfig(ops=("crop", "sharpen"))
    with pytest.raises(ValueError, match="uint8"):
        aug.augment(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), aug.AugmentConfig(size=8))


def test_identity_geometry_and_flip_are_exact():
    x = _images(2, 16, 16)
    same = aug.augment(x, aug.AugmentConfig(ops=(), size=16), torch.Generator().manual_seed(0))
    assert torch.allclose(same, x, atol=1e-5)
    flipped = aug.augment(x, aug.AugmentConfig(ops=("flip",), size=16, flip_p=1.0), torch.Generator().manual_seed(0))
    assert torch.allclose(flipped, x.flip(-1), atol=1e-5)


def test_rotation_by_90_degrees_is_rot90():
    x = _images(2, 12, 12)
    out = aug.affine_sample(x, aug.rotation_theta(torch.tensor([90.0, 90.0])), 12)
    assert torch.allclose(out, torch.rot90(x, 1, dims=(2, 3)), atol=1e-5)


def test_resized_crop_boxes_inside_image_with_requested_area():
    theta = aug.resized_crop_theta(500, 40, 60, (0.2, 0.6), (0.75, 1.333), torch.Generator().manual_seed(0))
    w, h = theta[:, 0, 0], theta[:, 1, 1]               # box size as a fraction of the image
    left, top = theta[:, 0, 2] - w, theta[:, 1, 2] - h   # box edges in [-1, 1] coordinates
    assert (left >= -1 - 1e-9).all() and (left + 2 * w <= 1 + 1e-9).all()
    assert (top >= -1 - 1e-9).all() and (top + 2 * h <= 1 + 1e-9).all()
    area = (w * h).numpy()
    assert area.min() >= 0.2 - 1e-9 and area.max() <= 0.6 + 1e-9


def test_colour_ops_match_formulas():
    x = _images(3, 5, 6)
    f = torch.tensor([0.5, 1.3, 0.0])
    y = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    assert torch.allclose(aug.grayscale(x), y[:, None].expand(-1, 3, -1, -1), atol=1e-6)
    assert torch.allclose(aug.adjust_brightness(x, f), (x * f.view(-1, 1, 1, 1)).clamp(0, 1))
    mean = y.mean(dim=(1, 2)).view(-1, 1, 1, 1)
    assert torch.allclose(aug.adjust_contrast(x, f), (f.view(-1, 1, 1, 1) * (x - mean) + mean).clamp(0, 1), atol=1e-6)
    sat = aug.adjust_saturation(x, torch.zeros(3))
    assert torch.allclose(sat, aug.grayscale(x), atol=1e-6)


def test_hsv_matches_colorsys():
    x = _images(2, 4, 5, seed=3)
    hsv = aug.rgb_to_hsv(x)
    for b in range(2):
        for i in range(4):
            for j in range(5):
                ref = colorsys.rgb_to_hsv(*x[b, :, i, j].tolist())
                assert hsv[b, :, i, j].tolist() == pytest.approx(list(ref), abs=1e-5)
    assert torch.allclose(aug.hsv_to_rgb(hsv), x, atol=1e-5)
    # a hue turn of one third maps red to green
    red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    assert aug.adjust_hue(red, torch.tensor([1 / 3])).flatten().tolist() == pytest.approx([0, 1, 0], abs=1e-5)


def test_color_jitter_applies_each_op_once_in_the_given_order():
    x = _images(2, 4, 4)
    factors = torch.tensor([[0.5, 1.5, 0.2, 0.1], [1.2, 0.7, 1.4, -0.2]])
    order = torch.tensor([[3, 0, 2, 1], [1, 2, 0, 3]])
    ops = [aug.adjust_brightness, aug.adjust_contrast, aug.adjust_saturation, aug.adjust_hue]
    out = aug.color_jitter(x, factors, order)
    for b in range(2):
        ref = x[b:b + 1]
        for j in order[b].tolist():
            ref = ops[j](ref, factors[b:b + 1, j])
        assert torch.allclose(out[b:b + 1], ref, atol=1e-5)


def test_gaussian_blur_matches_loop():
    x = _images(2, 7, 8, seed=4)
    sigma = torch.tensor([0.8, 1.7])
    out = aug.gaussian_blur(x, sigma, 5)
    xn = x.numpy().astype(np.float64)
    for b in range(2):
        k = np.exp(-(np.arange(5) - 2) ** 2 / (2 * sigma[b].item() ** 2))
        k /= k.sum()
        k2 = np.outer(k, k)
        padded = np.pad(xn[b], ((0, 0), (2, 2), (2, 2)), mode="reflect")
        for c in range(3):
            for i in range(7):
                for j in range(8):
                    ref = (padded[c, i:i + 5, j:j + 5] * k2).sum()
                    assert out[b, c, i, j].item() == pytest.approx(ref, abs=1e-5)


def test_cutout_fills_a_square():
    x = torch.zeros(1, 3, 20, 20)
    out = aug.cutout(x, torch.tensor([[10.0, 10.0]], dtype=torch.float64), 6, 0.5)
    assert (out[0, 0] == 0.5).sum().item() == 36
    edge = aug.cutout(x, torch.tensor([[0.0, 0.0]], dtype=torch.float64), 6, 1.0)   # partly outside
    assert (edge[0, 0] == 1.0).sum().item() == 9


# ------------------------------------------------------------------------------------------------
# Colour: Lab, k-means, attention copy
# ------------------------------------------------------------------------------------------------

def _lab_reference(rgb):
    """The CIE formulas written out for one colour."""
    def lin(c):
        return ((c + 0.055) / 1.055) ** 2.4 if c > 0.04045 else c / 12.92
    r, g, b = (lin(c) for c in rgb)
    X = (0.412453 * r + 0.357580 * g + 0.180423 * b) / 0.95047
    Y = 0.212671 * r + 0.715160 * g + 0.072169 * b
    Z = (0.019334 * r + 0.119193 * g + 0.950227 * b) / 1.08883

    def f(t):
        return t ** (1 / 3) if t > (6 / 29) ** 3 else t / (3 * (6 / 29) ** 2) + 4 / 29
    return [116 * f(Y) - 16, 500 * (f(X) - f(Y)), 200 * (f(Y) - f(Z))]


def test_lab_matches_formula_and_skimage_and_round_trips():
    from skimage.color import rgb2lab

    rng = np.random.default_rng(0)
    colours = np.concatenate([rng.random((50, 3)), np.eye(3), [[0, 0, 0], [1, 1, 1], [0.02, 0.01, 0.03]]])
    lab = rgb_to_lab(colours, channel_dim=-1)
    for c, l in zip(colours, lab):
        assert list(l) == pytest.approx(_lab_reference(c), abs=1e-6)
    assert np.allclose(lab, rgb2lab(colours[None])[0], atol=1e-3)
    assert np.allclose(lab[-2], [100, 0, 0], atol=1e-2)      # white: L = 100, a = b = 0
    assert np.allclose(lab_to_rgb(lab, channel_dim=-1), colours, atol=1e-6)
    t = torch.from_numpy(colours.T.reshape(1, 3, -1, 1))
    assert torch.allclose(rgb_to_lab(t)[0, :, :, 0].T, torch.from_numpy(lab), atol=1e-6)


def test_kmeans_recovers_distinct_colours_and_assignment_is_nearest():
    palette = np.array([[255, 0, 0], [0, 160, 0], [0, 0, 255], [240, 220, 20]], np.uint8)
    frames = palette[np.random.default_rng(1).integers(4, size=(3, 16, 16))]
    centres = fit_colour_clusters(frames, clusters=4, pixels=500, seed=0)
    expected = rgb_to_lab(palette / 255.0, channel_dim=-1)[:, 1:]
    assert np.allclose(np.sort(centres, axis=0), np.sort(expected, axis=0), atol=1e-3)
    ab = torch.randn(2, 2, 3, 5) * 40
    ids = quantize_ab(ab, torch.from_numpy(centres))
    for n in range(2):
        for i in range(3):
            for j in range(5):
                d = [((ab[n, :, i, j].numpy() - c) ** 2).sum() for c in centres]
                assert ids[n, i, j].item() == int(np.argmin(d))
    with pytest.raises(ValueError, match="distinct colours"):
        fit_colour_clusters(frames, clusters=5, pixels=500)


def test_attention_copy_recovers_reference_colours_when_reference_is_target():
    n, k = 12, 5
    ids = torch.randint(k, (1, n), generator=torch.Generator().manual_seed(0))
    labels = torch.nn.functional.one_hot(ids, k).float()
    feats = torch.eye(n).unsqueeze(0) * 10          # identity-like: each location matches only itself
    pred = attention_copy(feats, feats, labels, temperature=0.1)
    assert torch.equal(pred.argmax(-1), ids)
    assert torch.allclose(pred, labels, atol=1e-6)
    loss, acc = colorization_loss(pred, ids)
    assert acc.item() == 1.0 and loss.item() < 1e-5


def test_attention_copy_matches_loop():
    g = torch.Generator().manual_seed(2)
    ref, tgt, lab = torch.randn(2, 6, 3, generator=g), torch.randn(2, 4, 3, generator=g), torch.rand(2, 6, 5, generator=g)
    out = attention_copy(ref, tgt, lab, temperature=0.7)
    for b in range(2):
        for q in range(4):
            s = [math.exp(float(tgt[b, q] @ ref[b, i]) / 0.7) for i in range(6)]
            expect = sum(s[i] / sum(s) * lab[b, i] for i in range(6))
            assert torch.allclose(out[b, q], expect, atol=1e-5)


def test_gray_input_folds_exactly_into_the_first_convolution():
    model = build_model(baseline_config(0.125, 16, head_depth=0), 0)
    model.train()
    model.encoder(torch.randn(4, 3, 32, 32))     # non-trivial BatchNorm running statistics
    model.eval()
    x = torch.rand(2, 3, 40, 48, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = model.features(model.normalize_frames(gray_input(x)))
        fold_gray_input(model)
        after = model.features(model.normalize_frames(x))
    assert torch.allclose(before, after, atol=1e-4 * before.abs().max().item())


# ------------------------------------------------------------------------------------------------
# Training and checkpoints
# ------------------------------------------------------------------------------------------------

def _pool(n=6, size=40, seed=0):
    frames = np.random.default_rng(seed).integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
    return FramePool(frames)


def test_seed_patches_prefer_gradients():
    frames = np.zeros((1, 40, 40, 3), np.uint8)
    frames[0, 20:30, 24:34] = np.random.default_rng(0).integers(0, 256, (10, 10, 3))   # texture in one corner
    seeds = sample_seed_patches(FramePool(frames), 8, 12, torch.Generator().manual_seed(0))
    assert seeds.shape == (8, 3, 12, 12)
    # uniform placement would overlap the textured tenth of the frame about 40 % of the time
    assert (seeds.flatten(1).std(1) > 0).float().mean() >= 0.75
    e = gradient_energy(torch.ones(1, 3, 10, 10), 4)
    assert e.shape == (1, 7, 7) and e.abs().max() == 0


def test_simclr_and_exemplar_train_and_checkpoint_loads_like_crw(tmp_path):
    from selfsup.crw import load_checkpoint

    pool = _pool()
    model = build_model(baseline_config(0.125, 16), 0)
    cfg = SimCLRConfig(batch_size=4, temperature=0.5, augment=aug.AugmentConfig(size=16),
                       optim=OptimConfig(steps=2, lr=1e-3, log_every=1))
    history = train_simclr(model, pool, cfg)
    assert [r["step"] for r in history.rows] == [1, 2] and all(np.isfinite(r["loss"]) for r in history.rows)
    path = save_baseline(model, tmp_path / "simclr.pt", "simclr", cfg.to_dict())
    assert baseline_info(path)["method"] == "simclr"
    loaded = load_checkpoint(path, propagation_only=True)
    frames = torch.randn(1, 3, 24, 40)
    feats = loaded.features(frames)
    assert feats.shape == (1, model.feature_channels, 3, 5)
    assert torch.allclose(feats, model.features(frames), atol=1e-6)

    ex = build_model(baseline_config(0.125, 5), 0)
    ecfg = ExemplarConfig(classes=5, seed_size=24, batch_size=6, augment=aug.AugmentConfig(ops=("crop",), size=16),
                          optim=OptimConfig(steps=2, log_every=2))
    history = train_exemplar(ex, pool, ecfg)
    assert len(history.rows) == 1 and np.isfinite(history.final["loss"])
    with pytest.raises(ValueError, match="one output per surrogate class"):
        train_exemplar(build_model(baseline_config(0.125, 7), 0), pool, ecfg)
    with pytest.raises(ValueError, match="unknown method"):
        save_baseline(ex, tmp_path / "x.pt", "moco", {})


def test_colorization_trains_on_clips():
    rng = np.random.default_rng(0)
    clips = [rng.integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8) for _ in range(3)]
    centres = fit_colour_clusters(np.stack(clips), clusters=4, pixels=2000)
    model = build_model(baseline_config(0.125, 8, head_depth=0), 0)
    cfg = ColorizationConfig(clusters=4, frame_size=32, batch_size=2, optim=OptimConfig(steps=2, log_every=1))
    history = train_colorization(model, clips, centres, cfg)
    assert len(history.rows) == 2
    assert all(np.isfinite(r["loss"]) and 0 <= r["accuracy"] <= 1 for r in history.rows)


def test_optim_schedule_warms_up_and_decays():
    cfg = OptimConfig(steps=100, lr=1.0, warmup=0.1)
    assert cfg.lr_at(0) == pytest.approx(0.1)
    assert cfg.lr_at(9) == pytest.approx(1.0)
    assert cfg.lr_at(10) == pytest.approx(1.0)
    assert cfg.lr_at(55) == pytest.approx(0.5)
    assert cfg.lr_at(99) < 0.01


# ------------------------------------------------------------------------------------------------
# Retrieval
# ------------------------------------------------------------------------------------------------

def test_precision_at_k_formula():
    assert precision_at_k([True, False, True, True], 1) == 1.0
    assert precision_at_k([True, False, True, True], 2) == 0.5
    assert precision_at_k([True, False, True, True], 4) == 0.75
    assert precision_at_k([True, True], 4) == 0.5          # missing places are misses
    rel = np.array([False, True, True, False])
    assert mean_precision_at_k([np.array([1, 0, 2, 3]), np.array([0, 3, 1, 2])], [rel, rel], 2) == pytest.approx(0.25)
    with pytest.raises(ValueError):
        precision_at_k([True], 0)


def _clusters(seed=0, dim=20):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(4, dim)) * 3
    labels = np.repeat(np.arange(4), 12)
    x = centres[labels] + rng.normal(size=(48, dim)) * 0.3
    return x / np.linalg.norm(x, axis=1, keepdims=True), labels


@pytest.mark.parametrize("method", ["esvm", "cosine"])
def test_ranking_finds_the_query_cluster(method):
    x, labels = _clusters()
    query, collection, col_labels = x[0], x[1:], labels[1:]
    order, scores = rank_esvm(query, collection) if method == "esvm" else rank_cosine(query, collection)
    assert (col_labels[order[:11]] == 0).all()               # the 11 other members come first
    assert scores[order[0]] >= scores[order[-1]]
    assert mean_precision_at_k([order], [col_labels == 0], 5) == 1.0


def test_exemplar_svm_separates_and_weights_positives():
    x, labels = _clusters(1)
    w, b = exemplar_svm(x[labels == 0][:3], x[labels != 0])
    scores = x @ w + b
    assert scores[labels == 0].min() > scores[labels != 0].max()     # the whole cluster ranks first
    with pytest.raises(ValueError, match="at least one positive"):
        exemplar_svm(np.zeros((0, 20)), x)


def test_collection_cache_hits_and_invalidates(tmp_path):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((10, 10, 3), 60 * i, np.uint8)).save(folder / f"{i}.png")
    calls = []

    def extractor(x):
        calls.append(len(x))
        return torch.nn.functional.avg_pool2d(x, 8, ceil_mode=True)

    cfg = DescriptorConfig(size=16, grid=1)
    files, d1, cached = encode_collection(extractor, folder, model_id="m", config=cfg, cache_dir=tmp_path / "c")
    assert not cached and d1.shape == (3, 3) and [f.name for f in files] == ["0.png", "1.png", "2.png"]
    _, d2, cached = encode_collection(extractor, folder, model_id="m", config=cfg, cache_dir=tmp_path / "c")
    assert cached and np.array_equal(d1, d2) and calls == [3]
    _, _, cached = encode_collection(extractor, folder, model_id="other", config=cfg, cache_dir=tmp_path / "c")
    assert not cached
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(folder / "3.png")
    files, d3, cached = encode_collection(extractor, folder, model_id="m", config=cfg, cache_dir=tmp_path / "c")
    assert not cached and len(d3) == 4


# ------------------------------------------------------------------------------------------------
# The lecture's tasks and table
# ------------------------------------------------------------------------------------------------

def test_probe_tasks_and_linear_probe():
    x = _images(3, 8, 8)
    ones = torch.ones(4, 3, 9, 9)
    bars = grating_task(ones, np.array([0, 1, 2, 3]), 4, period=4.0)
    assert torch.allclose(bars[0], bars[0][:, :1, :].expand_as(bars[0]))          # 0°: constant down columns
    assert torch.allclose(bars[2], bars[2][:, :, :1].expand_as(bars[2]))          # 90°: constant along rows
    assert torch.allclose(bars[1].flip(-1), bars[3], atol=1e-6)                   # a flip swaps 45° and 135°
    assert not torch.allclose(bars[1], bars[3], atol=1e-3)
    assert bars.min() >= 0.35 - 1e-6 and bars.max() <= 1.0
    tinted = tint_task(x, np.array([0, 2, 4]), 6)
    hue = aug.rgb_to_hsv(tinted)[:, 0]
    bright = tinted.amax(1) > 0.05
    for i, h in enumerate([0, 2 / 6, 4 / 6]):
        assert torch.allclose(hue[i][bright[i]], torch.tensor(float(h)), atol=1e-4)
    train, test = split_videos(8, 0.25, 0)
    assert len(test) == 2 and not set(train) & set(test) and len(train) + len(test) == 8
    rng = np.random.default_rng(0)
    feats = np.concatenate([rng.normal(0, 1, (20, 4)), rng.normal(6, 1, (20, 4))])
    y = np.repeat([0, 1], 20)
    assert linear_probe(feats, y, feats, y) == 100.0


def test_render_table_lists_every_model_and_ablation_row():
    metrics = {"settings": {"width": 0.25, "videos": 1, "colours": 6, "top_k": [1, 5]},
               "chance": {"orientation": 25.0, "colour": 100 / 6},
               "retrieval": {"queries": 3, "collection": 9},
               "models": {"pixels": {"width": None, "propagation": {"davis": {"J&F-Mean": 0.5, "J-Mean": 0.4, "F-Mean": 0.6}},
                                     "probe": {"orientation": 25.0, "colour": 90.0},
                                     "retrieval": {"esvm": {"P@1": 50.0, "P@5": 40.0},
                                                   "cosine": {"P@1": 60.0, "P@5": 30.0}}},
                          "simclr": {"width": 0.125, "propagation": {"vip": {"mIoU": 12.5}}, "probe": {},
                                     "training": {"steps": 3, "loss": 1.5, "accuracy": 0.5, "seconds": 2.0}}},
               "ablation": {"all": {"propagation": {"davis": {"J&F-Mean": 0.7}}, "training": {"loss": 2.0}},
                            "− blur": {"probe": {"colour": 33.0}}}}
    text = render_table(metrics)
    assert "| raw pixels (stride-8 average) | – | 50.0 | 40.0 | 60.0 | – | – | – |" in text
    assert "| SimCLR (NT-Xent, 2 views) | 0.125 | – | – | – | – | – | 12.5 |" in text
    assert "| raw pixels (stride-8 average) | 50.0 | 40.0 | 60.0 | 30.0 |" in text
    assert "| − blur | – | – | 33.0 | – | – | – |" in text
    assert "| all | 70.0 |" in text
    assert identity_of("a/seq-1__obj2__00005.png") == "seq-1__obj2"


def test_params_section_validates(tmp_path):
    from selfsup.config import ParamsError, load_params

    path = tmp_path / "params.yaml"
    path.write_text("baselines:\n  evaluate:\n    sets: [davis]\n    ablation_sets: [vip]\n")
    with pytest.raises(ParamsError, match="ablation_sets"):
        load_params(path)
    path.write_text("baselines:\n  augmentations: [crop, sharpen]\n")
    with pytest.raises(ParamsError, match="sharpen"):
        load_params(path)


def test_propagation_crops_and_retrieval_on_a_tiny_davis(tmp_path):
    from selfsup.baselines.lecture import LectureConfig, propagation_metrics, retrieval_metrics, write_object_crops
    from selfsup.propagate import PixelFeatures

    from tiny_davis import write_davis

    root = write_davis(tmp_path / "data", sequences=2, n_frames=6)
    pixels = PixelFeatures(8)
    scores = propagation_metrics(pixels, root, tmp_path / "out", ["davis"], videos=1,
                                 overrides={"context": 2, "radius": 3.0})
    assert set(scores["davis"]) == {"J&F-Mean", "J-Mean", "F-Mean"}
    assert 0 <= scores["davis"]["J&F-Mean"] <= 1
    assert sorted(p.name for p in (tmp_path / "out" / "davis").iterdir()) == ["seq0"]     # the first video only

    cfg = LectureConfig(retrieval_per_object=3, retrieval_min_pixels=20, retrieval_size=16, esvm_jitter=2, grid=1)
    rset = write_object_crops(root / "DAVIS", tmp_path / "crops", cfg)
    assert [identity_of(q) for q in rset.queries] == ["seq0__obj1", "seq1__obj1", "seq1__obj2"]
    assert rset.identities == {"seq0__obj1": 2, "seq1__obj1": 2, "seq1__obj2": 2}
    assert len(list(rset.collection.glob("*.png"))) == 6
    result = retrieval_metrics(pixels, rset, cfg, model_id="pixels")
    assert set(result) == {"esvm", "cosine"} and set(result["cosine"]) == {"P@1", "P@5"}
    # the cosine numbers, recomputed by brute force from the crops on disk
    from selfsup.baselines.retrieval import describe, read_images

    files = sorted(rset.collection.glob("*.png"))
    col = describe(pixels, read_images(files, 16), 1)
    hits1, hits5 = [], []
    for q in rset.queries:
        d = describe(pixels, read_images([q], 16), 1)[0]
        sims = [float(np.dot(d, c)) for c in col]
        ranked = sorted(range(len(files)), key=lambda i: -sims[i])
        same = [identity_of(files[i]) == identity_of(q) for i in ranked]
        hits1.append(sum(same[:1]) / 1)
        hits5.append(sum(same[:5]) / 5)
    assert result["cosine"]["P@1"] == pytest.approx(100 * np.mean(hits1))
    assert result["cosine"]["P@5"] == pytest.approx(100 * np.mean(hits5))
    assert result["cosine"]["P@5"] <= 100.0 * 2 / 5 + 1e-9               # only 2 matches per query exist


def test_stage_keeps_only_checkpoints_trained_with_the_same_settings(tmp_path):
    from stages.baselines import _finished

    model = build_model(baseline_config(0.125, 8), 0)
    settings = {"batch_size": 4, "augment": {"ops": ["crop"]}, "data": {"frames": 10}}
    path = save_baseline(model, tmp_path / "m.pt", "simclr", settings, training={"steps": 2, "loss": 1.0},
                         history=[{"step": 2, "loss": 1.0}])
    done = _finished(path, "simclr", settings)
    assert done == {"training": {"steps": 2, "loss": 1.0}, "history": [{"step": 2, "loss": 1.0}]}
    assert _finished(path, "simclr", {**settings, "batch_size": 8}) is None
    assert _finished(path, "exemplar", settings) is None
    assert _finished(tmp_path / "missing.pt", "simclr", settings) is None
    (tmp_path / "bad.pt").write_bytes(b"truncated")
    assert _finished(tmp_path / "bad.pt", "simclr", settings) is None
