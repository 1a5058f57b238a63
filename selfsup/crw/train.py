"""CRW training: single process or DDP (torchrun), resumable bit-for-bit on the CPU.

    result = train(CRWConfig(...), TrainConfig(...), ClipCache("data/clips"),
                   resume_path="models/crw.resume/state.pt")
    save_checkpoint(result.model, "models/crw/checkpoint.pt")

Every random choice is a function of (seed, step): the clips of a step come from a sampler that
shuffles each epoch with a generator seeded by (seed, epoch); the frame crops, patch jitter and
edge-dropout draws come from a generator seeded by (seed, step), drawn for the *global* batch
and sliced per rank. So a resumed run replays exactly the batches and draws of an uninterrupted
one, and N processes see exactly what one process with the same global batch would see.

The resume state (model, optimiser, scheduler, step, every RNG state, the metric history) is
written atomically every `checkpoint_every` steps, tagged with a fingerprint of everything that
determines the result; a state with another fingerprint is ignored (and replaced), never loaded.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Mapping, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..io import torch_save
from .checkpoint import read_checkpoint
from .model import CRW, CRWConfig
from .walk import dropout_noise

__all__ = ["TrainConfig", "TrainResult", "NonFiniteLossError", "ClipSampler", "train", "step_inputs",
           "build_model", "step_generator", "resolve_device", "fingerprint"]

log = logging.getLogger(__name__)

RESUME_FORMAT = "selfsup.crw.resume"


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and run settings; defaults are the published recipe (§4 of the spec)."""

    batch_size: int = 20                 # global batch (clips); per device = batch_size / world size
    clip_len: int = 4
    clips_per_video: int = 5             # clips drawn per video per epoch
    epochs: int = 25
    steps: int | None = None             # total iterations; None = epochs x iterations per epoch
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0            # the published optimiser ignores its weight-decay flag
    lr_gamma: float = 0.3
    # MultiStepLR milestones in iterations; None = lr_milestone_epochs x iterations per epoch
    lr_milestones: tuple[int, ...] | None = None
    lr_milestone_epochs: tuple[float, ...] = (20, 30, 40)
    seed: int = 0
    checkpoint_every: int = 1000
    log_every: int = 10
    workers: int = 8
    device: str = "auto"                 # auto | cpu | cuda | cuda:<i>
    # CPU threads of this process (torch.set_num_threads); None leaves PyTorch's default. On a
    # busy shared machine 1 thread is often several times faster than oversubscribed OpenMP.
    threads: int | None = None
    bf16: bool = True                    # encoder under bf16 autocast on GPU (the walk stays fp32)
    channels_last: bool = True           # on GPU
    compile: bool = False                # torch.compile the encoder
    distributed: bool | None = None      # None: DDP when WORLD_SIZE > 1
    sync_batchnorm: bool = False         # SyncBN across DDP processes (CUDA only)

    def __post_init__(self) -> None:
        object.__setattr__(self, "betas", tuple(self.betas))
        if self.lr_milestones is not None:
            object.__setattr__(self, "lr_milestones", tuple(int(m) for m in self.lr_milestones))
        object.__setattr__(self, "lr_milestone_epochs", tuple(self.lr_milestone_epochs))
        if self.batch_size < 1 or self.clip_len < 2 or self.clips_per_video < 1:
            raise ValueError("batch_size >= 1, clip_len >= 2 and clips_per_video >= 1 are required")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self)}


@dataclass
class TrainResult:
    model: CRW
    step: int
    history: list[dict[str, float]]
    seconds: float
    resumed_from: int
    rank: int = 0


# ---------------------------------------------------------------------------------- sampling

def _seed_from(*values: int) -> int:
    return int(np.random.SeedSequence([int(v) for v in values]).generate_state(1, np.uint64)[0] >> 1)


def step_generator(seed: int, step: int) -> torch.Generator:
    """The CPU generator of one step's augmentation and edge-dropout draws."""
    return torch.Generator().manual_seed(_seed_from(seed, step, 0xC12))


