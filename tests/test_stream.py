"""Online test-then-train stream: order (test before train), resume, the CRW/DAVIS wiring."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from selfsup.crw.adapt import AdaptConfig
from selfsup.stream import load_stream_state, run_stream, state_fingerprint, prequential_stream
from tiny_davis import clone_state, state_equal, tiny_model, write_davis

VIDEOS = [f"v{i}" for i in range(5)]


class Recorder(nn.Module):
    """seen[i] counts how often video i was trained on; scoring records what the weights had seen."""

    def __init__(self, n: int):
        super().__init__()
        self.seen = nn.Parameter(torch.zeros(n))
        self.drift = nn.Parameter(torch.zeros(3))


def _fake(n: int = len(VIDEOS), fail_at: int | None = None):
    model = Recorder(n)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    records = []

    def score(m, i, video):
        records.append((i, video, m.seen.detach().clone()))
        return float(m.drift.detach().sum()) + i

    def learn(m, opt, i, video):
        if fail_at is not None and i == fail_at:
            raise RuntimeError("stopped (simulated)")
        noise = torch.randn(3)                     # global RNG: must resume exactly too
        with torch.no_grad():
            m.seen[i] += 1
        loss = ((m.drift - noise) ** 2).sum()
        opt.zero_grad()
        loss.backward()
        m.seen.grad = None
        opt.step()
        return loss.item()

    return model, optimizer, score, learn, records


def _strip(curve):
    return [{k: v for k, v in row.items() if not k.endswith("seconds")} for row in curve]


def test_each_video_scored_before_training_on_it():
    model, optimizer, score, learn, records = _fake()
    result = prequential_stream(VIDEOS, model, optimizer, score, learn, frozen_score=lambda i, v: 10.0 * i,
                             progress=False)
    assert [r[0] for r in records] == list(range(len(VIDEOS)))
    for i, video, seen in records:
        assert video == VIDEOS[i]
        assert seen[i] == 0, f"video {i} was scored by weights that had already trained on it"
        assert torch.equal(seen[:i], torch.ones(i)) and torch.equal(seen[i + 1:], torch.zeros(len(VIDEOS) - i - 1))
    assert torch.equal(model.seen.detach(), torch.ones(len(VIDEOS)))
    curve = result.curve
    assert [r["position"] for r in curve] == list(range(len(VIDEOS)))
    assert curve[2]["running"] == pytest.approx(sum(r["score"] for r in curve[:3]) / 3)
    assert curve[-1]["frozen_running"] == pytest.approx(20.0)
    assert result.finished and result.summary()["videos"] == len(VIDEOS)


@pytest.mark.parametrize("how", ["stop_after", "crash"])
def test_resume_equals_uninterrupted(tmp_path, how):
    torch.manual_seed(0)
    model, optimizer, score, learn, _ = _fake()
    full = prequential_stream(VIDEOS, model, optimizer, score, learn, state_path=tmp_path / "full.pt", progress=False)

    path = tmp_path / "part.pt"
    torch.manual_seed(0)
    model2, optimizer2, score2, learn2, _ = _fake(fail_at=2 if how == "crash" else None)
    if how == "crash":
        with pytest.raises(RuntimeError, match="simulated"):
            prequential_stream(VIDEOS, model2, optimizer2, score2, learn2, state_path=path, progress=False)
    else:
        first = prequential_stream(VIDEOS, model2, optimizer2, score2, learn2, state_path=path, stop_after=2,
                                progress=False)
        assert first.position == 2 and not first.finished
    assert load_stream_state(path, state_fingerprint(Recorder(len(VIDEOS)), VIDEOS))["position"] == 2

    torch.manual_seed(999)                       # the resumed process starts with other RNG states
    model3, optimizer3, score3, learn3, records = _fake()
    resumed = prequential_stream(VIDEOS, model3, optimizer3, score3, learn3, state_path=path, progress=False)
    assert resumed.resumed_from == 2 and [r[0] for r in records] == [2, 3, 4]
    assert state_equal(model.state_dict(), model3.state_dict())
    assert _strip(resumed.curve) == _strip(full.curve)
    assert optimizer.state_dict()["state"][1]["step"] == optimizer3.state_dict()["state"][1]["step"]


def test_state_of_another_setup_is_ignored(tmp_path):
    model, optimizer, score, learn, _ = _fake()
    prequential_stream(VIDEOS, model, optimizer, score, learn, state_path=tmp_path / "s.pt", stop_after=3,
                    progress=False)
    model2, optimizer2, score2, learn2, records = _fake()
    reordered = VIDEOS[::-1]
    result = prequential_stream(reordered, model2, optimizer2, score2, learn2, state_path=tmp_path / "s.pt",
                             progress=False)
    assert result.resumed_from == 0 and len(records) == len(VIDEOS)


def test_crw_stream_on_davis(tmp_path):
    from selfsup.propagate import PropagationConfig

    root = write_davis(tmp_path / "data", sequences=2, n_frames=6)
    prop = PropagationConfig(context=2, topk=3, radius=4)
    cfg = AdaptConfig(steps=1, lr=1e-2, window=3, frame_gap=2, batch_size=2, objective="dense", batchnorm="train")
    base = tiny_model()
    full = run_stream(tiny_model(), root, tmp_path / "full.pt", cfg, propagation=prop, progress=False)
    assert [r["video"] for r in full.curve] == ["seq0", "seq1"]
    first = full.curve[0]
    # the first video is scored before any training: the stream and the frozen model agree on it
    assert first["score"] == first["frozen"] and 0.0 <= first["score"] <= 1.0
    assert all(math.isfinite(r["train_loss"]) for r in full.curve)
    assert not state_equal(clone_state(base), clone_state(full.model))

    part = tmp_path / "part.pt"
    run_stream(tiny_model(), root, part, cfg, propagation=prop, stop_after=1, progress=False)
    resumed = run_stream(tiny_model(), root, part, cfg, propagation=prop, progress=False,
                         frozen_scores={r["video"]: r["frozen"] for r in full.curve})
    assert resumed.resumed_from == 1
    assert _strip(resumed.curve) == _strip(full.curve)
    assert state_equal(clone_state(resumed.model), clone_state(full.model))
