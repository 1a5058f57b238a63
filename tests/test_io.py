import os
import stat

import pytest

from selfsup import io


def test_atomic_path_replaces_on_success(tmp_path):
    target = tmp_path / "a" / "out.txt"
    io.write_text(target, "one")
    io.write_text(target, "two")
    assert target.read_text() == "two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.txt"]


def test_atomic_path_keeps_old_file_on_error(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_dir_swaps_whole_folder(tmp_path):
    target = tmp_path / "world"
    with io.atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("1")
    with pytest.raises(ValueError):
        with io.atomic_dir(target) as tmp:
            (tmp / "b.txt").write_text("2")
            raise ValueError("interrupted")
    assert sorted(p.name for p in target.iterdir()) == ["a.txt"]
    with io.atomic_dir(target) as tmp:
        (tmp / "c.txt").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == ["c.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["world"]


def test_permissions_follow_umask(tmp_path):
    old = os.umask(0o022)
    try:
        f = io.write_json(tmp_path / "m.json", {"a": 1})
        with io.atomic_dir(tmp_path / "d") as tmp:
            pass
    finally:
        os.umask(old)
    assert stat.S_IMODE(f.stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755


def test_json_numpy_values(tmp_path):
    import numpy as np

    io.write_json(tmp_path / "x.json", {"a": np.float64(0.5), "b": np.arange(3)})
    assert io.read_json(tmp_path / "x.json") == {"a": 0.5, "b": [0, 1, 2]}


def test_read_json_error_names_file(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text("{")
    with pytest.raises(ValueError, match="bad.json"):
        io.read_json(p)
