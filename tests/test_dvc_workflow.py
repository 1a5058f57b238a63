"""The DVC side of the workflow the docs describe, in a temporary git + DVC repository:
metrics, experiments with -S (workspace and --temp, MLflow at an absolute location), offline
image plots, and sharing data through a remote (push, fresh clone, pull)."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tiny_dvc_project import dvc_bin, git, make_project


def dvc(project: Path, *args: str, tracking: bool = False) -> str:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    env["PATH"] = os.pathsep.join([str(Path(dvc_bin()).parent), env.get("PATH", "")])
    if not tracking:
        env["SELFSUP_TRACKING"] = "off"  # these stages need not pay for MLflow
    proc = subprocess.run([dvc_bin(), *args], cwd=project, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"dvc {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture()
def project(tmp_path) -> Path:
    return make_project(tmp_path / "project")


def _metrics(project: Path) -> dict:
    shown = json.loads(dvc(project, "metrics", "show", "--json"))
    return shown[""]["data"]["reports/metrics.json"]["data"]


def test_metrics_and_workspace_experiment(project):
    dvc(project, "repro")
    assert _metrics(project)["total"] == 12.0
    dvc(project, "exp", "run", "-S", "evaluate.scale=3.5", "-n", "scale35")
    assert _metrics(project)["total"] == 21.0
    experiments = json.loads(dvc(project, "exp", "show", "--json", "--no-fetch"))
    names = {e["name"]: e for entry in experiments for e in [entry, *[r for x in entry.get("experiments") or []
                                                                      for r in x["revs"]]]}
    scale35 = names["scale35"]["data"]
    assert scale35["params"]["params.yaml"]["data"]["evaluate"]["scale"] == 3.5
    assert scale35["metrics"]["reports/metrics.json"]["data"]["total"] == 21.0


def test_temp_experiment_logs_to_the_absolute_store(project):
    """`dvc exp run --temp` runs in a throw-away copy: runs land in the absolute MLflow store."""
    import mlflow

    before = (project / "params.yaml").read_text()
    dvc(project, "exp", "run", "--temp", "-S", "prepare.n=5", "-n", "five", tracking=True)
    assert (project / "params.yaml").read_text() == before
    assert not (project / "mlflow.db").exists()
    head = git(project, "rev-parse", "HEAD").strip()
    runs = mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"]).search_runs(
        [mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"]).get_experiment_by_name("selfsup").experiment_id],
        f"tags.`dvc.exp_name` = 'five' and tags.`dvc.baseline_rev` = '{head}'")
    assert sorted(r.data.tags["selfsup.stage"] for r in runs) == ["evaluate", "prepare"]
    assert {r.data.params["n"] for r in runs if r.data.tags["selfsup.stage"] == "prepare"} == {"5"}


def test_image_plots_render_offline(project, tmp_path):
    from stages.report import draw_curves

    dvc(project, "repro")
    assert draw_curves(project / "reports" / "curve.csv", project / "reports" / "curves" / "curve.png")
    out = tmp_path / "plots"
    dvc(project, "plots", "show", "reports/curves", "-o", str(out))
    page = (out / "index.html").read_text()
    assert "<script" not in page  # nothing to fetch: works offline
    images = [line.split('src="')[1].split('"')[0] for line in page.splitlines() if "<img" in line]
    assert images and all((out / src).is_file() for src in images)


def test_remote_push_then_pull_in_a_fresh_clone(project, tmp_path):
    dvc(project, "repro")
    remote = tmp_path / "remote"
    dvc(project, "remote", "add", "-d", "shared", str(remote))
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "results and remote")
    dvc(project, "push")
    assert any(p.is_file() for p in remote.rglob("*"))
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(project), str(clone))
    assert not (clone / "out" / "numbers.json").exists()
    dvc(clone, "pull")
    assert (clone / "out" / "numbers.json").read_text() == (project / "out" / "numbers.json").read_text()
    assert "up to date" in dvc(clone, "status")