class ClipSampler:
    """Global batches of clip indices as a pure function of (seed, step).

    Each epoch takes up to `clips_per_video` random clips of every video (as the published
    sampler) and shuffles them; the epoch's order depends only on (seed, epoch). An epoch
    holds `steps_per_epoch = clips // batch_size` full batches (the remainder is dropped).
    """

    def __init__(self, video_of_clip: np.ndarray, clips_per_video: int, batch_size: int, seed: int):
        video_of_clip = np.asarray(video_of_clip, dtype=np.int64)
        self.groups = [np.flatnonzero(video_of_clip == v) for v in np.unique(video_of_clip)]
        self.clips_per_video = clips_per_video
        self.batch_size = batch_size
        self.seed = seed
        self.epoch_length = sum(min(clips_per_video, len(g)) for g in self.groups)
        self.steps_per_epoch = self.epoch_length // batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(f"an epoch holds {self.epoch_length} clips ({len(self.groups)} videos x up to "
                             f"{clips_per_video}), fewer than one batch of {batch_size}")
        self._cache: tuple[int, np.ndarray] | None = None

    def epoch(self, epoch: int) -> np.ndarray:
        if self._cache is None or self._cache[0] != epoch:
            rng = np.random.default_rng(_seed_from(self.seed, epoch, 0x5A))
            chosen = [rng.choice(g, size=min(self.clips_per_video, len(g)), replace=False)
                      for g in self.groups]
            order = np.concatenate(chosen)
            rng.shuffle(order)
            self._cache = (epoch, order)
        return self._cache[1]

    def batch(self, step: int) -> np.ndarray:
        epoch, i = divmod(step, self.steps_per_epoch)
        return self.epoch(epoch)[i * self.batch_size:(i + 1) * self.batch_size]


class _StepBatches(torch.utils.data.Sampler):
    """Per-rank slices of the global batches of steps [start, stop)."""

    def __init__(self, sampler: ClipSampler, start: int, stop: int, rank: int, world: int):
        self.sampler, self.start, self.stop, self.rank, self.world = sampler, start, stop, rank, world

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self) -> Iterator[list[int]]:
        per = self.sampler.batch_size // self.world
        for step in range(self.start, self.stop):
            yield self.sampler.batch(step)[self.rank * per:(self.rank + 1) * per].tolist()


class _ClipDataset(torch.utils.data.Dataset):
    def __init__(self, cache: Any):
        self.cache = cache

    def __len__(self) -> int:
        return len(self.cache)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(self.cache[i]))


def _seed_worker(worker_id: int) -> None:
    # DataLoader gives each worker torch.initial_seed() = base seed + worker id
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def _video_of_clip(cache: Any) -> np.ndarray:
    index = getattr(cache, "index", None)          # ClipCache.index: a DataFrame
    if hasattr(index, "columns") and "video_index" in index.columns:
        return index["video_index"].to_numpy(dtype=np.int64)
    return np.arange(len(cache), dtype=np.int64)   # unknown grouping: every clip its own video


def data_fingerprint(cache: Any) -> dict[str, Any]:
    """What identifies the training data: clip count and shape, the video table's content."""
    info: dict[str, Any] = {"clips": len(cache), "clip_shape": list(np.shape(cache[0])) if len(cache) else []}
    videos = getattr(cache, "videos", None)
    if videos is not None:
        info["videos"] = hashlib.sha256(videos.to_json().encode()).hexdigest()[:16]
    return info


# ----------------------------------------------------------------------------------- helpers

def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device 'cuda' requested but no CUDA device is available")
        return torch.device("cuda", local_rank)
    return torch.device(name)


