"""Prefect orchestration, for real: `make ui`'s servers, a process work pool, deployments (prefect.yaml
and the Python API), a worker that runs a deployment of the pipeline flow on a tiny DVC project,
and the same flow run locally without a server. Nested MLflow runs are checked in the store."""
from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from tiny_dvc_project import calls, make_project

PY = sys.executable
BIN = Path(PY).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Process:
    """A child in its own session whose output lines are collected by a thread."""

    def __init__(self, args: list[str], env: dict, cwd: Path):
        self.proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, start_new_session=True)
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)
            self._queue.put(line)

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"{text!r} not seen (exit {self.proc.poll()}):\n{''.join(self.lines[-60:])}")

    def kill_group(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)


def base_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", "")])
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def servers(root):
    """`python -m pipeline.ui` on free ports: the Prefect server the deployment tests use."""
    prefect_port, mlflow_port = free_port(), free_port()
    ui = Process([PY, "-m", "pipeline.ui", "--prefect-port", str(prefect_port), "--mlflow-port",
                  str(mlflow_port), "--project", str(root), "--timeout", "170"], base_env(), root)
    try:
        ui.wait_for("Ctrl-C stops", timeout=180)
        yield {"ui": ui, "prefect": f"http://127.0.0.1:{prefect_port}", "mlflow": f"http://127.0.0.1:{mlflow_port}"}
    finally:
        if ui.proc.poll() is None:
            os.killpg(ui.proc.pid, signal.SIGINT)
            try:
                ui.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                pass
        ui.kill_group()


def _mlflow():
    from pipeline.runs import client

    return client()


def _check_nested_runs(parent_id: str, project: Path, stages: list[str]) -> object:
    """Every stage ran as an MLflow run nested under the flow's parent run."""
    mlclient = _mlflow()
    parent = mlclient.get_run(parent_id)
    assert parent.info.status == "FINISHED"
    children = mlclient.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'")
    assert sorted(c.data.tags["selfsup.stage"] for c in children) == sorted(stages)
    logged = calls(project)
    assert [c[0] for c in logged] == stages and {c[1] for c in logged} == {parent_id}
    return parent


def test_stage_order_and_download_retries(tmp_path):
    from pipeline.flows import _is_download
    from pipeline.project import stage_order

    project = make_project(tmp_path / "p")
    assert stage_order(project) == ["prepare", "evaluate"]
    assert stage_order(project, ["evaluate"]) == ["evaluate"]
    with pytest.raises(ValueError, match="unknown stage 'train'; stages: prepare, evaluate"):
        stage_order(project, ["train"])
    assert _is_download("download") and _is_download("dvc.yaml:download@kinetics")
    assert not _is_download("clips")


