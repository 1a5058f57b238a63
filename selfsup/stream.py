"""Online test-then-train over a stream of videos, resumable after every video.

Videos arrive in a fixed order. For each one the current model is first *tested* (labels propagated
from the first frame and scored), and only then *trained* on that video with the walk loss; its
weights carry over to the next video. A frozen copy of the starting model is scored beside it, so
the two running means (the test-then-train curve and the frozen one) show what learning on the
stream buys.

    result = run_stream("models/crw/checkpoint.pt", "data/raw/synthetic", "outputs/stream/state.pt",
                        AdaptConfig(steps=10))
    result.curve   # one row per video: score, frozen score, running means, training loss, seconds

After every video the whole state (weights, optimiser, position, curve so far, RNG states) is
written atomically to `state_path`; a later call with the same setup resumes after the last
finished video and ends in the same state and curve as an uninterrupted run. A state written by
another setup (other weights, config or video order) is ignored, never loaded.

`prequential_stream` (test-then-train, also called prequential evaluation) is the generic loop (any model, any score and learning function); `run_stream`
wires it to CRW, DAVIS-format videos, label propagation, J&F and `selfsup.crw.adapt.adapt`.
"""
from __future__ import annotations

import hashlib
import json
import logging
import random
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .io import torch_save

__all__ = ["StreamResult", "prequential_stream", "run_stream", "load_stream_state", "state_fingerprint",
           "STATE_FORMAT", "davis_score"]

log = logging.getLogger(__name__)

STATE_FORMAT = "selfsup.stream"

ScoreFn = Callable[[nn.Module, int, str], float]
LearnFn = Callable[[nn.Module, torch.optim.Optimizer, int, str], float]
FrozenScoreFn = Callable[[int, str], float]


@dataclass
class StreamResult:
    curve: list[dict[str, Any]]
    position: int                  # videos finished (tested and trained)
    total: int                     # videos in the stream
    resumed_from: int              # position the call started at
    model: nn.Module
    optimizer: torch.optim.Optimizer
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.position >= self.total

    def summary(self) -> dict[str, Any]:
        last = self.curve[-1] if self.curve else {}
        return {"videos": self.position, "total": self.total,
                "running": last.get("running"),
                "frozen_running": last.get("frozen_running"),
                "gain": (last["running"] - last["frozen_running"]
                         if last.get("frozen_running") is not None else None),
                "seconds_per_video": (float(np.mean([r["score_seconds"] + r["train_seconds"] for r in self.curve]))
                                      if self.curve else float("nan"))}


# ============================================================================================
# State file
# ============================================================================================