def build_model(config: CRWConfig, seed: int) -> CRW:
    """A freshly initialised CRW; the initialisation depends only on `seed`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_seed_from(seed, 0x1417))
        return CRW(config)


def fingerprint(model_config: CRWConfig, cfg: TrainConfig, data: Mapping[str, Any], world: int) -> str:
    """Hash of everything that determines the weights (not logging, workers or device)."""
    train = {k: v for k, v in cfg.to_dict().items()
             if k not in ("checkpoint_every", "log_every", "workers", "device", "threads")}
    blob = json.dumps({"model": model_config.to_dict(), "train": train, "data": data, "world": world},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _schedule(cfg: TrainConfig, steps_per_epoch: int) -> tuple[int, list[int]]:
    total = cfg.steps if cfg.steps is not None else cfg.epochs * steps_per_epoch
    if cfg.lr_milestones is not None:
        milestones = list(cfg.lr_milestones)
    else:
        milestones = [int(round(e * steps_per_epoch)) for e in cfg.lr_milestone_epochs]
    return total, milestones


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                       "pos": int(np_state[2]), "has_gauss": int(np_state[3]),
                       "cached_gaussian": float(np_state[4])},
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


def _scheduler_state(scheduler: torch.optim.lr_scheduler.LRScheduler) -> dict[str, Any]:
    state = dict(scheduler.state_dict())
    if "milestones" in state:       # a collections.Counter: not allowed in a weights-only load
        state["milestones"] = dict(state["milestones"])
    return state


def _load_scheduler_state(scheduler: torch.optim.lr_scheduler.LRScheduler, state: Mapping[str, Any]) -> None:
    from collections import Counter

    state = dict(state)
    if "milestones" in state:
        state["milestones"] = Counter(state["milestones"])
    scheduler.load_state_dict(state)


def load_resume_state(path: Path, expected: str) -> dict[str, Any] | None:
    """The resume state at `path` if it belongs to this run (same fingerprint), else None."""
    if not path.is_file():
        return None
    try:
        state = read_checkpoint(path)
    except ValueError as exc:
        log.warning("ignoring unreadable resume state %s (%s); starting from step 0", path, exc)
        return None
    if not isinstance(state, Mapping) or state.get("format") != RESUME_FORMAT:
        log.warning("ignoring %s: not a CRW resume state; starting from step 0", path)
        return None
    if state.get("fingerprint") != expected:
        log.info("resume state %s belongs to another configuration (%s != %s); starting from step 0",
                 path, state.get("fingerprint"), expected)
        return None
    return dict(state)


def step_inputs(model: CRW, clips: torch.Tensor, seed: int, step: int, global_batch: int, rank: int,
                device: torch.device) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
    """Augmented patches and edge-dropout draws of this process's share of one step.

    `clips` is this process's slice (global_batch / world clips) of the step's global batch. The
    crop boxes and dropout draws are made for the whole global batch from the (seed, step)
    generator and sliced, so they do not depend on the number of processes.
    """
    cfg = model.config
    gen = step_generator(seed, step)
    b, t, h, w, _ = clips.shape
    lo, hi = rank * b, (rank + 1) * b
    frame_boxes, patch_boxes = model.sample_boxes(global_batch * t, h, w, gen)
    boxes = (frame_boxes.view(global_batch, t, 4)[lo:hi].reshape(-1, 4),
             patch_boxes.view(global_batch, t, *patch_boxes.shape[1:])[lo:hi].flatten(0, 1))
    noise = None
    if cfg.edge_dropout > 0:
        n = cfg.nodes
        u_fwd, u_bwd = dropout_noise((global_batch, t - 1, n, n), gen)
        noise = (u_fwd[lo:hi].to(device, non_blocking=True), u_bwd[lo:hi].to(device, non_blocking=True))
    patches = model.make_patches(clips.to(device, non_blocking=True), boxes=boxes)
    return patches, noise


# ------------------------------------------------------------------------------------ train

def _metric_names(ks: Sequence[int]) -> list[str]:
    names = ["loss", "accuracy"]
    for k in ks:
        names += [f"loss_k{k}", f"accuracy_k{k}"]
    return names


def train(model_config: CRWConfig, cfg: TrainConfig, cache: Any, *,
          resume_path: str | os.PathLike | None = None,
          on_log: Callable[[int, dict[str, float]], None] | None = None,
          on_step: Callable[[int, CRW], None] | None = None,
          model: CRW | None = None, progress: bool = True) -> TrainResult:
    """Train a CRW on `cache` (a ClipCache or any sequence of uint8 T x S x S x 3 clips).

    - `resume_path`: where the resume state lives; a matching state there is resumed from.
    - `on_log(step, metrics)`: called on rank 0 every `log_every` steps and at the end with the
      window means of loss, accuracy, per-cycle loss/accuracy (`loss_k2`, `accuracy_k2`, ...; k is
      the turn-around frame), lr and clips/s.
    - `on_step(step, model)`: called after each optimiser step (tests use it to interrupt).
    - `model`: start from this model instead of a fresh one (its config must be `model_config`).
    Raises NonFiniteLossError when the loss becomes NaN/inf (the last resume state is kept).
    """
    distributed = cfg.distributed if cfg.distributed is not None else int(os.environ.get("WORLD_SIZE", "1")) > 1
    rank, world, local_rank = 0, 1, 0
    if distributed:
        rank = int(os.environ.get("RANK", "0"))
        world = int(os.environ.get("WORLD_SIZE", "1"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(cfg.device, local_rank)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if distributed and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if distributed:
        rank, world = dist.get_rank(), dist.get_world_size()
    if cfg.batch_size % world:
        raise ValueError(f"batch_size {cfg.batch_size} is not divisible by the {world} processes")
    if cfg.clip_len != getattr(cache, "clip_len", cfg.clip_len):
        raise ValueError(f"the clip cache holds clips of {cache.clip_len} frames, training wants "
                         f"{cfg.clip_len} (use cache.clips({cfg.clip_len}))")
    on_gpu = device.type == "cuda"

    sampler = ClipSampler(_video_of_clip(cache), cfg.clips_per_video, cfg.batch_size, cfg.seed)
    total_steps, milestones = _schedule(cfg, sampler.steps_per_epoch)
    fp = fingerprint(model_config, cfg, data_fingerprint(cache), world)

    crw = model if model is not None else build_model(model_config, cfg.seed)
    if crw.config != model_config:
        raise ValueError("the given model's config differs from model_config")
    crw.to(device).train()
    optimizer = torch.optim.Adam(crw.parameters(), lr=cfg.lr, betas=cfg.betas, eps=cfg.eps,
                                 weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=cfg.lr_gamma)

    resume_path = Path(resume_path) if resume_path is not None else None
    history: list[dict[str, float]] = []
    start_step = 0
    if resume_path is not None:
        state = load_resume_state(resume_path, fp)
        if state is not None:
            crw.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            _load_scheduler_state(scheduler, state["scheduler"])
            _set_rng_state(state["rng"])
            history = list(state["history"])
            start_step = int(state["step"])
            if rank == 0:
                log.info("resuming from %s at step %d of %d", resume_path, start_step, total_steps)

    if on_gpu and cfg.channels_last:
        crw.set_channels_last(True)
    autocast_dtype = torch.bfloat16 if (on_gpu and cfg.bf16) else None
    if cfg.compile:
        crw.encoder.compile()
    net: nn.Module = crw
    if distributed:
        if cfg.sync_batchnorm:
            if not on_gpu:
                raise ValueError("sync_batchnorm needs CUDA devices")
            crw = nn.SyncBatchNorm.convert_sync_batchnorm(crw)
        net = nn.parallel.DistributedDataParallel(crw, device_ids=[device.index] if on_gpu else None)

    loader = torch.utils.data.DataLoader(
        _ClipDataset(cache), batch_sampler=_StepBatches(sampler, start_step, total_steps, rank, world),
        num_workers=cfg.workers, worker_init_fn=_seed_worker, pin_memory=on_gpu,
        generator=torch.Generator().manual_seed(_seed_from(cfg.seed, start_step, 0xDA7A)),
        persistent_workers=False)

    ks: list[int] | None = None
    sums: torch.Tensor | None = None
    window_steps, window_start = 0, time.perf_counter()
    first_bad = torch.full((), -1, dtype=torch.long, device=device)
    last_saved = start_step if start_step > 0 else None
    started = time.perf_counter()

    def save(step: int) -> None:
        nonlocal last_saved
        if resume_path is not None and rank == 0:
            torch_save({"format": RESUME_FORMAT, "fingerprint": fp, "step": step,
                        "config": model_config.to_dict(), "train_config": cfg.to_dict(),
                        "model": {k: v.detach().cpu() for k, v in crw.state_dict().items()},
                        "optimizer": optimizer.state_dict(), "scheduler": _scheduler_state(scheduler),
                        "rng": _rng_state(), "history": history}, resume_path)
        if distributed:
            dist.barrier()
        last_saved = step

    def check_finite(step: int) -> None:
        bad = first_bad.clone()
        if distributed:
            dist.all_reduce(bad, op=dist.ReduceOp.MAX)
        if int(bad) >= 0:
            where = (f"the last good resume state ({resume_path}, step {last_saved}) is kept"
                     if resume_path is not None and last_saved is not None else "no checkpoint was written")
            raise NonFiniteLossError(f"the training loss became NaN or infinite at step {int(bad) + 1} "
                                     f"(checked at step {step}); stopping: {where}. Lower lr or "
                                     f"raise temperature.")

    from tqdm import tqdm

    bar = tqdm(total=total_steps, initial=start_step, desc="pretrain", unit="step",
               disable=not progress or rank != 0, dynamic_ncols=True)
    step = start_step
    try:
        for clips in loader:
            patches, noise = step_inputs(crw, clips, cfg.seed, step, cfg.batch_size, rank, device)
            loss, stats = net(patches, noise, autocast_dtype)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            lr = optimizer.param_groups[0]["lr"]
            scheduler.step()
            step += 1

            # device-side bookkeeping; the host reads it only every log_every steps
            if ks is None:
                ks = list(stats)
                sums = torch.zeros(2 + 2 * len(ks), dtype=torch.float64, device=device)
            values = [loss.detach(), torch.stack([a for _, a in stats.values()]).mean()]
            for k in ks:
                values += [stats[k][0], stats[k][1]]
            values_t = torch.stack([v.double() for v in values])
            first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss.detach()),
                                    torch.full_like(first_bad, step - 1), first_bad)
            sums += values_t
            window_steps += 1
            if on_step is not None:
                on_step(step, crw)

            if step % cfg.log_every == 0 or step == total_steps:
                check_finite(step)
                if distributed:
                    dist.all_reduce(sums)
                    sums /= world
                means = (sums / window_steps).tolist()
                elapsed = time.perf_counter() - window_start
                metrics = dict(zip(_metric_names(ks), means))
                metrics.update({"lr": lr, "clips_per_s": window_steps * cfg.batch_size / max(elapsed, 1e-9)})
                if rank == 0:
                    history.append({"step": step, **metrics})
                    bar.set_postfix(loss=f"{metrics['loss']:.3f}", acc=f"{metrics['accuracy']:.3f}")
                    if on_log is not None:
                        on_log(step, metrics)
                sums.zero_()
                window_steps, window_start = 0, time.perf_counter()
            if step % cfg.checkpoint_every == 0 or step == total_steps:
                check_finite(step)
                save(step)
            bar.update(1)
    finally:
        bar.close()
    if distributed:
        dist.barrier()
    return TrainResult(model=crw, step=step, history=history, seconds=time.perf_counter() - started,
                       resumed_from=start_step, rank=rank)
