"""`selfsup runs` (runs side by side from the MLflow store) and registered model versions."""
from __future__ import annotations

import csv
import io
import time
import uuid

import pytest

from selfsup.cli import main


@pytest.fixture(scope="module")
def experiment(state_dir):
    """Three pretrain runs (lr differs in one) and an evaluate run in a fresh experiment."""
    import mlflow

    name = f"compare-{uuid.uuid4().hex[:8]}"
    mlflow.set_tracking_uri(f"sqlite:///{state_dir / 'mlflow.db'}")
    exp_id = mlflow.create_experiment(name, artifact_location=(state_dir / "mlartifacts").as_uri())
    client = mlflow.MlflowClient()
    ids = []
    for i, (lr, loss) in enumerate([(3e-4, 2.5), (3e-4, 2.25), (1e-4, 2.125)]):
        run = client.create_run(exp_id, run_name=f"pretrain {i}", tags={"selfsup.stage": "pretrain",
                                                                         "selfsup.git_revision": "abc123def456"})
        client.log_param(run.info.run_id, "lr", str(lr))
        client.log_param(run.info.run_id, "batch_size", "8")
        client.log_metric(run.info.run_id, "loss", loss + 1, step=0)
        client.log_metric(run.info.run_id, "loss", loss, step=1)
        client.set_terminated(run.info.run_id, "FINISHED")
        ids.append(run.info.run_id)
        time.sleep(0.01)  # distinct start times: newest first is well defined
    other = client.create_run(exp_id, run_name="evaluate", tags={"selfsup.stage": "evaluate"})
    client.log_metric(other.info.run_id, "davis.crw.J_F-Mean", 0.4)
    return name, ids, other.info.run_id


def _table(out: str) -> dict[str, list[str]]:
    lines = [line for line in out.splitlines() if line.strip()]
    header = lines[0].split()
    rows = {}
    for line in lines[2:]:
        cells = [c for c in line.split("  ") if c.strip()]
        rows[cells[0].strip()] = [c.strip() for c in cells[1:]]
    return {"header": header, **rows}


def test_last_runs_of_a_stage_side_by_side(experiment, capsys):
    name, ids, _ = experiment
    assert main(["runs", "--experiment", name, "--stage", "pretrain", "--last", "2"]) == 0
    table = _table(capsys.readouterr().out)
    assert table["header"] == ["field", ids[2][:8], ids[1][:8]]  # newest first
    assert table["params.lr"] == ["0.0001", "0.0003"]
    assert "params.batch_size" not in table  # equal in both: hidden
    assert table["metrics.loss"] == ["2.125", "2.25"]  # last value
    assert table["stage"] == ["pretrain", "pretrain"]


def test_chosen_runs_by_prefix_and_formats(experiment, capsys):
    name, ids, evaluate = experiment
    assert main(["runs", "--experiment", name, "--csv", "--all-params", ids[0][:10], evaluate[:10]]) == 0
    rows = {r[0]: r[1:] for r in csv.reader(io.StringIO(capsys.readouterr().out))}
    assert rows["field"] == [ids[0][:8], evaluate[:8]]
    assert rows["params.batch_size"] == ["8", ""]
    assert rows["metrics.davis.crw.J_F-Mean"] == ["", "0.4"]
    assert main(["runs", "--experiment", name, "--markdown", "--stage", "evaluate"]) == 0
    md = capsys.readouterr().out.splitlines()
    assert md[0] == f"| field | {evaluate[:8]} |" and md[1] == "|---|---|"


def test_unknown_run_and_experiment_are_clear_errors(experiment, capsys):
    name, _, _ = experiment
    assert main(["runs", "--experiment", name, "ffffffffffff"]) == 1
    assert "no run 'ffffffffffff'" in capsys.readouterr().err
    assert main(["runs", "--experiment", "no-such-experiment"]) == 1
    assert "no MLflow experiment 'no-such-experiment'" in capsys.readouterr().err


def test_checkpoints_register_as_model_versions(tmp_path, capsys):
    """StageRun.register_model against the sqlite store: versions count up and resolve to files."""
    import mlflow

    from pipeline.registry import latest_version_path, model_versions
    from stages.tracking import stage_run

    model = f"selfsup-test-crw-{uuid.uuid4().hex[:6]}"
    # a checkpoint folder, then a single checkpoint file (what the pretrain stage registers)
    folder = tmp_path / "first"
    folder.mkdir()
    (folder / "checkpoint.pt").write_bytes(b"first")
    with stage_run("pretrain", {"steps": 1}) as run:
        run.log_artifact(folder, "model")
        assert run.register_model("model", model) == "1"
    (tmp_path / "checkpoint.pt").write_bytes(b"second")
    with stage_run("pretrain", {"steps": 2}) as run:
        run.log_artifact(tmp_path / "checkpoint.pt", "model")
        assert run.register_model("model/checkpoint.pt", model) == "2"
    versions = model_versions(name=model)
    assert [v["version"] for v in versions] == [2, 1]
    assert versions[0]["run_id"] == run.run_id and versions[0]["source"].endswith("/artifacts/model/checkpoint.pt")
    path = mlflow.artifacts.download_artifacts(f"models:/{model}/1")
    assert open(f"{path}/checkpoint.pt", "rb").read() == b"first"
    assert open(latest_version_path(model), "rb").read() == b"second"
    assert main(["runs", "--models"]) == 0
    out = capsys.readouterr().out
    assert f"{model} v2" in out and f"{model} v1" in out and run.run_id[:8] in out
