"""CRW training: sampling, exact resume after a kill, DDP equivalence, NaN stop, learning, the stage."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from selfsup.crw import CRWConfig, load_checkpoint
from selfsup.crw.train import (ClipSampler, NonFiniteLossError, TrainConfig, build_model, data_fingerprint,
                               fingerprint, load_resume_state, step_inputs, train)
from selfsup.crw.walk import contrastive_walk
from selfsup.data.video import ClipCache, clip_index

ROOT = Path(__file__).resolve().parents[1]
MODEL = CRWConfig(width=0.125, frame_size=32, patch_size=16, patch_stride=8, bn_group_size=0,
                  temperature=0.05, edge_dropout=0.1)


def make_cache(root: Path, videos=6, frames=8, size=40, seed=0) -> Path:
    """Textured squares drifting over a drifting textured background, in the clip-cache format."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for _ in range(videos):
        bg = rng.integers(0, 256, (size // 4, size // 4, 3)).repeat(4, 0).repeat(4, 1)
        objects = [(rng.uniform(0, size - 12, 2), rng.uniform(-2, 2, 2),
                    rng.integers(0, 256, (3, 3, 3)).repeat(4, 0).repeat(4, 1)) for _ in range(2)]
        drift = rng.integers(-1, 2, 2)
        for t in range(frames):
            f = np.roll(bg, tuple(drift * t), (0, 1)).copy()
            for pos, vel, tex in objects:
                y, x = ((pos + vel * t) % (size - 12)).astype(int)
                f[y:y + 12, x:x + 12] = tex
            out.append(f.astype(np.uint8))
    np.save(root / "frames.npy", np.stack(out))
    table = pd.DataFrame({"video": [f"c/v{i}.mp4" for i in range(videos)], "offset": np.arange(videos) * frames,
                          "n_frames": [frames] * videos, "fps": 8.0, "source_fps": 24.0,
                          "height": size, "width": size})
    table.to_parquet(root / "videos.parquet", index=False)
    clip_index(table, 4).to_parquet(root / "clips.parquet", index=False)
    (root / "meta.json").write_text(json.dumps({"clip_len": 4, "short_side": size}))
    return root


@pytest.fixture(autouse=True)
def one_thread():
    """Small models on a shared 2-core machine: one intra-op thread avoids OpenMP oversubscription."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return make_cache(tmp_path_factory.mktemp("clips"))


def tcfg(**changes):
    base = dict(batch_size=4, clip_len=4, clips_per_video=3, steps=6, lr=1e-3, lr_milestones=(3,),
                seed=7, checkpoint_every=2, log_every=1, workers=0, device="cpu", distributed=False)
    base.update(changes)
    return TrainConfig(**base)


def weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_sampler_is_a_function_of_seed_and_step():
    video_of_clip = np.repeat(np.arange(5), [4, 2, 6, 1, 3])
    a = ClipSampler(video_of_clip, clips_per_video=2, batch_size=3, seed=1)
    b = ClipSampler(video_of_clip, clips_per_video=2, batch_size=3, seed=1)
    assert a.epoch_length == 2 + 2 + 2 + 1 + 2 and a.steps_per_epoch == 3
    for step in (5, 0, 3, 8, 1):            # any order: no hidden state
        assert np.array_equal(a.batch(step), b.batch(step))
    epoch = a.epoch(0)
    counts = np.bincount(video_of_clip[epoch], minlength=5)
    assert counts.tolist() == [2, 2, 2, 1, 2] and len(set(epoch.tolist())) == len(epoch)
    assert not np.array_equal(a.epoch(0), a.epoch(1))
    assert not np.array_equal(a.epoch(0), ClipSampler(video_of_clip, 2, 3, seed=2).epoch(0))
    with pytest.raises(ValueError, match="fewer than one batch"):
        ClipSampler(video_of_clip, 1, 6, 0)


KILLED_RUN = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {root!r})
    import torch
    torch.set_num_threads(1)
    from selfsup.crw import CRWConfig
    from selfsup.crw.train import TrainConfig, train
    from selfsup.data.video import ClipCache

    def die(step, model):
        if step == {kill_at}:
            os.kill(os.getpid(), signal.SIGKILL)     # no clean-up, no final save

    train(CRWConfig.from_dict({model!r}), TrainConfig(**{train!r}), ClipCache({cache!r}),
          resume_path={resume!r}, on_step=die, progress=False)
""")


def test_killed_run_resumes_bit_exactly(cache_dir, tmp_path):
    cfg = tcfg()
    cache = ClipCache(cache_dir)
    full = train(MODEL, cfg, cache, resume_path=tmp_path / "full.pt", progress=False)
    assert full.step == 6 and full.resumed_from == 0

    resume = tmp_path / "state.pt"
    train_args = {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.to_dict().items()}
    script = KILLED_RUN.format(root=str(ROOT), kill_at=5, model=MODEL.to_dict(), train=train_args,
                               cache=str(cache_dir), resume=str(resume))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert torch.load(resume, weights_only=True)["step"] == 4     # the last checkpoint before the kill

    torch.manual_seed(12345)               # disturb the global RNGs: the resume must not depend on them
    np.random.seed(99)
    resumed = train(MODEL, cfg, cache, resume_path=resume, progress=False)
    assert resumed.resumed_from == 4 and resumed.step == 6
    a, b = weights(full.model), weights(resumed.model)
    assert set(a) == set(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history]

    # another configuration never resumes from this state
    state = torch.load(resume, weights_only=True)
    assert load_resume_state(resume, state["fingerprint"]) is not None
    other = fingerprint(MODEL, tcfg(lr=5e-4), data_fingerprint(cache), 1)
    assert other != state["fingerprint"] and load_resume_state(resume, other) is None


DDP_WORKER = textwrap.dedent("""
    import sys, torch
    sys.path.insert(0, {root!r})
    torch.set_num_threads(1)
    from selfsup.crw import CRWConfig
    from selfsup.crw.train import TrainConfig, train
    from selfsup.data.video import ClipCache
    import torch.distributed as dist

    result = train(CRWConfig.from_dict({model!r}), TrainConfig(**{train!r}), ClipCache({cache!r}),
                   progress=False)
    if result.rank == 0:
        torch.save({{k: v.detach() for k, v in result.model.named_parameters()}}, {out!r})
    dist.destroy_process_group()
""")


def test_ddp_two_processes_equal_one_process(cache_dir, tmp_path):
    """2 processes x 2 clips == 1 process x 4 clips.

    BatchNorm normalises with the statistics of the batch it sees: each DDP process sees only its
    own 2 clips, so the single-process reference splits its batch into the same 2-clip BatchNorm
    groups (`bn_group_size=2`). Augmentation and edge-dropout draws are made for the global batch
    and sliced per process, and DDP averages the per-process gradients, which equals the gradient
    of the single process's mean loss. Parameters then agree up to float summation order.
    (Running BN statistics differ by design: DDP keeps rank 0's, the grouped run updates them
    once per group; they do not enter training-mode forward passes.)
    """
    # Adam's eps raised from 1e-8: with a tiny eps, Adam turns float rounding noise in
    # near-zero gradients into full-size (lr) steps, so any change of summation order (even the
    # thread count) moves such weights by ~lr. The mechanics under test do not depend on eps.
    cfg = tcfg(steps=3, lr_milestones=(), checkpoint_every=100, eps=1e-6)
    train_args = {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.to_dict().items()}
    train_args["distributed"] = True
    out = tmp_path / "rank0.pt"
    script = tmp_path / "worker.py"
    script.write_text(DDP_WORKER.format(root=str(ROOT), model=MODEL.to_dict(), train=train_args,
                                        cache=str(cache_dir), out=str(out)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(script)], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = torch.load(out, weights_only=True)

    single = train(MODEL.replace(bn_group_size=2), cfg, ClipCache(cache_dir), progress=False)
    ref = dict(single.model.named_parameters())
    initial = dict(build_model(MODEL, cfg.seed).named_parameters())
    moved, diff = 0.0, 0.0
    for k, v in ddp.items():
        diff = max(diff, (v - ref[k].detach()).abs().max().item())
        moved = max(moved, (ref[k] - initial[k]).abs().max().item())
    # float summation order differs (per-process loss means, gradient all-reduce); a real
    # mismatch (other clips, draws or BN groups) would be of the order of `moved`
    assert diff < 2e-5 and diff < 0.01 * moved, (diff, moved)
    assert moved > 1e-3        # the parameters did change, so the comparison means something
    # and the BN grouping matters: the whole-batch BN run ends elsewhere
    whole = dict(train(MODEL, cfg, ClipCache(cache_dir), progress=False).model.named_parameters())
    whole_diff = max((ddp[k] - whole[k].detach()).abs().max().item() for k in ddp)
    assert whole_diff > 20 * diff, (whole_diff, diff)


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(cache_dir, tmp_path, monkeypatch):
    from selfsup.crw import model as model_module

    real = model_module.contrastive_walk
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        loss, stats = real(*args, **kwargs)
        return (loss * float("nan") if calls["n"] == 3 else loss), stats

    monkeypatch.setattr(model_module, "contrastive_walk", poisoned)
    resume = tmp_path / "state.pt"
    with pytest.raises(NonFiniteLossError, match=r"NaN or infinite at step 3.*state\.pt, step 2"):
        train(MODEL, tcfg(), ClipCache(cache_dir), resume_path=resume, progress=False)
    state = torch.load(resume, weights_only=True)
    assert state["step"] == 2
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_training_lowers_loss(cache_dir):
    """30 steps lower the walk loss on a fixed batch (same clips, crops; no edge dropout)."""
    cache = ClipCache(cache_dir)
    clips = torch.stack([torch.from_numpy(cache[i]) for i in range(0, len(cache), 3)])

    def fixed_loss(model):
        patches, _ = step_inputs(model, clips, 123, 0, clips.shape[0], 0, torch.device("cpu"))
        with torch.no_grad():
            loss, _ = contrastive_walk(model.embed(patches), model.config.temperature)
        return loss.item()

    cfg = tcfg(steps=30, lr=1e-3, lr_milestones=(), log_every=10, checkpoint_every=1000, clips_per_video=5)
    before = fixed_loss(build_model(MODEL, cfg.seed))
    result = train(MODEL, cfg, cache, progress=False)
    after = fixed_loss(result.model)
    assert after < before - 0.2, (before, after)
    first, last = result.history[0], result.history[-1]
    assert last["loss"] < first["loss"], (first, last)
    assert {"loss_k2", "accuracy_k2", "loss_k3", "accuracy_k3", "lr", "clips_per_s"} <= set(last)


def test_pretrain_stage(cache_dir, tmp_path, monkeypatch, root):
    """The stage end to end: checkpoint that rebuilds its model, curves, report, MLflow run."""
    import yaml

    params = yaml.safe_load((root / "params.yaml").read_text())
    params["pretrain"].update({"data": str(cache_dir), "out": "models/crw", "resume_dir": "models/crw.resume",
                               "steps": 4, "batch_size": 4, "clips_per_video": 3, "frame_size": 32,
                               "patch_size": 16, "patch_stride": 8, "width": 0.125, "log_every": 2,
                               "checkpoint_every": 2, "device": "cpu", "workers": 1,
                               "frame_scale": [0.9, 1.0], "patch_ratio": [0.9, 1.1]})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SELFSUP_PARAMS", str(tmp_path / "params.yaml"))
    from stages import pretrain

    assert pretrain.main() == 0
    model = load_checkpoint(tmp_path / "models/crw/checkpoint.pt")
    assert model.config.width == 0.125 and model.config.frame_size == 32
    assert model.config.frame_scale == (0.9, 1.0) and model.config.patch_ratio == (0.9, 1.1)
    rows = (tmp_path / "reports/plots/pretrain.csv").read_text().splitlines()
    assert rows[0].startswith("step,loss,accuracy,lr,clips_per_s") and "accuracy_k3" in rows[0]
    assert [r.split(",")[0] for r in rows[1:]] == ["2", "4"]
    report = json.loads((tmp_path / "reports/pretrain.json").read_text())
    assert report["steps"] == 4 and report["chance_accuracy"] == pytest.approx(1 / 9)
    assert not (tmp_path / "models/crw.resume/state.pt").exists()

    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    versions = client.search_model_versions("name='crw'")
    assert versions, "no registered model version"
    run = client.get_run(versions[0].run_id)
    assert "loss_k2" in run.data.metrics and "clips_per_s" in run.data.metrics
    assert len(client.get_metric_history(run.info.run_id, "loss")) == 2
    del mlflow


def test_stage_reports_missing_cache(tmp_path, monkeypatch, root, capsys):
    import yaml

    params = yaml.safe_load((root / "params.yaml").read_text())
    params["pretrain"]["data"] = str(tmp_path / "nowhere")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.setenv("SELFSUP_PARAMS", str(tmp_path / "params.yaml"))
    monkeypatch.chdir(tmp_path)
    from stages import pretrain

    assert pretrain.main() == 2
    assert "nowhere" in capsys.readouterr().err
