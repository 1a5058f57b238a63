"""FID / KID: the distance against closed forms and the protocol's worked examples, the image
pipeline against a direct computation, KID against a loop, the FID network's layout, the
missing-weights error."""
import argparse
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from selfsup.metrics import fid
from selfsup.metrics.fid import (FID_WEIGHTS_NAME, FID_WEIGHTS_URL, FIDInceptionV3, compute_fid,
                                 feature_statistics, fid_weights_path, frechet_distance,
                                 kernel_inception_distance, list_fid_images, load_fid_inception)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------------------------
# The distance
# ----------------------------------------------------------------------------------------------

def test_one_dimensional_closed_form():
    m1, v1, m2, v2 = 0.3, 2.0, -1.1, 0.5
    want = (m1 - m2) ** 2 + v1 + v2 - 2 * math.sqrt(v1 * v2)
    assert frechet_distance([m1], [[v1]], [m2], [[v2]]) == pytest.approx(want, abs=1e-12)


def test_commuting_covariances_closed_form():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    d1, d2 = rng.uniform(0.5, 3, 5), rng.uniform(0.5, 3, 5)
    s1, s2 = q @ np.diag(d1) @ q.T, q @ np.diag(d2) @ q.T
    mu1, mu2 = rng.standard_normal(5), rng.standard_normal(5)
    want = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(d1) - np.sqrt(d2)) ** 2)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(want, abs=1e-10)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-10)


def test_worked_examples():
    assert frechet_distance(np.zeros(2), np.diag([1.0, 4.0]), np.array([1.0, 2.0]), np.diag([4.0, 9.0])) == 7.0
    rng = np.random.default_rng(2020)
    x1 = rng.standard_normal((120, 8))
    x2 = rng.standard_normal((140, 8)) * 1.5 + 0.25
    got = frechet_distance(*feature_statistics(x1), *feature_statistics(x2))
    assert abs(got - 2.8837593778311543) < 1e-12
    rng = np.random.default_rng(7)
    y1 = rng.standard_normal((10, 16))
    y2 = rng.standard_normal((12, 16)) + 0.1
    got = frechet_distance(*feature_statistics(y1), *feature_statistics(y2))
    # singular Σ (N < D): the Schur root agrees to a few 1e-9 (LAPACK rounding of the null-space
    # eigenvalues, whose roots are ~1e-8); the eigenvalue shortcut would be 5.8e-8 off
    assert abs(got - 14.629693210124518) < 1e-8
    assert abs(got - 14.629693267938965) > 3e-8


def test_statistics_use_n_minus_one():
    x = np.arange(12, dtype=np.float64).reshape(4, 3) ** 1.5
    mu, sigma = feature_statistics(x)
    centred = x - x.mean(0)
    np.testing.assert_allclose(sigma, centred.T @ centred / 3)
    np.testing.assert_allclose(mu, x.mean(0))


def test_non_finite_root_retries_with_offset(monkeypatch):
    calls = []
    real = fid._sqrtm

    def fake(a):
        calls.append(a.copy())
        return np.full_like(a, np.nan) if len(calls) == 1 else real(a)

    monkeypatch.setattr(fid, "_sqrtm", fake)
    s1, s2 = np.diag([1.0, 0.0]), np.diag([0.0, 2.0])
    got = frechet_distance(np.zeros(2), s1, np.zeros(2), s2)
    assert len(calls) == 2
    np.testing.assert_allclose(calls[1], (s1 + 1e-6 * np.eye(2)) @ (s2 + 1e-6 * np.eye(2)))
    want = 1.0 + 2.0 - 2 * np.trace(real((s1 + 1e-6 * np.eye(2)) @ (s2 + 1e-6 * np.eye(2))).real)
    assert got == pytest.approx(want, abs=1e-12)


def test_imaginary_component_tolerance(monkeypatch):
    monkeypatch.setattr(fid, "_sqrtm", lambda a: np.eye(2) * (1.0 + 2e-3j))
    with pytest.raises(ValueError, match="imaginary component"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.eye(2))
    monkeypatch.setattr(fid, "_sqrtm", lambda a: np.eye(2) * (1.0 + 5e-4j))
    assert frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.eye(2)) == pytest.approx(0.0)


