"""CRW encoder, augmentation and checkpoints (own, official and torchvision layouts)."""
import argparse
import math

import pytest
import torch

from selfsup.crw import (CIFAR_MEAN, CRW, CRWConfig, CheckpointError, IMAGENET_MEAN, load_checkpoint,
                         save_checkpoint)
from selfsup.crw import augment
from selfsup.crw.encoder import ResNetEncoder

SMALL = CRWConfig(width=0.125, frame_size=32, patch_size=16, patch_stride=8, bn_group_size=0)


@pytest.fixture(autouse=True)
def one_thread():
    """Small tensors on a shared 2-core machine: one intra-op thread avoids OpenMP oversubscription."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def small_model(seed=0, **changes):
    torch.manual_seed(seed)
    return CRW(SMALL.replace(**changes))


# ----------------------------------------------------------------------------------- encoder

def test_paper_sizes_and_param_counts():
    model = CRW()
    enc = sum(p.numel() for p in model.encoder.parameters())
    head = sum(p.numel() for p in model.head.parameters())
    assert enc == 11_176_512 and head == 65_664
    assert model.config.nodes == 49


@pytest.mark.parametrize("h,w", [(64, 64), (61, 93), (33, 8 * 5 + 1)])
def test_features_shape_stride8(h, w):
    model = small_model()
    f = model.features(torch.randn(2, 3, h, w))
    assert f.shape == (2, model.feature_channels, math.ceil(h / 8), math.ceil(w / 8))
    assert model.training          # features() restores the mode


def test_features_eval_mode_is_deterministic_per_frame():
    """Eval mode: BatchNorm uses running statistics, so a frame's features do not depend on its batch."""
    model = small_model()
    x = torch.randn(3, 3, 24, 24)
    alone = model.features(x[:1])
    together = model.features(x)[:1]
    assert torch.allclose(alone, together, atol=1e-5)


def test_encoder_layout_matches_torchvision_names_and_strides():
    enc = ResNetEncoder(width=1.0)
    keys = set(enc.state_dict())
    for k in ("conv1.weight", "bn1.running_mean", "layer1.0.conv1.weight", "layer1.1.bn2.num_batches_tracked",
              "layer2.0.downsample.0.weight", "layer3.0.downsample.1.weight", "layer4.1.conv2.weight"):
        assert k in keys, k
    assert not any(k.startswith(("fc.", "avgpool")) for k in keys)
    assert "layer1.0.downsample.0.weight" not in keys
    for name, m in enc.named_modules():
        if isinstance(m, torch.nn.Conv2d):
            if name.startswith(("layer3", "layer4")):
                assert m.stride == (1, 1), name
            if m.padding != (0, 0):
                assert m.padding_mode == "reflect", name
            else:
                assert m.kernel_size == (1, 1), name
    assert all(m.padding_mode == "zeros" for m in ResNetEncoder(0.25, "zeros").modules()
               if isinstance(m, torch.nn.Conv2d))


def test_width_multiplier():
    model = CRW(CRWConfig(width=0.25))
    assert model.encoder.channels == (16, 32, 64, 128)
    assert model.head[0].in_features == 128
    model = CRW(CRWConfig(width=0.25, head_depth=2, embed_dim=32))
    assert [type(m).__name__ for m in model.head] == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]
    assert model.head[-1].out_features == 32


# ------------------------------------------------------------------------------ augmentation

def ref_crop_resize(img, box, size):
    """Bilinear crop-and-resize with half-pixel centres, one output pixel at a time."""
    c, H, W = img.shape
    y0, x0, h, w = [float(v) for v in box]
    out = torch.zeros(c, size, size, dtype=torch.float64)
    for i in range(size):
        for j in range(size):
            y = y0 + (i + 0.5) * h / size - 0.5
            x = x0 + (j + 0.5) * w / size - 0.5
            y = min(max(y, 0.0), H - 1.0)
            x = min(max(x, 0.0), W - 1.0)
            ya, xa = int(math.floor(y)), int(math.floor(x))
            yb, xb = min(ya + 1, H - 1), min(xa + 1, W - 1)
            dy, dx = y - ya, x - xa
            for ch in range(c):
                out[ch, i, j] = ((1 - dy) * (1 - dx) * img[ch, ya, xa] + (1 - dy) * dx * img[ch, ya, xb]
                                 + dy * (1 - dx) * img[ch, yb, xa] + dy * dx * img[ch, yb, xb])
    return out


