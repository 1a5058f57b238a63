"""Stage `translate`: train CUT / FastCUT on the unpaired set, translate testA.

Reads params `seed` and `translate`. For each mode in `translate.modes`:
- trains into `<translate.out>/<mode>/` (resumable `latest.pt`, official-layout `latest_net_*.pth`);
- translates every `testA` image into `<translate.results>/<mode>/<stem>.png`;
- logs losses and input | output | ground-truth grids to MLflow, grids also to
  `<translate.figures>/<mode>_<step>.png`; losses of all modes to `<translate.plots>` (dvc plots).
On the CPU with `translate.parallel_modes` the modes train at once, one spawned process each.

`evaluate_translations(params)` (called by the evaluate stage) scores the outputs, the identity
mapping and an untrained generator for structure kept and target appearance reached.
"""
from __future__ import annotations

import csv
import logging
import multiprocessing
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from selfsup.config import Params, TranslateParams
from selfsup.cut.evaluate import load_masks, load_uint8_folder, score_translations, train_domain_classifier
from selfsup.cut.infer import translate_folder
from selfsup.cut.model import CUTConfig
from selfsup.cut.networks import ResnetGenerator, init_weights
from selfsup.cut.train import TrainConfig, load_checkpoint, resolve_device, train
from selfsup.data.unaligned import pil_to_tensor, tensor_to_uint8
from selfsup.io import atomic_dir, atomic_path

from stages.common import params, setup_logging
from stages.tracking import StageRun, stage_run

log = logging.getLogger("stages.translate")

def train_config(p: Params, mode: str) -> TrainConfig:
    """The embedded default's training settings for one mode (schedule counted in steps)."""
    t = p.translate
    lambda_nce = t.lambda_nce.get(mode) if t.lambda_nce else None
    model = CUTConfig(mode=mode, ngf=t.ngf, ndf=t.ndf, n_layers_D=t.n_layers_d, n_blocks=t.n_blocks,
                      num_patches=t.num_patches, lambda_NCE=lambda_nce, lr=t.lr, bf16=t.bf16)
    return TrainConfig(
        dataroot=t.data, out_dir=str(Path(t.out) / mode), model=model, load_size=t.load_size,
        crop_size=t.image_size, schedule_unit="step", n_const=t.steps_constant, n_decay=t.steps_decay,
        seed=p.seed, device=t.device, preload=True, loader_threads=1, checkpoint_every=t.checkpoint_every,
        log_every=t.log_every, image_every=t.image_every)


def _write_plots(path: Path, rows: dict[int, dict[str, float]]) -> None:
    columns = sorted({k for r in rows.values() for k in r})
    with atomic_path(path, suffix=".csv") as tmp:
        with open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["step", *columns])
            for step in sorted(rows):
                w.writerow([step, *[("" if rows[step].get(c) is None else f"{rows[step][c]:.6g}") for c in columns]])


@dataclass
class ModeOutcome:
    """What training one mode produced; the metrics and grids are replayed into MLflow by the
    parent when the mode trained in a worker process (MLflow runs belong to one process)."""
    mode: str
    history: list[dict[str, float]] = field(default_factory=list)
    metrics: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    grids: list[str] = field(default_factory=list)
    test_images: int = 0
    generator: str = ""


def _finished(cfg: TrainConfig) -> bool:
    """Whether `<out>/latest.pt` holds a finished run. DVC reruns this stage only when one of its
    dependencies changed, training code included, which no checkpoint can tell: a finished run
    is then trained again, and only an interrupted one resumes."""
    ckpt = Path(cfg.out_dir) / "latest.pt"
    if not ckpt.is_file():
        return False
    step = int(load_checkpoint(ckpt)["step"])
    if step >= sum(cfg.schedule()):
        log.info("%s holds a finished run (step %d): training %s again", ckpt, step, cfg.model.mode)
        return True
    return False


