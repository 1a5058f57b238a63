"""Test-time adaptation of a CRW to one video, then exact restoration of the base weights.

The official code never released its adaptation (spec crw.md §7), so this is an original design,
reported separately from the reproduction targets and off by default:

1. before labels are propagated through a video, the encoder is fine-tuned for `steps` Adam steps
   on that video's own frames with the contrastive-walk loss (clips of `window` frames, `frame_gap`
   frames apart);
2. the video is propagated with the adapted weights;
3. the base weights come back bit for bit before the next video.

    with adapted(model, frames, AdaptConfig(steps=20)) as result:   # frames: T x H x W x 3 uint8
        feats = model.features(model.normalize_frames(...))
    # weights, BatchNorm buffers, module modes, requires_grad flags, gradients and RNG states
    # are exactly what they were before the `with`, also when the adaptation raised

Objectives: `"patches"` is the training loss itself (random frame crops, a grid of jittered patches,
layer4 + head embeddings; needs a model with a head); `"dense"` walks directly between the cells of
the layer3 maps of whole frames (the features propagation uses; works for propagation-only models).

BatchNorm: `"frozen"` keeps every BN layer in eval mode (running statistics used and untouched);
`"train"` uses batch statistics and updates the running ones with the layer's momentum;
`"reestimate"` adapts with frozen BN and then recomputes the running statistics of the layers
propagation uses from the video's frames under test preprocessing (cumulative average).

For propagation, `AdaptingExtractor` is a feature extractor (`selfsup.propagate` style) that adapts
to each video inside `on_video(frames)`, and `propagate_with_adaptation` runs a whole data set
video by video with it, timing adaptation and propagation separately.
"""
from __future__ import annotations

import contextlib
import logging
import random
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .model import CRW
from .walk import contrastive_walk, dropout_noise

__all__ = ["AdaptConfig", "AdaptResult", "LAYER_GROUPS", "ModelSnapshot", "preserved", "adapt", "adapted",
           "select_parameters", "set_batchnorm_mode", "reestimate_batchnorm", "clip_starts",
           "walk_objective", "video_frames", "AdaptingExtractor", "propagate_with_adaptation",
           "adaptation_generator"]

log = logging.getLogger(__name__)

LAYER_GROUPS = ("stem", "layer1", "layer2", "layer3", "layer4", "head")
BN_MODES = ("frozen", "train", "reestimate")
OBJECTIVES = ("patches", "dense")


# ============================================================================================
# Configuration
# ============================================================================================

