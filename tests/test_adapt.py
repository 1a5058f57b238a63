"""CRW test-time adaptation: exact restoration, BatchNorm modes, layer selection, propagation path."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from selfsup.crw import adapt as adapt_mod
from selfsup.crw.adapt import (AdaptConfig, AdaptingExtractor, adapt, adapted, clip_starts, preserved,
                               propagate_with_adaptation, select_parameters)
from tiny_davis import TINY_CONFIG, clone_state, moving_frames, state_equal, tiny_model, write_davis

FAST = dict(steps=2, lr=1e-2, window=3, frame_gap=2, batch_size=2)


@pytest.fixture(scope="module")
def frames():
    return torch.from_numpy(moving_frames(8, 40, 56)[0])


def _bn_buffers(model):
    return {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}


def _flags(model):
    return ([p.requires_grad for p in model.parameters()], [m.training for m in model.modules()])


@pytest.mark.parametrize("objective,bn", [("patches", "train"), ("dense", "reestimate")])
def test_weights_restored_bitwise(frames, objective, bn):
    model = tiny_model()
    model.encoder.layer1[0].conv1.weight.requires_grad_(False)        # a non-default flag to keep
    model.train()
    model.encoder.layer2.eval()
    base, flags = clone_state(model), _flags(model)
    torch.manual_seed(123)
    np.random.seed(5)
    random.seed(7)
    expected_rng = (torch.rand(3), np.random.rand(2), random.random())
    torch.manual_seed(123)
    np.random.seed(5)
    random.seed(7)
    with adapted(model, frames, AdaptConfig(objective=objective, batchnorm=bn, **FAST)) as result:
        inside = clone_state(model)
        torch.rand(10)      # user code consuming global randomness inside the block
        np.random.rand(3)
    assert len(result.losses) == 2 and all(np.isfinite(result.losses))
    changed = [k for k in base if not torch.equal(base[k], inside[k])]
    assert any("conv" in k and k.endswith("weight") for k in changed)           # it did adapt
    assert any("running_mean" in k for k in changed)                            # BN statistics moved
    assert state_equal(base, clone_state(model))                                # and all came back
    assert _flags(model) == flags
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(torch.rand(3), expected_rng[0])
    assert np.array_equal(np.random.rand(2), expected_rng[1]) and random.random() == expected_rng[2]


def test_restored_when_adaptation_raises(frames, monkeypatch):
    model = tiny_model()
    base, flags = clone_state(model), _flags(model)
    original = adapt_mod.walk_objective
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:     # after two optimiser steps changed the weights
            raise RuntimeError("out of memory (simulated)")
        return original(*args, **kwargs)

    monkeypatch.setattr(adapt_mod, "walk_objective", failing)
    with pytest.raises(RuntimeError, match="simulated"):
        with adapted(model, frames, AdaptConfig(batchnorm="train", **{**FAST, "steps": 5})):
            pass
    assert len(calls) == 3
    assert state_equal(base, clone_state(model)) and _flags(model) == flags


def test_restored_when_the_block_raises(frames):
    model = tiny_model()
    base = clone_state(model)
    with pytest.raises(KeyError):
        with adapted(model, frames, AdaptConfig(batchnorm="train", **FAST)):
            assert not state_equal(base, clone_state(model))
            raise KeyError("inside")
    assert state_equal(base, clone_state(model))


def test_preserved_keeps_tensor_identity_and_grads():
    model = tiny_model()
    loss = model.encoder(torch.randn(2, 3, 32, 32), "layer3").square().mean()
    loss.backward()
    weight = model.encoder.conv1.weight
    grad = weight.grad.clone()
    with preserved(model):
        with torch.no_grad():
            weight.mul_(2)
        weight.grad = None
    assert model.encoder.conv1.weight is weight
    assert torch.equal(weight.grad, grad)


def test_frozen_batchnorm_keeps_running_stats(frames):
    model = tiny_model()
    buffers = _bn_buffers(model)
    with adapted(model, frames, AdaptConfig(batchnorm="frozen", **FAST)):
        assert state_equal(buffers, _bn_buffers(model))
        assert not torch.equal(model.encoder.conv1.weight, clone_state(tiny_model())["encoder.conv1.weight"])


def test_reestimated_statistics_match_direct_computation(frames):
    model = tiny_model()
    cfg = AdaptConfig(steps=0, batchnorm="reestimate", reestimate_batch=64)
    with adapted(model, frames, cfg):
        x = model.normalize_frames(frames.permute(0, 3, 1, 2).float() / 255.0)
        stem = model.encoder.conv1(x)                      # the input of bn1
        mean = stem.mean(dim=(0, 2, 3))
        var = stem.var(dim=(0, 2, 3), unbiased=True)
        torch.testing.assert_close(model.encoder.bn1.running_mean, mean, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(model.encoder.bn1.running_var, var, rtol=1e-4, atol=1e-5)
        assert model.encoder.bn1.momentum == 0.1           # momentum put back
        # layer4 is not used by propagation: left alone
        base = tiny_model()
        assert torch.equal(model.encoder.layer4[0].bn1.running_mean, base.encoder.layer4[0].bn1.running_mean)


def test_only_selected_layers_change(frames):
    model = tiny_model()
    base = clone_state(model)
    with adapted(model, frames, AdaptConfig(layers=("layer3",), batchnorm="frozen", **FAST)):
        now = clone_state(model)
    changed = {k.split(".")[1] if k.startswith("encoder.") else k.split(".")[0]
               for k in base if not torch.equal(base[k], now[k])}
    assert changed == {"layer3"}


def test_select_parameters_groups():
    model = tiny_model()
    params = select_parameters(model, ["stem", "head"])
    expected = {id(p) for p in [*model.encoder.conv1.parameters(), *model.encoder.bn1.parameters(),
                                *model.head.parameters()]}
    assert {id(p) for p in params} == expected
    assert all(p.requires_grad == (id(p) in expected) for p in model.parameters())
    headless = tiny_model(config=TINY_CONFIG.replace(with_head=False, with_layer4=False))
    with pytest.raises(ValueError, match="hold no parameters"):
        select_parameters(headless, ["head"])


def test_dense_objective_on_propagation_only_model(frames):
    model = tiny_model(config=TINY_CONFIG.replace(with_head=False, with_layer4=False))
    base = clone_state(model)
    with adapted(model, frames, AdaptConfig(objective="dense", **FAST)) as result:
        assert not state_equal(base, clone_state(model))
    assert np.isfinite(result.losses).all() and state_equal(base, clone_state(model))
    with pytest.raises(ValueError, match="objective 'dense'"):
        adapt(model, frames, AdaptConfig(objective="patches", **FAST))


def test_adaptation_is_deterministic(frames):
    cfg = AdaptConfig(objective="dense", batchnorm="train", **FAST)
    a, b, c = tiny_model(), tiny_model(), tiny_model()
    adapt(a, frames, cfg)
    adapt(b, frames, cfg)
    assert state_equal(clone_state(a), clone_state(b))
    adapt(c, frames, cfg.replace(seed=1))
    assert not state_equal(clone_state(a), clone_state(c))


def test_clip_starts_fit_the_video():
    g = torch.Generator().manual_seed(0)
    starts = clip_starts(10, 7, 500, g)
    assert starts.min() == 0 and starts.max() == 3
    with pytest.raises(ValueError, match="only 5"):
        clip_starts(5, 7, 1, g)


def test_config_errors():
    with pytest.raises(ValueError, match="window"):
        AdaptConfig(window=2)
    with pytest.raises(ValueError, match="unknown layer group"):
        AdaptConfig(layers=("layer5",))
    with pytest.raises(ValueError, match="batchnorm"):
        AdaptConfig(batchnorm="sync")


def test_propagation_with_adaptation(tmp_path):
    from selfsup.propagate import PropagationConfig, propagate_davis

    root = write_davis(tmp_path / "data", sequences=2, n_frames=6)
    model = tiny_model()
    base = clone_state(model)
    prop = PropagationConfig(context=2, topk=3, radius=4)
    # no step and frozen BN: adaptation is the identity, outputs equal plain propagation
    plain = tmp_path / "plain"
    propagate_davis(model.features, root, plain, prop, progress=False)
    same = tmp_path / "same"
    summary = propagate_with_adaptation("davis", model, AdaptConfig(steps=0, batchnorm="frozen"), root, same, prop,
                                        progress=False)
    assert summary["videos"] == 2 and summary["frames"] == 12 and len(summary["per_video"]) == 2
    for png in sorted(plain.rglob("*.png")):
        assert (same / png.relative_to(plain)).read_bytes() == png.read_bytes()
    # real adaptation: every frame written, weights unchanged afterwards, per-video timings
    out = tmp_path / "adapted"
    summary = propagate_with_adaptation("davis", model, AdaptConfig(batchnorm="train", **FAST), root, out, prop,
                                        progress=False)
    assert len(list(out.rglob("*.png"))) == 12
    assert all(v["adapt_seconds"] > 0 and v["propagate_seconds"] > 0 for v in summary["per_video"])
    assert state_equal(base, clone_state(model))
    with pytest.raises(ValueError, match="no davis video"):
        propagate_with_adaptation("davis", model, AdaptConfig(steps=0), root, out, prop, videos=["nope"])


def test_adapting_extractor_restores_between_videos(frames):
    model = tiny_model()
    base = clone_state(model)
    extractor = AdaptingExtractor(model, AdaptConfig(batchnorm="train", **FAST))
    x = model.normalize_frames(frames[:2].permute(0, 3, 1, 2).float() / 255.0)
    plain = extractor(x)
    with extractor.on_video(frames, index=0):
        moved = extractor(x)
    assert not torch.equal(plain, moved)
    assert torch.equal(extractor(x), plain) and state_equal(base, clone_state(model))


def test_adapt_stage_writes_reports(tmp_path, monkeypatch):
    """The stage end to end on a tiny set: report layout, stream curve, figures, merged metrics."""
    import dataclasses
    import json
    import re

    from selfsup.config import Params
    from selfsup.crw import save_checkpoint
    from stages import adapt as stage
    from stages.test_time import merged_metrics

    monkeypatch.chdir(tmp_path)
    write_davis(tmp_path / "data", sequences=2, n_frames=6)
    save_checkpoint(tiny_model(), tmp_path / "crw.pt")
    p = Params()
    p = dataclasses.replace(
        p, propagate=dataclasses.replace(p.propagate, context=2, topk=3, radius=4.0),
        adapt=dataclasses.replace(p.adapt, checkpoint="crw.pt", data="data", steps=1, stream_steps=1, window=3,
                                  frame_gap=2, batch_size=2, lr=1e-2, stream_lr=1e-2, batchnorm="train",
                                  stream_state="state/stream.pt", compare=["statistics_only", "bn_frozen"], device="cpu"))
    class Recorder:
        names: list[str] = []

        def log_metrics(self, metrics, step=None):
            from stages.tracking import _flatten

            self.names += list(_flatten(metrics))

    recorder = Recorder()
    report = stage.run(p, recorder, progress=False)
    assert recorder.names and all(re.fullmatch(r"[\w\-. /]+", n) for n in recorder.names), recorder.names
    davis = report["davis"]
    assert set(davis["per_sequence"]) == {"seq0", "seq1"}
    assert 0 <= davis["frozen"]["J&F-Mean"] <= 1 and 0 <= davis["adapted"]["J&F-Mean"] <= 1
    assert davis["gain"] == pytest.approx(davis["adapted"]["J&F-Mean"] - davis["frozen"]["J&F-Mean"])
    assert set(davis["variants"]) == {"statistics_only", "bn_frozen"}
    assert all(0 <= v["J&F-Mean"] <= 1 for v in davis["variants"].values())
    curve = report["stream_curve"]
    assert [r["video"] for r in curve] == ["seq0", "seq1"]
    assert curve[0]["frozen"] == pytest.approx(davis["per_sequence"]["seq0"]["frozen"])
    assert curve[0]["score"] == curve[0]["frozen"]          # scored before any training
    assert (tmp_path / "reports/plots/stream.csv").read_text().splitlines()[0].startswith("position,video,score")
    assert (tmp_path / "reports/figures/test_time/crw_adapt.png").stat().st_size > 0
    assert (tmp_path / "reports/figures/test_time/stream.png").stat().st_size > 0
    assert (tmp_path / "state/stream.pt").is_file()
    (tmp_path / "reports/test_time").mkdir(parents=True, exist_ok=True)
    (tmp_path / "reports/test_time/crw.json").write_text(json.dumps(report))
    merged = merged_metrics()
    assert set(merged) == {"crw_adapt", "stream"} and "stream_curve" not in json.dumps(merged)
