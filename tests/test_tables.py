"""Profiles, paper tables and `selfsup table`: validation, `-S` flattening, rendering, experiments."""
from __future__ import annotations

import json
import shutil

import pytest
import yaml

from pipeline import profiles, runner, tables
from selfsup.config import ParamsError, as_dict, load_params
from stages import paper_tables
from stages.paper_tables import Column, Reference, Table, Variant, VariantResult
from tiny_dvc_project import make_project


def test_every_profile_is_valid_against_params(root):
    """Each profiles/*.yaml overrides only keys that exist, with accepted values."""
    names = profiles.available()
    assert {"kinetics-crw", "davis", "jhmdb", "vip", "horse2zebra-cut", "horse2zebra-fastcut",
            "cat2dog-cut", "cat2dog-fastcut", "cityscapes-cut", "cityscapes-fastcut"} <= set(names)
    for name in names:
        path = profiles.profile_path(name)
        params = load_params(root / "params.yaml", profile=path)
        typed = as_dict(params)
        for dotted, value in profiles.flatten(profiles.load_profile(name)).items():
            node = typed
            for part in dotted.split("."):  # translate.lambda_nce.fastcut: entries of mappings too
                node = node[part]
            assert node == value, (name, dotted)


def test_every_table_variant_is_valid(root):
    for table in paper_tables.TABLES.values():
        for embedded in (True, False):
            for variant in table.variants(embedded):
                profiles.validate(tables.variant_overrides(variant), root / "params.yaml", table.name)
        assert table.paper_variants, table.name


def test_kinetics_profile_is_the_published_recipe():
    p = profiles.combine(["kinetics-crw"])["pretrain"]
    assert (p["batch_size"], p["lr"], p["temperature"], p["edge_dropout"], p["clip_len"]) == (20, 1e-4, 0.05, 0.1, 4)
    assert (p["frame_size"], p["patch_size"], p["patch_stride"], p["width"]) == (256, 64, 32, 1.0)


def test_profiles_join_data_sets_and_extra_replaces():
    merged = profiles.combine(["kinetics-crw", "davis", "jhmdb"], {"propagate.context": 5})
    assert merged["download"]["datasets"] == ["kinetics400", "davis", "imagenet_resnet18", "jhmdb"]
    assert merged["propagate"]["sets"] == ["davis", "jhmdb"]
    assert merged["propagate"]["context"] == 5
    assert profiles.combine(["horse2zebra-cut", "horse2zebra-fastcut"])["translate"]["modes"] == ["cut", "fastcut"]