@dataclass(frozen=True)
class AdaptConfig:
    """How to adapt to one video. Defaults: an original recipe built from the training one
    (Adam at the training lr, clips of the training length at the training frame rate)."""

    steps: int = 20                       # Adam steps per video (0: no gradient step)
    lr: float = 1e-4                      # the pretraining lr (spec §4)
    window: int = 4                       # clip length in frames (the training clip length)
    frame_gap: int = 3                    # frames between clip frames: 24 fps video, 8 fps training clips
    batch_size: int = 4                   # clips per step
    layers: tuple[str, ...] = ("all",)    # updated groups: stem, layer1..layer4, head, or all
    # the trained statistics come from small training patches; frames at test resolution differ
    batchnorm: Literal["frozen", "train", "reestimate"] = "reestimate"
    objective: Literal["patches", "dense"] = "patches"
    dense_size: int = 0                   # dense: frames resized to this short side (0: as given)
    dense_pool: int = 2                   # dense: layer3 cells average-pooled by this (nodes = cells / pool^2)
    reestimate_batch: int = 8             # frames per forward pass when re-estimating BN statistics
    temperature: float | None = None      # None: the model's walk temperature
    edge_dropout: float | None = None     # None: the model's edge-dropout rate
    seed: int = 0
    bf16: bool = False                    # encoder under bf16 autocast on CUDA (the walk stays fp32)

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.window < 3:
            raise ValueError(f"window must be >= 3 frames (the shortest palindrome 0->2->0), got {self.window}")
        if self.frame_gap < 1 or self.batch_size < 1 or self.dense_pool < 1 or self.reestimate_batch < 1:
            raise ValueError("frame_gap, batch_size, dense_pool and reestimate_batch must be >= 1")
        if self.dense_size < 0:
            raise ValueError(f"dense_size must be >= 0, got {self.dense_size}")
        if self.batchnorm not in BN_MODES:
            raise ValueError(f"batchnorm must be one of {', '.join(BN_MODES)}, got {self.batchnorm!r}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if not self.layers:
            raise ValueError("layers is empty: nothing would be adapted")
        bad = [g for g in self.layers if g not in LAYER_GROUPS + ("all",)]
        if bad:
            raise ValueError(f"unknown layer group(s) {', '.join(map(repr, bad))}; expected "
                             f"{', '.join(LAYER_GROUPS)} or all")
        if self.temperature is not None and not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.edge_dropout is not None and not 0 <= self.edge_dropout < 1:
            raise ValueError(f"edge_dropout must lie in [0, 1), got {self.edge_dropout}")

    @property
    def span(self) -> int:
        """Frames a clip covers from its first to its last frame, inclusive."""
        return (self.window - 1) * self.frame_gap + 1

    def replace(self, **changes: Any) -> "AdaptConfig":
        return replace(self, **changes)

    @classmethod
    def from_params(cls, section: Any, seed: int = 0, stream: bool = False) -> "AdaptConfig":
        """From the `adapt` params section (`selfsup.config.AdaptParams`); `stream=True` takes the
        stream's steps and lr."""
        return cls(steps=section.stream_steps if stream else section.steps,
                   lr=section.stream_lr if stream else section.lr, window=section.window,
                   frame_gap=section.frame_gap, batch_size=section.batch_size, layers=tuple(section.layers),
                   batchnorm=section.batchnorm, objective=section.objective, dense_size=section.dense_size,
                   dense_pool=section.dense_pool, seed=seed)


@dataclass
class AdaptResult:
    steps: int
    losses: list[float] = field(default_factory=list)
    accuracies: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def first_loss(self) -> float:
        return self.losses[0] if self.losses else float("nan")

    @property
    def last_loss(self) -> float:
        return self.losses[-1] if self.losses else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "first_loss": self.first_loss, "last_loss": self.last_loss,
                "seconds": self.seconds}


# ============================================================================================
# Snapshot and exact restoration
# ============================================================================================

def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


class ModelSnapshot:
    """Everything adaptation may change in a module, copied: the state dict (parameters and buffers,
    BatchNorm running statistics and counters included), each parameter's gradient and
    requires_grad flag, each submodule's train/eval mode and BatchNorm momentum, and the global
    RNG states (torch CPU and CUDA, NumPy, Python). `restore` writes the values back in place, so
    tensors keep their identity (optimisers and views stay valid) and the result is bitwise equal."""

    def __init__(self, model: nn.Module, rng: bool = True):
        self.state = {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()}
        params = dict(model.named_parameters())
        self.requires_grad = {k: p.requires_grad for k, p in params.items()}
        self.grads = {k: (None if p.grad is None else p.grad.detach().clone()) for k, p in params.items()}
        self.modes = {k: m.training for k, m in model.named_modules()}
        self.momenta = {k: m.momentum for k, m in model.named_modules()
                        if isinstance(m, nn.modules.batchnorm._BatchNorm)}
        self.rng = _rng_state() if rng else None

    def restore(self, model: nn.Module) -> None:
        current = model.state_dict(keep_vars=True)
        if set(current) != set(self.state):
            added, removed = sorted(set(current) - set(self.state)), sorted(set(self.state) - set(current))
            raise RuntimeError(f"the model's state changed shape while adapted (added {added[:5]}, "
                               f"removed {removed[:5]}); cannot restore")
        with torch.no_grad():
            for key, saved in self.state.items():
                target = current[key]
                if target.shape != saved.shape or target.dtype != saved.dtype:
                    # a parameter replaced by another tensor: put the saved one back in its place
                    target.data = saved.clone()
                else:
                    target.copy_(saved)
        for key, p in model.named_parameters():
            p.requires_grad_(self.requires_grad[key])
            saved_grad = self.grads[key]
            if saved_grad is None:
                p.grad = None
            elif p.grad is None or p.grad.shape != saved_grad.shape:
                p.grad = saved_grad.clone()
            else:
                p.grad.copy_(saved_grad)
        for key, m in model.named_modules():
            m.training = self.modes.get(key, m.training)
            if key in self.momenta:
                m.momentum = self.momenta[key]
        if self.rng is not None:
            _set_rng_state(self.rng)


