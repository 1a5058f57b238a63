"""The steps a pipeline run is made of, as plain functions (the Prefect flow wraps them in tasks).

- `run_stage`: `dvc repro --single-item <stage>`: DVC's lock file and cache decide whether the
  stage actually runs; a stage whose inputs did not change is skipped in about a second.
- `apply_overrides` + stages + `save_experiment`: a profile run in the workspace, recorded as a DVC
  experiment (`dvc exp save`), the way `dvc exp run -S ...` leaves the workspace.
- `run_experiment`: one isolated DVC experiment (`dvc exp run --temp -S ...`) for table variants
  that must not disturb the workspace or each other.
"""
from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path
from typing import Any, Mapping

import yaml

from pipeline import profiles
from pipeline.project import dvc, git_head, run_command

log = logging.getLogger(__name__)

_EXP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def run_stage(root: Path, stage: str, env: Mapping[str, str], force: bool = False) -> dict:
    """Reproduce one stage (not its upstream); report whether DVC ran it or found it up to date."""
    start = time.perf_counter()
    out = dvc(["repro", "--single-item", *(["--force"] if force else []), stage], root, env)
    skipped = re.search(rf"Stage '{re.escape(stage)}' didn't change, skipping", out) is not None
    return {"stage": stage, "ran": not skipped, "seconds": round(time.perf_counter() - start, 3)}


def check_experiment_name(name: str) -> str:
    if not _EXP_NAME.match(name):
        raise ValueError(f"experiment name {name!r}: use letters, digits, '-', '_' and '.'")
    return name


def is_selfsup_params(params_file: Path) -> bool:
    """Whether params_file holds selfsup's sections (then overrides get the typed check)."""
    import dataclasses

    from selfsup.config import Params

    try:
        data = yaml.safe_load(params_file.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return False
    sections = {f.name for f in dataclasses.fields(Params)}
    return isinstance(data, dict) and sections <= set(data)


def validate_overrides(root: Path, overrides: Mapping[str, Any], label: str) -> None:
    """Typed check of params.yaml + overrides (selfsup projects); DVC itself refuses unknown keys."""
    params_file = root / "params.yaml"
    if is_selfsup_params(params_file):
        profiles.validate(overrides, params_file, label=label)


def apply_overrides(root: Path, overrides: Mapping[str, Any], label: str = "profile") -> list[str]:
    """Validate overrides against params.yaml, then write them into it (as `dvc exp run -S` does)."""
    params_file = root / "params.yaml"
    validate_overrides(root, overrides, label)
    # computed before writing: a dict entry params.yaml lacks needs DVC's `+` form
    items = profiles.to_set_params(overrides, base_params(root))
    if overrides:
        profiles.apply_to_params_file(params_file, overrides)
    return items


def base_params(root: Path) -> dict:
    """params.yaml as plain data (the base the `-S` overrides apply to)."""
    return yaml.safe_load((root / "params.yaml").read_text()) or {}


def experiment_ref(root: Path, name: str, baseline: str | None = None) -> str | None:
    """Commit of experiment `name` on `baseline` (default HEAD), or None if there is none."""
    baseline = baseline or git_head(root)
    ref = f"refs/exps/{baseline[:2]}/{baseline[2:]}/{name}"
    out = run_command(["git", "for-each-ref", "--format=%(objectname)", ref], root, stream=False)
    return out.strip() or None


def remove_experiment(root: Path, name: str, env: Mapping[str, str]) -> None:
    if experiment_ref(root, name):
        dvc(["exp", "remove", name], root, env, stream=False)


def save_experiment(root: Path, name: str, env: Mapping[str, str]) -> str:
    """Record the workspace (params, lock file, metrics; outputs in the cache) as experiment `name`."""
    check_experiment_name(name)
    include: list[str] = []
    for path in untracked_results(root):
        include += ["--include-untracked", path]
    dvc(["exp", "save", "--force", "--name", name, *include], root, env)
    rev = experiment_ref(root, name)
    if rev is None:
        raise RuntimeError(f"dvc exp save reported success but no experiment {name!r} exists")
    return rev


def untracked_results(root: Path) -> list[str]:
    """Untracked, not ignored files an experiment must carry: the lock file, the reports folder
    (metrics, plots, tables written with `cache: false`) and the .gitignore files DVC adds."""
    reports = Path(metrics_path(root)).parts[0]
    out = run_command(["git", "ls-files", "--others", "--exclude-standard"], root, stream=False)
    return [p for p in out.splitlines()
            if p == "dvc.lock" or Path(p).name == ".gitignore" or Path(p).parts[0] == reports]


def run_experiment(root: Path, name: str, overrides: Mapping[str, Any], env: Mapping[str, str],
                   targets: list[str] | None = None) -> str:
    """`dvc exp run --temp -S ... --name NAME`: the whole pipeline in a temporary copy; its commit."""
    check_experiment_name(name)
    validate_overrides(root, overrides, name)
    remove_experiment(root, name, env)
    baseline = git_head(root)   # the experiment hangs off this commit even if HEAD moves meanwhile
    args = ["exp", "run", "--temp", "--name", name]
    for item in profiles.to_set_params(overrides, base_params(root)):
        args += ["-S", item]
    dvc(args + list(targets or []), root, env)
    rev = experiment_ref(root, name, baseline)
    if rev is None:
        raise RuntimeError(f"dvc exp run finished but no experiment {name!r} exists")
    return rev


def metrics_path(root: Path, rev: str | None = None) -> str:
    """Where the evaluate stage writes its metrics (params `evaluate.out`), relative to root."""
    text = read_file(root, "params.yaml", rev) or ""
    data = yaml.safe_load(text) or {}
    return str((data.get("evaluate") or {}).get("out", "reports/metrics.json"))


def read_file(root: Path, relpath: str, rev: str | None = None) -> str | None:
    """A file of the workspace (rev None) or of a commit; None when absent."""
    if rev is None:
        path = root / relpath
        return path.read_text() if path.is_file() else None
    try:
        return run_command(["git", "show", f"{rev}:{relpath}"], root, stream=False)
    except Exception:  # not in that commit
        return None


def read_metrics(root: Path, rev: str | None = None, relpath: str | None = None) -> dict | None:
    relpath = relpath or metrics_path(root, rev)
    text = read_file(root, relpath, rev)
    if text is None:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{relpath}{' at ' + rev[:8] if rev else ''}: not valid JSON ({exc})") from None
    return data if isinstance(data, dict) else None
