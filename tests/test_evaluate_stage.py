"""The evaluate stage nests the test-time and baselines reports into metrics.json.

Propagation scoring has its own end-to-end test (test_eval_cli.py); here it is replaced by a fixed
result so that only the nesting, its absence and its MLflow names are under test.
"""
from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path

import pytest
import yaml

from fake_stage_reports import baselines_report, crw_report, merged_report, ttt_report, write
from stages import evaluate as evaluate_stage
from stages.tracking import StageRun

PROPAGATION = {"davis": {"crw": {"J&F-Mean": 0.6, "J-Mean": 0.58, "F-Mean": 0.62}}}


class RecordingMlflow:
    """What StageRun hands to mlflow: the flat metric names and values."""

    def __init__(self) -> None:
        self.metrics: dict[str, float] = {}

    def log_metrics(self, metrics, step=None):
        self.metrics.update(metrics)

    def log_artifact(self, *args, **kwargs):
        pass

    def log_artifacts(self, *args, **kwargs):
        pass


@pytest.fixture()
def stage(tmp_path, monkeypatch, root):
    """The stage in a project folder of its own, propagation scoring stubbed, MLflow recorded."""
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["translate"]["modes"] = []
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.setenv("SELFSUP_PARAMS", str(tmp_path / "params.yaml"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(evaluate_stage, "propagation_metrics", lambda p, details_dir=None: json.loads(
        json.dumps(PROPAGATION)))
    recorder = RecordingMlflow()

    @contextlib.contextmanager
    def recorded_run(name, section=None, **kwargs):
        yield StageRun(recorder, "run-id")

    monkeypatch.setattr(evaluate_stage, "stage_run", recorded_run)
    return tmp_path, recorder


def _metrics(folder: Path) -> dict:
    return json.loads((folder / "reports" / "metrics.json").read_text())


def test_nests_test_time_and_baselines_reports(stage):
    folder, recorder = stage
    write(folder / "reports" / "test_time.json", merged_report())
    write(folder / "reports" / "baselines.json", baselines_report())

    assert evaluate_stage.main() == 0
    metrics = _metrics(folder)
    assert metrics["propagation"] == PROPAGATION                  # existing keys as they were
    assert set(metrics) == {"propagation", "test_time", "baselines"}
    assert metrics["test_time"] == merged_report()
    assert metrics["baselines"] == baselines_report()["baselines"]
    test_time, baselines = metrics["test_time"], metrics["baselines"]
    assert test_time["crw_adapt"]["davis"]["adapted"]["J&F-Mean"] == 0.52
    assert test_time["crw_adapt"]["davis"]["frozen"]["J&F-Mean"] == 0.48
    assert test_time["crw_adapt"]["davis"]["seconds_per_video"] == {"frozen": 1.5, "adapted": 4.0,
                                                                   "adaptation_only": 2.5}
    assert (test_time["stream"]["running"], test_time["stream"]["frozen_running"]) == (0.5, 0.48)
    assert test_time["ttt"]["shifts"]["gaussian_noise@5"]["standard"] == 0.61
    assert test_time["ttt"]["shifts"]["gaussian_noise@5"]["baseline"] == 0.42
    assert baselines["models"]["crw"]["propagation"]["davis"]["J&F-Mean"] == 0.45
    assert baselines["models"]["simclr"]["propagation"]["jhmdb"]["PCK@0.1"] == 30.0
    assert baselines["models"]["random"]["propagation"]["vip"]["mIoU"] == 12.0
    assert baselines["models"]["exemplar"]["retrieval"]["esvm"]["P@5"] == 55.0
    assert baselines["ablation"]["− crop"]["propagation"]["davis"]["J&F-Mean"] == 0.31

    # logged to MLflow like the other numbers, under names MLflow accepts
    from mlflow.utils.validation import _validate_metric_name

    logged = recorder.metrics
    for name in logged:
        _validate_metric_name(name)
    assert logged["propagation.davis.crw.JandF-Mean"] == 0.6
    assert logged["test_time.crw_adapt.davis.adapted.JandF-Mean"] == 0.52
    assert logged["test_time.stream.frozen_running"] == 0.48
    assert logged["test_time.ttt.shifts.gaussian_noise_at_5.online"] == 0.64
    assert logged["baselines.models.colorization.propagation.jhmdb.PCK_at_0.2"] == 47.0
    assert logged["baselines.models.crw.retrieval.cosine.P_at_1"] == 75.0
    assert logged["baselines.ablation.no crop.propagation.davis.JandF-Mean"] == 0.31
    assert logged["baselines.ablation.all crop flip.training.loss"] == 3.1


def test_without_the_reports_evaluate_still_writes_metrics(stage, caplog):
    folder, recorder = stage
    with caplog.at_level(logging.INFO, logger="stages.evaluate"):
        assert evaluate_stage.main() == 0
    assert _metrics(folder) == {"propagation": PROPAGATION}
    messages = "\n".join(r.getMessage() for r in caplog.records)
    assert "no test_time section" in messages and "reports/test_time.json" in messages
    assert "no baselines section" in messages and "reports/baselines.json" in messages
    assert not any(name.startswith(("test_time.", "baselines.")) for name in recorder.metrics)


def test_adapt_and_ttt_reports_without_the_test_time_stage(stage, caplog):
    """Only adapt and ttt ran: the same merge the test_time stage makes, without its file."""
    folder, _ = stage
    write(folder / "reports" / "test_time" / "crw.json", crw_report())
    write(folder / "reports" / "test_time" / "ttt.json", ttt_report())
    with caplog.at_level(logging.INFO, logger="stages.evaluate"):
        assert evaluate_stage.main() == 0
    metrics = _metrics(folder)
    assert metrics["test_time"] == merged_report()
    assert "stream_curve" not in json.dumps(metrics)
    assert "baselines" not in metrics
    assert any("merged from" in r.getMessage() for r in caplog.records)


def test_only_the_ttt_report(stage):
    folder, _ = stage
    write(folder / "reports" / "test_time" / "ttt.json", ttt_report())
    assert evaluate_stage.main() == 0
    assert _metrics(folder)["test_time"] == {"ttt": ttt_report()}


def test_a_broken_report_stops_the_stage(stage, capsys):
    folder, _ = stage
    write(folder / "reports" / "baselines.json", {"models": {}})
    assert evaluate_stage.main() == 2
    assert 'reports/baselines.json: expected {"baselines": {...}}' in capsys.readouterr().err
    assert not (folder / "reports" / "metrics.json").exists()


def test_reads_the_files_the_stages_write():
    from stages import baselines, test_time

    assert evaluate_stage.BASELINES_REPORT == baselines.METRICS
    assert evaluate_stage.TEST_TIME_REPORT == test_time.OUT
    assert evaluate_stage.TEST_TIME_PARTS == (test_time.CRW_REPORT, test_time.TTT_REPORT)


def test_dvc_orders_the_reporting_stages_before_evaluate(root):
    """evaluate depends on every file it nests, so DVC runs their stages first."""
    dvc = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    deps = set(dvc["evaluate"]["deps"])
    for stage_name in ("adapt", "ttt", "test_time", "baselines"):
        outputs = {next(iter(o)) if isinstance(o, dict) else o
                   for o in dvc[stage_name].get("metrics", []) + dvc[stage_name].get("outs", [])}
        assert deps & outputs, stage_name
    assert {str(evaluate_stage.BASELINES_REPORT), str(evaluate_stage.TEST_TIME_REPORT)} <= deps
    assert {str(p) for p in evaluate_stage.TEST_TIME_PARTS} <= deps
