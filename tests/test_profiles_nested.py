"""Mapping-valued parameters in profiles (translate.lambda_nce): flattening, merging, `-S` items."""
from __future__ import annotations

import shutil

import pytest
import yaml

from pipeline import profiles
from selfsup.config import as_dict, load_params

CUT_PROFILES = [f"{task}-{mode}" for task in ("horse2zebra", "cat2dog", "cityscapes")
                for mode in ("cut", "fastcut")]


@pytest.fixture
def fastcut_only(tmp_path):
    """A profile that sets one entry of translate.lambda_nce."""
    path = tmp_path / "fastcut-only.yaml"
    path.write_text("translate:\n  lambda_nce: {fastcut: 10.0}\n  lr: 2.0e-4\n")
    return path


def _workspace_lambda(root) -> dict:
    return yaml.safe_load((root / "params.yaml").read_text())["translate"]["lambda_nce"]


def test_nested_keys_flatten_to_dotted_leaves():
    nested = {"translate": {"lambda_nce": {"fastcut": 10.0}, "lr": 2e-4, "modes": ["cut"]}}
    flat = profiles.flatten(nested)
    assert flat == {"translate.lambda_nce.fastcut": 10.0, "translate.lr": 2e-4, "translate.modes": ["cut"]}
    assert profiles.unflatten(flat) == nested
    # dotted keys and nested values mix in `extra`
    assert profiles.unflatten({"translate.lambda_nce": {"cut": 2.0}, "translate.lambda_nce.fastcut": 3.0}) == \
        {"translate": {"lambda_nce": {"cut": 2.0, "fastcut": 3.0}}}


def test_one_entry_merges_and_keeps_the_others(root, fastcut_only):
    """Setting lambda_nce.fastcut leaves lambda_nce.cut at its params.yaml value, in every path."""
    base = _workspace_lambda(root)
    expected = {**base, "fastcut": 10.0}
    assert "cut" in base and base["fastcut"] != 10.0

    typed = load_params(root / "params.yaml", profile=fastcut_only)
    assert typed.translate.lambda_nce == expected and typed.translate.lr == 2e-4

    merged = profiles.combine([fastcut_only])
    assert merged["translate"]["lambda_nce"] == {"fastcut": 10.0}  # overrides only: nothing dropped
    profiles.validate(merged, root / "params.yaml", label="fastcut-only")

    # a later profile or `extra` replaces one entry and keeps the rest
    merged = profiles.combine([fastcut_only], {"translate.lambda_nce.cut": 2.0})
    assert merged["translate"]["lambda_nce"] == {"fastcut": 10.0, "cut": 2.0}
    merged = profiles.combine([fastcut_only], {"translate": {"lambda_nce": {"cut": 3.0}}})
    assert merged["translate"]["lambda_nce"] == {"fastcut": 10.0, "cut": 3.0}


def test_nested_set_params_are_what_dvc_parses(root, fastcut_only, tmp_path):
    """The items go through DVC's own `exp run -S` code: grouped by file, parsed by Hydra's
    grammar, applied to params.yaml; the result is exactly params.yaml + profile."""
    from dvc.utils.cli_parse import to_path_overrides
    from dvc.utils.hydra import apply_overrides, to_hydra_overrides

    items = profiles.to_set_params(profiles.load_profile(fastcut_only))
    assert items == ["translate.lambda_nce.fastcut=10.0", "translate.lr=0.0002"]

    by_file = to_path_overrides(items)  # what `dvc exp run -S ITEM ...` hands on
    assert by_file == {"params.yaml": items}
    parsed = {o.key_or_group: o.value() for o in to_hydra_overrides(by_file["params.yaml"])}
    assert parsed == {"translate.lambda_nce.fastcut": 10.0, "translate.lr": 2e-4}

    target = tmp_path / "params.yaml"
    shutil.copy(root / "params.yaml", target)
    apply_overrides(target, by_file["params.yaml"])  # what the experiment queue does with them
    written = yaml.safe_load(target.read_text())["translate"]["lambda_nce"]
    assert written == {**_workspace_lambda(root), "fastcut": 10.0}
    assert load_params(target) == load_params(root / "params.yaml", profile=fastcut_only)


