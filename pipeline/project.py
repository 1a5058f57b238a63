"""The project on disk as the orchestration layer sees it: its root, its environment, its DVC stages.

Everything here shells out to `dvc` (one process per command, as a user would type it) except the
stage order, which comes from DVC's own graph so that `foreach`/`matrix` stages and path-based
dependencies are ordered exactly as `dvc repro` orders them.
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterable, Mapping, Sequence

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# Telemetry off everywhere (DVC would otherwise spawn an analytics daemon per command).
QUIET_ENV = {
    "DVC_NO_ANALYTICS": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
}


class CommandError(RuntimeError):
    """A `dvc`/`git` command failed; the message carries its output tail."""


def find_root(start: str | os.PathLike | None = None) -> Path:
    """The nearest folder at or above `start` (default: cwd) holding a dvc.yaml."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").is_file():
            return folder
    raise FileNotFoundError(f"no dvc.yaml in {here} or any folder above it")


def tracking_env(root: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for stage processes: telemetry off and an absolute MLflow location.

    Absolute, because `dvc exp run --temp` runs stages in a throw-away copy of the workspace:
    a relative sqlite file there would be deleted with the copy.
    """
    env = dict(os.environ if base is None else base)
    for key, value in QUIET_ENV.items():
        env.setdefault(key, value)
    env.setdefault("PREFECT_HOME", str(root / ".prefect"))
    uri = env.get("MLFLOW_TRACKING_URI") or f"sqlite:///{root / 'mlflow.db'}"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = f"sqlite:///{(root / uri[len('sqlite:///'):]).resolve()}"
    env["MLFLOW_TRACKING_URI"] = uri
    artifacts = env.get("SELFSUP_MLFLOW_ARTIFACTS")
    if artifacts:
        env["SELFSUP_MLFLOW_ARTIFACTS"] = str((root / artifacts).resolve())
    elif uri.startswith("sqlite:///"):
        env["SELFSUP_MLFLOW_ARTIFACTS"] = str(Path(uri[len("sqlite:///"):]).parent / "mlartifacts")
    # stage commands say `python`: make it this interpreter's environment
    bin_dir = str(Path(sys.executable).parent)
    if env.get("PATH", "").split(os.pathsep)[0] != bin_dir:
        env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
    return env


def apply_tracking_env(root: Path) -> None:
    """Set `tracking_env(root)` in this process (for code that imports mlflow here)."""
    os.environ.update(tracking_env(root))


def dvc_executable() -> str:
    beside = Path(sys.executable).parent / "dvc"
    return str(beside) if beside.exists() else (shutil.which("dvc") or "dvc")


def run_command(args: Sequence[str], cwd: Path, env: Mapping[str, str] | None = None,
                stream: bool = True, timeout: float | None = None) -> str:
    """Run a command; stream its output to our log; raise CommandError with the tail on failure."""
    log.info("$ %s  (in %s)", " ".join(args), cwd)
    proc = subprocess.Popen(list(args), cwd=cwd, env=dict(env) if env is not None else None,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            lines.append(line)
            if stream:
                log.info("%s", line.rstrip())
        rc = proc.wait(timeout=timeout)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    output = "".join(lines)
    if rc != 0:
        tail = "".join(lines[-40:])
        raise CommandError(f"`{' '.join(args)}` failed with exit status {rc} in {cwd}:\n{tail}")
    return output


def dvc(args: Sequence[str], root: Path, env: Mapping[str, str] | None = None, **kw) -> str:
    return run_command([dvc_executable(), *args], root, tracking_env(root, env), **kw)


def stage_order(root: Path, targets: Iterable[str] | None = None) -> list[str]:
    """Stage names of `root`'s pipeline in the order `dvc repro` runs them.

    With `targets`, only those stages (still in pipeline order); an unknown name is an error
    that lists the known ones.
    """
    from dvc.repo import Repo
    from dvc.repo.reproduce import plan_repro

    root = Path(root).resolve()
    with Repo(str(root)) as repo:
        names = [_stage_address(stage, root) for stage in plan_repro(repo.index.graph)]
    if targets is None:
        return names
    wanted = list(targets)
    unknown = [t for t in wanted if t not in names]
    if unknown:
        raise ValueError(f"{root / 'dvc.yaml'}: unknown stage {unknown[0]!r}; stages: {', '.join(names)}")
    return [n for n in names if n in wanted]


def _stage_address(stage, root: Path) -> str:
    """The name `dvc repro` accepts from `root` ('train', 'sub/dvc.yaml:train')."""
    dvcfile = Path(stage.dvcfile.path).resolve()
    if dvcfile == root / "dvc.yaml":
        return stage.name
    return f"{os.path.relpath(dvcfile, root)}:{stage.name}"


def git_head(root: Path) -> str:
    return run_command(["git", "rev-parse", "HEAD"], root, stream=False).strip()