def test_crop_resize_matches_loop():
    g = torch.Generator().manual_seed(0)
    imgs = torch.rand(3, 2, 9, 11, generator=g)
    boxes = torch.tensor([[0.0, 0.0, 9.0, 11.0], [1.3, 2.7, 5.5, 6.25], [3.0, 0.5, 4.0, 8.0]])
    out = augment.crop_resize(imgs, boxes, 6)
    for i in range(3):
        assert torch.allclose(out[i].double(), ref_crop_resize(imgs[i].double(), boxes[i], 6), atol=1e-5)


def test_jitter_patches_equals_per_patch_crops():
    g = torch.Generator().manual_seed(1)
    frames = torch.rand(2, 3, 20, 20, generator=g)
    boxes = torch.tensor([[[0.0, 0.0, 8.0, 8.0], [4.5, 6.0, 7.0, 5.0], [12.0, 12.0, 8.0, 8.0]],
                          [[1.0, 2.0, 6.0, 7.0], [0.0, 10.0, 8.0, 8.0], [11.2, 3.3, 5.1, 6.9]]])
    out = augment.jitter_patches(frames, boxes, 5)
    assert out.shape == (2, 3, 3, 5, 5)
    for m in range(2):
        for n in range(3):
            ref = ref_crop_resize(frames[m].double(), boxes[m, n], 5)
            assert torch.allclose(out[m, n].double(), ref, atol=1e-5)


def test_resized_crop_boxes_follow_the_ranges():
    g = torch.Generator().manual_seed(2)
    boxes = augment.sample_resized_crops(4000, 64, 64, (0.7, 0.9), (3 / 4, 4 / 3), g)
    y0, x0, h, w = boxes.double().unbind(1)
    area = h * w / 64 ** 2
    assert (area > 0.7 - 1e-5).all() and (area < 0.9 + 1e-5).all()
    assert ((w / h) > 0.75 - 1e-5).all() and ((w / h) < 4 / 3 + 1e-5).all()
    assert (y0 >= 0).all() and (x0 >= 0).all() and (y0 + h <= 64 + 1e-4).all() and (x0 + w <= 64 + 1e-4).all()
    assert y0.std() > 1 and x0.std() > 1           # positions vary
    # frame crops of a wide ratio range on a square: some attempts fail and retry, all boxes fit
    boxes = augment.sample_resized_crops(4000, 128, 128, (0.8, 0.95), (0.7, 1.3), g)
    assert (boxes[:, 2] <= 128 + 1e-4).all() and (boxes[:, 3] <= 128 + 1e-4).all()
    # a crop range that can never fit falls back to the centred full crop
    fallback = augment.sample_resized_crops(5, 10, 10, (2.0, 3.0), (1.0, 1.0), g)
    assert torch.allclose(fallback, torch.tensor([[0.0, 0.0, 10.0, 10.0]] * 5))


