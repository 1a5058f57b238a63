"""The synthetic world: determinism, every layout read back by plain readers written here, masks and
keypoints that agree with the rendering, motion, and parameter validation."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from selfsup.config import ParamsError, SyntheticParams
from selfsup.data import synthetic
from selfsup.data.synthetic import domains, figures, scenes, writers

SMALL = dataclasses.replace(
    SyntheticParams(),
    train_videos=4, train_frames=8, train_size=64, objects_min=2, objects_max=3,
    davis_sequences=2, davis_frames=8, davis_height=72, davis_width=96,
    jhmdb_videos=4, jhmdb_frames=5, jhmdb_height=120, jhmdb_width=160,
    vip_videos=2, vip_frames=3, vip_height=96, vip_width=64,
    domain_train=5, domain_test=4, domain_size=32,
)
SEED = 3


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    base = tmp_path_factory.mktemp("synthetic")
    stale = base / "a" / "stale.txt"  # generate replaces the folder whole
    stale.parent.mkdir(parents=True)
    stale.write_text("left over")
    summary = synthetic.generate(base / "a", SMALL, SEED, progress=False)
    synthetic.generate(base / "b", SMALL, SEED, progress=False)
    synthetic.generate(base / "c", SMALL, SEED + 1, progress=False)
    return {"a": base / "a", "b": base / "b", "c": base / "c", "summary": summary}


def files_of(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def read_lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip()]


# ------------------------------------------------------------------------------------------------
# Determinism and the manifest
# ------------------------------------------------------------------------------------------------

def test_same_seed_gives_identical_bytes(worlds):
    a, b = files_of(worlds["a"]), files_of(worlds["b"])
    assert sorted(a) == sorted(b)
    different = [name for name in a if a[name] != b[name]]
    assert different == []
    assert any(name.endswith(".mp4") for name in a) and any(name.endswith(".mat") for name in a)


def test_other_seed_differs(worlds):
    a, c = files_of(worlds["a"]), files_of(worlds["c"])
    data = [n for n in a if n != "manifest.json" and not n.endswith(".txt")]
    changed = [n for n in data if n in c and a[n] != c[n]]
    assert len(changed) >= 0.95 * len(data)


def test_manifest_lists_every_file_with_its_hash(worlds):
    root = worlds["a"]
    manifest = json.loads((root / "manifest.json").read_text())
    on_disk = files_of(root)
    del on_disk["manifest.json"]
    assert set(manifest["files"]) == set(on_disk)
    for name, blob in on_disk.items():
        assert manifest["files"][name] == {"sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)}
    assert manifest["seed"] == SEED
    assert manifest["params"] == dataclasses.asdict(SMALL)
    assert manifest["bytes"] == sum(len(b) for b in on_disk.values())
    assert not (root / "stale.txt").exists()


def test_summary_counts(worlds):
    s = worlds["summary"]
    c = s["counts"]
    assert c["videos"] == SMALL.train_videos and c["video_frames"] == SMALL.train_videos * SMALL.train_frames
    assert c["davis_sequences"] == SMALL.davis_sequences and c["davis_frames"] == SMALL.davis_sequences * SMALL.davis_frames
    assert SMALL.davis_sequences * SMALL.objects_min <= c["davis_objects"] <= SMALL.davis_sequences * SMALL.objects_max
    assert c["jhmdb_videos"] == SMALL.jhmdb_videos and c["vip_videos"] == SMALL.vip_videos
    assert c["unaligned"] == {"trainA": 5, "trainB": 5, "testA": 4, "testB": 4, "testA_gtB": 4, "testA_masks": 4}
    assert s["files"] == len(files_of(worlds["a"])) - 1
    assert s["bytes"] == sum(len(b) for n, b in files_of(worlds["a"]).items() if n != "manifest.json")


def test_eval_splits_use_their_own_random_streams():
    """Adding training videos must not change the evaluation sets (held-out sub-seeds)."""
    more = dataclasses.replace(SMALL, train_videos=SMALL.train_videos + 3)
    a, _ = synthetic.davis_scene(SMALL, SEED, 0).render(2)
    b, _ = synthetic.davis_scene(more, SEED, 0).render(2)
    assert np.array_equal(a, b)
    x = synthetic.train_scene(SMALL, SEED, 0).render(0)[0]
    y = synthetic.davis_scene(dataclasses.replace(SMALL, davis_height=64, davis_width=64), SEED, 0).render(0)[0]
    assert x.shape == y.shape and not np.array_equal(x, y)


# ------------------------------------------------------------------------------------------------
# Training videos
# ------------------------------------------------------------------------------------------------

def decode(path: Path) -> tuple[list[np.ndarray], float]:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        return frames, float(stream.average_rate)


def test_videos_layout_and_decoding(worlds):
    videos = sorted((worlds["a"] / "videos").glob("*/*.mp4"))
    assert len(videos) == SMALL.train_videos
    assert {v.parent.name for v in videos} <= set(scenes.MOTIONS)
    for path in videos:
        assert path.name.startswith(path.parent.name)
        frames, fps = decode(path)
        assert len(frames) == SMALL.train_frames
        assert frames[0].shape == (SMALL.train_size, SMALL.train_size, 3)
        assert fps == SMALL.fps


def test_videos_contain_motion(worlds):
    for path in sorted((worlds["a"] / "videos").glob("*/*.mp4")):
        frames = np.stack(decode(path)[0]).astype(np.float32)
        step = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))
        assert np.all(step > 0.2), (path, step)   # every frame changes
        assert np.abs(frames[-1] - frames[0]).mean() > 2.0


def test_figure_videos_share_and_classes(tmp_path):
    """`train_figures` of the training videos show a person: spread evenly, filed under their
    action, the figure moving in the frames; the other videos keep their motion classes, and a
    share of 0 leaves the world as it was."""
    params = dataclasses.replace(SMALL, train_videos=8, train_size=96, train_figures=0.5)
    kinds = [synthetic.world.video_class(params, i) for i in range(8)]
    figure_flags = [synthetic.world.is_figure_video(params, i) for i in range(8)]
    assert figure_flags == [False, True] * 4
    assert [k for k, f in zip(kinds, figure_flags) if f] == list(figures.ACTIONS)
    assert [k for k, f in zip(kinds, figure_flags) if not f] == list(scenes.MOTIONS)
    quarter = dataclasses.replace(params, train_figures=0.25)
    assert sum(synthetic.world.is_figure_video(quarter, i) for i in range(8)) == 2
    none = dataclasses.replace(params, train_figures=0.0)
    assert [synthetic.world.video_class(none, i) for i in range(8)] == list(scenes.MOTIONS) * 2
    assert synthetic.world.video_name(params, 1) == "walk/walk_00001.mp4"

    clip = synthetic.train_scene(params, SEED, 1)
    assert isinstance(clip, figures.FigureClip)
    first, last = (clip.render(t)[1] > 0 for t in (0, params.train_frames - 1))
    assert first.sum() > 50 and last.sum() > 50
    assert (first != last).sum() > 10      # the limbs move

    summary = synthetic.world.write_videos(tmp_path, params, SEED, progress=False)
    assert summary["figure_videos"] == 4
    assert summary["video_classes"] == sorted(set(kinds))
    written = sorted(p.relative_to(tmp_path / "videos").as_posix() for p in (tmp_path / "videos").rglob("*.mp4"))
    assert written == sorted(synthetic.world.video_name(params, i) for i in range(8))


def camouflage_reference(texture: np.ndarray, surroundings: np.ndarray, levels: int) -> np.ndarray:
    """Pixel by pixel: the mean colour of the surroundings' pixels in each luminance bin, then
    linear interpolation between the centres of the bins that hold any pixel."""
    lum = lambda c: 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]
    groups: dict[int, list] = {}
    for colour in surroundings.reshape(-1, 3).astype(np.float64):
        groups.setdefault(min(int(lum(colour) * levels), levels - 1), []).append(colour)
    centres = sorted(groups)
    xs = [(b + 0.5) / levels for b in centres]
    means = [np.mean(groups[b], axis=0) for b in centres]
    out = np.zeros(texture.shape, np.float64)
    for idx in np.ndindex(texture.shape[:2]):
        y = lum(texture[idx].astype(np.float64))
        if y <= xs[0]:
            out[idx] = means[0]
        elif y >= xs[-1]:
            out[idx] = means[-1]
        else:
            k = int(np.searchsorted(xs, y)) - 1
            f = (y - xs[k]) / (xs[k + 1] - xs[k])
            out[idx] = means[k] * (1 - f) + means[k + 1] * f
    return out


def test_camouflage_takes_the_surroundings_hues():
    rng = np.random.default_rng(0)
    texture = rng.random((12, 10, 3), dtype=np.float32)
    # surroundings: two hues only, and no pixel in a band of mid luminances (interpolated bins)
    dark_red = np.array([0.5, 0.05, 0.05], np.float32) * rng.uniform(0.2, 0.6, (20, 20, 1)).astype(np.float32)
    light_green = np.array([0.3, 0.9, 0.4], np.float32) * rng.uniform(0.8, 1.0, (20, 20, 1)).astype(np.float32)
    surroundings = np.concatenate([dark_red, light_green], axis=0)
    out = scenes.camouflage_texture(texture, surroundings, levels=16)
    np.testing.assert_allclose(out, camouflage_reference(texture, surroundings, 16), atol=1e-5)
    # every output colour is a blend of the surroundings' colours: red and green, never blue-dominant
    assert np.all(out[..., 2] <= np.maximum(out[..., 0], out[..., 1]) + 1e-6)
    # darker input pixels stay darker (the pattern survives)
    lum = lambda x: x @ np.array([0.299, 0.587, 0.114], np.float32)
    src, dst = lum(texture).ravel(), lum(out).ravel()
    order = np.argsort(src)
    assert np.all(np.diff(dst[order]) >= -1e-6)


def test_camouflaged_objects_wear_the_background_colours():
    """At camouflage 1 every object's colours come from its background's; at 0 the scene is the
    one drawn without the option (no extra random draw)."""
    def scene(camouflage, **kw):
        rng = synthetic.item_rng(SEED, "davis", 0)
        return scenes.object_scene(rng, 96, 128, 4, 3, "drift", pan_speed=0.6, light=0.0,
                                   photo_fraction=0.4, camouflage=camouflage, **kw)

    plain, default, hidden = scene(0.0), scenes.object_scene(
        synthetic.item_rng(SEED, "davis", 0), 96, 128, 4, 3, "drift", pan_speed=0.6, light=0.0,
        photo_fraction=0.4), scene(1.0)
    for a, b in zip(plain.sprites, default.sprites):
        np.testing.assert_array_equal(a.texture, b.texture)

    def palette_distance(texture, background):
        """Mean distance from each texture colour to its nearest background colour."""
        from scipy.spatial import cKDTree
        return float(cKDTree(background.reshape(-1, 3)[::7]).query(texture.reshape(-1, 3)[::5])[0].mean())

    for sprite in hidden.sprites:
        assert palette_distance(sprite.texture, hidden.background) < 0.08
    assert np.mean([palette_distance(s.texture, plain.background) for s in plain.sprites]) > 0.08


def centroid(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()])


def test_training_objects_move():
    for i in range(SMALL.train_videos):
        scene = synthetic.train_scene(SMALL, SEED, i)
        moved = 0.0
        for k in range(1, len(scene.sprites) + 1):
            masks = [scene.render(t, light=False)[1] == k for t in range(scene.frames)]
            visible = [m for m in masks if m.sum() > 20]
            if len(visible) >= 2:
                moved = max(moved, float(np.linalg.norm(centroid(visible[-1]) - centroid(visible[0]))))
        assert moved > 1.0, i


def test_video_frames_are_the_rendering(worlds):
    """The mp4 holds what the scene renders (H.264 at crf 18: small error)."""
    frames, _ = decode(worlds["a"] / "videos" / synthetic.video_name(SMALL, 0))
    scene = synthetic.train_scene(SMALL, SEED, 0)
    for t in (0, SMALL.train_frames - 1):
        rendered = scenes.to_uint8(scene.render(t)[0]).astype(np.float32)
        assert np.abs(frames[t].astype(np.float32) - rendered).mean() < 8.0


# ------------------------------------------------------------------------------------------------
# DAVIS
# ------------------------------------------------------------------------------------------------

def voc_palette_reference() -> list[tuple[int, int, int]]:
    out = []
    for i in range(256):
        bits = [(i >> k) & 1 for k in range(24)]
        r = sum(bits[3 * k] << (7 - k) for k in range(8))
        g = sum(bits[3 * k + 1] << (7 - k) for k in range(8))
        b = sum(bits[3 * k + 2] << (7 - k) for k in range(8))
        out.append((r, g, b))
    return out


def test_davis_palette():
    pal = writers.davis_palette()
    triples = [tuple(pal[3 * i: 3 * i + 3]) for i in range(256)]
    assert triples[:5] == [(0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128)]
    assert triples[255] == (224, 224, 192)
    assert triples == voc_palette_reference()


def test_davis_layout(worlds):
    root = worlds["a"] / "DAVIS"
    seqs = read_lines(root / "ImageSets" / "2017" / "val.txt")
    assert len(seqs) == SMALL.davis_sequences
    assert sorted(p.name for p in (root / "JPEGImages" / "480p").iterdir()) == sorted(seqs)
    assert sorted(p.name for p in (root / "Annotations" / "480p").iterdir()) == sorted(seqs)
    for seq in seqs:
        jpgs = sorted((root / "JPEGImages" / "480p" / seq).glob("*.jpg"))
        pngs = sorted((root / "Annotations" / "480p" / seq).glob("*.png"))
        assert len(jpgs) == len(pngs) == SMALL.davis_frames
        assert [p.stem for p in jpgs] == [p.stem for p in pngs] == [f"{t:05d}" for t in range(SMALL.davis_frames)]
        first_ids = None
        for jpg, png in zip(jpgs, pngs):
            with Image.open(png) as im:
                assert im.mode == "P"
                assert im.size == (SMALL.davis_width, SMALL.davis_height)
                assert im.getpalette()[:9] == [0, 0, 0, 128, 0, 0, 0, 128, 0]
                ids = set(np.unique(np.asarray(im)).tolist())
            with Image.open(jpg) as im:
                assert im.format == "JPEG" and im.size == (SMALL.davis_width, SMALL.davis_height)
            if first_ids is None:
                first_ids = ids
                k = max(ids)
                assert ids == set(range(k + 1)) and SMALL.objects_min <= k <= SMALL.objects_max
            assert ids <= first_ids


def test_davis_masks_match_rendering(worlds):
    root = worlds["a"] / "DAVIS"
    for i in range(SMALL.davis_sequences):
        scene = synthetic.davis_scene(SMALL, SEED, i)
        name = synthetic.davis_name(i)
        for t in range(SMALL.davis_frames):
            rgb, ids = scene.render(t)
            stored = np.asarray(Image.open(root / "Annotations" / "480p" / name / f"{t:05d}.png"))
            assert np.array_equal(stored, ids)
            background, no_ids = scene.render(t, objects=False)
            assert not no_ids.any()
            # outside the masks the frame is the background alone; inside, the objects cover it
            assert np.array_equal(rgb[ids == 0], background[ids == 0])
            if (ids > 0).any():
                changed = np.abs(rgb - background).max(axis=-1)[ids > 0] > 2 / 255
                assert changed.mean() > 0.8
            jpg = np.asarray(Image.open(root / "JPEGImages" / "480p" / name / f"{t:05d}.jpg"), np.float32)
            assert np.abs(jpg - scenes.to_uint8(rgb)).mean() < 12.0  # JPEG q90, 4:2:0 on busy textures


def test_davis_objects_move(worlds):
    root = worlds["a"] / "DAVIS"
    for seq in read_lines(root / "ImageSets" / "2017" / "val.txt"):
        pngs = sorted((root / "Annotations" / "480p" / seq).glob("*.png"))
        masks = [np.asarray(Image.open(p)) for p in pngs]
        path = 0.0
        for k in range(1, int(masks[0].max()) + 1):
            cents = [centroid(m == k) for m in masks if (m == k).sum() > 10]
            path = max(path, float(sum(np.linalg.norm(b - a) for a, b in zip(cents, cents[1:]))))
        assert path > 1.0, seq


# ------------------------------------------------------------------------------------------------
# JHMDB
# ------------------------------------------------------------------------------------------------

def test_jhmdb_layout_and_joints(worlds):
    root = worlds["a"] / "jhmdb"
    split_files = sorted((root / "splits").glob("*_test_split1.txt"))
    assert split_files
    videos = []
    for f in split_files:
        cls = f.name[: -len("_test_split1.txt")]
        for line in read_lines(f):
            name, flag = line.split()
            assert name.endswith(".avi") and flag == "2"   # every synthetic video is a test video
            videos.append((cls, name[:-4]))
    assert len(videos) == SMALL.jhmdb_videos
    for cls, name in videos:
        frames = sorted((root / "Rename_Images" / cls / name).glob("*.png"))
        assert [p.name for p in frames] == [f"{t:05d}.png" for t in range(1, SMALL.jhmdb_frames + 1)]
        with Image.open(frames[0]) as im:
            assert im.size == (SMALL.jhmdb_width, SMALL.jhmdb_height) and im.mode == "RGB"
        mat_path = root / "joint_positions" / cls / name / "joint_positions.mat"
        assert mat_path.read_bytes()[:40].startswith(b"MATLAB 5.0 MAT-file, written by selfsup")
        pos = scipy.io.loadmat(mat_path)["pos_img"]
        assert pos.shape == (2, 15, SMALL.jhmdb_frames) and pos.dtype == np.float64
        x, y = pos[0], pos[1]   # 1-based
        assert np.all((x >= 1) & (x <= SMALL.jhmdb_width) & (y >= 1) & (y <= SMALL.jhmdb_height))


def test_jhmdb_joints_follow_the_figure(worlds):
    root = worlds["a"] / "jhmdb"
    j = figures.J
    for i in range(SMALL.jhmdb_videos):
        clip = synthetic.jhmdb_clip(SMALL, SEED, i)
        cls, name = figures.ACTIONS[i % len(figures.ACTIONS)], synthetic.jhmdb_name(i)
        pos = scipy.io.loadmat(root / "joint_positions" / cls / name / "joint_positions.mat")["pos_img"] - 1
        assert np.allclose(pos, np.transpose(clip.figure.joints2d, (2, 1, 0)))
        for t in range(clip.frames):
            rgb, labels = clip.render(t)
            stored = np.asarray(Image.open(root / "Rename_Images" / cls / name / f"{t + 1:05d}.png"))
            assert np.array_equal(stored, scenes.to_uint8(rgb))
            xs, ys = np.rint(pos[0, :, t]).astype(int), np.rint(pos[1, :, t]).astype(int)
            assert np.all(labels[ys, xs] > 0)             # every joint lies on the drawn body
            # JHMDB order: face above neck above belly; the person's right shoulder on the image left
            assert pos[1, j["face"], t] < pos[1, j["neck"], t] < pos[1, j["belly"], t]
            assert pos[0, j["right_shoulder"], t] < pos[0, j["left_shoulder"], t]
            assert pos[1, j["right_knee"], t] < pos[1, j["right_ankle"], t]
        moved = np.abs(pos[:, :, -1] - pos[:, :, 0]).max()
        assert moved > 1.0


# ------------------------------------------------------------------------------------------------
# VIP
# ------------------------------------------------------------------------------------------------

def test_vip_layout_and_labels(worlds):
    root = worlds["a"] / "vip" / "VIP_Fine"
    videos = read_lines(root / "lists" / "val_videos.txt")
    assert len(videos) == SMALL.vip_videos
    seen = set()
    for v in videos:
        jpgs = sorted((root / "Images" / v).glob("*.jpg"))
        pngs = sorted((root / "Annotations" / "Category_ids" / v).glob("*.png"))
        assert len(jpgs) == SMALL.vip_frames and [p.stem for p in jpgs] == [p.stem for p in pngs]
        for jpg, png in zip(jpgs, pngs):
            with Image.open(png) as im:
                assert im.mode == "L" and im.size == (SMALL.vip_width, SMALL.vip_height)
                labels = np.asarray(im)
            with Image.open(jpg) as im:
                assert im.format == "JPEG" and im.size == (SMALL.vip_width, SMALL.vip_height)
            assert labels.max() < 20 and (labels > 0).mean() > 0.02
            seen |= set(np.unique(labels).tolist())
    # the figure's parts: hair, face, upper clothes, pants, both arms, both shoes at least
    assert {2, 4, 8, 13, 14, 15, 18, 19} <= seen


def test_vip_labels_match_rendering(worlds):
    root = worlds["a"] / "vip" / "VIP_Fine"
    for i in range(SMALL.vip_videos):
        clip = synthetic.vip_clip(SMALL, SEED, i)
        name = synthetic.vip_name(i)
        frames = sorted((root / "Annotations" / "Category_ids" / name).glob("*.png"))
        for t, png in enumerate(frames):
            rgb, labels = clip.render(t)
            assert np.array_equal(np.asarray(Image.open(png)), labels)
            background, none = clip.render(t, figure=False)
            assert not none.any()
            assert np.array_equal(rgb[labels == 0], background[labels == 0])
            assert (np.abs(rgb - background).max(axis=-1)[labels > 0] > 2 / 255).mean() > 0.8


# ------------------------------------------------------------------------------------------------
# Unaligned domains
# ------------------------------------------------------------------------------------------------

def test_unaligned_layout(worlds):
    root = worlds["a"] / "unaligned"
    counts = {"trainA": 5, "trainB": 5, "testA": 4, "testB": 4, "testA_gtB": 4, "testA_masks": 4}
    for folder, n in counts.items():
        names = sorted(p.name for p in (root / folder).glob("*.png"))
        assert len(names) == n, folder
    test_names = sorted(p.name for p in (root / "testA").glob("*.png"))
    assert sorted(p.name for p in (root / "testA_gtB").glob("*.png")) == test_names
    assert sorted(p.name for p in (root / "testA_masks").glob("*.png")) == test_names
    for name in test_names:
        a = np.asarray(Image.open(root / "testA" / name).convert("RGB")).astype(np.int16)
        b = np.asarray(Image.open(root / "testA_gtB" / name).convert("RGB")).astype(np.int16)
        with Image.open(root / "testA_masks" / name) as im:
            assert im.mode == "L"
            mask = np.asarray(im)
        assert a.shape == b.shape == (SMALL.domain_size, SMALL.domain_size, 3)
        assert set(np.unique(mask).tolist()) == {0, 255}
        inside = mask == 255
        # same scene: identical background, different appearance of the shapes
        assert np.array_equal(a[~inside], b[~inside])
        assert (np.abs(a - b).max(axis=-1)[inside] > 10).mean() > 0.8
        saturation = lambda img: (img.max(axis=-1) - img.min(axis=-1))[inside].mean()
        assert saturation(a) > 25 and saturation(b) < 8        # A coloured, B black-and-white stripes
        assert b[inside].max() > 180 and b[inside].min() < 60  # B has both stripe colours


def test_domain_texture_changes_only_the_a_shapes():
    def scene(**kw):
        return domains.random_domain_scene(np.random.default_rng(7), 48, 3, **kw)

    flat, coated = scene(), scene(texture=0.6)
    a_flat, mask = flat.render("A")
    a_coat, mask_coat = coated.render("A")
    assert np.array_equal(mask, mask_coat)
    assert np.array_equal(flat.render("B")[0], coated.render("B")[0])   # drawn last: B is unchanged
    inside = mask == 255
    assert np.array_equal(a_flat[~inside], a_coat[~inside])
    # the coat multiplies the flat colour by 1 - c/2 + c·noise, noise in [0, 1]
    ratio = a_coat[inside].astype(np.float64) / np.maximum(a_flat[inside].astype(np.float64), 1)
    bright = a_flat[inside] > 60
    assert ratio[bright].min() > 0.65 and ratio[bright].max() < 1.35
    assert ratio[bright].std() > 0.08
    # fewer background octaves: a smoother background, measured as the mean step between pixels
    def roughness(img):
        img = img.astype(np.float64)
        return np.abs(np.diff(img, axis=1)).mean() + np.abs(np.diff(img, axis=0)).mean()
    rough = [roughness(domains.random_domain_scene(np.random.default_rng(i), 64, 1).background) for i in range(6)]
    smooth = [roughness(domains.random_domain_scene(np.random.default_rng(i), 64, 1, background_octaves=2).background)
              for i in range(6)]
    assert np.mean(smooth) < 0.8 * np.mean(rough)



def test_domain_shape_hues_keep_every_other_draw():
    import colorsys

    def scene(seed, **kw):
        return domains.random_domain_scene(np.random.default_rng(seed), 48, 3, texture=0.6, **kw)

    for seed in range(8):
        wide, narrow = scene(seed), scene(seed, shape_hues=(0.5, 0.6))
        # one draw per hue whatever the range: geometry, stripes, background and B are unchanged
        assert np.array_equal(wide.render("B")[0], narrow.render("B")[0])
        assert np.array_equal(wide.render("A")[1], narrow.render("A")[1])
        assert np.array_equal(wide.background, narrow.background)
        for a, b in zip(wide.shapes, narrow.shapes):
            h_wide = colorsys.rgb_to_hsv(*a.colour)[0]
            h_narrow = colorsys.rgb_to_hsv(*b.colour)[0]
            assert 0.5 - 1e-5 <= h_narrow <= 0.6 + 1e-5
            assert h_narrow == pytest.approx(0.5 + 0.1 * h_wide, abs=1e-5)
    # the default range is the whole wheel, the world byte for byte as before
    assert np.array_equal(scene(3).render("A")[0], scene(3, shape_hues=(0.0, 1.0)).render("A")[0])

# ------------------------------------------------------------------------------------------------
# Geometry and validation
# ------------------------------------------------------------------------------------------------

def inside_polygon_reference(x: float, y: float, vertices: list[tuple[float, float]]) -> bool:
    """Even-odd ray casting, one point at a time."""
    inside = False
    n = len(vertices)
    for k in range(n):
        (x1, y1), (x2, y2) = vertices[k], vertices[(k + 1) % n]
        if (y1 > y) != (y2 > y):
            cross_x = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
            if x < cross_x:
                inside = not inside
    return inside


@pytest.mark.parametrize("kind,points,inner", [("star", 5, 0.45), ("star", 7, 0.6), ("polygon", 3, None),
                                               ("polygon", 6, None)])
def test_star_and_polygon_inside_test(kind, points, inner):
    shape = scenes.Shape(kind, points=points, inner=inner if inner is not None else 0.5)
    q = inner if kind == "star" else np.cos(np.pi / points)
    vertices = []
    for k in range(points):
        a = 2 * np.pi * k / points
        vertices.append((np.cos(a), np.sin(a)))
        vertices.append((q * np.cos(a + np.pi / points), q * np.sin(a + np.pi / points)))
    rng = np.random.default_rng(0)
    pts = rng.uniform(-1.1, 1.1, size=(400, 2))
    got = shape.contains(pts[:, 0], pts[:, 1])
    want = np.array([inside_polygon_reference(x, y, vertices) for x, y in pts])
    assert np.array_equal(got, want)


def test_shape_areas():
    g = np.linspace(-1, 1, 801)
    u, v = np.meshgrid(g, g)
    cell = (g[1] - g[0]) ** 2
    assert scenes.Shape("ellipse", aspect=0.5).contains(u, v).sum() * cell == pytest.approx(np.pi * 0.5, rel=0.01)
    hexagon = scenes.Shape("polygon", points=6).contains(u, v).sum() * cell
    assert hexagon == pytest.approx(6 / 2 * np.sin(2 * np.pi / 6), rel=0.01)


@pytest.mark.parametrize("change,message", [
    (dict(jhmdb_height=40), "jhmdb_height"),
    (dict(vip_width=20), "vip_width"),
    (dict(train_size=65), "even"),
    (dict(objects_min=4, objects_max=2), "objects_max"),
    (dict(domain_size=4), "domain_size"),
    (dict(camouflage=1.5), "camouflage"),
    (dict(train_figures=-0.1), "train_figures"),
    (dict(train_figures=0.5, train_size=48), "train_size"),
    (dict(domain_stripes=[0.3, 0.2]), "domain_stripes"),
    (dict(domain_stripes=[0.2]), "domain_stripes"),
    (dict(domain_texture=1.5), "domain_texture"),
    (dict(domain_background_octaves=0), "domain_background_octaves"),
    (dict(domain_palette_mix=-0.5), "domain_palette_mix"),
    (dict(domain_shape_hues=[0.6, 0.5]), "domain_shape_hues"),
    (dict(domain_shape_hues=[0.5, 1.2]), "domain_shape_hues"),
])
def test_bad_params_are_refused(tmp_path, change, message):
    with pytest.raises(ParamsError, match=message):
        synthetic.generate(tmp_path / "w", dataclasses.replace(SMALL, **change), 0, progress=False)
    assert not (tmp_path / "w").exists()


def test_bad_seed_is_refused(tmp_path):
    with pytest.raises(ValueError, match="seed"):
        synthetic.generate(tmp_path / "w", SMALL, -1, progress=False)


def test_figures_need_room():
    with pytest.raises(ValueError, match="too small"):
        figures.figure_clip(np.random.default_rng(0), "walk", 3, 30, 30, pan_speed=0.5, light=0.0,
                            photo_fraction=0.0)


def test_photos_ship_with_scikit_image():
    from selfsup.data.synthetic import textures

    for name in textures.available_photos():
        assert textures._photo(name).shape[0] >= 64
