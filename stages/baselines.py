"""The `baselines` stage: the systems CRW's argument starts from, trained on the same clips.

    python -m stages.baselines        (params: the `baselines` section; the `propagate` section's
                                       protocol (context, top-k, radius, temperature, crop sizes); `seed`)

Trains Exemplar-CNN, SimCLR and colourisation on the clip cache (and SimCLR once per left-out
augmentation), each saved as `<out>/<method>/checkpoint.pt` (`<out>/ablation/no-<op>/...`) in
CRW's checkpoint format, so `selfsup propagate` loads them like CRW's. Then scores every model
beside CRW (`crw_checkpoint`), the random encoder and raw pixels: label propagation, the
orientation and colour probes, instance retrieval (Exemplar-SVM and cosine).

Writes reports/baselines.json (`{"baselines": {...}}`, a DVC metrics file),
reports/tables/lecture-contrast.md and reports/plots/baselines.csv (training curves).
"""
from __future__ import annotations

import csv
import io
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from selfsup.baselines import augment as aug
from selfsup.baselines.colorization import ColorizationConfig, fit_colour_clusters, fold_gray_input, train_colorization
from selfsup.baselines.instance import EXEMPLAR_AUGMENT, ExemplarConfig, SimCLRConfig, train_exemplar, train_simclr
from selfsup.baselines.lecture import (LectureConfig, probe_metrics, probe_tasks, propagation_metrics, render_table,
                                       retrieval_metrics, write_object_crops)
from selfsup.baselines.models import (FramePool, OptimConfig, TrainHistory, baseline_config, build_model,
                                      resolve_device, save_baseline)
from selfsup.baselines.retrieval import model_identity
from selfsup.io import write_json, write_text
from stages.common import params, setup_logging
from stages.tracking import stage_run

log = logging.getLogger("stages.baselines")

METRICS = Path("reports/baselines.json")
TABLE = Path("reports/tables/lecture-contrast.md")
CURVES = Path("reports/plots/baselines.csv")
EMBED_DIM = 128              # SimCLR's projection output
COLOUR_EMBED_DIM = 64        # Vondrick et al.'s embedding size


def _training_summary(history: TrainHistory, steps: int) -> dict[str, float]:
    final = history.final
    return {"steps": steps, "loss": final.get("loss"), "accuracy": final.get("accuracy"),
            "seconds": history.seconds}


