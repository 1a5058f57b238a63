"""The report stage: every number and picture on one page, whatever subset of results exists."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PIL import Image

from fake_stage_reports import baselines_report, merged_report
from stages import report


def _write(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)


@pytest.fixture()
def partial_reports(tmp_path) -> Path:
    """DAVIS and translation metrics, clips, a training curve and a figure; no download, JHMDB, VIP."""
    out = tmp_path / "reports"
    _write(out / "metrics.json", {
        "propagation": {"davis": {"crw": {"J&F-Mean": 0.4321, "J-Mean": 0.41, "F-Mean": 0.4542},
                                  "random": {"J&F-Mean": 0.1234}}},
        "translate": {"cut": {"structure_iou": 0.75, "appearance_acc": 0.9}, "identity": {"structure_iou": 1.0}},
    })
    _write(out / "clips.json", {"videos": 12, "clips": 340, "skipped": [{"video": "bad.mp4", "reason": "unreadable"}]})
    _write(out / "propagate.json", {"davis": {"crw": {"frames_per_s": 31.5}}})
    _write(out / "plots" / "pretrain.csv", "step,loss,accuracy,lr\n0,3.8,0.05,0.0003\n10,3.0,0.2,0.0003\n"
                                          "20,2.6,0.4,0.00009\n")
    (out / "figures" / "propagate" / "davis").mkdir(parents=True)
    Image.new("RGB", (40, 30), (10, 200, 10)).save(out / "figures" / "propagate" / "davis" / "seq-a.png")
    (out / "figures" / "extra").mkdir(parents=True)
    Image.new("RGB", (20, 20), (0, 0, 200)).save(out / "figures" / "extra" / "grid.png")
    return out


def test_report_shows_every_number_and_picture(partial_reports):
    out = partial_reports
    runs = {"evaluate": "e" * 32, "evaluate.parent": "p" * 32, "pretrain": "c" * 32}
    written = report.write_report(out, out / "metrics.json", "http://127.0.0.1:5001", ["synthetic"], runs)
    md = (out / "index.md").read_text()
    html = (out / "index.html").read_text()
    assert out / "index.md" in written and out / "index.html" in written

    # numbers
    assert "| crw | 0.4321 | 0.41 | 0.4542 |" in md
    assert "| random | 0.1234 | – | – |" in md
    assert "| cut | 0.75 | 0.9 |" in md
    assert "| videos | 12 |" in md and "| skipped | 1 items |" in md
    assert "## propagate (propagate.json)" in md and "| davis.crw.frames_per_s | 31.5 |" in md
    # sections that did not run
    sections = re.split(r"\n#+ ", md)
    for title in ("Data sets (download)", "JHMDB keypoints (PCK, %)", "VIP parts (mIoU, %)"):
        body = next(s for s in sections if s.startswith(title))
        assert "not run" in body, title
    # pictures, relative so the folder can be moved or opened offline
    assert "![figures/propagate/davis/seq-a.png](figures/propagate/davis/seq-a.png)" in md
    assert "(figures/extra/grid.png)" in md
    assert "(curves/pretrain.png)" in md
    with Image.open(out / "curves" / "pretrain.png") as curve:
        assert curve.format == "PNG" and curve.width > 200
    # run links
    assert "[" + "c" * 32 + "](http://127.0.0.1:5001/#/runs/" + "c" * 32 + ")" in md
    assert "| download | not tracked |" in md
    # html: no scripts, no remote assets, every image local
    assert "<script" not in html.lower()
    sources = re.findall(r'<img src="([^"]+)"', html)
    assert "figures/propagate/davis/seq-a.png" in sources and "curves/pretrain.png" in sources
    assert all((out / src).is_file() for src in sources)
    assert not re.search(r'(src|href)="(https?:)?//(?!127\.0\.0\.1)', html)
    # the synthetic-counterpart tables
    davis = (out / "tables" / "crw-davis.md").read_text()
    assert "| ours: crw | 43.2 | 41.0 |" in davis and "67.6" in davis and "Synthetic counterpart" in davis
    assert "[evaluate `eeeeeeee`]" in davis and "[pipeline `pppppppp`]" in davis
    assert "ours: not run (no jhmdb results)" in (out / "tables" / "crw-jhmdb.md").read_text()
    assert "(tables/crw-davis.md)" in md


def test_report_with_nothing_run(tmp_path):
    out = tmp_path / "reports"
    report.write_report(out, out / "metrics.json", "http://x", ["synthetic"], {})
    md = (out / "index.md").read_text()
    assert md.count("not run") >= 7
    assert "ours: not run" in (out / "tables" / "cut-cityscapes.md").read_text()


def test_report_shows_test_time_and_baselines_beside_their_baselines(partial_reports):
    """metrics.json's nested sections as tables, method beside baseline, each shown once."""
    out = partial_reports
    metrics = json.loads((out / "metrics.json").read_text())
    metrics.update(test_time=merged_report(), baselines=baselines_report()["baselines"])
    _write(out / "metrics.json", metrics)
    _write(out / "test_time.json", merged_report())
    _write(out / "baselines.json", baselines_report())
    report.write_report(out, out / "metrics.json", "http://x", ["synthetic"], {})
    md = (out / "index.md").read_text()
    html = (out / "index.html").read_text()

    assert "## Learning at test time" in md and "## Baselines (lecture contrast)" in md
    # CRW adaptation: adapted, frozen, gain; time per video
    assert "| measure | adapted | frozen (baseline) | adapted − frozen |" in md
    assert "| J&F-Mean | 0.52 | 0.48 | 0.04 |" in md
    assert "| seconds per video | 4 | 1.5 | 2.5 |" in md
    assert "| statistics_only | 0.5 | 0.48 | 0.02 | 1.9 |" in md
    # the stream's final running J&F beside the frozen model's
    assert "| videos | test-then-train | frozen (baseline) | gain | seconds per video |" in md
    assert "| 2 / 2 | 0.5 | 0.48 | 0.02 | 3.25 |" in md
    # rotation-prediction TTT per shift: standard, online, without TTT
    assert "| gaussian_noise@5 | 0.61 | 0.64 | 0.42 | 0.19 | 0.22 | 0.55 |" in md
    assert "| clean | 0.91 | 0.92 | 0.9 |" in md and "| mean over shifts | 0.61 | 0.64 | 0.42 |" in md
    # baselines: propagation on every set, retrieval, probes with chance, leave-one-out
    assert ("| method | DAVIS J&F-Mean | DAVIS J-Mean | DAVIS F-Mean | JHMDB PCK@0.1 | JHMDB PCK@0.2 | VIP mIoU |"
            in md)
    assert "| crw | 0.45 | 0.44 | 0.46 | 35 | 55 | 25 |" in md
    assert "| random | 0.25 | 0.24 | 0.26 | 22 | 42 | 12 |" in md
    assert "| method | Exemplar-SVM P@1 | Exemplar-SVM P@5 | cosine P@1 | cosine P@5 |" in md
    assert "| simclr | 70 | 60 | 65 | 55 |" in md
    assert "| chance | 25 | 16.7 |" in md
    assert "| all (crop, flip) | 0.35 | 0.34 | 0.36 | 60 | 40 | 70 | 60 | 65 | 55 |" in md
    assert "| − crop | 0.31 | 0.3 | 0.32 | 60 | 40 | 60 | 50 | 55 | 45 |" in md
    assert "<td>gaussian_noise@5</td><td>0.61</td>" in html
    # not repeated as flat key/value dumps
    assert "Other metrics" not in md
    assert "(test_time.json)" not in md and "(baselines.json)" not in md
    assert md.count("0.45 | 0.44 | 0.46") == 1


