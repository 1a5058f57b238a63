"""MLflow side of the orchestration layer: parent runs, and finding the runs of a pipeline run.

Parent runs are created through `MlflowClient` (never `mlflow.start_run`): the client takes run ids
explicitly, so it is safe from any thread, and the id is handed to the stages through
`SELFSUP_PARENT_RUN_ID` (each stage opens its own run nested under it).
"""
from __future__ import annotations

import logging
import math
import os
import re
import time
from pathlib import Path
from typing import Any, Mapping

log = logging.getLogger(__name__)

PARENT_ENV = "SELFSUP_PARENT_RUN_ID"
_BAD_METRIC_CHARS = re.compile(r"[^A-Za-z0-9_\-. /]")


def experiment_name() -> str:
    return os.environ.get("SELFSUP_MLFLOW_EXPERIMENT", "selfsup")


def client(env: Mapping[str, str] | None = None):
    """An MlflowClient on the store named by `env` (default: this process's environment)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from mlflow import MlflowClient

    env = os.environ if env is None else env
    uri = env.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd().resolve() / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri)


def experiment_id(mlclient, env: Mapping[str, str] | None = None, name: str | None = None) -> str:
    """Id of the project's experiment, created (with the project's artifact folder) if missing."""
    env = os.environ if env is None else env
    name = name or env.get("SELFSUP_MLFLOW_EXPERIMENT") or experiment_name()
    exp = mlclient.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    artifacts = env.get("SELFSUP_MLFLOW_ARTIFACTS")
    location = Path(artifacts).resolve().as_uri() if artifacts else None
    try:
        return mlclient.create_experiment(name, artifact_location=location)
    except Exception:  # created concurrently by a stage process
        exp = mlclient.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def metric_key(name: str) -> str:
    """A metric name MLflow accepts ('J&F-Mean' -> 'J_F-Mean', 'PCK@0.1' -> 'PCK_at_0.1')."""
    return _BAD_METRIC_CHARS.sub("_", name.replace("@", "_at_"))


def flatten_metrics(data: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_metrics(value, f"{name}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[metric_key(name)] = float(value)
    return out


class ParentRun:
    """The MLflow run of one pipeline run; stage runs nest under it."""

    def __init__(self, name: str, env: Mapping[str, str], tags: Mapping[str, Any] | None = None,
                 params: Mapping[str, Any] | None = None, parent_run_id: str | None = None):
        self.client = client(env)
        self.experiment_id = experiment_id(self.client, env)
        all_tags = {"selfsup.kind": "pipeline", **{k: str(v) for k, v in (tags or {}).items()}}
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        run = self.client.create_run(self.experiment_id, run_name=name, tags=all_tags)
        self.run_id: str = run.info.run_id
        self.started = time.perf_counter()
        if params:
            for key, value in params.items():
                self.client.log_param(self.run_id, key, str(value)[:500])
        log.info("MLflow parent run %s (%s)", self.run_id, name)

    def env(self, base: Mapping[str, str]) -> dict[str, str]:
        return {**base, PARENT_ENV: self.run_id}

    def log_metrics(self, metrics: Mapping[str, Any], prefix: str = "") -> None:
        flat = flatten_metrics(metrics, prefix)
        ts = int(time.time() * 1000)
        for key, value in flat.items():
            self.client.log_metric(self.run_id, key, value, timestamp=ts)

    def set_tag(self, key: str, value: Any) -> None:
        self.client.set_tag(self.run_id, key, str(value))

    def finish(self, ok: bool) -> None:
        self.client.log_metric(self.run_id, "pipeline_seconds", time.perf_counter() - self.started)
        self.client.set_terminated(self.run_id, "FINISHED" if ok else "FAILED")


def child_runs(parent_run_id: str, env: Mapping[str, str] | None = None) -> list:
    """Runs nested directly under `parent_run_id` (oldest first)."""
    mlclient = client(env)
    parent = mlclient.get_run(parent_run_id)
    return list(mlclient.search_runs([parent.info.experiment_id],
                                     filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'",
                                     order_by=["attributes.start_time ASC"], max_results=1000))


def latest_stage_run(stage: str, env: Mapping[str, str] | None = None, *, exp_name: str | None = None,
                     parent_run_id: str | None = None) -> Any | None:
    """The most recent run of `stage` (optionally of one DVC experiment / one parent run)."""
    mlclient = client(env)
    exp = mlclient.get_experiment_by_name((env or os.environ).get("SELFSUP_MLFLOW_EXPERIMENT")
                                          or experiment_name())
    if exp is None:
        return None
    clauses = [f"tags.`selfsup.stage` = '{stage}'"]
    if exp_name is not None:
        clauses.append(f"tags.`dvc.exp_name` = '{exp_name}'")
    if parent_run_id:
        clauses.append(f"tags.mlflow.parentRunId = '{parent_run_id}'")
    runs = mlclient.search_runs([exp.experiment_id], filter_string=" and ".join(clauses),
                                order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0] if runs else None
