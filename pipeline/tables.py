"""`selfsup table NAME`: run what a paper table needs and write `reports/tables/NAME.md`.

    selfsup table --list                 the tables, what each runs, paper scale or embedded here
    selfsup table crw-davis              embedded counterpart unless the data sets are on disk
    selfsup table crw-davis --paper      paper scale (profiles kinetics-crw + davis)
    selfsup table crw-ablation-dropout   one isolated DVC experiment per setting
    selfsup table crw-davis --no-run     render from the metrics already there
    selfsup table crw-davis --flow       run through the Prefect flow (retries, UI)

A table's runs are either the workspace pipeline (`dvc repro` stage by stage; profiles written
into params.yaml and the result saved as a DVC experiment named `<table>-<variant>`) or isolated
experiments (`dvc exp run --temp -S ...`, one per row). Each run gets a parent MLflow run; the
table shows the parent and the evaluate stage's run ids.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import yaml

from pipeline import profiles, runner
from pipeline.project import find_root, git_head, stage_order, tracking_env
from stages import paper_tables
from stages.paper_tables import Table, Variant, VariantResult

log = logging.getLogger(__name__)

DEFAULT_MLFLOW_URL = os.environ.get("SELFSUP_MLFLOW_URL", "http://127.0.0.1:5001")

StageFn = Callable[[Path, str, Mapping[str, str]], Any]
ExperimentFn = Callable[[Path, str, Mapping[str, Any], Mapping[str, str]], str]


# --------------------------------------------------------------------------------------------
# What a table needs
# --------------------------------------------------------------------------------------------

def workspace_params(root: Path) -> dict:
    path = root / "params.yaml"
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


def datasets_present(root: Path, table: Table) -> bool:
    """Whether every data set of the paper-scale run is already under the download root."""
    download_root = Path((workspace_params(root).get("download") or {}).get("root", "data/raw"))
    base = download_root if download_root.is_absolute() else root / download_root
    return all((base / name).is_dir() for name in table.datasets)


def variant_overrides(variant: Variant) -> dict:
    return profiles.combine(variant.profiles, variant.overrides)


def experiment_name(table: Table, variant: Variant) -> str:
    return f"{table.name}-{variant.name}"


def workspace_is_paper_scale(root: Path, table: Table) -> bool:
    datasets = (workspace_params(root).get("download") or {}).get("datasets") or []
    return paper_tables.uses_datasets(table, datasets)


def _matches(params: Mapping[str, Any], overrides: Mapping[str, Any]) -> bool:
    flat = profiles.flatten(params)
    return all(flat.get(k) == v for k, v in profiles.flatten(overrides).items())


# --------------------------------------------------------------------------------------------
# Run ids
# --------------------------------------------------------------------------------------------

def evaluate_run_ids(env: Mapping[str, str], exp_name: str | None,
                     parent_run_id: str | None = None) -> dict[str, str]:
    """{'pipeline': parent id, 'evaluate': run id} of the run that produced a metrics file.

    When DVC found evaluate up to date no new run exists under this pipeline run: the latest
    evaluate run of the same experiment (workspace: '') is the one whose numbers are shown.
    """
    from pipeline.runs import latest_stage_run

    try:
        run = None
        if parent_run_id:
            run = latest_stage_run("evaluate", env, parent_run_id=parent_run_id)
        if run is None:
            run = latest_stage_run("evaluate", env, exp_name=exp_name or "")
    except Exception as exc:  # an unreadable store must not stop the table
        log.warning("could not look up MLflow runs: %s", exc)
        return {"pipeline": parent_run_id} if parent_run_id else {}
    if run is None:
        return {"pipeline": parent_run_id} if parent_run_id else {}
    parent = run.data.tags.get("mlflow.parentRunId", "")
    return {k: v for k, v in (("pipeline", parent), ("evaluate", run.info.run_id)) if v}


# --------------------------------------------------------------------------------------------
# Running and collecting
# --------------------------------------------------------------------------------------------

def execute_variant(root: Path, table: Table, variant: Variant, *, embedded: bool,
                    stage_fn: StageFn | None = None, experiment_fn: ExperimentFn | None = None,
                    parent_run_id: str | None = None, env: Mapping[str, str] | None = None,
                    stages: Sequence[str] | None = None,
                    extra_tags: Mapping[str, str] | None = None) -> VariantResult:
    """Run one variant under its own parent MLflow run and return what it produced."""
    from pipeline.runs import ParentRun

    env = dict(env or tracking_env(root))
    stage_fn = stage_fn or (lambda r, s, e: runner.run_stage(r, s, e))
    experiment_fn = experiment_fn or runner.run_experiment
    overrides = variant_overrides(variant)
    name = experiment_name(table, variant)
    parent = ParentRun(f"{table.name}/{variant.name}", env, parent_run_id=parent_run_id, tags={
        "selfsup.table": table.name, "selfsup.variant": variant.name,
        "selfsup.profile": ",".join(variant.profiles), "selfsup.scale": "embedded" if embedded else "paper",
        "selfsup.git_revision": git_head(root), **(extra_tags or {})}, params=profiles.flatten(overrides))
    ok = False
    try:
        if variant.isolated:
            revision = experiment_fn(root, name, overrides, parent.env(env))
            metrics = runner.read_metrics(root, revision)
            exp = name
        else:
            if overrides:
                runner.apply_overrides(root, overrides, label=name)
            for stage in stage_order(root, stages):
                stage_fn(root, stage, parent.env(env))
            metrics = runner.read_metrics(root)
            revision = runner.save_experiment(root, name, env) if overrides else ""
            exp = name if overrides else ""
        if metrics:
            parent.log_metrics(metrics)
        ok = True
    finally:
        parent.finish(ok)
    run_ids = evaluate_run_ids(env, name if variant.isolated else "", parent.run_id)
    if variant.isolated:
        run_ids = {"pipeline": parent.run_id, **{k: v for k, v in run_ids.items() if k != "pipeline"}}
    return VariantResult(variant, metrics, run_ids, experiment=exp, revision=revision)


def collect_variant(root: Path, table: Table, variant: Variant, env: Mapping[str, str]) -> VariantResult:
    """What an earlier run of this variant left (workspace or experiment); metrics None if none."""
    name = experiment_name(table, variant)
    overrides = variant_overrides(variant)
    if not variant.isolated and _matches(workspace_params(root), overrides):
        return VariantResult(variant, runner.read_metrics(root), evaluate_run_ids(env, ""))
    revision = runner.experiment_ref(root, name)
    if revision is None:
        return VariantResult(variant, None)
    return VariantResult(variant, runner.read_metrics(root, revision), evaluate_run_ids(env, name),
                         experiment=name, revision=revision)


def run_table(root: Path, table: Table, *, embedded: bool, run: bool = True,
              stage_fn: StageFn | None = None, experiment_fn: ExperimentFn | None = None,
              parent_run_id: str | None = None,
              extra_tags: Mapping[str, str] | None = None) -> list[VariantResult]:
    env = tracking_env(root)
    results = []
    for variant in table.variants(embedded):
        if run:
            results.append(execute_variant(root, table, variant, embedded=embedded, stage_fn=stage_fn,
                                           experiment_fn=experiment_fn, parent_run_id=parent_run_id,
                                           env=env, extra_tags=extra_tags))
        else:
            results.append(collect_variant(root, table, variant, env))
    return results


def render(root: Path, table: Table, results: Sequence[VariantResult], *, embedded: bool,
           mlflow_url: str | None = DEFAULT_MLFLOW_URL) -> str:
    # A workspace run is labelled by what it really ran (its params), not by what was asked.
    if table.single_run or not any(v.isolated for v in table.variants(embedded)):
        embedded = not workspace_is_paper_scale(root, table)
    return paper_tables.render_markdown(table, results, embedded=embedded, mlflow_url=mlflow_url)


def table_path(root: Path, table: Table) -> Path:
    report_out = (workspace_params(root).get("report") or {}).get("out", "reports")
    return root / report_out / "tables" / f"{table.name}.md"


def write_table(root: Path, table: Table, results: Sequence[VariantResult], *, embedded: bool,
                mlflow_url: str | None = DEFAULT_MLFLOW_URL, out: Path | None = None) -> Path:
    from selfsup.io import write_text

    path = out or table_path(root, table)
    write_text(path, render(root, table, results, embedded=embedded, mlflow_url=mlflow_url))
    return path


# --------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------

def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", help="table to produce (see --list)")
    parser.add_argument("--list", action="store_true", help="list the tables and what each runs")
    scale = parser.add_mutually_exclusive_group()
    scale.add_argument("--embedded", dest="embedded", action="store_true", default=None,
                       help="the synthetic counterpart on the embedded default (default when the "
                            "table's data sets are not under the download root)")
    scale.add_argument("--paper", dest="embedded", action="store_false",
                       help="paper scale: the table's profiles (downloads what is missing)")
    parser.add_argument("--no-run", action="store_true", help="only render from existing results")
    parser.add_argument("--flow", action="store_true",
                        help="run through the Prefect flow (a temporary local server unless "
                             "PREFECT_API_URL names one)")
    parser.add_argument("--project", default=None, help="project folder (default: the one holding cwd)")
    parser.add_argument("--out", default=None, help="output file (default <report.out>/tables/NAME.md)")
    parser.add_argument("--mlflow-url", default=DEFAULT_MLFLOW_URL,
                        help="MLflow UI base for run links ('' for none; `make ui` serves %(default)s)")
    parser.add_argument("--json", action="store_true", help="with --list: machine-readable")


def list_tables(root: Path, as_json: bool = False) -> str:
    rows = []
    for table in paper_tables.TABLES.values():
        here = datasets_present(root, table)
        rows.append({
            "name": table.name, "title": table.title, "default": "paper" if here else "embedded",
            "datasets": list(table.datasets),
            "paper": [{"variant": v.name, "profiles": list(v.profiles), "overrides": dict(v.overrides),
                       "isolated": v.isolated} for v in table.paper_variants],
            "embedded": [{"variant": v.name, "overrides": dict(v.overrides), "isolated": v.isolated}
                         for v in table.embedded_variants],
        })
    if as_json:
        return json.dumps(rows, indent=2)
    lines = []
    for row in rows:
        paper = "; ".join("+".join(v["profiles"]) + (" " + " ".join(f"{k}={v2}" for k, v2 in v["overrides"].items())
                                                      if v["overrides"] else "") for v in row["paper"])
        lines.append(f"{row['name']:<26} {row['title']}\n{'':<26} default here: {row['default']}; "
                     f"paper scale runs: {paper}; data sets: {', '.join(row['datasets'])}")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    root = find_root(args.project)
    if args.list:
        print(list_tables(root, args.json))
        return 0
    if not args.name:
        raise ValueError("name a table (selfsup table --list shows them)")
    table = paper_tables.get(args.name)
    embedded = (not datasets_present(root, table)) if args.embedded is None else args.embedded
    log.info("table %s: %s", table.name, "embedded counterpart" if embedded else "paper scale")
    if args.no_run:
        results = run_table(root, table, embedded=embedded, run=False)
    elif args.flow:
        from pipeline.flows import table_flow

        outcome = table_flow(table=table.name, embedded=embedded, project_dir=str(root),
                             mlflow_url=args.mlflow_url or None, out=args.out)
        path = Path(outcome["table_path"])
        print(path.read_text())
        print(f"wrote {path}")
        return 0
    else:
        results = run_table(root, table, embedded=embedded)
    path = write_table(root, table, results, embedded=embedded, mlflow_url=args.mlflow_url or None,
                       out=Path(args.out) if args.out else None)
    print(path.read_text())
    print(f"wrote {path}")
    return 0
