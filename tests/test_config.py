import pytest

from selfsup.config import Params, ParamsError, load_params, as_dict


def write(tmp_path, text):
    p = tmp_path / "params.yaml"
    p.write_text(text)
    return p


def test_project_params_load(root):
    p = load_params(root / "params.yaml")
    assert isinstance(p, Params)
    assert p.download.datasets == ["synthetic"]


def test_project_params_equal_defaults(root):
    """params.yaml spells out every key of every section (nothing hidden in code defaults)."""
    import yaml

    data = yaml.safe_load((root / "params.yaml").read_text())
    defaults = as_dict(Params())
    for section, values in defaults.items():
        assert section in data, section
        if isinstance(values, dict):
            assert set(data[section]) == set(values), section


def test_unknown_key_named_with_file(tmp_path):
    path = write(tmp_path, "pretrain:\n  lrr: 0.1\n")
    with pytest.raises(ParamsError) as err:
        load_params(path)
    msg = str(err.value)
    assert str(path) in msg and "pretrain.lrr" in msg and "lr" in msg


def test_wrong_type(tmp_path):
    path = write(tmp_path, "pretrain:\n  steps: many\n")
    with pytest.raises(ParamsError, match=r"pretrain\.steps = 'many'.*expected int"):
        load_params(path)


def test_bool_is_not_int(tmp_path):
    with pytest.raises(ParamsError, match="pretrain.steps"):
        load_params(write(tmp_path, "pretrain:\n  steps: true\n"))


def test_out_of_range(tmp_path):
    path = write(tmp_path, "pretrain:\n  edge_dropout: 1.5\n")
    with pytest.raises(ParamsError, match=r"pretrain\.edge_dropout = 1\.5 is out of range: expected a value < 1"):
        load_params(path)


def test_choices(tmp_path):
    path = write(tmp_path, "propagate:\n  sets: [davis, kitti]\n")
    with pytest.raises(ParamsError, match=r"'kitti'.*one of 'davis', 'jhmdb', 'vip'"):
        load_params(path)


def test_cross_field_validation(tmp_path):
    path = write(tmp_path, "synthetic:\n  objects_min: 5\n  objects_max: 2\n")
    with pytest.raises(ParamsError, match="objects_max"):
        load_params(path)


def test_unknown_section(tmp_path):
    with pytest.raises(ParamsError, match="unknown key pretrian"):
        load_params(write(tmp_path, "pretrian: {}\n"))


def test_float_from_scientific_string(tmp_path):
    p = load_params(write(tmp_path, "pretrain:\n  lr: 1e-4\n"))
    assert p.pretrain.lr == pytest.approx(1e-4)


def test_missing_file(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "nope.yaml")


@pytest.mark.parametrize("text, message", [
    ("pretrain:\n  frame_scale: [0.95, 0.8]\n", r"pretrain: frame_scale = \[0.95, 0.8\]: expected \[low, high\]"),
    ("pretrain:\n  patch_scale: [0.5, 1.2]\n", r"pretrain: patch_scale = \[0.5, 1.2\]: an area fraction"),
    ("pretrain:\n  frame_ratio: [1.0]\n", r"pretrain: frame_ratio = \[1.0\]"),
])
def test_augmentation_ranges_are_checked(tmp_path, text, message):
    with pytest.raises(ParamsError, match=message):
        load_params(write(tmp_path, text))
