"""Training loop for CUT / FastCUT / SinCUT: schedule, data stream, checkpoints, visuals.

- Schedule (official): lr factor for epoch e (1-based) = 1 − max(0, e − n_const)/(n_decay + 1);
  crop augmentation is off in the decay epochs (e > n_const). With `schedule_unit="step"` (the
  small embedded default) the same formula counts optimisation steps instead of epochs.
- Data stream: the batch of step s is a pure function of (seed, s): epoch e's item order is a
  permutation drawn from (seed, e); each item's B draw, crop and flip from (seed, e, position).
  FastCUT's flip coin and the patch positions come from (seed, s) as well. A resumed run
  therefore continues exactly where an uninterrupted one would be.
- Checkpoints: `<out>/latest.pt` (networks, optimisers, step, config) written atomically every
  `checkpoint_every` steps and at the end; `latest_net_{G,D,F}.pth` plain state dicts in the
  official layout next to it. `train(..., resume=True)` continues from `latest.pt`.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from selfsup.data.unaligned import (SingleImageCrops, TransformSpec, UnalignedDataset, domain_dirs,
                                    files_fingerprint, list_images, load_rgb, paired_files, pil_to_tensor,
                                    tensor_to_uint8, transform_image)
from selfsup.io import torch_save

from .model import CUTConfig, CUTModel, SinCUTModel, build_model, flip_draw

log = logging.getLogger(__name__)

__all__ = ["TrainConfig", "lr_factor", "train", "load_checkpoint", "make_grid", "resolve_device",
           "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "selfsup-cut-1"


def lr_factor(t: int, n_const: int, n_decay: int) -> float:
    """Learning-rate factor of epoch (or step) t, 1-based: 1 − max(0, t − n_const)/(n_decay + 1)."""
    return 1.0 - max(0, t - n_const) / float(n_decay + 1)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    return torch.device(device)


@dataclass(frozen=True)
class TrainConfig:
    """Data, schedule and bookkeeping. Library defaults are the paper's (epoch schedule from the mode)."""

    dataroot: str
    out_dir: str
    model: CUTConfig = field(default_factory=CUTConfig)
    load_size: int | tuple[int, int] = 286
    crop_size: int = 256
    flip: bool = True
    crop_in_decay: bool = False
    schedule_unit: str = "epoch"               # "epoch" (official) or "step"
    n_const: int | None = None                 # None: the mode's n_epochs (epoch unit only)
    n_decay: int | None = None
    sincut_crop: int = 64
    sincut_zoom_min: float = 1 / 3
    sincut_epoch_length: int = 100_000         # crops per SinCUT "epoch"
    sincut_shared_zoom: bool = False           # one zoom per batch (intended officially; per crop in effect)
    seed: int = 0
    device: str = "auto"
    preload: bool = False
    loader_threads: int = 2
    checkpoint_every: int = 5000
    log_every: int = 100
    image_every: int = 1000
    num_visuals: int = 4
    max_steps: int | None = None               # stop early (the schedule is unchanged)

    def schedule(self) -> tuple[int, int]:
        m = self.model.resolved()
        if self.schedule_unit == "epoch":
            return (m.n_epochs if self.n_const is None else self.n_const,
                    m.n_epochs_decay if self.n_decay is None else self.n_decay)
        if self.schedule_unit == "step":
            if self.n_const is None or self.n_decay is None:
                raise ValueError("schedule_unit 'step' needs n_const and n_decay (steps)")
            return self.n_const, self.n_decay
        raise ValueError(f"schedule_unit must be 'epoch' or 'step', got {self.schedule_unit!r}")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["model"] = self.model.to_dict()
        if isinstance(d["load_size"], tuple):
            d["load_size"] = list(d["load_size"])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        d["model"] = CUTConfig.from_dict(d["model"])
        if isinstance(d.get("load_size"), list):
            d["load_size"] = tuple(d["load_size"])
        return cls(**d)


# --------------------------------------------------------------------------------------------
# Data streams
# --------------------------------------------------------------------------------------------

