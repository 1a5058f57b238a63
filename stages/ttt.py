"""Stage `ttt`: test-time training with rotation prediction on shifted synthetic shape images.

    python -m stages.ttt        (params: `seed`, `ttt`)

Trains the Y-shaped network (classification + rotation, shared encoder) on `ttt.train_images`
rendered shape images, then for the clean test set and every shift x severity reports the accuracy
without test-time training, with standard TTT (reset after each image) and with online TTT (weights
carried over the test stream).

Writes `<ttt.out>/model.pt`, `reports/test_time/ttt.json`, `reports/plots/ttt.csv` (training
curve), `reports/figures/test_time/ttt.png`, and one MLflow run.
"""
from __future__ import annotations

import csv
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

from selfsup.config import Params, TTTParams
from selfsup.io import atomic_path, write_json

from stages.common import params, setup_logging
from stages.tracking import stage_run

log = logging.getLogger("stages.ttt")

REPORT = Path("reports/test_time/ttt.json")
TRAIN_CSV = Path("reports/plots/ttt.csv")
FIGURE = Path("reports/figures/test_time/ttt.png")
TRAIN_COLUMNS = ["epoch", "loss", "class_loss", "rotation_loss", "accuracy", "rotation_accuracy", "lr"]


def joint_config(cfg: TTTParams, seed: int) -> Any:
    from selfsup.ttt import JointConfig

    milestones = tuple(sorted({max(1, round(f * cfg.epochs)) for f in cfg.lr_milestones}))
    return JointConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, milestones=milestones,
                       rotation=cfg.rotation, augment=cfg.train_augment, seed=seed)


def ttt_config(cfg: TTTParams, seed: int) -> Any:
    from selfsup.ttt import TTTConfig

    return TTTConfig(steps=cfg.ttt_steps, online_steps=cfg.online_steps, lr=cfg.ttt_lr, batch_size=cfg.ttt_batch,
                     rotation=cfg.rotation, seed=seed)


def write_train_csv(history: list[dict[str, float]], path: Path = TRAIN_CSV) -> Path:
    with atomic_path(path, suffix=".csv") as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(TRAIN_COLUMNS)
            for row in history:
                writer.writerow([row["epoch"], *[f"{row[c]:.6g}" for c in TRAIN_COLUMNS[1:]]])
    return path


def plot_shifts(report: dict[str, Any], path: Path = FIGURE) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = {"clean": report["clean"], **report["shifts"]}
    names = list(rows)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(7, 0.8 * len(names) + 2), 4.2))
    for offset, key, label in ((-0.27, "baseline", "no TTT"), (0.0, "standard", "TTT standard"),
                               (0.27, "online", "TTT online")):
        ax.bar(x + offset, [rows[n][key] for n in names], 0.27, label=f"{label} (mean {report['mean'][key]:.3f})")
    ax.set_xticks(x, names, rotation=45, ha="right")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.15)                 # room for the legend above the bars
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_title(f"test-time training with rotation prediction ({report['test_images']} images per shift)")
    ax.legend(fontsize=8, ncol=3, loc="upper center")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def run(p: Params, run_log: Any = None, progress: bool = True) -> dict[str, Any]:
    """Train, evaluate every shift with and without TTT; returns the report written to REPORT."""
    import time

    from selfsup.propagate import resolve_device
    from selfsup.ttt import TTTNet, corrupt, evaluate, save_model, shape_images, train_joint, ttt_online, ttt_standard

    cfg = p.ttt
    device = resolve_device(cfg.device)
    t0 = time.perf_counter()
    images, labels = shape_images(cfg.train_images, cfg.image_size, p.seed, "train", cfg.classes)
    test, test_labels = shape_images(cfg.test_images, cfg.image_size, p.seed, "test", cfg.classes)
    log.info("rendered %d training and %d test images in %.1f s", len(images), len(test), time.perf_counter() - t0)
    import torch

    with torch.random.fork_rng(devices=[]):          # the initial weights depend on the seed only
        torch.manual_seed(p.seed)
        model = TTTNet(classes=cfg.classes, depth=cfg.depth, width=cfg.width, norm=cfg.norm, groups=cfg.groups,
                       split=cfg.split)

    def on_epoch(epoch: int, row: dict[str, float]) -> None:
        if run_log is not None:
            run_log.log_metrics({f"train.{k}": v for k, v in row.items() if k != "epoch"}, step=epoch)

    history = train_joint(model, images, labels, joint_config(cfg, p.seed), device=device, progress=progress,
                          on_epoch=on_epoch)
    save_model(model, Path(cfg.out) / "model.pt", history=history)
    write_train_csv(history)
    clean = evaluate(model, test, test_labels, device)
    ttt = ttt_config(cfg, p.seed)

    def measure(name: str, shifted: np.ndarray) -> dict[str, float]:
        base = evaluate(model, shifted, test_labels, device)
        # one log line per shift instead of per-image progress bars
        standard = ttt_standard(model, shifted, test_labels, ttt, device=device, progress=False)
        online = ttt_online(model, shifted, test_labels, ttt, device=device, progress=False)
        row = {"baseline": standard["baseline"], "standard": standard["accuracy"], "online": online["accuracy"],
               "rotation_accuracy": base["rotation_accuracy"],
               "standard_seconds_per_image": standard["seconds_per_image"],
               "online_seconds_per_image": online["seconds_per_image"]}
        log.info("%-22s no TTT %.3f  standard %.3f  online %.3f  (rotation %.3f)", name, row["baseline"],
                 row["standard"], row["online"], row["rotation_accuracy"])
        if run_log is not None:
            run_log.log_metrics({f"{name.replace('@', '_s')}.{k}": v for k, v in row.items()})
        return row

    clean_row = measure("clean", test)
    shifts = {f"{kind}@{severity}": measure(f"{kind}@{severity}",
                                           corrupt(test, kind, severity, seed=p.seed))
              for kind in cfg.shifts for severity in cfg.severities}
    mean = {k: float(np.mean([r[k] for r in shifts.values()])) if shifts else float("nan")
            for k in ("baseline", "standard", "online")}
    report = {"clean": clean_row, "shifts": shifts, "mean": mean, "test_images": cfg.test_images,
              "train": {"accuracy": history[-1]["accuracy"], "rotation_accuracy": history[-1]["rotation_accuracy"],
                        "epochs": cfg.epochs, "images": cfg.train_images,
                        "test_accuracy": clean["accuracy"], "test_rotation_accuracy": clean["rotation_accuracy"]}}
    if run_log is not None:
        run_log.log_metrics({f"mean.{k}": v for k, v in mean.items()})
    plot_shifts(report)
    return report


def main() -> int:
    setup_logging()
    p = params()
    with stage_run("ttt", p.ttt) as run_log:
        try:
            report = run(p, run_log)
        except ValueError as exc:
            print(f"error: ttt: {exc}", file=sys.stderr)
            return 2
        write_json(REPORT, report)
        for path in (REPORT, TRAIN_CSV, FIGURE, Path(p.ttt.out) / "model.pt"):
            run_log.log_artifact(path)
    log.info("shifted mean accuracy: no TTT %.3f, standard %.3f, online %.3f", report["mean"]["baseline"],
             report["mean"]["standard"], report["mean"]["online"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