@contextlib.contextmanager
def preserved(model: nn.Module, rng: bool = True) -> Iterator[ModelSnapshot]:
    """Snapshot `model` (and the RNG states) on entry and restore it exactly on exit, error or not."""
    snapshot = ModelSnapshot(model, rng=rng)
    try:
        yield snapshot
    finally:
        snapshot.restore(model)


# ============================================================================================
# What is updated, and how BatchNorm behaves
# ============================================================================================

def _group_modules(model: CRW, group: str) -> list[nn.Module]:
    enc = model.encoder
    if group == "stem":
        return [enc.conv1, enc.bn1]
    if group in ("layer1", "layer2", "layer3"):
        return [getattr(enc, group)]
    if group == "layer4":
        return [enc.layer4] if enc.layer4 is not None else []
    if group == "head":
        return [model.head] if model.head is not None else []
    raise ValueError(f"unknown layer group {group!r}; expected {', '.join(LAYER_GROUPS)} or all")


def select_parameters(model: CRW, layers: Sequence[str]) -> list[nn.Parameter]:
    """Set requires_grad on the parameters of `layers` only; return them (in model order)."""
    groups = LAYER_GROUPS if "all" in layers else tuple(layers)
    chosen: set[int] = set()
    for group in groups:
        for module in _group_modules(model, group):
            chosen.update(id(p) for p in module.parameters())
    params = []
    for p in model.parameters():
        p.requires_grad_(id(p) in chosen)
        if id(p) in chosen:
            params.append(p)
    if not params:
        raise ValueError(f"layers {list(layers)} hold no parameters in this model "
                         f"(layer4 {model.encoder.layer4 is not None}, head {model.head is not None})")
    return params


