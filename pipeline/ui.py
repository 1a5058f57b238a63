"""`make ui`: the Prefect server + UI and the MLflow UI on 127.0.0.1; Ctrl-C stops both.

    python -m pipeline.ui [--prefect-port 4200] [--mlflow-port 5001] [--no-prefect] [--no-mlflow]

Prefect state lives in <project>/.prefect, MLflow reads <project>/mlflow.db (or
MLFLOW_TRACKING_URI). The MLflow server runs lean (one worker, no job execution: 2 processes
instead of about 15). Both listen on 127.0.0.1 only.
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from pipeline.project import PROJECT_ROOT, find_root, tracking_env

HOST = "127.0.0.1"


@dataclass
class Server:
    name: str
    url: str
    health: str
    proc: subprocess.Popen


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def start_prefect(root: Path, host: str, port: int, env: dict[str, str]) -> Server:
    env = {**env, "PREFECT_HOME": env.get("PREFECT_HOME") or str(root / ".prefect"),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    Path(env["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([_bin("prefect"), "server", "start", "--host", host, "--port", str(port)],
                            cwd=root, env=env, start_new_session=True)
    url = f"http://{host}:{port}"
    return Server("Prefect", url, f"{url}/api/health", proc)


def start_mlflow(root: Path, host: str, port: int, env: dict[str, str]) -> Server:
    env = {**env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    cmd = [_bin("mlflow"), "server", "--host", host, "--port", str(port), "--workers", "1",
           "--backend-store-uri", env["MLFLOW_TRACKING_URI"]]
    if env.get("SELFSUP_MLFLOW_ARTIFACTS"):
        cmd += ["--default-artifact-root", Path(env["SELFSUP_MLFLOW_ARTIFACTS"]).resolve().as_uri()]
    proc = subprocess.Popen(cmd, cwd=root, env=env, start_new_session=True)
    url = f"http://{host}:{port}"
    return Server("MLflow", url, f"{url}/health", proc)


def wait_ready(servers: list[Server], timeout: float) -> None:
    """Poll each server's health URL until it answers 200; raise if one dies or time runs out."""
    pending = list(servers)
    deadline = time.monotonic() + timeout
    while pending:
        for server in list(pending):
            if server.proc.poll() is not None:
                raise RuntimeError(f"{server.name} server exited with status {server.proc.returncode}")
            try:
                with urllib.request.urlopen(server.health, timeout=2) as response:
                    if response.status == 200:
                        pending.remove(server)
            except (urllib.error.URLError, OSError):
                pass
        if pending and time.monotonic() > deadline:
            raise TimeoutError(f"{', '.join(s.name for s in pending)} not ready after {timeout:.0f} s")
        if pending:
            time.sleep(0.5)


def stop(servers: list[Server], grace: float = 15.0, kill_wait: float = 10.0) -> None:
    """SIGTERM each server's process group, then SIGKILL what is left after `grace` seconds.
    Bounded: a process that outlives SIGKILL by `kill_wait` seconds (stuck in I/O) is reported."""
    for server in servers:
        if server.proc.poll() is None:
            try:
                os.killpg(server.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + grace
    for server in servers:
        try:
            server.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(server.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                server.proc.wait(timeout=kill_wait)
            except subprocess.TimeoutExpired:
                print(f"{server.name} server (pid {server.proc.pid}) did not exit after SIGKILL",
                      file=sys.stderr, flush=True)
        # children a server spawned in its group (uvicorn / gunicorn workers)
        try:
            os.killpg(server.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.ui", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=HOST)
    parser.add_argument("--prefect-port", type=int, default=4200)
    parser.add_argument("--mlflow-port", type=int, default=5001)
    parser.add_argument("--no-prefect", action="store_true")
    parser.add_argument("--no-mlflow", action="store_true")
    parser.add_argument("--project", default=None, help="project folder (default: this checkout)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for start-up")
    args = parser.parse_args(argv)

    root = find_root(args.project) if args.project else find_root(PROJECT_ROOT)
    env = tracking_env(root)
    uri = env["MLFLOW_TRACKING_URI"]
    wanted = []
    if not args.no_prefect:
        wanted.append(("Prefect", args.prefect_port))
    if not args.no_mlflow and not uri.startswith(("http://", "https://")):
        wanted.append(("MLflow", args.mlflow_port))
    for name, port in wanted:
        if not port_free(args.host, port):
            print(f"error: {args.host}:{port} is in use (another `make ui`?); choose another with "
                  f"--{name.lower()}-port", file=sys.stderr)
            return 1

    servers: list[Server] = []

    def on_signal(signum, _frame):  # SIGTERM stops both, like Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    # Ctrl-C stops both even when the parent started us with SIGINT ignored (Python then keeps it
    # ignored at start-up; some launchers and test runners do that)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        if not args.no_prefect:
            servers.append(start_prefect(root, args.host, args.prefect_port, env))
        if ("MLflow", args.mlflow_port) in wanted:
            servers.append(start_mlflow(root, args.host, args.mlflow_port, env))
        wait_ready(servers, args.timeout)
        lines = [f"{s.name} UI: {s.url}" for s in servers]
        if not args.no_prefect:
            lines.append(f"  flows use it with: export PREFECT_API_URL={servers[0].url}/api")
        if ("MLflow", args.mlflow_port) not in wanted and not args.no_mlflow:
            lines.append(f"MLflow: tracking server {uri} (not started here)")
        else:
            lines.append(f"  MLflow store: {uri}")
        print("\n".join(lines + ["Ctrl-C stops " + (" and ".join(s.name for s in servers) or "nothing")]),
              flush=True)
        while True:
            for server in servers:
                if server.proc.poll() is not None:
                    print(f"{server.name} server exited with status {server.proc.returncode}",
                          file=sys.stderr, flush=True)
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("stopping " + " and ".join(s.name for s in servers), flush=True)
        return 0
    except (RuntimeError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        stop(servers)


if __name__ == "__main__":
    sys.exit(main())
