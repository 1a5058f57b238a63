"""Stage `adapt`: CRW test-time adaptation on the DAVIS-format set, and the online stream.

    python -m stages.adapt        (params: `seed`, `adapt`, and the DAVIS protocol of `propagate`)

1. frozen: every sequence propagated with the checkpoint as is (timed per video);
2. adapted: every sequence propagated after adapting the encoder to it (`selfsup.crw.adapt`),
   the base weights restored between videos (adaptation and propagation timed separately);
3. variants (`adapt.compare`): the adaptation again with one setting changed, e.g.
   `statistics_only` (no gradient step, BatchNorm statistics re-estimated on the video);
4. stream (`adapt.stream`): test-then-train over the sequences in order (`selfsup.stream`), the
   running J&F beside the frozen model's; resumable from `adapt.stream_state`.

Writes `reports/test_time/crw.json` (J&F with and without adaptation, time per video, stream
summary), `reports/plots/stream.csv` (the test-then-train curve), `reports/figures/test_time/
crw_adapt.png` and `stream.png`, predictions under `adapt.out`, and one MLflow run.
"""
from __future__ import annotations

import csv
import logging
import sys
import time
from pathlib import Path
from typing import Any

from selfsup.config import AdaptParams, Params
from selfsup.io import atomic_path, write_json

from stages.common import params, setup_logging
from stages.tracking import stage_run

log = logging.getLogger("stages.adapt")

REPORT = Path("reports/test_time/crw.json")
STREAM_CSV = Path("reports/plots/stream.csv")
FIGURES = Path("reports/figures/test_time")
STREAM_COLUMNS = ["position", "video", "score", "frozen", "running", "frozen_running", "train_loss",
                  "score_seconds", "train_seconds"]


# what each `adapt.compare` entry changes in the configured adaptation
VARIANTS: dict[str, dict[str, Any]] = {
    "statistics_only": {"steps": 0, "batchnorm": "reestimate"},
    "bn_frozen": {"batchnorm": "frozen"},
    "bn_train": {"batchnorm": "train"},
    "bn_reestimate": {"batchnorm": "reestimate"},
    "dense": {"objective": "dense"},
}


def adapt_config(cfg: AdaptParams, seed: int, stream: bool = False) -> Any:
    """The library's AdaptConfig from the `adapt` params section (stream: its own steps and lr)."""
    from selfsup.crw.adapt import AdaptConfig

    return AdaptConfig.from_params(cfg, seed, stream=stream)


def propagation_config(p: Params) -> Any:
    from selfsup.propagate import protocol

    q = p.propagate
    return protocol("davis", context=q.context, topk=q.topk, radius=q.radius, temperature=q.temperature)


def per_sequence_jf(scores: Any) -> dict[str, float]:
    """J&F-Mean of each sequence on its own (the stream's per-video score)."""
    from selfsup.metrics.davis import DavisScores

    return {s.name: float(DavisScores([s], scores.set_name).summary()["J&F-Mean"]) for s in scores.sequences}


def _metric_safe(values: Any) -> Any:
    """MLflow metric names allow neither "&" nor "=": J&F-Mean is logged as JandF-Mean."""
    if isinstance(values, dict):
        return {str(k).replace("&", "and").replace("=", "_"): _metric_safe(v) for k, v in values.items()}
    return values


def _summary(scores: Any) -> dict[str, float]:
    return {k: float(v) for k, v in scores.summary().items()}


def write_stream_csv(curve: list[dict[str, Any]], path: Path = STREAM_CSV) -> Path:
    with atomic_path(path, suffix=".csv") as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(STREAM_COLUMNS)
            for row in curve:
                writer.writerow(["" if row.get(c) is None else
                                 (f"{row[c]:.6g}" if isinstance(row[c], float) else row[c]) for c in STREAM_COLUMNS])
    return path