def train_mode(p: Params, mode: str, run: StageRun | None = None) -> ModeOutcome:
    """Train one mode and translate testA with it. With `run`, metrics and grids go to MLflow as
    they come; without, they are kept in the outcome."""
    t = p.translate
    cfg = train_config(p, mode)
    figures = Path(t.figures)
    figures.mkdir(parents=True, exist_ok=True)
    outcome = ModeOutcome(mode, generator=str(Path(cfg.out_dir) / "latest_net_G.pth"))

    def on_log(step: int, metrics: dict[str, float]) -> None:
        named = {f"{mode}.{k}": v for k, v in metrics.items()}
        if run is not None:
            run.log_metrics(named, step=step)
        else:
            outcome.metrics.append((step, named))

    def on_images(step: int, grid: np.ndarray) -> None:
        target = figures / f"{mode}_{step:06d}.png"
        with atomic_path(target, suffix=".png") as tmp:
            Image.fromarray(grid).save(tmp, format="PNG")
        if run is not None:
            run.log_artifact(target, artifact_path=f"figures/{mode}")
        else:
            outcome.grids.append(str(target))

    model = train(cfg, resume=not _finished(cfg), restart_on_mismatch=True, on_log=on_log, on_images=on_images)
    outcome.history = [dict(row) for row in model.history]   # the whole run's curves, also after a resume
    results = Path(t.results) / mode
    with atomic_dir(results) as tmp:
        written = translate_folder(model.netG, Path(t.data) / "testA", tmp, size=t.image_size,
                                   device=model.device, bf16=model.use_amp, batch_size=16)
    log.info("%s: %d test images translated into %s", mode, len(written), results)
    outcome.test_images = len(written)
    return outcome


def worker_threads(cores: int, n_modes: int) -> int:
    """Threads of each mode's worker: an equal, fixed share of the cores. Fixed for the whole run,
    because a convolution's float sums depend on the thread count: a worker that took over the
    cores of one that finished would switch at a step that depends on timing, and the same params
    would no longer give the same weights (measured: CUT's outputs differed between two runs when
    it took FastCUT's core, for no measurable gain in time)."""
    return max(1, cores // max(1, n_modes))


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)
    setup_logging()


def _train_mode_in_worker(mode: str) -> ModeOutcome:
    """Entry point of a worker process (spawned: it reads the params file itself)."""
    return train_mode(params(), mode)


def train_modes_in_parallel(modes: list[str]) -> list[ModeOutcome]:
    """One spawned process per mode, each with an equal share of the cores."""
    cores = torch.get_num_threads()
    threads = worker_threads(cores, len(modes))
    log.info("training %s at once, one process each with %d of %d thread(s)", ", ".join(modes), threads, cores)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=len(modes), mp_context=context, initializer=_init_worker,
                             initargs=(threads,)) as pool:
        futures = [pool.submit(_train_mode_in_worker, mode) for mode in modes]
        return [f.result() for f in futures]


def remove_stale_grids(figures: Path, modes: list[str], total_steps: int) -> None:
    """The grids folder persists across runs (a resumed run keeps its earlier grids): drop those of
    modes no longer trained and of steps beyond the current schedule."""
    for grid in (figures.glob("*.png") if figures.is_dir() else []):
        mode, _, step = grid.stem.rpartition("_")
        if mode not in modes or not step.isdigit() or int(step) > total_steps:
            grid.unlink()