def test_report_without_test_time_and_baselines(partial_reports):
    out = partial_reports
    report.write_report(out, out / "metrics.json", "http://x", ["synthetic"], {})
    sections = re.split(r"\n#+ ", (out / "index.md").read_text())
    for title in ("Learning at test time", "Baselines (lecture contrast)"):
        body = next(s for s in sections if s.startswith(title))
        assert "not run" in body, title


def test_report_labels_paper_scale_runs(partial_reports):
    out = partial_reports
    report.write_report(out, out / "metrics.json", "http://x", ["kinetics400", "davis"], {})
    assert "Paper scale" in (out / "tables" / "crw-davis.md").read_text()
    assert "Synthetic counterpart" in (out / "tables" / "crw-vip.md").read_text()


def test_report_stage_links_the_runs_of_its_pipeline(partial_reports, tmp_path, monkeypatch):
    """As a stage: its own MLflow run, and the evaluate run of the same pipeline run in the tables."""
    import os

    from pipeline.project import tracking_env
    from pipeline.runs import ParentRun, client
    from stages.tracking import stage_run

    env = tracking_env(tmp_path)
    parent = ParentRun("pipeline test", env)
    monkeypatch.setenv("SELFSUP_PARENT_RUN_ID", parent.run_id)
    with stage_run("evaluate", {"out": "reports/metrics.json"}) as evaluate:
        pass
    parent.finish(True)
    project = tmp_path
    (project / "params.yaml").write_text("evaluate:\n  out: reports/metrics.json\nreport:\n  out: reports\n"
                                         "  mlflow_url: http://127.0.0.1:5001\n")
    (project / "dvc.yaml").write_text("stages:\n  evaluate:\n    cmd: x\n  adapt:\n    cmd: y\n  report:\n    cmd: z\n")
    monkeypatch.chdir(project)
    report.main()
    index = (partial_reports / "index.md").read_text()
    assert f"| evaluate | [{evaluate.run_id}](" in index and "| adapt | not tracked |" in index
    assert "| pretrain |" not in index
    davis = (partial_reports / "tables" / "crw-davis.md").read_text()
    assert f"#/runs/{evaluate.run_id}" in davis and f"#/runs/{parent.run_id}" in davis
    runs = client().search_runs([parent.experiment_id],
                                f"tags.mlflow.parentRunId = '{parent.run_id}' and tags.`selfsup.stage` = 'report'")
    assert len(runs) == 1
    artifacts = {a.path for a in client().list_artifacts(runs[0].info.run_id, "report")}
    assert "report/index.html" in artifacts
    assert os.environ["SELFSUP_PARENT_RUN_ID"] == parent.run_id
