"""`selfsup runs`: tracked runs side by side, from the MLflow store.

    selfsup runs                          the last 5 runs of the `selfsup` experiment
    selfsup runs --stage pretrain --last 3
    selfsup runs --stage pipeline         pipeline runs (the parents of the stage runs)
    selfsup runs 3fa2c1d0 9be01a77        chosen runs (a unique prefix of the id is enough)
    selfsup runs --markdown | --csv
    selfsup runs --models                 registered model versions (CRW and CUT checkpoints)

One column per run; rows: what the run was, the params whose values differ between the runs shown
(all of them with one run or --all-params), and every metric (last value).
"""
from __future__ import annotations

import argparse
import datetime as dt
import io
import math
import os
from pathlib import Path
from typing import Any, Sequence

from pipeline.project import find_root, tracking_env

ID_WIDTH = 8


def _store_env(project: str | None) -> dict[str, str]:
    """The MLflow store of the project (MLFLOW_TRACKING_URI wins, else <project>/mlflow.db)."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return tracking_env(Path.cwd(), os.environ)
    try:
        root = find_root(project)
    except FileNotFoundError:
        root = Path(project or Path.cwd()).resolve()
    return tracking_env(root)


def fetch_runs(env: dict[str, str], experiment: str, stage: str | None = None, last: int = 5,
               run_ids: Sequence[str] = ()):
    """A DataFrame of runs (newest first) as `mlflow.search_runs` gives it."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow
    import pandas as pd

    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    exp = mlflow.get_experiment_by_name(experiment)
    if exp is None:
        raise ValueError(f"no MLflow experiment {experiment!r} in {env['MLFLOW_TRACKING_URI']}")
    order = ["attributes.start_time DESC"]
    if run_ids:
        every = mlflow.search_runs([exp.experiment_id], order_by=order, max_results=50000)
        picked = []
        for wanted in run_ids:
            hits = every[every["run_id"].str.startswith(wanted)]
            if len(hits) == 0:
                raise ValueError(f"no run {wanted!r} in experiment {experiment!r}")
            if len(hits) > 1:
                raise ValueError(f"run id prefix {wanted!r} is ambiguous: "
                                 f"{', '.join(hits['run_id'].str[:12])}")
            picked.append(hits)
        return pd.concat(picked, ignore_index=True)
    if stage == "pipeline":
        filter_string = "tags.`selfsup.kind` = 'pipeline'"
    elif stage:
        filter_string = f"tags.`selfsup.stage` = '{stage}'"
    else:
        filter_string = ""
    return mlflow.search_runs([exp.experiment_id], filter_string=filter_string, order_by=order,
                              max_results=max(1, last))


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:.6g}"
    if isinstance(value, (dt.datetime, dt.date)):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def _duration(start: Any, end: Any) -> str:
    try:
        seconds = (end - start).total_seconds()
    except (TypeError, AttributeError):
        return ""
    if seconds != seconds:  # NaT
        return ""
    return f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.1f} s"


def side_by_side(runs, all_params: bool = False):
    """Rows = fields, columns = runs (short ids). Params: only those that differ."""
    import pandas as pd

    columns = [str(r)[:ID_WIDTH] for r in runs["run_id"]]
    tag = lambda name: runs[f"tags.{name}"] if f"tags.{name}" in runs else pd.Series([None] * len(runs))  # noqa: E731
    rows: dict[str, list[str]] = {
        "name": [_text(v) for v in tag("mlflow.runName")],
        "stage": [_text(s) or ("pipeline" if k == "pipeline" else "")
                  for s, k in zip(tag("selfsup.stage"), tag("selfsup.kind"))],
        "status": [_text(v) for v in runs["status"]],
        "started": [_text(v) for v in runs["start_time"]],
        "duration": [_duration(s, e) for s, e in zip(runs["start_time"], runs["end_time"])],
        "git revision": [_text(v)[:10] for v in tag("selfsup.git_revision")],
        "dvc experiment": [_text(v) for v in tag("dvc.exp_name")],
        "parent run": [_text(v)[:ID_WIDTH] for v in tag("mlflow.parentRunId")],
    }
    rows = {k: v for k, v in rows.items() if any(v)}
    param_cols = sorted(c for c in runs.columns if c.startswith("params."))
    for col in param_cols:
        values = [_text(v) for v in runs[col]]
        if all_params or len(runs) == 1 or len(set(values)) > 1:
            rows[col] = values
    for col in sorted(c for c in runs.columns if c.startswith("metrics.")):
        values = [_text(v) for v in runs[col]]
        if any(values):
            rows[col] = values
    return pd.DataFrame.from_dict(rows, orient="index", columns=columns)


def to_markdown(table) -> str:
    header = [table.index.name or "field", *map(str, table.columns)]
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for field, values in table.iterrows():
        cells = [str(field), *[str(v).replace("|", "\\|") for v in values]]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def to_text(table) -> str:
    label = table.index.name or "field"
    widths = [max(len(label), *(len(str(i)) for i in table.index))]
    widths += [max(len(str(c)), *(len(str(v)) for v in table[c])) for c in table.columns]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip([label, *table.columns], widths))]
    lines.append("  ".join("-" * w for w in widths))
    for field, values in table.iterrows():
        lines.append("  ".join(str(c).ljust(w) for c, w in zip([field, *values], widths)))
    return "\n".join(line.rstrip() for line in lines) + "\n"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_ids", nargs="*", metavar="RUN_ID", help="runs to compare (unique id prefixes)")
    parser.add_argument("--experiment", default=os.environ.get("SELFSUP_MLFLOW_EXPERIMENT", "selfsup"))
    parser.add_argument("--stage", default=None, help="only runs of this stage ('pipeline': parent runs)")
    parser.add_argument("--last", type=int, default=5, help="how many recent runs (default %(default)s)")
    parser.add_argument("--all-params", action="store_true", help="show params that are equal too")
    fmt = parser.add_mutually_exclusive_group()
    fmt.add_argument("--csv", action="store_true", help="CSV output")
    fmt.add_argument("--markdown", action="store_true", help="Markdown table output")
    parser.add_argument("--models", action="store_true", help="list registered model versions instead")
    parser.add_argument("--project", default=None, help="project folder (default: the one holding cwd)")


def main(args: argparse.Namespace) -> int:
    env = _store_env(args.project)
    if args.models:
        from pipeline.registry import model_versions, versions_table

        table = versions_table(model_versions(env))
    else:
        runs = fetch_runs(env, args.experiment, args.stage, args.last, args.run_ids)
        if len(runs) == 0:
            what = f"stage {args.stage!r}" if args.stage else "any stage"
            print(f"no runs of {what} in experiment {args.experiment!r} ({env['MLFLOW_TRACKING_URI']})")
            return 0
        table = side_by_side(runs, args.all_params)
    if args.csv:
        buffer = io.StringIO()
        table.to_csv(buffer, index_label=table.index.name or "field")
        print(buffer.getvalue(), end="")
    elif args.markdown:
        print(to_markdown(table), end="")
    else:
        print(to_text(table), end="")
    return 0