def test_local_flow_without_a_server(tmp_path):
    """`python -m pipeline.flows run` with no PREFECT_API_URL: a temporary local server."""
    project = make_project(tmp_path / "local")
    profile = tmp_path / "scale3.yaml"
    profile.write_text("evaluate:\n  scale: 3.0\n")
    proc = subprocess.run([PY, "-m", "pipeline.flows", "run", "--project", str(project), "--profile", str(profile)],
                          env=base_env(PREFECT_HOME=str(tmp_path / "prefect")), cwd=project,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Starting temporary server" in proc.stdout + proc.stderr
    parent_id = calls(project)[0][1]
    parent = _check_nested_runs(parent_id, project, ["prepare", "evaluate"])
    assert parent.data.tags["selfsup.profile"] == str(profile) and parent.data.tags["prefect.flow_run_id"]
    assert parent.data.params["evaluate.scale"] == "3.0" and parent.data.metrics["total"] == 18.0
    # the profile went into params.yaml as `dvc exp run -S` would, and the run is a DVC experiment
    assert yaml.safe_load((project / "params.yaml").read_text())["evaluate"]["scale"] == 3.0
    from pipeline.runner import experiment_ref, read_metrics

    assert read_metrics(project, experiment_ref(project, "scale3"))["total"] == 18.0


def test_deployment_runs_on_a_worker(servers, root, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from pipeline import flows

    api = servers["prefect"] + "/api"
    project = make_project(tmp_path / "remote")
    with temporary_settings({PREFECT_API_URL: api}):
        with get_client(sync_client=True) as client:
            client.create_work_pool(WorkPoolCreate(name="gpu", type="process"))
        # prefect.yaml, as documented
        env = base_env(PREFECT_API_URL=api, SELFSUP_PROJECT_DIR=str(root))
        deployed = subprocess.run([str(BIN / "prefect"), "--no-prompt", "deploy", "--all"], cwd=root, env=env,
                                  capture_output=True, text=True, timeout=180)
        assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]
        # the Python API
        ids = flows.deploy(work_pool="gpu", name="selfsup-api")
        assert len(ids) == 2
        with get_client(sync_client=True) as client:
            for name in ("selfsup-pipeline/selfsup", "selfsup-table/selfsup-table", "selfsup-pipeline/selfsup-api"):
                assert client.read_deployment_by_name(name).work_pool_name == "gpu"
        worker = Process([str(BIN / "prefect"), "worker", "start", "--pool", "gpu", "--type", "process"],
                         base_env(PREFECT_API_URL=api, SELFSUP_PROJECT_DIR=str(root),
                                  PREFECT_WORKER_QUERY_SECONDS="1", PREFECT_WORKER_PREFETCH_SECONDS="5"), root)
        try:
            run = run_deployment("selfsup-pipeline/selfsup", parameters={"project_dir": str(project)},
                                 timeout=0, as_subflow=False)
            deadline = time.monotonic() + 240
            with get_client(sync_client=True) as client:
                while True:
                    state = client.read_flow_run(run.id).state
                    if state.is_final() or time.monotonic() > deadline:
                        break
                    time.sleep(1)
            assert state.is_completed(), f"{state}\n{''.join(worker.lines[-80:])}"
        finally:
            # the worker ignores the first SIGINT; a second one stops it
            for _ in range(2):
                if worker.proc.poll() is None:
                    os.killpg(worker.proc.pid, signal.SIGINT)
                    time.sleep(1)
            try:
                worker.proc.wait(timeout=30)
            finally:
                worker.kill_group()
    parent_id = calls(project)[0][1]
    parent = _check_nested_runs(parent_id, project, ["prepare", "evaluate"])
    assert parent.data.tags["prefect.flow_run_id"] == str(run.id)
    assert parent.data.metrics["total"] == 12.0


def test_prefect_yaml_names_the_flows(root):
    from prefect import Flow

    from pipeline import flows

    spec = yaml.safe_load((root / "prefect.yaml").read_text())
    assert spec["pull"][0]["prefect.deployments.steps.set_working_directory"]["directory"] == "{{ $SELFSUP_PROJECT_DIR }}"
    for deployment in spec["deployments"]:
        path, name = deployment["entrypoint"].split(":")
        assert path == "pipeline/flows.py" and isinstance(getattr(flows, name), Flow)
        assert deployment["work_pool"]["name"] == flows.WORK_POOL


def test_ui_stops_both_servers_on_ctrl_c(servers):
    ui = servers["ui"]
    os.killpg(ui.proc.pid, signal.SIGINT)
    # stop() is bounded by 15 s of grace + 10 s after SIGKILL per server; a loaded machine adds more
    assert ui.proc.wait(timeout=120) == 0, "".join(ui.lines[-40:])
    for url in (servers["prefect"], servers["mlflow"]):
        host, port = url.rsplit(":", 1)
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", int(port))) != 0, f"{url} still answers"
    assert "stopping Prefect and MLflow" in "".join(ui.lines)


def test_stop_kills_a_server_that_ignores_sigterm():
    from pipeline.ui import Server, stop

    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(120)"
    proc = subprocess.Popen([PY, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout.readline().strip() == "up"
    started = time.monotonic()
    stop([Server("stubborn", "http://127.0.0.1:1", "http://127.0.0.1:1/health", proc)], grace=0.5, kill_wait=5)
    assert proc.returncode == -signal.SIGKILL and time.monotonic() - started < 10


def test_ui_stops_on_ctrl_c_even_when_started_with_sigint_ignored(root):
    """A parent that ignores SIGINT (DVC does while a stage runs) passes that on to its children."""
    def ignore_sigint():
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    proc = subprocess.Popen([PY, "-m", "pipeline.ui", "--no-prefect", "--no-mlflow", "--project", str(root)],
                            env=base_env(), cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True, preexec_fn=ignore_sigint)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "Ctrl-C stops" in line:
                break
        assert any("Ctrl-C stops" in line for line in lines), "".join(lines)
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
