"""Registered model versions in the MLflow store (the pretrain and translate stages register the
CRW and CUT checkpoints through `stages.tracking.StageRun.register_model`).

    selfsup runs --models                 every version of every registered model
    latest_version_path("crw")            local path of the newest version's file or folder
"""
from __future__ import annotations

import datetime as dt
import os
from typing import Mapping


def model_versions(env: Mapping[str, str] | None = None, name: str | None = None) -> list[dict]:
    """Every registered version (newest first per model) with its run, source and tags."""
    from pipeline.runs import client

    mlclient = client(env)
    filter_string = f"name = '{name}'" if name else None
    versions = mlclient.search_model_versions(filter_string=filter_string, max_results=10000)
    rows = []
    for mv in versions:
        rows.append({
            "name": mv.name, "version": int(mv.version), "run_id": mv.run_id or "",
            "source": mv.source, "status": mv.status, "tags": dict(mv.tags or {}),
            "created": dt.datetime.fromtimestamp(mv.creation_timestamp / 1000).strftime("%Y-%m-%d %H:%M:%S"),
        })
    rows.sort(key=lambda r: (r["name"], -r["version"]))
    return rows


def versions_table(rows: list[dict]):
    """One row per version: `name vN`, its run (short id), when, and where its files are."""
    import pandas as pd

    data = {f"{r['name']} v{r['version']}": {"run": r["run_id"][:8], "created": r["created"],
                                            "status": r["status"], "source": r["source"]} for r in rows}
    table = pd.DataFrame.from_dict(data, orient="index", columns=["run", "created", "status", "source"])
    table.index.name = "model"
    return table


def latest_version_path(name: str, env: Mapping[str, str] | None = None) -> str:
    """Local path of the newest version's files (downloaded if the store is remote)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    rows = model_versions(env, name)
    if not rows:
        raise ValueError(f"no registered model {name!r}")
    if env and env.get("MLFLOW_TRACKING_URI"):
        mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    # the source, not `models:/name/N`: a version may be a single file (a checkpoint)
    return mlflow.artifacts.download_artifacts(artifact_uri=rows[0]["source"])