def data_fingerprint(cache: Any) -> dict[str, Any]:
    """What identifies the training data: the frame cache's size and modification time."""
    frames = Path(cache.path) / "frames.npy"
    st = frames.stat()
    return {"clips": str(cache.path), "frames": int(cache.frames.shape[0]), "videos": len(cache.videos),
            "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


def _finished(path: Path, method: str, settings: dict) -> dict | None:
    """The stored training summary and curve of a checkpoint trained with exactly `settings`, else None
    (so that a rerun after an interruption skips what is done)."""
    from selfsup.crw.checkpoint import CheckpointError, read_state_dict

    if not path.is_file():
        return None
    try:
        _, meta = read_state_dict(path)
    except (CheckpointError, OSError, ValueError):
        return None
    extra = meta.get("extra", {})
    wanted = json.loads(json.dumps({"method": method, **settings}))
    if json.loads(json.dumps(extra.get("baseline"))) != wanted or "training" not in extra:
        return None
    return {"training": extra["training"], "history": extra.get("history", [])}


def train_methods(cfg: Any, seed: int, device: torch.device, cache: Any, run: Any) -> tuple[dict, dict, list]:
    """Train every method (and the ablation); returns ({name: checkpoint}, {name: training summary},
    curve rows). A checkpoint already trained with the same settings and data is kept."""
    pool = FramePool.from_cache(cache)
    out = Path(cfg.out)
    checkpoints: dict[str, Path] = {}
    summaries: dict[str, dict] = {}
    curves: list[dict] = []
    s = cfg.color_strength
    family = aug.AugmentConfig(ops=tuple(cfg.augmentations), size=cfg.image_size, brightness=0.8 * s,
                               contrast=0.8 * s, saturation=0.8 * s, hue=0.2 * s)
    data = data_fingerprint(cache)

    def train(name: str, method: str, path: Path, config: Any, head_dim: int, head_depth: int,
              fit: Callable[[Any], TrainHistory], finish: Callable[[Any], dict] | None = None) -> None:
        settings = {**config.to_dict(), "width": cfg.width, "head_dim": head_dim, "data": data}
        done = _finished(path, method, settings)
        if done is not None:
            log.info("%s: %s is up to date, kept", name, path)
            summaries[name], rows = done["training"], done["history"]
        else:
            model = build_model(baseline_config(cfg.width, head_dim, head_depth), seed).to(device)
            history = fit(model)
            extra = finish(model) if finish else {}
            summaries[name], rows = _training_summary(history, config.optim.steps), history.rows
            save_baseline(model, path, method, settings, history=rows, training=summaries[name], **extra)
            log.info("%s: %d steps in %.0f s, final loss %.3f, accuracy %.3f", name, config.optim.steps,
                     history.seconds, summaries[name]["loss"], summaries[name]["accuracy"])
        checkpoints[name] = path
        for row in rows:
            curves.append({"method": name, **row})
            run.log_metrics({f"train.{name}.{k}": v for k, v in row.items() if k != "step"}, step=int(row["step"]))

    def simclr(name: str, family_: aug.AugmentConfig, path: Path) -> None:
        sc = cfg.simclr
        config = SimCLRConfig(batch_size=sc.batch_size, temperature=sc.temperature, augment=family_,
                              optim=OptimConfig(steps=sc.steps, lr=sc.lr), seed=seed)
        train(name, "simclr", path, config, EMBED_DIM, 1,
              lambda model: train_simclr(model, pool, config, progress=True, desc=name))

    for method in cfg.methods:
        path = out / method / "checkpoint.pt"
        if method == "exemplar":
            ec = cfg.exemplar
            config = ExemplarConfig(classes=ec.classes, seed_size=ec.seed_size, batch_size=ec.batch_size,
                                    augment=EXEMPLAR_AUGMENT.replace(size=cfg.image_size),
                                    optim=OptimConfig(steps=ec.steps, lr=ec.lr), seed=seed)
            train(method, method, path, config, ec.classes, 1,
                  lambda model: train_exemplar(model, pool, config, progress=True))
        elif method == "simclr":
            simclr(method, family, path)
        else:
            cc = cfg.colorization
            config = ColorizationConfig(clusters=cc.clusters, kmeans_pixels=cc.kmeans_pixels,
                                        frame_size=cc.frame_size, temperature=cc.temperature,
                                        batch_size=cc.batch_size, optim=OptimConfig(steps=cc.steps, lr=cc.lr),
                                        seed=seed)
            centres: list = []

            def fit(model: Any) -> TrainHistory:
                start = time.perf_counter()
                centres.append(fit_colour_clusters(cache.frames, cc.clusters, cc.kmeans_pixels, seed))
                log.info("colour clusters: %d in %.1f s", cc.clusters, time.perf_counter() - start)
                return train_colorization(model, cache, centres[0], config, progress=True)

            def finish(model: Any) -> dict:
                fold_gray_input(model)      # the saved encoder takes RGB like every other checkpoint
                return {"colour_centres": centres[0].tolist()}

            train(method, method, path, config, COLOUR_EMBED_DIM, 0, fit, finish)
    if cfg.ablation:
        for op in cfg.augmentations:
            simclr(f"no-{op}", family.without(op), out / "ablation" / f"no-{op}" / "checkpoint.pt")
    return checkpoints, summaries, curves


def evaluate_models(cfg: Any, p: Any, device: torch.device, cache: Any, checkpoints: dict[str, Path],
                    summaries: dict[str, dict]) -> dict[str, Any]:
    from selfsup.crw import load_checkpoint
    from selfsup.propagate import build_extractor

    ev = cfg.evaluate
    lecture = LectureConfig(sets=tuple(ev.sets), videos=ev.videos, probe_size=ev.probe_size,
                            probe_train=ev.probe_train, probe_test=ev.probe_test, colours=ev.colours,
                            retrieval_size=ev.retrieval_size, retrieval_per_object=ev.retrieval_per_object,
                            esvm_jitter=ev.esvm_jitter, top_k=tuple(ev.top_k), grid=ev.grid, seed=p.seed)
    q = p.propagate     # the propagate stage's protocol, so that CRW's numbers mean the same here
    overrides = {"context": q.context, "topk": q.topk, "radius": q.radius, "temperature": q.temperature}
    crop_sizes = {"davis": q.davis_crop_size, "jhmdb": q.jhmdb_crop_size, "vip": q.vip_crop_size}
    results_dir = Path(cfg.results)
    tasks = probe_tasks(cache, lecture)
    rset = write_object_crops(Path(cfg.data) / "DAVIS", results_dir / "retrieval", lecture)
    cache_dir = results_dir / "descriptor-cache"

    encoders: dict[str, tuple[Any, str]] = {
        "pixels": (build_extractor("pixels"), "pixels"),
        "random": (build_extractor("random", crw_config=baseline_config(cfg.width), seed=p.seed, device=device),
                   f"random-width{cfg.width}-seed{p.seed}"),
    }
    widths: dict[str, float | None] = {"pixels": None, "random": cfg.width}
    for method in cfg.methods:
        encoders[method] = (build_extractor("checkpoint", checkpoints[method], device=device),
                            model_identity(checkpoints[method]))
        widths[method] = cfg.width
    crw = Path(cfg.crw_checkpoint)
    if crw.is_file():
        encoders["crw"] = (build_extractor("checkpoint", crw, device=device), model_identity(crw))
        widths["crw"] = load_checkpoint(crw, propagation_only=True).config.width
    else:
        log.warning("%s not found: the CRW row is left out (run the pretrain stage first)", crw)

    def score(name: str, extractor: Any, model_id: str, sets: tuple[str, ...]) -> dict[str, Any]:
        start = time.perf_counter()
        row = {"width": widths.get(name, cfg.width),
               "propagation": propagation_metrics(extractor, cfg.data, results_dir / "propagate" / name, sets,
                                                  videos=ev.videos, overrides=overrides, crop_sizes=crop_sizes,
                                                  label_resize_interp=q.label_resize_interp, device=device),
               "probe": probe_metrics(extractor, tasks, ev.grid),
               "retrieval": retrieval_metrics(extractor, rset, lecture, model_id=model_id, cache_dir=cache_dir)}
        if name in summaries:
            row["training"] = summaries[name]
        row["seconds"] = time.perf_counter() - start
        log.info("%s scored in %.0f s: %s", name, row["seconds"], {k: row[k] for k in ("propagation", "probe")})
        return row

    models = {name: score(name, ex, mid, tuple(ev.sets)) for name, (ex, mid) in encoders.items()}
    ablation: dict[str, Any] = {}
    if cfg.ablation and "simclr" in models:
        full = models["simclr"]     # the whole family: the SimCLR model itself
        ablation[f"all ({', '.join(cfg.augmentations)})"] = {
            **full, "propagation": {s: full["propagation"][s] for s in ev.ablation_sets}}
        for op in cfg.augmentations:
            name = f"no-{op}"
            path = checkpoints[name]
            ablation[f"− {op}"] = score(name, build_extractor("checkpoint", path, device=device), model_identity(path),
                                        tuple(ev.ablation_sets))
    return {"settings": {"width": cfg.width, "videos": ev.videos, "sets": list(ev.sets),
                         "ablation_sets": list(ev.ablation_sets), "colours": ev.colours, "top_k": list(ev.top_k),
                         "augmentations": list(cfg.augmentations), "image_size": cfg.image_size,
                         "propagation": {**overrides, "crop_sizes": crop_sizes,
                                         "label_resize_interp": q.label_resize_interp}},
            "chance": {t.name: t.chance for t in tasks},
            "retrieval": {"queries": len(rset.queries), "collection": int(sum(rset.identities.values())),
                          "objects": len(rset.identities)},
            "models": models, "ablation": ablation}


def _metric_name(key: str) -> str:
    return key.replace("&", "and").replace("@", "_at_").replace("−", "no").replace("(", "").replace(")", "") \
        .replace(",", "").replace(" ", "_")


def _flat(d: Any, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}{_metric_name(str(k))}."))
    elif isinstance(d, (int, float)) and not isinstance(d, bool) and d is not None:
        out[prefix[:-1]] = float(d)
    return out


def _curves_csv(rows: list[dict]) -> str:
    fields = ["method", "step", "loss", "accuracy", "lr"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def main() -> int:
    setup_logging()
    p = params()
    cfg = p.baselines
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(p.seed)
    np.random.seed(p.seed)
    from selfsup.data.video import ClipCache

    start = time.perf_counter()
    Path(cfg.out).mkdir(parents=True, exist_ok=True)   # DVC's output, also when no method is trained
    with stage_run("baselines", cfg) as run:
        try:
            cache = ClipCache(cfg.clips)
            if not cache.has_frames:
                raise FileNotFoundError(f"{cfg.clips}: the clip cache has no frames.npy (set clips.cache_frames)")
            checkpoints, summaries, curves = train_methods(cfg, p.seed, device, cache, run)
            trained = time.perf_counter() - start
            results = evaluate_models(cfg, p, device, cache, checkpoints, summaries)
        except (FileNotFoundError, ValueError) as exc:
            print(f"error: baselines: {exc}", file=sys.stderr)
            return 2
        results["seconds"] = {"training": trained, "evaluation": time.perf_counter() - start - trained,
                              "total": time.perf_counter() - start}
        results["checkpoints"] = {k: str(v) for k, v in checkpoints.items()}
        write_json(METRICS, {"baselines": results})
        write_text(TABLE, render_table(results))
        write_text(CURVES, _curves_csv(curves))
        run.log_metrics({k: v for k, v in _flat({"models": results["models"], "ablation": results["ablation"]}).items()
                         if ".training." not in k})
        run.log_params({"propagation": results["settings"]["propagation"]}, prefix="")
        for path in (METRICS, TABLE, CURVES):
            run.log_artifact(path)
    log.info("baselines: %.0f s (training %.0f s) -> %s, %s", results["seconds"]["total"], trained, METRICS, TABLE)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