def _rng_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
             "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def state_fingerprint(model: nn.Module, videos: Sequence[str], setup: Mapping[str, Any] | None = None) -> str:
    """Hash of what determines the stream: starting weights, video order and the setup's values."""
    h = hashlib.sha256()
    for key, value in model.state_dict().items():
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    h.update(json.dumps({"videos": list(videos), "setup": dict(setup or {})}, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def load_stream_state(path: str | Path, fingerprint: str) -> dict[str, Any] | None:
    """The saved state at `path` if it belongs to this stream (same fingerprint), else None."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: start over rather than fail
        log.warning("ignoring unreadable stream state %s (%s); starting from the first video", path,
                    str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return None
    if not isinstance(state, Mapping) or state.get("format") != STATE_FORMAT:
        log.warning("ignoring %s: not a stream state; starting from the first video", path)
        return None
    if state.get("fingerprint") != fingerprint:
        log.info("stream state %s belongs to another setup; starting from the first video", path)
        return None
    return dict(state)


# ============================================================================================
# The generic loop
# ============================================================================================

def _mean(values: Sequence[float | None]) -> float | None:
    """Mean of the known values (None: no frozen model scored beside)."""
    known = [v for v in values if v is not None]
    return float(np.mean(known)) if known else None


def prequential_stream(videos: Sequence[str], model: nn.Module, optimizer: torch.optim.Optimizer,
                    score: ScoreFn, learn: LearnFn, *, frozen_score: FrozenScoreFn | None = None,
                    state_path: str | Path | None = None, fingerprint: str | None = None,
                    stop_after: int | None = None, progress: bool = True,
                    on_video: Callable[[dict[str, Any]], None] | None = None) -> StreamResult:
    """For each video in order: `score(model, i, video)` with the current weights, then
    `learn(model, optimizer, i, video)` (returns a training loss); the weights carry over.

    - `frozen_score(i, video)`: the frozen model's score of the same video (curve beside).
    - `state_path`: after every video the state is saved there atomically; a state with the same
      `fingerprint` found there at the start is resumed from (default fingerprint: the starting
      weights and the video list).
    - `stop_after`: process at most this many videos in this call (the rest on a later call).
    Returns the curve: one row per video with `score`, `frozen`, `running`, `frozen_running`,
    `train_loss`, `score_seconds`, `train_seconds` (`frozen` and `frozen_running` are None without
    `frozen_score`).
    """
    videos = list(videos)
    if fingerprint is None:
        fingerprint = state_fingerprint(model, videos)
    curve: list[dict[str, Any]] = []
    start = 0
    if state_path is not None:
        state = load_stream_state(state_path, fingerprint)
        if state is not None:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            _set_rng_state(state["rng"])
            curve = [dict(r) for r in state["curve"]]
            start = int(state["position"])
            log.info("resuming the stream from %s after %d of %d videos", state_path, start, len(videos))

    def save(position: int) -> None:
        if state_path is None:
            return
        torch_save({"format": STATE_FORMAT, "fingerprint": fingerprint, "position": position,
                    "videos": videos,
                    "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
                    "optimizer": optimizer.state_dict(), "rng": _rng_state(), "curve": curve}, state_path)

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(videos), initial=start, desc="stream", unit="video", dynamic_ncols=True)
    started = time.perf_counter()
    try:
        for position in range(start, len(videos)):
            if stop_after is not None and position - start >= stop_after:
                break
            video = videos[position]
            t0 = time.perf_counter()
            s = float(score(model, position, video))          # test first: the model has not seen it
            t1 = time.perf_counter()
            f = float(frozen_score(position, video)) if frozen_score is not None else None
            loss = float(learn(model, optimizer, position, video))
            t2 = time.perf_counter()
            row = {"position": position, "video": video, "score": s, "frozen": f,
                   "running": _mean([r["score"] for r in curve] + [s]),
                   "frozen_running": _mean([r["frozen"] for r in curve] + [f]),
                   "train_loss": loss, "score_seconds": t1 - t0, "train_seconds": t2 - t1}
            curve.append(row)
            save(position + 1)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(score=f"{s:.3f}", running=f"{row['running']:.3f}")
            if on_video is not None:
                on_video(row)
    finally:
        if bar is not None:
            bar.close()
    done = len(curve)
    return StreamResult(curve=curve, position=done, total=len(videos), resumed_from=start, model=model,
                        optimizer=optimizer, seconds=time.perf_counter() - started)


# ============================================================================================
# CRW on DAVIS-format videos
# ============================================================================================

def davis_score(model: nn.Module, davis_root: str | Path, sequence: str, propagation: Any = None, *,
                out: str | Path | None = None, device: str | torch.device = "cpu", subset: str = "val",
                extractor: Callable[[torch.Tensor], torch.Tensor] | None = None) -> float:
    """J&F-Mean of one sequence propagated with `model.features` (or `extractor`); results go to
    `out/<sequence>/` when given, else to a temporary folder."""
    from .metrics.davis import evaluate_davis
    from .propagate import propagate_davis

    extractor = extractor or model.features

    def run(folder: Path) -> float:
        propagate_davis(extractor, davis_root, folder, propagation, set_name=subset, sequences=[sequence],
                        device=device, progress=False)
        return float(evaluate_davis(davis_root, folder, subset, sequences=[sequence]).summary()["J&F-Mean"])

    if out is not None:
        return run(Path(out))
    with tempfile.TemporaryDirectory(prefix="selfsup-stream-") as tmp:
        return run(Path(tmp))


def run_stream(checkpoint: str | Path | nn.Module, davis_root: str | Path, state_path: str | Path | None,
               config: Any = None, *, propagation: Any = None, sequences: Sequence[str] | None = None,
               frozen_scores: Mapping[str, float] | None = None, out: str | Path | None = None,
               device: str | torch.device = "cpu", subset: str = "val", stop_after: int | None = None,
               progress: bool = True, on_video: Callable[[dict[str, Any]], None] | None = None) -> StreamResult:
    """Test-then-train a CRW over the sequences of a DAVIS-format set, in list order.

    - `checkpoint`: a CRW checkpoint path (loaded with layer4 and head when the objective needs
      them) or a CRW model (used and changed in place).
    - `config`: `selfsup.crw.adapt.AdaptConfig`; its steps, lr, window, layers and BatchNorm mode
      are the training done on each video. One Adam optimiser lives across the whole stream.
    - `propagation`: `selfsup.propagate.PropagationConfig` (default: the DAVIS protocol).
    - `frozen_scores`: per-sequence J&F of the frozen model if already known; otherwise a frozen
      copy of the starting weights is propagated and scored beside.
    - `out`: keep each video's predictions under `out/stream/` and `out/frozen/` (else temporary).
    """
    from .crw import load_checkpoint
    from .crw.adapt import AdaptConfig, adapt, adaptation_generator, select_parameters, video_frames
    from .data.davis import DavisSet
    from .propagate import protocol, resolve_device

    config = config or AdaptConfig()
    propagation = propagation or protocol("davis")
    device = resolve_device(device)
    if isinstance(checkpoint, nn.Module):
        model = checkpoint
    else:
        model = load_checkpoint(checkpoint, map_location="cpu",
                                propagation_only=config.objective == "dense")
    model.to(device)
    davis = DavisSet(davis_root, subset)
    names = list(sequences) if sequences is not None else davis.sequences
    unknown = sorted(set(names) - set(davis.sequences))
    if unknown:
        raise ValueError(f"{davis.list_file}: no sequence(s) named {', '.join(unknown[:5])}")
    setup = {"adapt": {k: getattr(config, k) for k in config.__dataclass_fields__},
             "propagation": {k: getattr(propagation, k) for k in propagation.__dataclass_fields__},
             "subset": subset}
    fingerprint = state_fingerprint(model, names, setup)

    frozen_model = None
    if frozen_scores is None:
        import copy

        frozen_model = copy.deepcopy(model).eval()
    else:
        missing = [n for n in names if n not in frozen_scores]
        if missing:
            raise ValueError(f"frozen_scores lacks sequence(s) {', '.join(missing[:5])}")

    params = select_parameters(model, config.layers)
    optimizer = torch.optim.Adam(params, lr=config.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    out_dir = Path(out) if out is not None else None

    def score(m: nn.Module, position: int, seq: str) -> float:
        m.eval()
        return davis_score(m, davis_root, seq, propagation, device=device, subset=subset,
                           out=out_dir / "stream" if out_dir is not None else None)

    def frozen(position: int, seq: str) -> float:
        if frozen_scores is not None:
            return float(frozen_scores[seq])
        return davis_score(frozen_model, davis_root, seq, propagation, device=device, subset=subset,
                           out=out_dir / "frozen" if out_dir is not None else None)

    def learn(m: nn.Module, opt: torch.optim.Optimizer, position: int, seq: str) -> float:
        frames = video_frames(davis.frame_paths(seq))
        result = adapt(m, frames, config, optimizer=opt, generator=adaptation_generator(config.seed, position))
        return float(np.mean(result.losses)) if result.losses else float("nan")

    return prequential_stream(names, model, optimizer, score, learn, frozen_score=frozen, state_path=state_path,
                           fingerprint=fingerprint, stop_after=stop_after, progress=progress, on_video=on_video)
