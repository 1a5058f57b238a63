"""Test-time training: rotation labels, deterministic shifts and shape images, joint training, TTT resets."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from selfsup.ttt import (ANGLES, SEVERITIES, SHIFTS, JointConfig, TTTConfig, TTTNet, corrupt, evaluate,
                         load_model, rotate, rotation_batch, save_model, shape_images, to_tensor, train_joint,
                         ttt_online, ttt_standard)
from selfsup.ttt.train import augment


def _reference_rotation(img: torch.Tensor, k: int) -> torch.Tensor:
    """Counter-clockwise rotation by k x 90 degrees written out index by index (C x N x N)."""
    c, n, _ = img.shape
    out = torch.empty_like(img)
    for i in range(n):
        for j in range(n):
            if k == 0:
                out[:, i, j] = img[:, i, j]
            elif k == 1:            # 90 ccw: the right column becomes the top row
                out[:, i, j] = img[:, j, n - 1 - i]
            elif k == 2:
                out[:, i, j] = img[:, n - 1 - i, n - 1 - j]
            else:                   # 270 ccw = 90 cw: the left column becomes the top row
                out[:, i, j] = img[:, n - 1 - j, i]
    return out


def test_rotation_labels_match_angles():
    x = torch.arange(4 * 2 * 5 * 5, dtype=torch.float32).view(4, 2, 5, 5)
    labels = torch.tensor([0, 1, 2, 3])
    out = rotate(x, labels)
    for i, k in enumerate(labels.tolist()):
        assert torch.equal(out[i], _reference_rotation(x[i], k))
        assert torch.equal(out[i], torch.rot90(x[i], k, dims=(-2, -1)))
    assert ANGLES == (0, 90, 180, 270)


def test_rotation_label_turns_the_top_where_the_angle_says():
    x = torch.zeros(2, 3, 8, 8)
    x[:, :, :4] = 1.0                                             # a bright top half ("sky")
    left = rotate(x, torch.ones(2, dtype=torch.long))             # 90 degrees counter-clockwise
    assert (left[:, :, :, :4] == 1).all() and (left[:, :, :, 4:] == 0).all()
    down = rotate(x, torch.full((2,), 2, dtype=torch.long))
    assert (down[:, :, 4:] == 1).all() and (down[:, :, :4] == 0).all()
    right = rotate(x, torch.full((2,), 3, dtype=torch.long))
    assert (right[:, :, :, 4:] == 1).all() and (right[:, :, :, :4] == 0).all()
    assert to_tensor(np.zeros((1, 4, 4, 3), np.uint8)).is_contiguous()   # GroupNorm's CPU backward
                                                                          # crashes on channels-last


def test_shape_scenes_have_textured_ground_below():
    images, _ = shape_images(20, 32, seed=3, split="test")
    x = images.astype(float).mean(-1)
    roughness = np.abs(np.diff(x, axis=2)).mean(2)                # per row
    assert (roughness[:, -5:].mean(1) > roughness[:, :5].mean(1)).mean() >= 0.9


def test_rotation_batch_modes():
    x = torch.randn(3, 3, 6, 6)
    rx, ry = rotation_batch(x, "expand")
    assert ry.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    for i in range(12):
        assert torch.equal(rx[i], torch.rot90(x[i % 3], int(ry[i]), dims=(-2, -1)))
    g = torch.Generator().manual_seed(0)
    rx, ry = rotation_batch(x, "rand", g)
    for i in range(3):
        assert torch.equal(rx[i], torch.rot90(x[i], int(ry[i]), dims=(-2, -1)))
    with pytest.raises(ValueError, match="square"):
        rotate(torch.zeros(1, 3, 4, 5), torch.zeros(1, dtype=torch.long))


def test_augment_crops_and_flips():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4) + 1
    g = torch.Generator().manual_seed(1)
    out = augment(x, g, pad=1)
    g = torch.Generator().manual_seed(1)
    offsets = torch.randint(0, 3, (2, 2), generator=g)
    flips = torch.rand(2, generator=g) < 0.5
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    for i in range(2):
        dy, dx = offsets[i].tolist()
        ref = padded[i, :, dy:dy + 4, dx:dx + 4]
        if flips[i]:
            ref = ref.flip(-1)
        assert torch.equal(out[i], ref)


@pytest.mark.parametrize("kind", sorted(SHIFTS))
def test_shifts_deterministic_by_seed(kind):
    images, _ = shape_images(3, 16, seed=0, split="test")
    a = corrupt(images, kind, 3, seed=4)
    assert a.shape == images.shape and a.dtype == np.uint8
    assert np.array_equal(a, corrupt(images, kind, 3, seed=4))
    # image i is shifted the same way alone or within its set
    assert np.array_equal(a[1:2], corrupt(images[1:2], kind, 3, seed=4, start=1))
    assert not np.array_equal(corrupt(images, kind, 5, seed=4), images)


def test_random_shifts_depend_on_seed_and_grow_with_severity():
    images = np.full((2, 16, 16, 3), 128, np.uint8)
    assert not np.array_equal(corrupt(images, "gaussian_noise", 5, seed=0), corrupt(images, "gaussian_noise", 5, seed=1))
    # mid-grey, no clipping: the noise std is the table's, in pixel units
    noisy = corrupt(np.full((1, 64, 64, 3), 128, np.uint8), "gaussian_noise", 5, seed=0).astype(float)
    assert noisy.std() == pytest.approx(SEVERITIES["gaussian_noise"][4] * 255, rel=0.05)
    real, _ = shape_images(4, 32, seed=0, split="test")
    change = [np.abs(corrupt(real, "gaussian_blur", s).astype(int) - real).mean() for s in range(1, 6)]
    assert change == sorted(change) and change[0] < change[-1]


def test_contrast_against_formula():
    images, _ = shape_images(2, 16, seed=1, split="test")
    out = corrupt(images, "contrast", 2)
    for img, got in zip(images, out):
        x = img.astype(np.float64) / 255
        ref = np.clip(np.round(np.clip((x - x.mean()) * SEVERITIES["contrast"][1] + x.mean(), 0, 1) * 255), 0, 255)
        assert np.array_equal(got, ref.astype(np.uint8))


def test_shift_errors():
    images = np.zeros((1, 8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="unknown shift 'rain'"):
        corrupt(images, "rain", 1)
    with pytest.raises(ValueError, match="severity"):
        corrupt(images, "fog", 6)


def test_shape_images_deterministic_prefix_and_balanced():
    a, la = shape_images(12, 16, seed=2)
    b, lb = shape_images(5, 16, seed=2)
    assert np.array_equal(a[:5], b) and np.array_equal(la[:5], lb)
    c, _ = shape_images(5, 16, seed=3)
    assert not np.array_equal(b, c)
    assert np.bincount(la, minlength=10).tolist() == [2, 2] + [1] * 8
    d, _ = shape_images(5, 16, seed=2, split="test")
    assert not np.array_equal(b, d)


def _tiny(seed=0, norm="group"):
    torch.manual_seed(seed)
    return TTTNet(classes=4, depth=8, width=4, norm=norm, groups=2)


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_y_shaped_network_shares_only_the_encoder():
    model = _tiny()
    logits, rot = model(torch.randn(2, 3, 16, 16))
    assert logits.shape == (2, 4) and rot.shape == (2, 4)
    shared = {id(p) for p in model.encoder.parameters()}
    assert shared.isdisjoint(id(p) for p in model.classifier.parameters())
    assert {id(p) for p in model.self_supervised_parameters()} == shared | {id(p) for p in model.rotation.parameters()}
    with pytest.raises(ValueError, match="6n\\+2"):
        TTTNet(depth=10)


def test_joint_training_deterministic_and_saved(tmp_path):
    images, labels = shape_images(24, 16, seed=0, classes=4)
    cfg = JointConfig(epochs=2, batch_size=8, lr=0.05, milestones=(1,))
    a, b = _tiny(), _tiny()
    history = train_joint(a, images, labels, cfg, progress=False)
    train_joint(b, images, labels, cfg, progress=False)
    assert len(history) == 2 and history[1]["lr"] == pytest.approx(0.005)
    assert all(np.isfinite(r["loss"]) for r in history)
    assert _equal(_state(a), _state(b))
    save_model(a, tmp_path / "m.pt")
    c = load_model(tmp_path / "m.pt")
    assert _equal(_state(a), _state(c))
    result = evaluate(c, images, labels)
    assert 0 <= result["accuracy"] <= 1 and result["correct"].shape == (24,)


@pytest.mark.parametrize("norm", ["group", "batch"])
def test_standard_ttt_resets_after_every_image(norm):
    model = _tiny(norm=norm)
    images, labels = shape_images(3, 16, seed=0, split="test", classes=4)
    base = _state(model)
    cfg = TTTConfig(steps=2, batch_size=4, lr=0.05)
    first = ttt_standard(model, images, labels, cfg, progress=False)
    assert _equal(base, _state(model))
    # image 2's result does not depend on the images before it: the weights were reset
    other = images.copy()
    other[0], other[1] = images[1], images[0]
    again = ttt_standard(model, other, labels[[1, 0, 2]], cfg, progress=False)
    assert first["correct_after"][2] == again["correct_after"][2]
    with torch.no_grad():
        x = to_tensor(images[2:3])
        reference = model.classify(x)
    assert first["baseline"] == evaluate(model, images, labels)["accuracy"]
    assert torch.equal(model.classify(x), reference)


def test_standard_ttt_changes_predictions_and_zero_steps_is_baseline():
    model = _tiny()
    images, labels = shape_images(4, 16, seed=1, split="test", classes=4)
    none = ttt_standard(model, images, labels, TTTConfig(steps=0), progress=False)
    assert none["accuracy"] == none["baseline"]
    x = to_tensor(images)
    seen = []

    def record(module, inputs, output):
        seen.append(output.detach().clone())

    handle = model.classifier.register_forward_hook(record)
    try:
        ttt_standard(model, images[:1], labels[:1], TTTConfig(steps=3, batch_size=4, lr=0.5), progress=False)
    finally:
        handle.remove()
    with torch.no_grad():
        base_logits = model.classify(x[:1])
    assert not torch.allclose(seen[-1], base_logits)          # the adapted encoder predicted


def test_online_ttt_carries_weights_and_restores_at_the_end():
    model = _tiny()
    images, labels = shape_images(4, 16, seed=1, split="test", classes=4)
    base = _state(model)
    zero = ttt_online(model, images, labels, TTTConfig(online_steps=0), progress=False)
    assert zero["accuracy"] == zero["baseline"]
    steps = []

    def count(module, inputs, output):
        if module.training:         # adaptation steps (predictions run in eval mode)
            steps.append(1)

    handle = model.rotation.register_forward_hook(count)
    try:
        ttt_online(model, images, labels, TTTConfig(online_steps=2, batch_size=4, lr=0.05), progress=False)
    finally:
        handle.remove()
    assert len(steps) == 4 * 2
    assert _equal(base, _state(model))


def test_ttt_stage_writes_reports(tmp_path, monkeypatch):
    import dataclasses
    import json
    import re

    from selfsup.config import Params
    from stages import ttt as stage

    monkeypatch.chdir(tmp_path)
    p = Params()
    p = dataclasses.replace(p, ttt=dataclasses.replace(
        p.ttt, classes=4, image_size=16, train_images=16, test_images=4, width=4, groups=2, epochs=2,
        batch_size=8, shifts=["gaussian_noise"], severities=[1, 5], ttt_steps=1, ttt_batch=4,
        device="cpu"))
    class Recorder:
        names: list[str] = []

        def log_metrics(self, metrics, step=None):
            self.names += list(metrics)

    recorder = Recorder()
    report = stage.run(p, recorder, progress=False)
    assert recorder.names and all(re.fullmatch(r"[\w\-. /]+", n) for n in recorder.names), recorder.names
    assert list(report["shifts"]) == ["gaussian_noise@1", "gaussian_noise@5"]
    for row in [report["clean"], *report["shifts"].values()]:
        assert {"baseline", "standard", "online"} <= set(row)
        assert all(0 <= row[k] <= 1 for k in ("baseline", "standard", "online"))
    assert report["mean"]["baseline"] == pytest.approx(np.mean([r["baseline"] for r in report["shifts"].values()]))
    assert load_model(tmp_path / "models/ttt/model.pt").config()["width"] == 4
    assert len((tmp_path / "reports/plots/ttt.csv").read_text().splitlines()) == 3
    assert (tmp_path / "reports/figures/test_time/ttt.png").stat().st_size > 0
    json.dumps(report)