def test_patch_grid_and_make_patches():
    assert augment.grid_size(256, 64, 32) == 7
    grid = augment.grid_boxes(256, 64, 32)
    assert grid.shape == (49, 4) and grid[8].tolist() == [32.0, 32.0, 64.0, 64.0]  # row-major
    model = small_model()
    clips = torch.randint(0, 256, (2, 3, 40, 40, 3), dtype=torch.uint8)
    g = torch.Generator().manual_seed(0)
    frame_boxes, patch_boxes = model.sample_boxes(6, 40, 40, g)
    assert frame_boxes.shape == (6, 4) and patch_boxes.shape == (6, 9, 4)
    # every jittered patch lies inside its grid cell
    cells = augment.grid_boxes(32, 16, 8)
    assert (patch_boxes[..., :2] >= cells[:, :2] - 1e-4).all()
    assert (patch_boxes[..., :2] + patch_boxes[..., 2:] <= cells[:, :2] + 16 + 1e-4).all()
    patches = model.make_patches(clips, boxes=(frame_boxes, patch_boxes))
    assert patches.shape == (2, 3, 9, 3, 16, 16)
    # CIFAR normalisation at train: a constant grey clip maps to (v - mean) / std
    grey = torch.full((1, 3, 40, 40, 3), 128, dtype=torch.uint8)
    p = model.make_patches(grey, g)
    expect = (128 / 255 - CIFAR_MEAN[0]) / 0.2023
    assert torch.allclose(p[:, :, :, 0], torch.full_like(p[:, :, :, 0], expect), atol=1e-5)
    # ImageNet normalisation at test
    f = model.normalize_frames(torch.full((1, 3, 2, 2), 0.5))
    assert f[0, 0, 0, 0].item() == pytest.approx((0.5 - IMAGENET_MEAN[0]) / 0.229, rel=1e-6)


def test_embeddings_normalised_and_bn_groups():
    model = small_model()
    patches = torch.randn(4, 3, 9, 3, 16, 16)
    q = model.embed(patches)
    assert q.shape == (4, SMALL.embed_dim, 3, 9)
    assert torch.allclose(q.norm(dim=1), torch.ones(4, 3, 9), atol=1e-5)
    # BN groups of 2 clips == embedding each half separately
    grouped = small_model(bn_group_size=2).embed(patches)
    halves = torch.cat([model.embed(patches[:2]), model.embed(patches[2:])])
    assert torch.allclose(grouped, halves, atol=1e-5)
    assert not torch.allclose(grouped, q, atol=1e-3)
    loss, stats = model(patches)
    assert loss.ndim == 0 and set(stats) == {2}


# ---------------------------------------------------------------------------- checkpoints

def to_official(state, old_layout=False, prefix=""):
    """selfsup names -> the official names, written out independently of the library's mapping."""
    out = {}
    for k, v in state.items():
        if k.startswith("encoder."):
            name = "encoder.model." + k[len("encoder."):]
        elif k.startswith("head."):
            name = "selfsim_fc." + k[len("head."):]
        else:
            raise AssertionError(k)
        if old_layout and (name.endswith("conv1.weight") or name.endswith("conv2.weight")):
            name = name[:-len(".weight")] + ".1.weight"
        out[prefix + name] = v
    return out