def test_new_mapping_entry_is_appended(tmp_path):
    """An entry the params file's mapping lacks needs Hydra's `+` (DVC refuses a plain override);
    unknown section keys stay plain so DVC still refuses typos."""
    from dvc.exceptions import InvalidArgumentError
    from dvc.utils.hydra import apply_overrides

    params = tmp_path / "params.yaml"
    params.write_text("translate:\n  lambda_nce: {cut: 1.0}  # fastcut: the paper's value\n  lr: 0.001\n")
    base = yaml.safe_load(params.read_text())
    overrides = {"translate": {"lambda_nce": {"cut": 2.0, "fastcut": 10.0}}}

    items = profiles.to_set_params(overrides, base)
    assert items == ["translate.lambda_nce.cut=2.0", "+translate.lambda_nce.fastcut=10.0"]
    with pytest.raises(InvalidArgumentError):
        apply_overrides(params, profiles.to_set_params(overrides))  # without `+`
    profiles.apply_to_params_file(params, overrides)
    assert yaml.safe_load(params.read_text()) == {"translate": {"lambda_nce": {"cut": 2.0, "fastcut": 10.0},
                                                                "lr": 0.001}}
    assert "# fastcut: the paper's value" in params.read_text()

    assert profiles.to_set_params({"translate": {"lr_typo": 1.0}}, base) == ["translate.lr_typo=1.0"]
    assert profiles.to_set_params({"translat": {"lambda_nce": {"cut": 1.0}}}, base) == \
        ["translat.lambda_nce.cut=1.0"]
    with pytest.raises(InvalidArgumentError):
        profiles.apply_to_params_file(params, {"translate": {"lr_typo": 1.0}})


@pytest.mark.parametrize("key", ["a.b", "a b", 1, ""])
def test_keys_the_grammar_cannot_address_are_refused(key):
    with pytest.raises(ValueError, match="cannot pass key"):
        profiles.to_set_params({"translate": {"lambda_nce": {key: 1.0}}})


@pytest.mark.parametrize("name", CUT_PROFILES)
def test_cut_profiles_use_the_paper_lambda_nce(root, name):
    """cut.md §1: λ_NCE 1 for CUT, 10 for FastCUT, whichever of the two a profile trains."""
    assert profiles.combine([name])["translate"]["lambda_nce"] == {"cut": 1.0, "fastcut": 10.0}
    typed = load_params(root / "params.yaml", profile=profiles.profile_path(name))
    assert as_dict(typed.translate)["lambda_nce"] == {"cut": 1.0, "fastcut": 10.0}
    assert "translate.lambda_nce.fastcut=10.0" in profiles.to_set_params(profiles.load_profile(name))


def test_cut_and_fastcut_profiles_combine(root):
    merged = profiles.combine(["horse2zebra-cut", "horse2zebra-fastcut"])
    assert merged["translate"]["modes"] == ["cut", "fastcut"]
    assert merged["translate"]["lambda_nce"] == {"cut": 1.0, "fastcut": 10.0}
    profiles.validate(merged, root / "params.yaml", label="horse2zebra")


def test_command_line_prints_nested_set_params(capsys):
    assert profiles.main(["horse2zebra-fastcut"]) == 0
    out = capsys.readouterr().out
    assert "-S translate.lambda_nce.cut=1.0 -S translate.lambda_nce.fastcut=10.0" in out


def test_runner_passes_new_entries_to_dvc_with_plus(tmp_path):
    from pipeline import runner

    (tmp_path / "params.yaml").write_text("evaluate:\n  weights: {a: 1.0}\n")
    items = runner.apply_overrides(tmp_path, {"evaluate": {"weights": {"b": 2.0, "a": 3.0}}})
    assert sorted(items) == ["+evaluate.weights.b=2.0", "evaluate.weights.a=3.0"]
    assert yaml.safe_load((tmp_path / "params.yaml").read_text()) == {"evaluate": {"weights": {"a": 3.0, "b": 2.0}}}
