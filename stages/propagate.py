"""The `propagate` stage: first-frame labels propagated through every evaluation video.

    python -m stages.propagate                  (params: `seed`, `propagate`)

For each model in `propagate.models` (crw = `propagate.checkpoint`, random = a seeded random init of
the same architecture, pixels, imagenet) and each set in `propagate.sets` (under `propagate.data`):
- results in the set's official format under `<propagate.out>/<model>/<set>/` (replaced whole);
- overlay GIFs of the first `gif_videos` videos: `<propagate.figures>/<model>/<set>/<video>.gif`;
- frames, seconds and frames/s of every run in `<propagate.timing>` and in MLflow (with the GIFs).
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from selfsup.config import Params
from selfsup.io import atomic_dir, write_json
from stages.common import params, setup_logging
from stages.tracking import stage_run

log = logging.getLogger("stages.propagate")


def propagation_config(p: Params) -> Any:
    from selfsup.propagate import PropagationConfig

    q = p.propagate
    return PropagationConfig(context=q.context, topk=q.topk, radius=q.radius, temperature=q.temperature)


def crop_size(p: Params, set_name: str) -> int:
    return {"davis": p.propagate.davis_crop_size, "jhmdb": p.propagate.jhmdb_crop_size,
            "vip": p.propagate.vip_crop_size}[set_name]


def extractor(p: Params, model: str, device: Any) -> Any:
    from selfsup.propagate import build_extractor

    q = p.propagate
    if model == "crw":
        if not Path(q.checkpoint).is_file():
            raise FileNotFoundError(f"{q.checkpoint}: CRW checkpoint not found (run the pretrain stage, "
                                    f"or drop 'crw' from propagate.models)")
        return build_extractor("checkpoint", q.checkpoint, device=device)
    if model == "imagenet":
        if not q.imagenet_weights:
            raise ValueError("propagate.models lists 'imagenet' but propagate.imagenet_weights is not set")
        return build_extractor("imagenet", q.imagenet_weights, device=device)
    if model == "random":
        arch = q.checkpoint if Path(q.checkpoint).is_file() else None
        return build_extractor("random", arch, seed=p.seed, device=device)
    return build_extractor(model, device=device)


def run_set(p: Params, set_name: str, ex: Any, out: Path, device: Any) -> dict:
    from selfsup import propagate as pg

    q = p.propagate
    cfg = propagation_config(p)
    common = dict(device=device, batch_size=q.batch_size, crop_size=crop_size(p, set_name))
    if set_name == "davis":
        return pg.propagate_davis(ex, q.data, out, cfg, **common)
    if set_name == "jhmdb":
        return pg.propagate_jhmdb(ex, q.data, out, cfg, **common)
    return pg.propagate_vip(ex, q.data, out, cfg, label_resize_interp=q.label_resize_interp, **common)


def draw(p: Params, set_name: str, results: Path, folder: Path) -> list[Path]:
    """Overlay GIFs of the first `gif_videos` videos of a set."""
    from selfsup import viz
    from selfsup.data.davis import DavisSet
    from selfsup.data.jhmdb import JhmdbSet
    from selfsup.data.vip import VipSet

    q = p.propagate
    written = []
    if set_name == "davis":
        for seq in DavisSet(q.data).sequences[: q.gif_videos]:
            written.append(viz.save_gif(viz.davis_overlay_frames(q.data, results, seq), folder / f"{seq}.gif"))
    elif set_name == "jhmdb":
        grid = q.jhmdb_crop_size / 8
        for video in JhmdbSet(q.data).videos[: q.gif_videos]:
            frames = viz.jhmdb_overlay_frames(q.data, results, video.key, grid_size=grid)
            written.append(viz.save_gif(frames, folder / f"{video.key}.gif"))
    else:
        for video in VipSet(q.data).videos[: q.gif_videos]:
            written.append(viz.save_gif(viz.vip_overlay_frames(q.data, results, video), folder / f"{video}.gif"))
    return written


def main() -> int:
    setup_logging()
    p = params()
    q = p.propagate
    from selfsup.propagate import resolve_device

    device = resolve_device(q.device)
    try:
        extractors = {model: extractor(p, model, device) for model in q.models}
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: propagate: {exc}", file=sys.stderr)
        return 2
    timing: dict[str, dict[str, dict]] = {}
    with stage_run("propagate", q) as run:
        run.set_tags({"selfsup.device": str(device)})
        with atomic_dir(q.figures) as figures:
            for model, ex in extractors.items():
                for set_name in q.sets:
                    out = Path(q.out) / model / set_name
                    log.info("propagating %s with %s on %s", set_name, model, device)
                    with atomic_dir(out) as tmp:
                        stats = run_set(p, set_name, ex, tmp, device)
                    stats["device"] = str(device)
                    timing.setdefault(model, {})[set_name] = stats
                    log.info("%s / %s: %d frames in %.1f s (%.2f frames/s)", model, set_name,
                             stats["frames"], stats["seconds"], stats["frames_per_second"])
                    run.log_metrics({f"{model}.{set_name}.seconds": stats["seconds"],
                                     f"{model}.{set_name}.frames_per_second": stats["frames_per_second"]})
                    draw(p, set_name, out, figures / model / set_name)
        write_json(q.timing, timing)
        run.log_artifact(q.figures, artifact_path="figures")
        run.log_artifact(q.timing)
    return 0


if __name__ == "__main__":
    sys.exit(main())