def plot_adaptation(report: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    davis = report["davis"]
    seqs = list(davis["per_sequence"])
    frozen = [davis["per_sequence"][s]["frozen"] for s in seqs]
    adapted = [davis["per_sequence"][s]["adapted"] for s in seqs]
    x = np.arange(len(seqs))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.bar(x - 0.2, frozen, 0.4, label=f"frozen (J&F {davis['frozen']['J&F-Mean']:.3f})")
    ax1.bar(x + 0.2, adapted, 0.4, label=f"adapted (J&F {davis['adapted']['J&F-Mean']:.3f})")
    ax1.set_xticks(x, seqs, rotation=45, ha="right")
    ax1.set_ylabel("J&F-Mean")
    ax1.set_ylim(0, 1.15)
    title = "DAVIS J&F per sequence, with and without adaptation"
    for name, v in davis.get("variants", {}).items():
        title += f"\n{name}: J&F {v['J&F-Mean']:.3f}"
    ax1.set_title(title, fontsize=9)
    ax1.legend(fontsize=8, ncol=2, loc="upper center")
    prop_frozen = [davis["per_sequence"][s]["frozen_seconds"] for s in seqs]
    adapt_s = [davis["per_sequence"][s]["adapt_seconds"] for s in seqs]
    prop_adapted = [davis["per_sequence"][s]["propagate_seconds"] for s in seqs]
    ax2.bar(x - 0.2, prop_frozen, 0.4, label="frozen: propagate")
    ax2.bar(x + 0.2, adapt_s, 0.4, label="adapted: adapt")
    ax2.bar(x + 0.2, prop_adapted, 0.4, bottom=adapt_s, label="adapted: propagate")
    ax2.set_xticks(x, seqs, rotation=45, ha="right")
    ax2.set_ylabel("seconds per video")
    ax2.set_title("time per video")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def plot_stream(curve: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pos = [r["position"] + 1 for r in curve]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot(pos, [r["running"] for r in curve], "-o", color="C0", label="test-then-train (running mean)")
    ax.scatter(pos, [r["score"] for r in curve], marker="+", s=60, color="C0", label="test-then-train, per video")
    if all(r["frozen_running"] is not None for r in curve):
        ax.plot(pos, [r["frozen_running"] for r in curve], "-s", color="C1", label="frozen (running mean)")
        ax.scatter(pos, [r["frozen"] for r in curve], marker="x", color="C1", label="frozen, per video")
    ax.set_xlabel("videos seen")
    ax.set_ylabel("J&F-Mean")
    ax.set_title("online stream: each video scored before training on it")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def run(p: Params, run_log: Any = None, progress: bool = True) -> dict[str, Any]:
    """The whole stage's computation; returns the report written to REPORT."""
    import copy

    from selfsup.crw import load_checkpoint
    from selfsup.crw.adapt import propagate_with_adaptation
    from selfsup.data.davis import DavisSet
    from selfsup.metrics.davis import evaluate_davis
    from selfsup.propagate import propagate_davis, resolve_device
    from selfsup.stream import run_stream

    cfg = p.adapt
    device = resolve_device(cfg.device)
    prop = propagation_config(p)
    config = adapt_config(cfg, p.seed)
    davis = DavisSet(cfg.data)
    names = list(cfg.sequences) or davis.sequences
    unknown = sorted(set(names) - set(davis.sequences))
    if unknown:
        raise ValueError(f"adapt.sequences: {', '.join(unknown)} not in {davis.list_file}")
    model = load_checkpoint(cfg.checkpoint, map_location="cpu", propagation_only=cfg.objective == "dense").to(device)
    base = copy.deepcopy(model)      # the stream trains its own copy
    out = Path(cfg.out)

    # 1. frozen
    frozen_dir = out / "frozen" / "davis"
    frozen_seconds: dict[str, float] = {}
    for seq in names:
        t0 = time.perf_counter()
        propagate_davis(model.features, davis.root, frozen_dir, prop, sequences=[seq], device=device, progress=False)
        frozen_seconds[seq] = time.perf_counter() - t0
        log.info("frozen %s propagated in %.1f s", seq, frozen_seconds[seq])
    frozen_scores = evaluate_davis(davis.root, frozen_dir, sequences=names)

    # 2. adapted
    adapted_dir = out / "adapted" / "davis"
    summary = propagate_with_adaptation("davis", model, config, davis.root, adapted_dir, prop, videos=names,
                                        device=device, progress=progress)
    adapted_scores = evaluate_davis(davis.root, adapted_dir, sequences=names)
    frozen_jf, adapted_jf = per_sequence_jf(frozen_scores), per_sequence_jf(adapted_scores)
    timing = {v["video"]: v for v in summary["per_video"]}
    per_sequence = {s: {"frozen": frozen_jf[s], "adapted": adapted_jf[s], "frozen_seconds": frozen_seconds[s],
                        "adapt_seconds": timing[s]["adapt_seconds"],
                        "propagate_seconds": timing[s]["propagate_seconds"],
                        "adapt_first_loss": timing[s]["adapt_first_loss"],
                        "adapt_last_loss": timing[s]["adapt_last_loss"]} for s in names}
    n = len(names)
    davis_report = {
        "frozen": _summary(frozen_scores), "adapted": _summary(adapted_scores),
        "gain": _summary(adapted_scores)["J&F-Mean"] - _summary(frozen_scores)["J&F-Mean"],
        "seconds_per_video": {"frozen": sum(frozen_seconds.values()) / n,
                              "adapted": (summary["adapt_seconds"] + summary["propagate_seconds"]) / n,
                              "adaptation_only": summary["adapt_seconds"] / n},
        "videos": n, "per_sequence": per_sequence}
    variants = {}
    for name in cfg.compare:
        folder = out / f"variant_{name}" / "davis"
        variant = propagate_with_adaptation("davis", model, config.replace(**VARIANTS[name]), davis.root, folder,
                                            prop, videos=names, device=device, progress=progress)
        variants[name] = {**_summary(evaluate_davis(davis.root, folder, sequences=names)),
                          "seconds_per_video": (variant["adapt_seconds"] + variant["propagate_seconds"]) / n}
        log.info("variant %s: J&F %.4f", name, variants[name]["J&F-Mean"])
    if variants:
        davis_report["variants"] = variants
    report: dict[str, Any] = {"davis": davis_report}
    log.info("DAVIS J&F frozen %.4f, adapted %.4f (%+.4f); %.1f s vs %.1f s per video",
             davis_report["frozen"]["J&F-Mean"], davis_report["adapted"]["J&F-Mean"], davis_report["gain"],
             davis_report["seconds_per_video"]["frozen"], davis_report["seconds_per_video"]["adapted"])
    if run_log is not None:
        run_log.log_metrics(_metric_safe({"frozen": davis_report["frozen"], "adapted": davis_report["adapted"],
                                          "gain": davis_report["gain"], "variants": variants,
                                          "seconds_per_video": davis_report["seconds_per_video"]}))

    # 3. stream
    if cfg.stream:
        def on_video(row: dict[str, Any]) -> None:
            if run_log is not None:
                run_log.log_metrics({"stream.score": row["score"], "stream.running": row["running"],
                                     "stream.frozen_running": row["frozen_running"],
                                     "stream.train_loss": row["train_loss"]}, step=row["position"] + 1)

        result = run_stream(base, davis.root, cfg.stream_state, adapt_config(cfg, p.seed, stream=True),
                            propagation=prop, sequences=names, frozen_scores=frozen_jf, device=device,
                            progress=progress, on_video=on_video)
        report["stream"] = result.summary()
        report["stream_curve"] = result.curve
        write_stream_csv(result.curve)
        plot_stream(result.curve, FIGURES / "stream.png")
        log.info("stream: running J&F %.4f vs frozen %.4f after %d videos", report["stream"]["running"],
                 report["stream"]["frozen_running"], result.position)
    plot_adaptation(report, FIGURES / "crw_adapt.png")
    return report


def main() -> int:
    setup_logging()
    p = params()
    with stage_run("adapt", p.adapt) as run_log:
        try:
            report = run(p, run_log)
        except (FileNotFoundError, ValueError) as exc:
            print(f"error: adapt: {exc}", file=sys.stderr)
            return 2
        if not p.adapt.stream:
            # keep the declared outputs consistent when the stream is switched off
            write_stream_csv([])
            plot_stream([], FIGURES / "stream.png")
        write_json(REPORT, report)
        for path in (REPORT, STREAM_CSV, FIGURES / "crw_adapt.png", FIGURES / "stream.png"):
            run_log.log_artifact(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