def test_bad_profile_key_is_named(root, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("pretrain:\n  learning_rate: 0.1\n")
    with pytest.raises(ParamsError, match=r"pretrain\.learning_rate"):
        profiles.validate(profiles.load_profile(bad), root / "params.yaml", label=str(bad))
    with pytest.raises(ValueError, match="unknown profile 'nope'"):
        profiles.load_profile("nope")


@pytest.mark.parametrize("value", [None, True, 0, 3, 1e-4, 2.5e-05, 0.1, 1.0, "cuda", "true", "1.0",
                                   "data/raw/kinetics400/train", "it's, odd", [0.8], [], ["davis", "vip"],
                                   [".mp4", ".avi"]])
def test_set_param_values_parse_back(value):
    from dvc.utils.hydra import to_hydra_overrides

    parsed = to_hydra_overrides([f"k={profiles.format_value(value)}"])[0].value()
    assert parsed == value and type(parsed) is type(value)


def test_set_params_reproduce_every_profile(root, tmp_path):
    """Writing a profile through DVC's `-S` code gives exactly params.yaml + profile."""
    for name in profiles.available():
        target = tmp_path / f"{name}.yaml"
        shutil.copy(root / "params.yaml", target)
        profiles.apply_to_params_file(target, profiles.load_profile(name))
        assert load_params(target) == load_params(root / "params.yaml", profile=profiles.profile_path(name)), name


def test_crw_davis_renders_published_and_ours():
    table = paper_tables.get("crw-davis")
    metrics = {"propagation": {"davis": {
        "crw": {"J&F-Mean": 0.5125, "J-Mean": 0.5, "J-Recall": 0.61, "J-Decay": 0.02, "F-Mean": 0.525,
                "F-Recall": 0.7, "F-Decay": 0.03},
        "random": {"J&F-Mean": 0.1, "J-Mean": 0.08, "F-Mean": 0.12}}}}
    result = VariantResult(table.embedded_variants[0], metrics, {"pipeline": "a" * 32, "evaluate": "b" * 32})
    text = paper_tables.render_markdown(table, [result], embedded=True, mlflow_url="http://127.0.0.1:5001")
    rows = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert "| 67.6 | 64.8 | 76.1† |" in rows["Jabri et al. 2020 (arXiv 2006.14613)"]
    assert "67.606" in rows["official pretrained.pth (README)"] and "24.679" in rows["official pretrained.pth (README)"]
    ours = rows["ours: crw"].split(" | ")
    assert ours[1:8] == ["51.2", "50.0", "61.0", "2.000", "52.5", "70.0", "3.000"]
    assert "[evaluate `bbbbbbbb`](http://127.0.0.1:5001/#/runs/" + "b" * 32 + ")" in rows["ours: crw"]
    assert rows["ours: random"].split(" | ")[1] == "10.0"
    assert "Synthetic counterpart" in text and "† marked" in text


def test_missing_sections_show_not_run():
    table = paper_tables.get("crw-jhmdb")
    only_davis = {"propagation": {"davis": {"crw": {"J&F-Mean": 0.4}}}}
    text = paper_tables.render_markdown(table, [VariantResult(table.embedded_variants[0], only_davis)], embedded=True)
    assert "ours: not run (no jhmdb results)" in text and "59.3" in text
    text = paper_tables.render_markdown(table, [VariantResult(table.embedded_variants[0], None)], embedded=False)
    assert "ours: not run" in text and "Paper scale" in text


def test_translate_table_adds_our_extra_metrics():
    table = paper_tables.get("cut-horse2zebra")
    metrics = {"translate": {"cut": {"fid": 61.7, "structure_iou": 0.8123},
                             "identity": {"structure_iou": 1.0}}}
    text = paper_tables.render_markdown(table, [VariantResult(table.embedded_variants[0], metrics)], embedded=True)
    header = next(line for line in text.splitlines() if line.startswith("| source"))
    assert header.split(" | ")[1:5] == ["FID", "clean-FID", "KID", "structure_iou"]
    cut_row = next(line for line in text.splitlines() if line.startswith("| ours: cut"))
    assert cut_row.split(" | ")[1] == "61.7" and cut_row.split(" | ")[4] == "0.812"
    assert text.index("ours: cut") < text.index("ours: identity")


def test_table_list_command(capsys):
    from selfsup.cli import main

    assert main(["table", "--list"]) == 0
    out = capsys.readouterr().out
    for name in paper_tables.TABLES:
        assert name in out
    assert main(["table", "--list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    ablation = next(r for r in rows if r["name"] == "crw-ablation-dropout")
    assert [v["profiles"] for v in ablation["paper"]][0] == ["kinetics-crw", "davis", "crw-dropout-0.0"]


def test_table_no_run_renders_from_the_project(root, tmp_path, capsys):
    from selfsup.cli import main

    out = tmp_path / "crw-vip.md"
    assert main(["table", "crw-vip", "--no-run", "--embedded", "--project", str(root), "--out", str(out)]) == 0
    text = out.read_text()
    assert "38.6" in text and "ours" in text


def _tiny_table() -> Table:
    return Table(
        name="tiny-scale", title="Tiny: scale ablation", kind="davis",
        columns=(Column("J&F-Mean", "J&F", 100),), references=(Reference("paper", {"J&F-Mean": 67.6}),),
        datasets=("not-here",), paper_variants=(Variant("paper", "paper"),),
        embedded_variants=(Variant("s2", "scale 2", (), {"evaluate.scale": 2.0}, isolated=True),
                           Variant("s3", "scale 3", (), {"evaluate.scale": 3.0}, isolated=True)),
        models=("crw",))


def test_ablation_runs_isolated_experiments(tmp_path, monkeypatch):
    """Each row is a `dvc exp run --temp` experiment with its own parent MLflow run; the
    workspace is untouched; `--no-run` finds the same results again."""
    project = make_project(tmp_path / "proj")
    before = (project / "params.yaml").read_text()
    table = _tiny_table()
    results = tables.run_table(project, table, embedded=True)
    assert [r.metrics["total"] for r in results] == [12.0, 18.0]
    assert (project / "params.yaml").read_text() == before
    assert not (project / "reports" / "metrics.json").exists()
    for result in results:
        assert result.experiment == f"tiny-scale-{result.variant.name}"
        assert runner.experiment_ref(project, result.experiment) == result.revision
        assert set(result.run_ids) == {"pipeline", "evaluate"}

    from pipeline.runs import child_runs, client

    parent = client().get_run(results[1].run_ids["pipeline"])
    assert parent.data.tags["selfsup.table"] == "tiny-scale" and parent.info.status == "FINISHED"
    assert parent.data.params["evaluate.scale"] == "3.0"
    assert parent.data.metrics["total"] == 18.0
    children = child_runs(parent.info.run_id)
    assert [c.data.tags["selfsup.stage"] for c in children][-1] == "evaluate"
    assert children[-1].data.tags["dvc.exp_name"] == "tiny-scale-s3"
    assert children[-1].info.run_id == results[1].run_ids["evaluate"]

    path = tables.write_table(project, table, results, embedded=True, mlflow_url=None)
    text = path.read_text()
    assert path == project / "reports" / "tables" / "tiny-scale.md"
    assert "| ours, scale 2: crw | 12.0 |" in text and "| ours, scale 3: crw | 18.0 |" in text
    assert "`tiny-scale-s3`" in text

    again = tables.run_table(project, table, embedded=True, run=False)
    assert [r.metrics["total"] for r in again] == [12.0, 18.0]
    assert [r.run_ids["evaluate"] for r in again] == [r.run_ids["evaluate"] for r in results]


def test_workspace_variant_writes_params_and_saves_experiment(tmp_path, monkeypatch):
    """A non-isolated variant runs in the workspace like `dvc exp run -S` and is saved by name."""
    monkeypatch.setenv("SELFSUP_TRACKING", "off")
    project = make_project(tmp_path / "proj")
    table = Table(name="tiny-ws", title="Tiny workspace", kind="davis", columns=(Column("J&F-Mean", "J&F", 100),),
                  references=(), datasets=("not-here",), paper_variants=(Variant("paper", "paper"),),
                  embedded_variants=(Variant("n5", "five", (), {"prepare.n": 5}),), models=("crw",))
    [result] = tables.run_table(project, table, embedded=True)
    assert yaml.safe_load((project / "params.yaml").read_text())["prepare"]["n"] == 5
    assert result.metrics["total"] == 20.0 and result.experiment == "tiny-ws-n5"
    saved = runner.read_metrics(project, result.revision)
    assert saved["total"] == 20.0
    with pytest.raises(ValueError, match="experiment name"):
        runner.check_experiment_name("bad name")