def main() -> None:
    setup_logging()
    p = params()
    t = p.translate
    out_root = Path(t.out)
    for stale in (out_root.iterdir() if out_root.is_dir() else []):
        if stale.is_dir() and stale.name not in t.modes:
            shutil.rmtree(stale)
    remove_stale_grids(Path(t.figures), list(t.modes), t.steps_constant + t.steps_decay)
    for folder in (t.out, t.results, t.figures):   # DVC's outputs exist even when no mode is trained
        Path(folder).mkdir(parents=True, exist_ok=True)
    if not t.modes:
        log.info("translate.modes is empty: nothing to train")
    parallel = (t.parallel_modes and len(t.modes) > 1 and resolve_device(t.device).type == "cpu"
                and torch.get_num_threads() > 1)
    plot_rows: dict[int, dict[str, float]] = {}
    with stage_run("translate", t) as run:
        if parallel:
            outcomes = train_modes_in_parallel(list(t.modes))
            for outcome in outcomes:
                for step, metrics in outcome.metrics:
                    run.log_metrics(metrics, step=step)
                for grid in outcome.grids:
                    run.log_artifact(grid, artifact_path=f"figures/{outcome.mode}")
        else:
            outcomes = [train_mode(p, mode, run) for mode in t.modes]
        for outcome in outcomes:
            for row in outcome.history:
                plot_rows.setdefault(row["step"], {}).update(
                    {f"{outcome.mode}_{k}": v for k, v in row.items() if k.startswith("loss_") or k == "lr"})
            run.log_artifact(outcome.generator, artifact_path=f"models/{outcome.mode}")
            run.log_metrics({f"{outcome.mode}.test_images": outcome.test_images})
        _write_plots(Path(t.plots), plot_rows)
        run.log_artifact(t.plots)


# --------------------------------------------------------------------------------------------
# Evaluation (called by the evaluate stage)
# --------------------------------------------------------------------------------------------

def _untrained_outputs(t: TranslateParams, seed: int, inputs: np.ndarray) -> np.ndarray:
    torch.manual_seed(seed)
    gen = init_weights(ResnetGenerator(3, 3, t.ngf, t.n_blocks), 0.02).eval()
    x = torch.stack([pil_to_tensor(Image.fromarray(im)) for im in inputs])
    with torch.no_grad():
        y = torch.cat([gen(x[i:i + 16]) for i in range(0, len(x), 16)])
    return np.stack([tensor_to_uint8(v) for v in y])


def evaluate_translations(p: Params) -> dict:
    """Structure kept and target appearance reached, for each trained mode, the identity mapping
    (output = input), an untrained generator of the same shape and, where the set has one, the
    paired ground truth (`ground_truth`, the ceiling):
    {"<mode>": {"structure_iou", "appearance_acc", "appearance_prob", "gt_l1", "gt_psnr",
    "n_images", "classifier_test_acc"}}."""
    t = p.translate
    root = Path(t.data)
    size = t.image_size
    inputs, names = load_uint8_folder(root / "testA", size)
    masks = load_masks(root / "testA_masks", names, size)
    gt_dir = root / "testA_gtB"
    gts = load_uint8_folder(gt_dir, size, names)[0] if gt_dir.is_dir() else None
    train_a, _ = load_uint8_folder(root / "trainA", size)
    train_b, _ = load_uint8_folder(root / "trainB", size)
    test_b, _ = load_uint8_folder(root / "testB", size)
    report = train_domain_classifier(train_a, train_b, steps=t.classifier_steps, seed=p.seed,
                                     test_a=inputs, test_b=test_b)
    log.info("A-vs-B classifier: train accuracy %.3f, test accuracy %.3f", report.train_accuracy,
             report.test_accuracy)
    candidates: dict[str, np.ndarray] = {}
    for mode in t.modes:
        folder = Path(t.results) / mode
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no translations for mode {mode!r} (run the translate stage)")
        candidates[mode] = load_uint8_folder(folder, size, names)[0]
    candidates["identity"] = inputs
    candidates["untrained"] = _untrained_outputs(t, p.seed, inputs)
    if gts is not None:
        # the paired target itself: the ceiling each measure allows on this set
        candidates["ground_truth"] = gts
    out = {}
    for name, outputs in candidates.items():
        scores = score_translations(outputs, inputs, masks, report.model, gts, threshold=t.eval_threshold,
                                    support=t.eval_support)
        scores["classifier_test_acc"] = float(report.test_accuracy)
        out[name] = scores
    return out


if __name__ == "__main__":
    main()