def test_shape_errors():
    with pytest.raises(ValueError, match="different lengths"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


# ----------------------------------------------------------------------------------------------
# KID
# ----------------------------------------------------------------------------------------------

def test_kid_against_loop():
    rng = np.random.default_rng(1)
    f1, f2 = rng.standard_normal((9, 4)), rng.standard_normal((7, 4)) + 0.3
    mean, std = kernel_inception_distance(f1, f2, num_subsets=3, subset_size=5, seed=11)
    k = lambda a, b: (float(a @ b) / 4 + 1) ** 3
    draw = np.random.default_rng(11)
    values = []
    for _ in range(3):
        x = f1[draw.choice(9, 5, replace=False)]
        y = f2[draw.choice(7, 5, replace=False)]
        m = 5
        xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
        yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
        xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
        values.append(xx + yy - 2 * xy)
    assert mean == pytest.approx(np.mean(values), abs=1e-12)
    assert std == pytest.approx(np.std(values), abs=1e-12)
    a, b = rng.standard_normal((200, 4)), rng.standard_normal((200, 4))
    same, _ = kernel_inception_distance(a, b, num_subsets=5, subset_size=100)
    shifted, _ = kernel_inception_distance(a, b + 0.5, num_subsets=5, subset_size=100)
    assert abs(same) < 0.05 < shifted


# ----------------------------------------------------------------------------------------------
# Image pipeline with a stand-in network
# ----------------------------------------------------------------------------------------------

class StandIn(nn.Module):
    """A small seeded network: conv, ReLU, global average pool → 6 features."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.conv = nn.Conv2d(3, 6, 5, stride=4)

    def forward(self, x):
        return F.relu(self.conv(x)).mean(dim=(2, 3))


def write_images(folder, sizes, seed, ext="png"):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i, (h, w) in enumerate(sizes):
        arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(arr).save(folder / f"{i:02d}.{ext}")
    return folder


@pytest.fixture
def folders(tmp_path):
    real = write_images(tmp_path / "real", [(40, 40), (64, 48), (31, 57), (40, 40), (20, 30)], 0, "png")
    fake = write_images(tmp_path / "fake", [(32, 32)] * 4, 1, "jpg")
    # ignored: upper-case extension, non-image, sub-folder contents, other extension
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(real / "zz.PNG", format="PNG")
    (real / "notes.txt").write_text("x")
    write_images(real / "nested", [(8, 8)], 2)
    # a grey-scale image is converted to RGB
    Image.fromarray(np.full((30, 30), 77, np.uint8), mode="L").save(fake / "04.png")
    return real, fake


def test_listing_rules(folders):
    real, fake = folders
    assert [p.name for p in list_fid_images(real)] == ["00.png", "01.png", "02.png", "03.png", "04.png"]
    assert [p.name for p in list_fid_images(fake)] == ["00.jpg", "01.jpg", "02.jpg", "03.jpg", "04.png"]


def direct_features(folder, net, mode):
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in {".png", ".jpg"})
    feats = []
    for f in files:
        rgb = np.asarray(Image.open(f).convert("RGB"))
        if mode == "legacy":
            x = torch.from_numpy(rgb.astype(np.float32) / 255).permute(2, 0, 1)[None]
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        else:
            chans = [np.clip(np.asarray(Image.fromarray(rgb[:, :, c].astype(np.float32)).resize((299, 299), Image.BICUBIC)), 0, 255)
                     for c in range(3)]
            x = torch.from_numpy(np.stack(chans).astype(np.float32) / 255)[None]
        with torch.no_grad():
            feats.append(net(2 * x - 1).numpy().astype(np.float64)[0])
    return np.array(feats)


@pytest.mark.parametrize("mode", ["legacy", "clean"])
def test_pipeline_matches_direct_computation(folders, mode):
    real, fake = folders
    net = StandIn().eval()
    got = compute_fid(real, fake, extractor=net, mode=mode, batch_size=2, kid=True, kid_subsets=4,
                      kid_subset_size=3, progress=False)
    fr, ff = direct_features(real, net, mode), direct_features(fake, net, mode)
    m1, s1 = fr.mean(0), np.cov(fr, rowvar=False)
    m2, s2 = ff.mean(0), np.cov(ff, rowvar=False)
    assert got["fid"] == pytest.approx(frechet_distance(m1, s1, m2, s2), rel=1e-5, abs=1e-9)
    assert (got["n_real"], got["n_fake"], got["mode"]) == (5, 5, mode)
    assert got["kid"] == pytest.approx(kernel_inception_distance(fr, ff, 4, 3)[0], rel=1e-4, abs=1e-9)


def test_legacy_and_clean_resize_differ(folders):
    real, _ = folders
    a = fid.load_fid_image(real / "01.png", "legacy")
    b = fid.load_fid_image(real / "01.png", "clean")
    assert a.shape == b.shape == (3, 299, 299) and -1 <= float(a.min()) and float(a.max()) <= 1
    assert float((a - b).abs().max()) > 1e-3
    with pytest.raises(ValueError, match="legacy.*clean"):
        fid.load_fid_image(real / "01.png", "bicubic")


def test_stats_file_input_and_cli(folders, tmp_path, monkeypatch, capsys):
    real, fake = folders
    net = StandIn().eval()
    stats = {}
    direct = compute_fid(real, fake, extractor=net, progress=False, stats_out=stats)
    np.savez(tmp_path / "real.npz", mu=stats["real"][0], sigma=stats["real"][1])
    via_npz = compute_fid(tmp_path / "real.npz", fake, extractor=net, progress=False)
    assert via_npz["fid"] == pytest.approx(direct["fid"], abs=1e-12) and via_npz["n_real"] is None
    monkeypatch.setattr(fid, "load_fid_inception", lambda path=None, device="cpu": net)
    parser = argparse.ArgumentParser()
    fid.configure_cli(parser)
    args = parser.parse_args([str(real), str(fake), "--kid", "--device", "cpu", "--save-stats", str(tmp_path / "f.npz")])
    assert fid.main_cli(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["fid"] == pytest.approx(direct["fid"], rel=1e-9) and "kid" in out
    with np.load(tmp_path / "f.npz") as saved:
        np.testing.assert_allclose(saved["mu"], stats["fake"][0])


def test_empty_folder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images in"):
        list_fid_images(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="nope"):
        list_fid_images(tmp_path / "nope")


# ----------------------------------------------------------------------------------------------
# The FID network and its weights
# ----------------------------------------------------------------------------------------------

def test_fid_inception_layout():
    net = FIDInceptionV3()
    # torchvision's inception_v3 (27,161,264) without AuxLogits (3,326,696), fc with 1008 classes
    assert sum(p.numel() for p in net.parameters()) == 27_161_264 - 3_326_696 + 8 * 2048 + 8
    sd = net.state_dict()
    for key, shape in (("Conv2d_1a_3x3.conv.weight", (32, 3, 3, 3)), ("Conv2d_1a_3x3.bn.running_var", (32,)),
                       ("Mixed_5b.branch_pool.conv.weight", (32, 192, 1, 1)),
                       ("Mixed_6b.branch7x7dbl_5.conv.weight", (192, 128, 1, 7)),
                       ("Mixed_7c.branch3x3dbl_3b.conv.weight", (384, 384, 3, 1)), ("fc.weight", (1008, 2048))):
        assert tuple(sd[key].shape) == shape, key
    assert not any(k.startswith("AuxLogits") for k in sd) and not any(".conv.bias" in k for k in sd)
    assert net.Conv2d_1a_3x3.bn.eps == 1e-3
    assert net.Mixed_7b.pool == "avg" and net.Mixed_7c.pool == "max"


def test_average_pools_exclude_padding():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    y = fid._avg_pool_no_pad_count(x)
    assert float(y[0, 0, 0, 0]) == pytest.approx((0 + 1 + 4 + 5) / 4)  # corner: 4 real pixels
    assert float(y[0, 0, 1, 1]) == pytest.approx(float(x[0, 0, :3, :3].mean()))


def test_weights_load_strictly_from_a_path(tmp_path):
    path = tmp_path / FID_WEIGHTS_NAME
    torch.save(FIDInceptionV3().state_dict(), path)
    net = load_fid_inception(path)
    assert not net.training
    bad = FIDInceptionV3().state_dict()
    bad.pop("fc.bias")
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="bad.pth.*not the FID Inception weights"):
        load_fid_inception(tmp_path / "bad.pth")


def test_missing_weights_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("SELFSUP_FID_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as err:
        fid_weights_path()
    msg = str(err.value)
    assert FID_WEIGHTS_NAME in msg and FID_WEIGHTS_URL in msg and "selfsup download fid_inception" in msg
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in msg
    # the environment variable and the torch.hub cache are honoured
    target = tmp_path / "torch" / "hub" / "checkpoints" / FID_WEIGHTS_NAME
    target.parent.mkdir(parents=True)
    target.write_bytes(b"x")
    assert fid_weights_path() == target
    monkeypatch.setenv("SELFSUP_FID_WEIGHTS", str(tmp_path / "elsewhere.pth"))
    with pytest.raises(FileNotFoundError, match="elsewhere.pth"):
        fid_weights_path()
    with pytest.raises(FileNotFoundError, match="given.pth"):
        fid_weights_path(tmp_path / "given.pth")
