"""The `evaluate` stage: every metric of the pipeline -> `reports/metrics.json`.

    python -m stages.evaluate          (params: `evaluate`, `propagate`, `translate`, `seed`)

- propagation: each model × set under `<propagate.out>/<model>/<set>/` scored with the official
  protocol (DAVIS J&F on the 0..1 scale; JHMDB PCK@0.1/0.2 and VIP mIoU in percent);
- translation: `stages.translate.evaluate_translations(params)` when `translate.modes` lists any.

Per object / joint / class scores go to `<evaluate.details>/<set>-<model>.json`; the summary
numbers are logged to MLflow.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

from selfsup.config import Params
from selfsup.io import atomic_dir, write_json
from stages.common import params, setup_logging
from stages.tracking import stage_run

log = logging.getLogger("stages.evaluate")

DAVIS_KEYS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")


def score(p: Params, set_name: str, results: Path) -> tuple[dict, dict]:
    """(summary in the metrics.json structure, full details) of one results folder."""
    q = p.propagate
    if set_name == "davis":
        from selfsup.metrics.davis import evaluate_davis

        scores = evaluate_davis(q.data, results, workers=p.evaluate.workers)
        summary = scores.summary()
        return {k: summary[k] for k in DAVIS_KEYS}, scores.to_dict()
    if set_name == "jhmdb":
        from selfsup.metrics.pck import evaluate_jhmdb

        out = evaluate_jhmdb(q.data, results, grid_size=q.jhmdb_crop_size / 8)
        return {"PCK@0.1": out["PCK@0.1"], "PCK@0.2": out["PCK@0.2"]}, out
    from selfsup.metrics.miou import evaluate_vip

    out = evaluate_vip(q.data, results)
    return {"mIoU": out["mIoU"]}, out


def propagation_metrics(p: Params, details_dir: Path | None = None) -> dict:
    """{"<set>": {"<model>": summary}} for every model and set of the `propagate` section."""
    q = p.propagate
    metrics: dict[str, dict] = {}
    for set_name in q.sets:
        for model in q.models:
            results = Path(q.out) / model / set_name
            if not results.is_dir():
                raise FileNotFoundError(f"{results}: no propagation results (run the propagate stage)")
            summary, details = score(p, set_name, results)
            metrics.setdefault(set_name, {})[model] = summary
            log.info("%s / %s: %s", set_name, model, ", ".join(f"{k} {v:.4g}" for k, v in summary.items()))
            if details_dir is not None:
                write_json(details_dir / f"{set_name}-{model}.json", details)
    return metrics


def translation_metrics(p: Params) -> dict | None:
    if not p.translate.modes:
        return None
    from stages import translate

    return translate.evaluate_translations(p)


def mlflow_safe(metrics: dict) -> dict:
    """Metric names MLflow accepts ("J&F-Mean" -> "JandF-Mean"); values unchanged."""
    return {k.replace("&", "and"): (mlflow_safe(v) if isinstance(v, dict) else v) for k, v in metrics.items()}


def main() -> int:
    setup_logging()
    p = params()
    with stage_run("evaluate", p.evaluate) as run:
        try:
            with atomic_dir(p.evaluate.details) as details:
                metrics: dict = {"propagation": propagation_metrics(p, details)}
            translate = translation_metrics(p)
        except (FileNotFoundError, ValueError) as exc:
            print(f"error: evaluate: {exc}", file=sys.stderr)
            return 2
        if translate is not None:
            metrics["translate"] = translate
        write_json(p.evaluate.out, metrics)
        run.log_metrics(mlflow_safe(metrics))
        run.log_artifact(p.evaluate.out)
        run.log_artifact(p.evaluate.details, artifact_path="evaluation")
    return 0


if __name__ == "__main__":
    sys.exit(main())
