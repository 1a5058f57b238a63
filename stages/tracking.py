"""One MLflow run per stage execution.

    with stage_run("pretrain", params.pretrain, params_file=...) as run:
        run.log_metrics({"loss": 1.2}, step=10)
        run.log_artifact("models/crw/checkpoint.pt")

- The store comes from `MLFLOW_TRACKING_URI` (the Makefile points it at `<project>/mlflow.db`);
  without it, `sqlite:///<cwd>/mlflow.db`. Artifacts go to `SELFSUP_MLFLOW_ARTIFACTS` or an
  `mlartifacts/` folder beside the database.
- Runs nest under `SELFSUP_PARENT_RUN_ID` when a flow sets it. The parent is passed explicitly,
  because MLflow's active run is per thread (a Prefect task thread would otherwise start a new
  top-level run).
- Tags: stage, git revision, params hash, DVC stage / experiment name / baseline revision (the
  keys that join MLflow's runs to DVC's experiments).
- `SELFSUP_TRACKING=off` disables logging (the run object then accepts and drops every call).
"""
from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

from selfsup.config import as_dict, params_hash

log = logging.getLogger(__name__)

EXPERIMENT = os.environ.get("SELFSUP_MLFLOW_EXPERIMENT", "selfsup")


def tracking_uri() -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{Path.cwd().resolve() / 'mlflow.db'}"


def artifact_root() -> str:
    explicit = os.environ.get("SELFSUP_MLFLOW_ARTIFACTS")
    if explicit:
        return Path(explicit).resolve().as_uri()
    uri = tracking_uri()
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///"):]).parent / "mlartifacts").resolve().as_uri()
    return (Path.cwd() / "mlartifacts").resolve().as_uri()


def git_revision() -> str:
    # Inside `dvc exp run`, HEAD is the experiment's baseline revision.
    rev = os.environ.get("DVC_EXP_BASELINE_REV")
    if rev:
        return rev
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{key}."))
        else:
            out[key] = v
    return out


class StageRun:
    """Thin wrapper over an active MLflow run; every call is a no-op when tracking is off."""

    def __init__(self, mlflow: Any | None, run_id: str | None):
        self._mlflow = mlflow
        self.run_id = run_id

    @property
    def enabled(self) -> bool:
        return self._mlflow is not None

    def log_params(self, params: Mapping[str, Any], prefix: str = "") -> None:
        if not self.enabled:
            return
        flat = {k: str(v)[:500] for k, v in _flatten(params, prefix).items()}
        self._mlflow.log_params(flat)

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        if not self.enabled:
            return
        flat = {k.replace("@", "_at_"): float(v) for k, v in _flatten(metrics).items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if flat:
            self._mlflow.log_metrics(flat, step=step)

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        if not self.enabled or not Path(path).exists():
            return
        if Path(path).is_dir():
            self._mlflow.log_artifacts(str(path), artifact_path=artifact_path)
        else:
            self._mlflow.log_artifact(str(path), artifact_path=artifact_path)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if self.enabled:
            self._mlflow.set_tags({k: str(v) for k, v in tags.items()})

    def register_model(self, artifact_path: str, name: str) -> str | None:
        """Register a logged artifact as a new version of model `name`; returns the version."""
        if not self.enabled:
            return None
        # MLflow 3's `register_model("runs:/...")` only accepts MLmodel folders or logged models;
        # a checkpoint folder is registered from its artifact location instead.
        from mlflow.exceptions import MlflowException

        client = self._mlflow.MlflowClient()
        try:
            client.create_registered_model(name)
        except MlflowException as exc:
            if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
                raise
        source = f"{client.get_run(self.run_id).info.artifact_uri.rstrip('/')}/{artifact_path}"
        mv = client.create_model_version(name, source=source, run_id=self.run_id)
        return str(mv.version)


def _experiment_id(mlflow: Any) -> str:
    exp = mlflow.get_experiment_by_name(EXPERIMENT)
    if exp is not None:
        return exp.experiment_id
    try:
        return mlflow.create_experiment(EXPERIMENT, artifact_location=artifact_root())
    except Exception:  # created concurrently by another process
        exp = mlflow.get_experiment_by_name(EXPERIMENT)
        if exp is None:
            raise
        return exp.experiment_id


@contextlib.contextmanager
def stage_run(stage: str, section: Any = None, *, extra_tags: Mapping[str, Any] | None = None,
              run_name: str | None = None) -> Iterator[StageRun]:
    """Open the MLflow run of one stage execution, log its params section and timing."""
    if os.environ.get("SELFSUP_TRACKING", "on").lower() in {"off", "0", "false", "no"}:
        yield StageRun(None, None)
        return
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    experiment_id = _experiment_id(mlflow)
    tags = {
        "selfsup.stage": stage,
        "selfsup.git_revision": git_revision(),
        "selfsup.params_hash": params_hash(section) if section is not None else "",
        "dvc.stage": os.environ.get("DVC_STAGE", stage),
        "dvc.exp_name": os.environ.get("DVC_EXP_NAME", ""),
        "dvc.baseline_rev": os.environ.get("DVC_EXP_BASELINE_REV", ""),
    }
    if extra_tags:
        tags.update({k: str(v) for k, v in extra_tags.items()})
    parent = os.environ.get("SELFSUP_PARENT_RUN_ID") or None
    start = time.perf_counter()
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name or stage,
                          parent_run_id=parent, tags=tags) as active:
        run = StageRun(mlflow, active.info.run_id)
        if section is not None:
            run.log_params(as_dict(section) if not isinstance(section, Mapping) else section)
        log.info("MLflow run %s (stage %s) in %s", active.info.run_id, stage, tracking_uri())
        try:
            yield run
        finally:
            run.log_metrics({"stage_seconds": time.perf_counter() - start})