def same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return set(sa) == set(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


def perturb_bn(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model


def test_own_round_trip(tmp_path):
    model = perturb_bn(small_model(head_depth=1, temperature=0.07))
    path = save_checkpoint(model, tmp_path / "c.pt", step=12, note="x")
    loaded = load_checkpoint(path)
    assert loaded.config == model.config and same_weights(model, loaded)
    assert not loaded.training
    x = torch.randn(1, 3, 24, 24)
    assert torch.equal(loaded.features(x), model.features(x))
    blob = torch.load(path, weights_only=True)
    assert blob["config"]["head_depth"] == 1 and blob["step"] == 12


@pytest.mark.parametrize("old_layout,prefix", [(False, ""), (True, ""), (False, "module.")])
def test_official_container_round_trip(tmp_path, old_layout, prefix):
    model = perturb_bn(small_model(width=0.25, head_depth=1))
    optimizer = torch.optim.Adam(model.parameters())
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [10, 20])
    args = argparse.Namespace(model_type="scratch", temp=0.05, dropout=0.1, clip_len=4,
                              patch_size=[64, 64, 3], data_path="/data/kinetics")
    path = tmp_path / "pretrained.pth"
    torch.save({"model": to_official(model.state_dict(), old_layout, prefix), "optimizer": optimizer.state_dict(),
                "lr_scheduler": scheduler.state_dict(), "epoch": 3, "args": args}, path)
    loaded = load_checkpoint(path)
    assert loaded.config.width == 0.25 and loaded.config.head_depth == 1 and loaded.config.embed_dim == 128
    assert loaded.config.padding_mode == "reflect"
    assert same_weights(model, loaded)
    x = torch.randn(2, 3, 32, 40)
    assert torch.equal(loaded.features(x), model.features(x))
    # propagation only: layer4 and head dropped from weights and model
    prop = load_checkpoint(path, propagation_only=True)
    assert prop.encoder.layer4 is None and prop.head is None
    assert torch.equal(prop.features(x), model.features(x))


def test_official_zero_padding_from_args(tmp_path):
    model = small_model(padding_mode="zeros")
    path = tmp_path / "zp.pth"
    torch.save({"model": to_official(model.state_dict()),
                "args": argparse.Namespace(model_type="scratch_zeropad")}, path)
    loaded = load_checkpoint(path)
    assert loaded.config.padding_mode == "zeros" and same_weights(model, loaded)


def test_torchvision_layout(tmp_path):
    enc = perturb_bn(ResNetEncoder(0.25, "zeros"))
    state = dict(enc.state_dict())
    state["fc.weight"] = torch.randn(1000, enc.out_channels)
    state["fc.bias"] = torch.randn(1000)
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    loaded = load_checkpoint(path)
    assert loaded.config.padding_mode == "zeros" and loaded.head is None and loaded.config.width == 0.25
    x = torch.randn(1, 3, 40, 48)
    assert torch.equal(loaded.features(x), enc.eval()(x, "layer3"))
    # old torchvision files carry no BatchNorm counters
    old = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    torch.save(old, path)
    assert torch.equal(load_checkpoint(path, propagation_only=True).features(x), enc(x, "layer3"))


def test_corrupt_files_named(tmp_path):
    model = small_model()
    good = save_checkpoint(model, tmp_path / "good.pt")
    data = good.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a checkpoint at all" * 20)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    for path in (truncated, garbage, empty):
        with pytest.raises(CheckpointError, match=str(path.name)) as err:
            load_checkpoint(path)
        assert "corrupt" in str(err.value)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")


def test_unsafe_pickle_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": small_model().state_dict(), "hook": argparse.ArgumentParser}, path)
    with pytest.raises(CheckpointError, match="evil.pt.*not allowed"):
        load_checkpoint(path)


def test_mismatched_checkpoints_named(tmp_path):
    model = small_model()
    state = to_official(model.state_dict())
    # a key missing and one unknown
    broken = dict(state)
    del broken["encoder.model.layer2.0.bn1.weight"]
    broken["encoder.model.extra.weight"] = torch.zeros(1)
    path = tmp_path / "mismatch.pth"
    torch.save({"model": broken}, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    msg = str(err.value)
    assert "mismatch.pth" in msg and "missing keys (1): encoder.layer2.0.bn1.weight" in msg
    assert "unexpected keys (1): encoder.extra.weight" in msg
    # a wrong shape (own layout, config says width 0.125 but weights are wider)
    own = save_checkpoint(model, tmp_path / "own.pt")
    blob = torch.load(own, weights_only=True)
    blob["model"]["encoder.layer1.0.conv1.weight"] = torch.zeros(9, 8, 3, 3)
    torch.save(blob, own)
    with pytest.raises(CheckpointError, match=r"own.pt.*shape mismatches \(1\): encoder.layer1.0.conv1.weight"):
        load_checkpoint(own)
    # a container without weights
    torch.save({"epoch": 3}, tmp_path / "empty_container.pt")
    with pytest.raises(CheckpointError, match="empty_container.pt: no model weights"):
        load_checkpoint(tmp_path / "empty_container.pt")
