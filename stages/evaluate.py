"""The `evaluate` stage: every metric of the pipeline -> `reports/metrics.json`.

    python -m stages.evaluate          (params: `evaluate`, `propagate`, `translate`, `seed`)

- propagation: each model × set under `<propagate.out>/<model>/<set>/` scored with the official
  protocol (DAVIS J&F on the 0..1 scale; JHMDB PCK@0.1/0.2 and VIP mIoU in percent);
- translation: `stages.translate.evaluate_translations(params)` when `translate.modes` lists any;
- test_time: `reports/test_time.json` of the `test_time` stage as it is (CRW adaptation vs frozen,
  the test-then-train stream vs frozen, rotation-prediction TTT vs no TTT per shift); without it,
  the merge of the `adapt` / `ttt` reports (`stages.test_time.merged_metrics`);
- baselines: the `{"baselines": {...}}` block of `reports/baselines.json` (`baselines` stage): each
  method's propagation, probes and retrieval, the augmentation leave-one-out.

The last two are computed by their own stages and only nested here; a section whose stage has not
run is left out (logged). Per object / joint / class scores go to
`<evaluate.details>/<set>-<model>.json`; the summary numbers are logged to MLflow.
"""
from __future__ import annotations

import logging
import re
import sys
from pathlib import Path
from typing import Any

from selfsup.config import Params
from selfsup.io import atomic_dir, read_json, write_json
from stages import test_time
from stages.common import params, setup_logging
from stages.tracking import stage_run

log = logging.getLogger("stages.evaluate")

# Reports of other stages nested into metrics.json (each also a DVC metrics file of its own).
TEST_TIME_REPORT = test_time.OUT
TEST_TIME_PARTS = (test_time.CRW_REPORT, test_time.TTT_REPORT)
BASELINES_REPORT = Path("reports/baselines.json")   # stages.baselines.METRICS (that module imports torch)

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


def read_test_time(report: Path | None = None, parts: tuple[Path, Path] | None = None) -> dict | None:
    """The `test_time` stage's merged report; None when none of the test-time stages has run."""
    report = TEST_TIME_REPORT if report is None else report
    parts = TEST_TIME_PARTS if parts is None else parts
    if report.is_file():
        data = read_json(report)
        if not isinstance(data, dict):
            raise ValueError(f"{report}: expected a JSON object")
        return data
    merged = test_time.merged_metrics(*parts)
    if merged:
        # adapt / ttt ran but test_time did not: the same merge, without the file
        log.info("%s not found: test_time section merged from %s", report, ", ".join(map(str, parts)))
        return merged
    log.warning("no test-time results (%s, %s): metrics.json has no test_time section "
                "(run the adapt, ttt and test_time stages)", report, ", ".join(map(str, parts)))
    return None


def read_baselines(report: Path | None = None) -> dict | None:
    """The `baselines` block of the baselines stage's report; None when that stage has not run."""
    report = BASELINES_REPORT if report is None else report
    if not report.is_file():
        log.warning("%s not found: metrics.json has no baselines section (run the baselines stage)", report)
        return None
    data = read_json(report)
    if not isinstance(data, dict) or not isinstance(data.get("baselines"), dict):
        raise ValueError(f'{report}: expected {{"baselines": {{...}}}}')
    return data["baselines"]


def _mlflow_name(key: str) -> str:
    # "J&F-Mean" -> "JandF-Mean", "− crop" -> "no crop", "all (crop, flip)" -> "all crop flip";
    # "@" is left to StageRun.log_metrics ("PCK@0.1" -> "PCK_at_0.1")
    name = key.replace("&", "and").replace("−", "no")
    name = re.sub(r"[^\w.\- :@]", "", name)
    return re.sub(r" {2,}", " ", name).strip()


def mlflow_safe(metrics: dict) -> dict:
    """Metric names MLflow accepts ("J&F-Mean" -> "JandF-Mean"); values unchanged."""
    return {_mlflow_name(str(k)): (mlflow_safe(v) if isinstance(v, dict) else v) for k, v in metrics.items()}


def main() -> int:
    setup_logging()
    p = params()
    with stage_run("evaluate", p.evaluate) as run:
        try:
            # the other stages' reports first: a broken one stops before the long scoring
            nested: dict[str, Any] = {"test_time": read_test_time(), "baselines": read_baselines()}
            with atomic_dir(p.evaluate.details) as details:
                metrics: dict = {"propagation": propagation_metrics(p, details)}
            translate = translation_metrics(p)
        except (FileNotFoundError, ValueError) as exc:
            print(f"error: evaluate: {exc}", file=sys.stderr)
            return 2
        if translate is not None:
            metrics["translate"] = translate
        metrics.update({name: section for name, section in nested.items() if section})
        write_json(p.evaluate.out, metrics)
        run.log_metrics(mlflow_safe(metrics))
        run.log_artifact(p.evaluate.out)
        run.log_artifact(p.evaluate.details, artifact_path="evaluation")
    return 0


if __name__ == "__main__":
    sys.exit(main())