def _batchnorms(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def set_batchnorm_mode(model: nn.Module, mode: str) -> None:
    """Put the model in train mode with its BatchNorm layers as `mode` says (see the module doc)."""
    if mode not in BN_MODES:
        raise ValueError(f"batchnorm must be one of {', '.join(BN_MODES)}, got {mode!r}")
    model.train()
    if mode in ("frozen", "reestimate"):
        for bn in _batchnorms(model):
            bn.eval()


@torch.no_grad()
def reestimate_batchnorm(model: CRW, frames: torch.Tensor, batch_size: int = 8) -> None:
    """Recompute the running statistics of the BatchNorm layers up to layer3 (those propagation
    uses) from normalised frames N x 3 x H x W: a cumulative average over batches of frames."""
    encoder = model.encoder
    used = [encoder.bn1] + _batchnorms(encoder.layer1) + _batchnorms(encoder.layer2) + _batchnorms(encoder.layer3)
    was_training = {m: m.training for m in model.modules()}
    momenta = {bn: bn.momentum for bn in used}
    try:
        model.eval()
        for bn in used:
            bn.reset_running_stats()
            bn.momentum = None          # cumulative moving average
            bn.train()
        param = next(model.parameters())
        for start in range(0, frames.shape[0], batch_size):
            x = frames[start:start + batch_size].to(param.device, param.dtype)
            if model.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            encoder(x, "layer3")
    finally:
        for bn, momentum in momenta.items():
            bn.momentum = momentum
        for m, mode in was_training.items():
            m.training = mode


# ============================================================================================
# The walk objective on one video
# ============================================================================================

def adaptation_generator(seed: int, *salt: int) -> torch.Generator:
    """A CPU generator seeded from (seed, *salt): the same video and seed give the same draws."""
    value = int(np.random.SeedSequence([int(seed), 0xADA7, *map(int, salt)]).generate_state(1, np.uint64)[0] >> 1)
    return torch.Generator().manual_seed(value)


def clip_starts(n_frames: int, span: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """`count` clip start frames drawn uniformly from those whose clip fits in the video."""
    if n_frames < span:
        raise ValueError(f"a clip spans {span} frames but the video has only {n_frames}; lower "
                         f"window or frame_gap")
    return torch.randint(0, n_frames - span + 1, (count,), generator=generator)


def _gather_clips(frames: torch.Tensor, starts: torch.Tensor, window: int, gap: int) -> torch.Tensor:
    index = starts.view(-1, 1) + gap * torch.arange(window).view(1, -1)     # B x window
    return frames[index.to(frames.device)]


def _walk_settings(model: CRW, config: AdaptConfig) -> tuple[float, float]:
    temperature = config.temperature if config.temperature is not None else model.config.temperature
    rate = config.edge_dropout if config.edge_dropout is not None else model.config.edge_dropout
    return temperature, rate


def _dense_frames(clips: torch.Tensor, model: CRW, size: int) -> torch.Tensor:
    """uint8 B x T x H x W x 3 -> test-normalised float (B*T) x 3 x h x w (short side `size`)."""
    b, t, h, w, _ = clips.shape
    x = clips.reshape(b * t, h, w, 3).permute(0, 3, 1, 2).float().div_(255.0)
    if size and min(h, w) != size:
        scale = size / min(h, w)
        x = F.interpolate(x, size=(max(1, round(h * scale)), max(1, round(w * scale))), mode="bilinear",
                          align_corners=False, antialias=scale < 1)
    return model.normalize_frames(x)


def walk_objective(model: CRW, frames: torch.Tensor, config: AdaptConfig, generator: torch.Generator
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Walk loss and mean cycle accuracy of one batch of clips drawn from `frames` (T x H x W x 3 uint8)."""
    starts = clip_starts(frames.shape[0], config.span, config.batch_size, generator)
    clips = _gather_clips(frames, starts, config.window, config.frame_gap)      # B x window x H x W x 3
    b, t = clips.shape[:2]
    temperature, rate = _walk_settings(model, config)
    device = next(model.parameters()).device
    autocast = torch.bfloat16 if (config.bf16 and device.type == "cuda") else None
    if config.objective == "patches":
        if model.head is None or model.encoder.layer4 is None:
            raise ValueError("objective 'patches' needs a model with layer4 and a head (load the checkpoint "
                             "without propagation_only), or use objective 'dense'")
        h, w = clips.shape[2:4]
        boxes = model.sample_boxes(b * t, h, w, generator)
        patches = model.make_patches(clips.to(device), boxes=boxes)
        q = model.embed(patches, autocast)
    else:
        x = _dense_frames(clips.to(device), model, config.dense_size)
        if model.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
            fmap = model.encoder(x, "layer3")
        fmap = fmap.float()
        if config.dense_pool > 1:
            fmap = F.avg_pool2d(fmap, config.dense_pool, config.dense_pool, ceil_mode=True)
        z = F.normalize(fmap.flatten(2), dim=1, eps=1e-12)                  # (B*T) x C x N
        q = z.view(b, t, z.shape[1], z.shape[2]).permute(0, 2, 1, 3)         # B x C x T x N
    n = q.shape[-1]
    noise = None
    if rate > 0:
        u_fwd, u_bwd = dropout_noise((b, t - 1, n, n), generator)
        noise = (u_fwd.to(device), u_bwd.to(device))
    cfg = model.config
    loss, stats = contrastive_walk(q, temperature, rate, noise, cfg.leaky_backward_dropout,
                                   cfg.include_shortest_cycle, cfg.walk_start)
    accuracy = torch.stack([a for _, a in stats.values()]).mean()
    return loss, accuracy


def _as_uint8_frames(frames: torch.Tensor | np.ndarray) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(frames)) if isinstance(frames, np.ndarray) else frames
    if x.dim() != 4 or x.shape[-1] != 3 or x.dtype != torch.uint8:
        raise ValueError(f"expected video frames T x H x W x 3 uint8, got {tuple(x.shape)} {x.dtype}")
    return x


def adapt(model: CRW, frames: torch.Tensor | np.ndarray, config: AdaptConfig | None = None, *,
          optimizer: torch.optim.Optimizer | None = None, generator: torch.Generator | None = None,
          on_step: Callable[[int, float], None] | None = None) -> AdaptResult:
    """Fine-tune `model` in place on one video's frames (T x H x W x 3 uint8); no restoration.

    Without `optimizer`, a fresh Adam over the parameters of `config.layers` is used (the other
    parameters get requires_grad False). With one (the online stream keeps its own), it is stepped
    as given. Returns the per-step losses and accuracies; the model is left in eval mode.
    Raises FloatingPointError if the loss becomes NaN or infinite.
    """
    config = config or AdaptConfig()
    frames = _as_uint8_frames(frames)
    generator = generator if generator is not None else adaptation_generator(config.seed)
    start = time.perf_counter()
    result = AdaptResult(steps=config.steps)
    params = select_parameters(model, config.layers)
    if optimizer is None and config.steps > 0:
        optimizer = torch.optim.Adam(params, lr=config.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    if config.steps > 0:
        set_batchnorm_mode(model, config.batchnorm)
        for step in range(config.steps):
            loss, accuracy = walk_objective(model, frames, config, generator)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"adaptation loss became {loss.item()} at step {step + 1}; "
                                         f"lower lr or raise temperature")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            result.losses.append(float(loss.detach()))
            result.accuracies.append(float(accuracy.detach()))
            if on_step is not None:
                on_step(step, result.losses[-1])
    if config.batchnorm == "reestimate":
        x = frames.permute(0, 3, 1, 2).float().div_(255.0)
        reestimate_batchnorm(model, model.normalize_frames(x), config.reestimate_batch)
    model.eval()
    result.seconds = time.perf_counter() - start
    return result


@contextlib.contextmanager
def adapted(model: CRW, frames: torch.Tensor | np.ndarray, config: AdaptConfig | None = None, *,
            generator: torch.Generator | None = None) -> Iterator[AdaptResult]:
    """Adapt `model` to one video for the duration of the `with` block, then restore it exactly."""
    with preserved(model):
        yield adapt(model, frames, config, generator=generator)


# ============================================================================================
# Propagation with adaptation
# ============================================================================================

def video_frames(paths: Sequence[str | Path], crop_size: int = -1) -> torch.Tensor:
    """A video's frames as uint8 T x H x W x 3; `crop_size > 0` resizes to a square (bilinear), as
    propagation's input does."""
    from ..data.davis import read_image

    images = torch.from_numpy(np.stack([read_image(p) for p in paths]))
    if crop_size and crop_size > 0:
        x = images.permute(0, 3, 1, 2).float()
        x = F.interpolate(x, size=(crop_size, crop_size), mode="bilinear", align_corners=False, antialias=False)
        images = x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
    return images


class AdaptingExtractor:
    """A feature extractor (normalised frames N x 3 x H x W -> layer3 maps) whose model is adapted
    to the current video inside `on_video(frames)` and restored exactly afterwards."""

    def __init__(self, model: CRW, config: AdaptConfig | None = None):
        self.model = model
        self.config = config or AdaptConfig()
        self.last: AdaptResult | None = None

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        return self.model.features(frames)

    @contextlib.contextmanager
    def on_video(self, frames: torch.Tensor | np.ndarray, index: int = 0) -> Iterator[AdaptResult]:
        with adapted(self.model, frames, self.config,
                     generator=adaptation_generator(self.config.seed, index)) as result:
            self.last = result
            yield result


def _set_videos(set_name: str, root: str | Path, split: int, subset: str
                ) -> tuple[list[str], Callable[[str], list[Path]]]:
    if set_name == "davis":
        from ..data.davis import DavisSet

        davis = DavisSet(root, subset)
        return davis.sequences, davis.frame_paths
    if set_name == "jhmdb":
        from ..data.jhmdb import JhmdbSet

        jhmdb = JhmdbSet(root, split=split)
        by_key = {v.key: v for v in jhmdb.videos}
        return list(by_key), lambda key: jhmdb.frame_paths(by_key[key])
    if set_name == "vip":
        from ..data.vip import VipSet

        vip = VipSet(root, subset)
        return vip.videos, vip.frame_paths
    raise ValueError(f"unknown data set {set_name!r}; expected davis, jhmdb or vip")


def propagate_with_adaptation(set_name: str, model: CRW, config: AdaptConfig, root: str | Path,
                              out: str | Path, propagation: Any = None, *,
                              videos: Sequence[str] | None = None, crop_size: int | None = None,
                              device: str | torch.device = "cpu", batch_size: int = 8,
                              progress: bool = True, split: int = 1, subset: str = "val",
                              **set_kwargs: Any) -> dict:
    """Propagate a data set (`davis`, `jhmdb`, `vip`) video by video, adapting `model` to each video
    first and restoring it after. Outputs are those of `selfsup.propagate.propagate_<set>` (the
    official result formats). Returns their summary plus per-video timings:
    {"videos", "frames", "seconds", "adapt_seconds", "propagate_seconds", "per_video": [...]}.
    """
    from .. import propagate as prop

    run = {"davis": prop.propagate_davis, "jhmdb": prop.propagate_jhmdb, "vip": prop.propagate_vip}
    if set_name not in run:
        raise ValueError(f"unknown data set {set_name!r}; expected davis, jhmdb or vip")
    crop = prop.PROTOCOLS[set_name]["crop_size"] if crop_size is None else crop_size
    names, frame_paths = _set_videos(set_name, root, split, subset)
    if videos is not None:
        unknown = sorted(set(videos) - set(names))
        if unknown:
            raise ValueError(f"{root}: no {set_name} video(s) named {', '.join(unknown[:5])}")
        names = [n for n in names if n in set(videos)]
    device = prop.resolve_device(device)
    model.to(device)
    extractor = AdaptingExtractor(model, config)
    select = {"davis": "sequences", "jhmdb": "videos", "vip": "videos"}[set_name]
    if set_name == "davis":
        set_kwargs.setdefault("set_name", subset)
    elif set_name == "jhmdb":
        set_kwargs.setdefault("split", split)
    else:
        set_kwargs.setdefault("subset", subset)
    per_video, frames_total = [], 0
    started = time.perf_counter()
    iterator: Any = names
    if progress:
        from tqdm import tqdm

        iterator = tqdm(names, desc=f"{set_name} + adaptation", unit="video")
    for index, name in enumerate(iterator):
        t0 = time.perf_counter()
        frames = video_frames(frame_paths(name), crop)
        with extractor.on_video(frames, index) as result:
            t1 = time.perf_counter()
            stats = run[set_name](extractor, root, out, propagation, **{select: [name]}, crop_size=crop,
                                  device=device, batch_size=batch_size, progress=False, **set_kwargs)
        t2 = time.perf_counter()
        frames_total += stats["frames"]
        per_video.append({"video": name, "frames": stats["frames"], "adapt_seconds": t1 - t0,
                          "propagate_seconds": t2 - t1, **{f"adapt_{k}": v for k, v in result.as_dict().items()
                                                           if k != "seconds"}})
        log.info("%s %s: adapted in %.1f s (loss %.3f -> %.3f), propagated in %.1f s", set_name, name,
                 t1 - t0, result.first_loss, result.last_loss, t2 - t1)
    seconds = time.perf_counter() - started
    return {"videos": len(names), "frames": frames_total, "seconds": seconds,
            "adapt_seconds": sum(v["adapt_seconds"] for v in per_video),
            "propagate_seconds": sum(v["propagate_seconds"] for v in per_video),
            "frames_per_second": frames_total / seconds if seconds > 0 else float("nan"),
            "per_video": per_video}
