"""A two-stage DVC project in a temporary git repository, for orchestration tests.

Stage `prepare` writes a list of n numbers; stage `evaluate` sums them times `scale` into a metrics
file shaped like selfsup's (propagation.davis.crw."J&F-Mean") and a plot. Both log through
`stages.tracking.stage_run`, so nested MLflow runs can be checked.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

STEP = textwrap.dedent('''
    """One step of the tiny pipeline: `python step.py prepare|evaluate`."""
    import json
    import os
    import sys
    from pathlib import Path

    import yaml

    from stages.tracking import stage_run

    name = sys.argv[1]
    params = yaml.safe_load(Path("params.yaml").read_text())
    with stage_run(name, params[name]) as run:
        if name == "prepare":
            numbers = list(range(params["prepare"]["n"]))
            Path("out").mkdir(exist_ok=True)
            Path("out/numbers.json").write_text(json.dumps(numbers))
            run.log_metrics({"count": len(numbers)})
        else:
            numbers = json.loads(Path("out/numbers.json").read_text())
            scale = params["evaluate"]["scale"]
            total = sum(numbers) * scale
            Path("reports").mkdir(exist_ok=True)
            metrics = {"total": total, "n": len(numbers),
                       "propagation": {"davis": {"crw": {"J&F-Mean": total / 100}}}}
            Path(params["evaluate"]["out"]).write_text(json.dumps(metrics))
            Path("reports/curve.csv").write_text(
                "step,value\\n" + "".join(f"{i},{v * scale}\\n" for i, v in enumerate(numbers)))
            run.log_metrics({"total": total})
        Path("out").mkdir(exist_ok=True)
        with open("out/calls.log", "a") as log:
            log.write(f"{name} {os.environ.get('SELFSUP_PARENT_RUN_ID', '')} {run.run_id}\\n")
''')

PARAMS = "prepare:\n  n: 4\nevaluate:\n  scale: 2.0\n  out: reports/metrics.json\n"

DVC_YAML = textwrap.dedent('''
    stages:
      prepare:
        cmd: python step.py prepare
        deps:
          - step.py
        params:
          - prepare
        outs:
          - out/numbers.json
      evaluate:
        cmd: python step.py evaluate
        deps:
          - out/numbers.json
          - step.py
        params:
          - evaluate
        metrics:
          - reports/metrics.json:
              cache: false
        plots:
          - reports/curve.csv:
              cache: false
              x: step
              y: value
''')


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True,
                          text=True).stdout


def dvc_bin() -> str:
    return str(Path(sys.executable).parent / "dvc")


def make_project(path: Path) -> Path:
    """Create, `dvc init` and commit the tiny project at `path`; returns `path`."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "step.py").write_text(STEP)
    (path / "params.yaml").write_text(PARAMS)
    (path / "dvc.yaml").write_text(DVC_YAML)
    (path / ".gitignore").write_text("mlflow.db\nmlartifacts/\n.prefect/\nout/calls.log\n")
    git(path, "init", "-q", "-b", "main")
    subprocess.run([dvc_bin(), "init", "-q"], cwd=path, check=True, capture_output=True)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "tiny pipeline")
    return path


def calls(path: Path) -> list[list[str]]:
    log = path / "out" / "calls.log"
    return [line.split() for line in log.read_text().splitlines()] if log.exists() else []
