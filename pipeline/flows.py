"""Prefect flows: the DVC pipeline stage by stage, on this machine or on a GPU work pool.

    python -m pipeline.flows run                         every stage, here (temporary local server)
    python -m pipeline.flows run --profile kinetics-crw --profile davis --stages pretrain propagate
    python -m pipeline.flows run --table crw-ablation-dropout
    python -m pipeline.flows deploy --pool gpu           register the deployments with a server
    prefect worker start --pool gpu                      (on the GPU machine) pick the runs up

Each stage is one task running `dvc repro --single-item <stage>` in pipeline order, so DVC's lock
file and cache decide what actually reruns. The flow opens a parent MLflow run and hands its id to
every stage through SELFSUP_PARENT_RUN_ID (MLflow's active run is per thread, so the id is passed
explicitly). A profile is written into params.yaml the way `dvc exp run -S` does it and the result
is saved as a DVC experiment.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from pipeline.project import PROJECT_ROOT, QUIET_ENV, find_root

for _key, _value in {**QUIET_ENV, "PREFECT_HOME": str(PROJECT_ROOT / ".prefect"),
                     "PREFECT_LOGGING_EXTRA_LOGGERS": "pipeline",
                     # the same helpers also run outside flows (selfsup table): no warning there
                     "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore"}.items():
    os.environ.setdefault(_key, _value)

from prefect import flow, task  # noqa: E402  (after the environment above)
from prefect.cache_policies import NO_CACHE  # noqa: E402

from pipeline import profiles, runner  # noqa: E402
from pipeline.project import git_head, stage_order, tracking_env  # noqa: E402
from pipeline.runs import PARENT_ENV, ParentRun  # noqa: E402

log = logging.getLogger(__name__)
# DVC's output (logged by pipeline.project) at INFO: Prefect's root logger stops at WARNING.
if logging.getLogger("pipeline").level in (logging.NOTSET, logging.WARNING):
    logging.getLogger("pipeline").setLevel(logging.INFO)

WORK_POOL = "gpu"
DEPLOYMENT = "selfsup"
DEFAULT_MLFLOW_URL = os.environ.get("SELFSUP_MLFLOW_URL", "http://127.0.0.1:5001")
# What a worker's flow-run process needs besides the worker's own environment.
JOB_ENV = {**QUIET_ENV, "PREFECT_LOGGING_EXTRA_LOGGERS": "pipeline",
           "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore", "PYTHONUNBUFFERED": "1"}


# --------------------------------------------------------------------------------------------
# Tasks
# --------------------------------------------------------------------------------------------

@task(name="dvc-stage", task_run_name="{stage}", cache_policy=NO_CACHE)
def stage_task(project_dir: str, stage: str, parent_run_id: str, force: bool = False) -> dict:
    root = Path(project_dir)
    env = {**tracking_env(root), PARENT_ENV: parent_run_id}
    return runner.run_stage(root, stage, env, force=force)


@task(name="apply-profile", cache_policy=NO_CACHE)
def apply_profile_task(project_dir: str, overrides: dict, label: str) -> list[str]:
    return runner.apply_overrides(Path(project_dir), overrides, label=label)


@task(name="save-experiment", task_run_name="save {name}", cache_policy=NO_CACHE)
def save_experiment_task(project_dir: str, name: str) -> str:
    root = Path(project_dir)
    return runner.save_experiment(root, name, tracking_env(root))


@task(name="dvc-experiment", task_run_name="{name}", cache_policy=NO_CACHE)
def experiment_task(project_dir: str, name: str, overrides: dict, parent_run_id: str) -> str:
    root = Path(project_dir)
    env = {**tracking_env(root), PARENT_ENV: parent_run_id}
    return runner.run_experiment(root, name, overrides, env)


def _is_download(stage: str) -> bool:
    return stage.split(":")[-1].split("@")[0] == "download"


def _stage_runner(download_retries: int, retry_delay_seconds: float, force: bool = False):
    """Run a stage as a task; the download stage retries (network)."""
    retrying = stage_task.with_options(retries=download_retries, retry_delay_seconds=retry_delay_seconds)

    def run(project_dir: Path, stage: str, env: dict) -> dict:
        fn = retrying if _is_download(stage) else stage_task
        return fn(str(project_dir), stage, env[PARENT_ENV], force)
    return run


def _root(project_dir: str | None) -> Path:
    return find_root(project_dir) if project_dir else find_root(PROJECT_ROOT)


def _flow_run_id() -> str:
    from prefect.runtime import flow_run

    return str(flow_run.id or "")


def _head(root: Path) -> str:
    try:
        return git_head(root)
    except Exception:  # not a git repository yet
        return "unknown"


# --------------------------------------------------------------------------------------------
# Flows
# --------------------------------------------------------------------------------------------

@flow(name="selfsup-pipeline", log_prints=True)
def pipeline(profile: list[str] | None = None, stages: list[str] | None = None,
             table: str | None = None, embedded: bool | None = None, project_dir: str | None = None,
             force: bool = False, experiment: str | None = None, download_retries: int = 3,
             retry_delay_seconds: float = 30.0) -> dict:
    """Run the pipeline's stages in order (all, or `stages`), optionally under profiles.

    profile: names from profiles/ (merged left to right) written into params.yaml; the run is then
        saved as DVC experiment `experiment` (default: the profile names joined by '--').
    table: instead of stages, run what a paper table needs and write it (see `table_flow`).
    """
    if table:
        return table_flow(table=table, embedded=embedded, project_dir=project_dir,
                          download_retries=download_retries, retry_delay_seconds=retry_delay_seconds)
    root = _root(project_dir)
    names = list(profile or [])
    overrides = profiles.combine(names)
    order = stage_order(root, stages)
    exp_name = experiment or ("--".join(Path(n).stem for n in names) if names else "")
    if exp_name:
        runner.check_experiment_name(exp_name)
    env = tracking_env(root)
    parent = ParentRun(f"pipeline {exp_name or 'params.yaml'}", env, tags={
        "selfsup.profile": ",".join(names), "selfsup.stages": ",".join(order),
        "selfsup.git_revision": _head(root), "prefect.flow_run_id": _flow_run_id()},
        params=profiles.flatten(overrides))
    run_stage = _stage_runner(download_retries, retry_delay_seconds, force)
    ok = False
    try:
        if overrides:
            apply_profile_task(str(root), overrides, exp_name)
        results = [run_stage(root, stage, parent.env(env)) for stage in order]
        metrics = runner.read_metrics(root)
        if metrics:
            parent.log_metrics(metrics)
        revision = save_experiment_task(str(root), exp_name) if exp_name else ""
        ok = True
    finally:
        parent.finish(ok)
    print(f"MLflow parent run {parent.run_id}; stages run: "
          f"{', '.join(r['stage'] for r in results if r['ran']) or 'none (all up to date)'}")
    return {"parent_run_id": parent.run_id, "stages": results, "experiment": exp_name,
            "revision": revision, "project_dir": str(root)}


@flow(name="selfsup-table", log_prints=True)
def table_flow(table: str, embedded: bool | None = None, project_dir: str | None = None,
               mlflow_url: str | None = DEFAULT_MLFLOW_URL, out: str | None = None,
               download_retries: int = 3, retry_delay_seconds: float = 30.0) -> dict:
    """Run every variant a paper table needs, then write `reports/tables/<table>.md`."""
    from pipeline import tables
    from stages import paper_tables

    root = _root(project_dir)
    spec = paper_tables.get(table)
    if embedded is None:
        embedded = not tables.datasets_present(root, spec)
    run_stage = _stage_runner(download_retries, retry_delay_seconds)

    def run_experiment(r: Path, name: str, overrides: Any, env: dict) -> str:
        return experiment_task(str(r), name, dict(overrides), env[PARENT_ENV])

    results = tables.run_table(root, spec, embedded=embedded, stage_fn=run_stage,
                               experiment_fn=run_experiment,
                               extra_tags={"prefect.flow_run_id": _flow_run_id()})
    path = tables.write_table(root, spec, results, embedded=embedded, mlflow_url=mlflow_url,
                              out=Path(out) if out else None)
    print(f"wrote {path}")
    return {"table_path": str(path), "embedded": embedded,
            "variants": [{"variant": r.variant.name, "run_ids": dict(r.run_ids), "experiment": r.experiment,
                          "revision": r.revision, "has_metrics": r.metrics is not None} for r in results]}


# --------------------------------------------------------------------------------------------
# Deployments
# --------------------------------------------------------------------------------------------

def deploy(work_pool: str = WORK_POOL, name: str = DEPLOYMENT, source: str | None = None,
           parameters: dict | None = None, env: dict | None = None) -> list[str]:
    """Register `<name>` (the pipeline) and `<name>-table` with the server at PREFECT_API_URL.

    source: the project folder on the worker's machine or a git URL (default: this checkout).
    A worker started with `prefect worker start --pool <work_pool>` then runs them.
    """
    src = source or str(PROJECT_ROOT)
    job_variables = {"env": {**JOB_ENV, **(env or {})}}
    ids = []
    for fl, dep_name in ((pipeline, name), (table_flow, f"{name}-table")):
        loaded = fl.from_source(source=src, entrypoint=f"pipeline/flows.py:{fl.fn.__name__}")
        ids.append(str(loaded.deploy(name=dep_name, work_pool_name=work_pool, build=False, push=False,
                                     parameters=dict(parameters or {}) if fl is pipeline else {},
                                     job_variables=job_variables, print_next_steps=False)))
    return ids


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pipeline.flows", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the pipeline flow here")
    run.add_argument("--profile", action="append", default=None, help="profile name (repeatable)")
    run.add_argument("--stages", nargs="+", default=None, help="only these stages (pipeline order)")
    run.add_argument("--table", default=None, help="run what this paper table needs")
    scale = run.add_mutually_exclusive_group()
    scale.add_argument("--embedded", dest="embedded", action="store_true", default=None)
    scale.add_argument("--paper", dest="embedded", action="store_false")
    run.add_argument("--project", default=None, help="project folder (default: this checkout)")
    run.add_argument("--force", action="store_true", help="rerun stages even if up to date")
    run.add_argument("--experiment", default=None, help="DVC experiment name for a profile run")
    dep = sub.add_parser("deploy", help="register the deployments with the Prefect server")
    dep.add_argument("--pool", default=WORK_POOL)
    dep.add_argument("--name", default=DEPLOYMENT)
    dep.add_argument("--source", default=None, help="project folder on the worker machine, or a git URL")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(list(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "deploy":
        for dep_id in deploy(args.pool, args.name, args.source):
            print(dep_id)
        return 0
    result = pipeline(profile=args.profile, stages=args.stages, table=args.table, embedded=args.embedded,
                      project_dir=args.project, force=args.force, experiment=args.experiment)
    print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
