"""`selfsup retrieve`: ranking a folder against a query, the descriptor cache, clear errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

from selfsup.cli import main


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small convolutions run fastest on one thread (and no thread waits on another)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Two groups of noisy images: reddish and bluish; the query is reddish."""
    from PIL import Image

    root = tmp_path_factory.mktemp("retrieve")
    rng = np.random.default_rng(0)
    (root / "collection" / "sub").mkdir(parents=True)

    def picture(base):
        img = np.clip(np.array(base) + rng.normal(0, 25, (24, 24, 3)), 0, 255).astype(np.uint8)
        return Image.fromarray(img)

    for i in range(4):
        picture([200, 40, 40]).save(root / "collection" / f"red_{i}.png")
        picture([40, 40, 200]).save(root / "collection" / "sub" / f"blue_{i}.png")
    (root / "collection" / ".hidden.png").write_bytes(b"not an image")   # hidden files are skipped
    picture([210, 50, 30]).save(root / "query.png")
    return root


def _ranked(out: str) -> list[str]:
    return [line.split()[-1] for line in out.splitlines() if line and not line.startswith("#")]


@pytest.mark.parametrize("method", ["esvm", "cosine"])
def test_pixels_rank_the_query_group_first(images, tmp_path, capsys, method):
    rc = main(["retrieve", "--checkpoint", "pixels", "--query", str(images / "query.png"),
               "--collection", str(images / "collection"), "--top", "4", "--method", method,
               "--size", "16", "--grid", "2", "--cache-dir", str(tmp_path)])
    assert rc == 0
    ranked = _ranked(capsys.readouterr().out)
    assert len(ranked) == 4 and all("red_" in p for p in ranked)


def test_checkpoint_json_and_cache(images, tmp_path, capsys):
    from selfsup.baselines import baseline_config, build_model, save_baseline

    ckpt = save_baseline(build_model(baseline_config(0.125, 8), 0), tmp_path / "m.pt", "simclr", {})
    args = ["retrieve", "--checkpoint", str(ckpt), "--query", str(images / "query.png"),
            "--collection", str(images / "collection"), "--top", "20", "--method", "both", "--size", "16",
            "--jitter", "2", "--cache-dir", str(tmp_path / "cache"), "--json"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert set(first) == {"esvm", "cosine"}
    assert len(first["esvm"]) == 8 and [r["rank"] for r in first["cosine"]] == list(range(1, 9))
    scores = [r["score"] for r in first["cosine"]]
    assert scores == sorted(scores, reverse=True)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    assert main(args) == 0                               # second run: descriptors from the cache
    assert json.loads(capsys.readouterr().out) == first


def test_clear_errors(images, tmp_path, capsys):
    rc = main(["retrieve", "--checkpoint", "pixels", "--query", str(tmp_path / "missing.png"),
               "--collection", str(images / "collection"), "--no-cache"])
    assert rc == 1 and "missing.png: query image not found" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    rc = main(["retrieve", "--checkpoint", "pixels", "--query", str(images / "query.png"),
               "--collection", str(tmp_path / "empty"), "--no-cache"])
    assert rc == 1 and "no images" in capsys.readouterr().err
    rc = main(["retrieve", "--checkpoint", str(tmp_path / "nope.pt"), "--query", str(images / "query.png"),
               "--collection", str(images / "collection"), "--no-cache"])
    assert rc == 1 and "nope.pt" in capsys.readouterr().err
