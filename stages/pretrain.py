"""The `pretrain` stage: CRW on the clip cache -> `models/crw/checkpoint.pt`.

    python -m stages.pretrain                                   (params: `seed`, `pretrain`)
    torchrun --nproc_per_node 2 -m stages.pretrain              (DDP; per-device batch = batch_size / 2)

Writes `<pretrain.out>/checkpoint.pt` (final weights + config), `reports/plots/pretrain.csv`
(step, loss, accuracy, per-cycle loss/accuracy, lr, clips/s) and `reports/pretrain.json`.
The resume state lives in `<pretrain.resume_dir>/state.pt`, outside the DVC output (DVC deletes
outputs before it reruns a stage): a killed run continues from its last checkpoint when rerun with
the same params and data; another configuration starts afresh. It is deleted after success.
"""
from __future__ import annotations

import contextlib
import csv
import io
import logging
import os
import sys
from pathlib import Path

from selfsup.config import PretrainParams
from selfsup.crw import CRWConfig, save_checkpoint
from selfsup.crw.train import NonFiniteLossError, TrainConfig, train
from selfsup.io import write_json, write_text
from stages.common import params, setup_logging
from stages.tracking import StageRun, stage_run

log = logging.getLogger("stages.pretrain")

PLOT = Path("reports/plots/pretrain.csv")
REPORT = Path("reports/pretrain.json")


def configs(cfg: PretrainParams, seed: int) -> tuple[CRWConfig, TrainConfig]:
    """The library configs for a params section (everything not listed keeps the paper's value)."""
    model = CRWConfig(width=cfg.width, padding_mode=cfg.padding_mode, head_depth=cfg.head_depth,
                      frame_size=cfg.frame_size, patch_size=cfg.patch_size, patch_stride=cfg.patch_stride,
                      temperature=cfg.temperature, edge_dropout=cfg.edge_dropout,
                      leaky_backward_dropout=cfg.leaky_backward_dropout,
                      include_shortest_cycle=cfg.include_shortest_cycle, walk_start=cfg.walk_start,
                      bn_group_size=cfg.bn_group_size, frame_scale=tuple(cfg.frame_scale),
                      frame_ratio=tuple(cfg.frame_ratio), patch_scale=tuple(cfg.patch_scale),
                      patch_ratio=tuple(cfg.patch_ratio))
    milestones = tuple(sorted({max(1, int(round(f * cfg.steps))) for f in cfg.lr_milestones}))
    distributed = True if (cfg.distributed or int(os.environ.get("WORLD_SIZE", "1")) > 1) else False
    train_cfg = TrainConfig(batch_size=cfg.batch_size, clip_len=cfg.clip_len,
                            clips_per_video=cfg.clips_per_video, steps=cfg.steps, lr=cfg.lr,
                            lr_gamma=cfg.lr_gamma, lr_milestones=milestones, seed=seed,
                            checkpoint_every=cfg.checkpoint_every, log_every=cfg.log_every,
                            workers=cfg.workers, threads=cfg.threads or None, device=cfg.device, bf16=cfg.bf16,
                            channels_last=cfg.channels_last, compile=cfg.compile,
                            distributed=distributed, sync_batchnorm=cfg.sync_batchnorm)
    return model, train_cfg


def history_csv(history: list[dict[str, float]]) -> str:
    columns = ["step", "loss", "accuracy", "lr", "clips_per_s"]
    for row in history:
        columns += [k for k in row if k not in columns]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: (int(v) if k == "step" else f"{v:.6g}") for k, v in row.items()})
    return out.getvalue()


def main() -> int:
    setup_logging()
    p = params()
    cfg = p.pretrain
    from selfsup.data.video import ClipCache

    try:
        cache = ClipCache(cfg.data, clip_len=cfg.clip_len)
    except FileNotFoundError as exc:
        print(f"error: pretrain: {exc} (run the clips stage first)", file=sys.stderr)
        return 2
    if len(cache) == 0:
        print(f"error: pretrain: {cfg.data} holds no clip of {cfg.clip_len} frames", file=sys.stderr)
        return 2
    try:
        model_cfg, train_cfg = configs(cfg, p.seed)
    except ValueError as exc:
        print(f"error: pretrain: {exc}", file=sys.stderr)
        return 2
    rank = int(os.environ.get("RANK", "0"))
    out = Path(cfg.out)
    resume = Path(cfg.resume_dir) / "state.pt"
    tracking = stage_run("pretrain", cfg) if rank == 0 else contextlib.nullcontext(StageRun(None, None))
    with tracking as run:
        progress = sys.stderr.isatty() or os.environ.get("SELFSUP_PROGRESS") == "1"

        def on_log(step: int, metrics: dict[str, float]) -> None:
            run.log_metrics(metrics, step=step)
            # without a progress bar (dvc repro, CI) a line every tenth of the run says how it goes
            if not progress and (step % max(1, cfg.steps // 10) < cfg.log_every or step == cfg.steps):
                log.info("step %d/%d: loss %.3f, cycle accuracy %.3f, %.1f clips/s", step, cfg.steps,
                         metrics["loss"], metrics["accuracy"], metrics["clips_per_s"])

        try:
            result = train(model_cfg, train_cfg, cache, resume_path=resume, on_log=on_log, progress=progress)
        except NonFiniteLossError as exc:
            print(f"error: pretrain: {exc}", file=sys.stderr)
            return 1
        except ValueError as exc:
            print(f"error: pretrain: {exc}", file=sys.stderr)
            return 2
        if result.rank != 0:
            return 0
        checkpoint = save_checkpoint(result.model, out / "checkpoint.pt", step=result.step,
                                     seed=p.seed, train_config=train_cfg.to_dict())
        write_text(PLOT, history_csv(result.history))
        first, last = result.history[0], result.history[-1]
        report = {"steps": result.step, "resumed_from": result.resumed_from, "seconds": result.seconds,
                  "chance_accuracy": 1.0 / model_cfg.nodes,
                  "first": {k: first[k] for k in ("step", "loss", "accuracy")},
                  "final": {k: v for k, v in last.items() if k != "clips_per_s"}}
        write_json(REPORT, report)
        run.log_artifact(checkpoint, artifact_path="model")
        run.log_artifact(PLOT)
        if run.enabled:
            version = run.register_model("model/checkpoint.pt", "crw")
            log.info("registered model crw version %s", version)
        resume.unlink(missing_ok=True)
        log.info("pretrain: %d steps in %.0f s; loss %.3f -> %.3f, accuracy %.3f -> %.3f (chance %.3f) -> %s",
                 result.step, result.seconds, first["loss"], last["loss"], first["accuracy"],
                 last["accuracy"], 1.0 / model_cfg.nodes, checkpoint)
    return 0


def run() -> int:
    try:
        return main()
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    raise SystemExit(run())
