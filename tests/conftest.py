"""Shared test set-up: telemetry off, tracking and orchestration state in a temporary folder."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Before anything imports mlflow, prefect or dvc.
_STATE = Path(os.environ.get("SELFSUP_TEST_STATE", "/tmp")) / f"selfsup-tests-{os.getpid()}"
_STATE.mkdir(parents=True, exist_ok=True)
os.environ.update({
    "DVC_NO_ANALYTICS": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    "PREFECT_HOME": str(_STATE / "prefect"),
    "MLFLOW_TRACKING_URI": f"sqlite:///{_STATE / 'mlflow.db'}",
    "SELFSUP_MLFLOW_ARTIFACTS": str(_STATE / "mlartifacts"),
})


@pytest.fixture(scope="session")
def root() -> Path:
    """The project's root folder."""
    return ROOT


@pytest.fixture(scope="session")
def state_dir() -> Path:
    """Per-session folder holding the MLflow store and Prefect's home."""
    return _STATE