class _UnalignedStream:
    """Batches of (real_A, real_B) for CUT / FastCUT, a pure function of (seed, step)."""

    def __init__(self, cfg: TrainConfig, batch_size: int, steps_per_epoch_hint: int | None = None):
        self.cfg = cfg
        self.data = UnalignedDataset(cfg.dataroot, "train", preload=cfg.preload)
        self.batch_size = batch_size
        self.steps_per_epoch = max(1, len(self.data) // batch_size)  # drop_last
        self._perm_cache: dict[int, np.ndarray] = {}

    def fingerprint(self) -> str:
        return self.data.fingerprint()

    def epoch_of(self, step: int) -> int:
        """1-based epoch of 1-based step."""
        return (step - 1) // self.steps_per_epoch + 1

    def _perm(self, epoch: int) -> np.ndarray:
        perm = self._perm_cache.get(epoch)
        if perm is None:  # loader threads may race here; both compute the same permutation
            perm = np.random.default_rng([self.cfg.seed, epoch]).permutation(len(self.data))
            self._perm_cache = {epoch: perm}
        return perm

    def batch(self, step: int, decay: bool) -> tuple[torch.Tensor, torch.Tensor]:
        epoch = self.epoch_of(step)
        pos0 = ((step - 1) % self.steps_per_epoch) * self.batch_size
        perm = self._perm(epoch)
        no_crop = decay and not self.cfg.crop_in_decay
        spec = TransformSpec(self.cfg.load_size, self.cfg.crop_size, self.cfg.flip, no_crop)
        a_list, b_list = [], []
        for pos in range(pos0, pos0 + self.batch_size):
            rng = np.random.default_rng([self.cfg.seed, epoch, pos, 1])
            a, b = self.data.item(int(perm[pos]), rng, spec)
            a_list.append(a)
            b_list.append(b)
        return torch.stack(a_list), torch.stack(b_list)


class _SingleImageStream:
    """SinCUT: batches of crops of the single trainA and trainB images."""

    def __init__(self, cfg: TrainConfig, batch_size: int):
        dir_a, dir_b = domain_dirs(cfg.dataroot, "train")
        files_a, files_b = list_images(dir_a), list_images(dir_b)
        if len(files_a) != 1 or len(files_b) != 1:
            raise ValueError(f"SinCUT needs exactly one image in {dir_a} and one in {dir_b}, found "
                             f"{len(files_a)} and {len(files_b)}")
        self.cfg = cfg
        kw = dict(crop_size=cfg.sincut_crop, zoom_min=cfg.sincut_zoom_min, flip=cfg.flip,
                  epoch_length=cfg.sincut_epoch_length)
        self.A, self.B = SingleImageCrops(files_a[0], **kw), SingleImageCrops(files_b[0], **kw)
        self.batch_size = batch_size
        self.steps_per_epoch = max(1, cfg.sincut_epoch_length // batch_size)
        self._orders: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._files, self._root = [files_a, files_b], Path(cfg.dataroot)

    def fingerprint(self) -> str:
        return files_fingerprint(self._files, self._root)

    def epoch_of(self, step: int) -> int:
        return (step - 1) // self.steps_per_epoch + 1

    def batch(self, step: int, decay: bool) -> tuple[torch.Tensor, torch.Tensor]:
        epoch = self.epoch_of(step)
        orders = self._orders.get(epoch)
        if orders is None:
            rng = np.random.default_rng([self.cfg.seed, epoch])
            orders = (self.A.cell_order(rng), self.B.cell_order(rng))
            self._orders = {epoch: orders}
        order_a, order_b = orders
        pos0 = ((step - 1) % self.steps_per_epoch) * self.batch_size
        zoom = None
        if self.cfg.sincut_shared_zoom:
            z = np.random.default_rng([self.cfg.seed, epoch, pos0, 2]).uniform(self.cfg.sincut_zoom_min, 1.0, 2)
            zoom = (float(z[0]), float(z[1]))
        a_list, b_list = [], []
        for pos in range(pos0, pos0 + self.batch_size):
            rng = np.random.default_rng([self.cfg.seed, epoch, pos, 1])
            a_list.append(self.A.crop(rng, order_a[pos % len(order_a)], zoom))
            b_list.append(self.B.crop(rng, order_b[pos % len(order_b)], zoom))
        return torch.stack(a_list), torch.stack(b_list)


# --------------------------------------------------------------------------------------------
# Visuals
# --------------------------------------------------------------------------------------------

def make_grid(rows: list[list[np.ndarray]], pad: int = 2, value: int = 255) -> np.ndarray:
    """Tile H×W×3 uint8 images (rows of equal length and size) with `pad` pixels between them."""
    if not rows or not rows[0]:
        raise ValueError("make_grid needs at least one image")
    h, w = rows[0][0].shape[:2]
    ncol = max(len(r) for r in rows)
    out = np.full((len(rows) * (h + pad) + pad, ncol * (w + pad) + pad, 3), value, dtype=np.uint8)
    for i, row in enumerate(rows):
        for j, im in enumerate(row):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            out[y:y + h, x:x + w] = im[:h, :w]
    return out


def _visual_inputs(cfg: TrainConfig) -> tuple[torch.Tensor, list[torch.Tensor] | None] | None:
    """A few fixed testA images (and their paired ground truth when `testA_gtB/` exists)."""
    try:
        dir_a, _ = domain_dirs(cfg.dataroot, "test")
        files = list_images(dir_a)[: cfg.num_visuals]
    except FileNotFoundError:
        return None
    if not files:
        return None
    size = cfg.crop_size
    spec = TransformSpec(size, size, flip=False)
    xs = torch.stack([transform_image(load_rgb(f), spec, None) for f in files])
    gt = paired_files(cfg.dataroot, "testA_gtB", files)
    gts = [transform_image(load_rgb(f), spec, None) for f in gt] if gt else None
    return xs, gts


def visual_grid(model: CUTModel | SinCUTModel, inputs: torch.Tensor, gts: list[torch.Tensor] | None) -> np.ndarray:
    """Rows of input | output | paired ground truth (where it exists)."""
    out = model.translate(inputs)
    rows = []
    for i in range(inputs.shape[0]):
        row = [tensor_to_uint8(inputs[i]), tensor_to_uint8(out[i])]
        if gts is not None:
            row.append(tensor_to_uint8(gts[i]))
        rows.append(row)
    return make_grid(rows)


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------

def _save_checkpoint(model: CUTModel | SinCUTModel, cfg: TrainConfig, step: int, out_dir: Path,
                     history: list[dict] | None = None, data_fingerprint: str | None = None) -> None:
    state = {
        "format": CHECKPOINT_FORMAT, "step": step, "config": cfg.to_dict(), "history": list(history or []),
        "data": data_fingerprint,
        "G": model.netG.state_dict(), "D": model.netD.state_dict(), "F": model.netF.state_dict(),
        "opt_G": model.optimizer_G.state_dict(), "opt_D": model.optimizer_D.state_dict(),
        "opt_F": model.optimizer_F.state_dict(),
    }
    # plain state dicts in the official layout first, the resumable file last (it marks completion)
    for name, net in (("G", model.netG), ("D", model.netD), ("F", model.netF)):
        torch_save(net.state_dict(), out_dir / f"latest_net_{name}.pth")
    torch_save(state, out_dir / "latest.pt")


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """A selfsup CUT checkpoint (`latest.pt`), validated."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    state = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a selfsup CUT checkpoint (format {CHECKPOINT_FORMAT})")
    return state


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------

# settings that do not change the result of a run (may differ between a run and its resumption)
_BOOKKEEPING = {"out_dir", "device", "preload", "loader_threads", "checkpoint_every", "log_every",
                "image_every", "num_visuals", "max_steps"}


def _algorithm_changes(saved: TrainConfig, now: TrainConfig) -> list[str]:
    a, b = saved.to_dict(), now.to_dict()
    return sorted(k for k in a if k not in _BOOKKEEPING and a[k] != b.get(k))


def _step_seed(seed: int, step: int) -> int:
    return int(np.random.default_rng([seed, step, 2]).integers(0, 2 ** 62))


def train(cfg: TrainConfig, *, resume: bool = True, restart_on_mismatch: bool = False,
          on_log: Callable[[int, dict[str, float]], None] | None = None,
          on_images: Callable[[int, np.ndarray], None] | None = None) -> CUTModel | SinCUTModel:
    """Train to the end of the schedule (or `max_steps`), checkpointing into `cfg.out_dir`.

    A `latest.pt` written with other settings is an error, or with `restart_on_mismatch` a
    reason to start over. `on_log(step, metrics)` receives the losses averaged since the last call and the lr;
    `on_images(step, grid)` an input | output | ground-truth grid of fixed test images.
    """
    mcfg = cfg.model.resolved()
    device = resolve_device(cfg.device)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    model = build_model(mcfg, device)
    batch_size = mcfg.batch_size
    stream = (_SingleImageStream(cfg, batch_size) if mcfg.mode == "sincut"
              else _UnalignedStream(cfg, batch_size))
    n_const, n_decay = cfg.schedule()
    unit_steps = 1 if cfg.schedule_unit == "step" else stream.steps_per_epoch
    total_steps = (n_const + n_decay) * unit_steps
    last_step = total_steps if cfg.max_steps is None else min(total_steps, cfg.max_steps)

    start = 0
    data_fingerprint = stream.fingerprint()
    ckpt = out_dir / "latest.pt"
    state = load_checkpoint(ckpt, map_location=device) if resume and ckpt.exists() else None
    if state is not None:
        changed = _algorithm_changes(TrainConfig.from_dict(state["config"]), cfg)
        if state.get("data") != data_fingerprint:
            changed.append(f"the training images in {cfg.dataroot}")
        if changed and restart_on_mismatch:
            log.warning("%s was written with different settings (%s): starting over", ckpt, ", ".join(changed))
            state = None
        elif changed:
            raise ValueError(f"{ckpt} was written with different settings ({', '.join(changed)}); remove "
                             f"it or use another output folder")
    if state is not None:
        model.netG.load_state_dict(state["G"])
        model.netD.load_state_dict(state["D"])
        model.netF.load_state_dict(state["F"])
        model.optimizer_G.load_state_dict(state["opt_G"])
        model.optimizer_D.load_state_dict(state["opt_D"])
        model.optimizer_F.load_state_dict(state["opt_F"])
        start = int(state["step"])
        history = [h for h in state.get("history", []) if h["step"] <= start]
        log.info("resuming %s from step %d of %d", mcfg.mode, start, total_steps)
    else:
        history = []

    visuals = _visual_inputs(cfg) if on_images is not None else None
    gen = torch.Generator(device=device)
    sums: dict[str, torch.Tensor] = {}
    count = 0
    t0 = time.perf_counter()

    def tu(step: int) -> int:  # 1-based epoch (or step) of a 1-based step
        return step if cfg.schedule_unit == "step" else stream.epoch_of(step)

    def fetch(step: int):
        return stream.batch(step, decay=tu(step) > n_const)

    log.info("training %s: steps %d..%d of %d (%d per %s), batch %d, device %s", mcfg.mode, start + 1,
             last_step, total_steps, unit_steps, cfg.schedule_unit, batch_size, device)
    pool = ThreadPoolExecutor(max_workers=max(1, cfg.loader_threads)) if cfg.loader_threads > 0 else None
    try:
        pending: dict[int, Any] = {}
        lookahead = max(1, cfg.loader_threads)
        for step in range(start + 1, last_step + 1):
            if pool is not None:
                for s in range(step, min(last_step, step + lookahead) + 1):
                    if s not in pending:
                        pending[s] = pool.submit(fetch, s)
                real_A, real_B = pending.pop(step).result()
            else:
                real_A, real_B = fetch(step)
            lr = mcfg.lr * lr_factor(tu(step), n_const, n_decay)
            model.set_lr(lr)
            seed = _step_seed(cfg.seed, step)
            gen.manual_seed(seed)
            flip = mcfg.flip_equivariance and flip_draw([cfg.seed, step, 3])
            losses = model.train_step(real_A, real_B, flip=flip, generator=gen)
            for k, v in losses.items():
                sums[k] = sums[k] + v if k in sums else v.clone()
            count += 1
            if step % cfg.log_every == 0 or step == last_step:
                metrics = {f"loss_{k}": float(v) / count for k, v in sums.items()}
                metrics["lr"] = lr
                metrics["epoch"] = float(tu(step)) if cfg.schedule_unit == "epoch" else float(stream.epoch_of(step))
                elapsed = time.perf_counter() - t0
                metrics["steps_per_s"] = count / elapsed if elapsed > 0 else math.nan
                log.info("%s step %d/%d %s", mcfg.mode, step, total_steps,
                         " ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
                history.append({"step": step, **metrics})
                if on_log is not None:
                    on_log(step, metrics)
                sums, count, t0 = {}, 0, time.perf_counter()
            if on_images is not None and visuals is not None and (step % cfg.image_every == 0 or step == last_step):
                on_images(step, visual_grid(model, *visuals))
            if step % cfg.checkpoint_every == 0 or step == last_step:
                _save_checkpoint(model, cfg, step, out_dir, history, data_fingerprint)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    if start >= last_step and not (out_dir / "latest_net_G.pth").exists():
        _save_checkpoint(model, cfg, start, out_dir, history, data_fingerprint)
    model.history = history  # every logged metrics row so far, resumed runs included
    return model
