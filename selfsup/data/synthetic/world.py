"""`generate(root, params, seed)`: write the whole synthetic world in the real data sets' layouts.

    videos/<class>/<class>_00000.mp4                        training videos (class = motion type or action)
    DAVIS/JPEGImages/480p/<seq>/00000.jpg, DAVIS/Annotations/480p/<seq>/00000.png, DAVIS/ImageSets/2017/val.txt
    jhmdb/Rename_Images/<class>/<video>/00001.png, jhmdb/joint_positions/<class>/<video>/joint_positions.mat,
    jhmdb/splits/<class>_test_split1.txt
    vip/VIP_Fine/Images/<video>/<frame>.jpg, vip/VIP_Fine/Annotations/Category_ids/<video>/<frame>.png,
    vip/VIP_Fine/lists/val_videos.txt
    unaligned/{trainA,trainB,testA,testB,testA_gtB,testA_masks}/<name>.png
    manifest.json

Every part draws from its own random stream (numpy SeedSequence with a spawn key per part and per
item), so the evaluation sets are held out from the training videos, and adding videos does not
change the other parts.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ...config import SyntheticParams, as_dict, parse_section
from ...io import atomic_dir, sha256_file, write_json
from . import writers
from .domains import random_domain_scene
from .figures import ACTIONS, JOINTS, FigureClip, figure_clip
from .scenes import MOTIONS, Scene, alone_pixels, object_scene, to_uint8, visible_pixels

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
# One random stream per part: spawn_key = (part, item).
STREAMS = {"videos": 1, "davis": 2, "jhmdb": 3, "vip": 4, "trainA": 5, "trainB": 6, "testA": 7, "testB": 8}
DAVIS_MOTIONS = ("drift", "spin", "zoom")


def item_rng(seed: int, part: str, index: int) -> np.random.Generator:
    """The random generator of item `index` of `part` (independent of every other item)."""
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(STREAMS[part], index)))


def check_params(params: SyntheticParams) -> SyntheticParams:
    """Re-validate (ranges and cross-field rules), also for objects built with dataclasses.replace."""
    if not isinstance(params, SyntheticParams):
        raise TypeError(f"params must be SyntheticParams, got {type(params).__name__}")
    return parse_section(SyntheticParams, as_dict(params), file="synthetic params", prefix="synthetic")


# ------------------------------------------------------------------------------------------------
# Scenes of each part (public so tests and notebooks can re-render exactly what was written)
# ------------------------------------------------------------------------------------------------

def is_figure_video(params: SyntheticParams, index: int) -> bool:
    """Whether training video `index` shows a person: the figure videos are spread evenly, a
    `train_figures` share of every run of consecutive indices (video i is one when the running
    count floor((i + 1) * share) steps up at i)."""
    share = params.train_figures
    return int((index + 1) * share + 1e-9) > int(index * share + 1e-9)


def video_class(params: SyntheticParams, index: int) -> str:
    """The class folder of training video `index`: its action (figure videos) or motion type."""
    figures = sum(is_figure_video(params, i) for i in range(index))
    if is_figure_video(params, index):
        return ACTIONS[figures % len(ACTIONS)]
    return MOTIONS[(index - figures) % len(MOTIONS)]


def train_scene(params: SyntheticParams, seed: int, index: int) -> Scene | FigureClip:
    """Training video `index`: an object scene or, for a figure video, a person doing an action
    in front of a few objects. Both render(t) → (frame, labels)."""
    rng = item_rng(seed, "videos", index)
    size = params.train_size
    kind = video_class(params, index)
    if is_figure_video(params, index):
        distractors = int(rng.integers(params.objects_min, params.objects_max + 1)) - 1
        return figure_clip(rng, kind, params.train_frames, size, size, pan_speed=params.pan_speed,
                           light=params.lighting, photo_fraction=params.photo_fraction,
                           distractors=distractors)
    n = int(rng.integers(params.objects_min, params.objects_max + 1))
    return object_scene(rng, size, size, params.train_frames, n, kind,
                        pan_speed=params.pan_speed, light=params.lighting,
                        photo_fraction=params.photo_fraction, enter_fraction=0.15,
                        camouflage=params.camouflage)


def davis_scene(params: SyntheticParams, seed: int, index: int, attempts: int = 50) -> Scene:
    """A DAVIS sequence whose every object is well visible in the first frame."""
    rng = item_rng(seed, "davis", index)
    n = int(rng.integers(params.objects_min, params.objects_max + 1))
    for _ in range(attempts):
        motion = DAVIS_MOTIONS[int(rng.integers(len(DAVIS_MOTIONS)))]
        scene = object_scene(rng, params.davis_height, params.davis_width, params.davis_frames, n, motion,
                             pan_speed=params.pan_speed, light=params.lighting,
                             photo_fraction=params.photo_fraction, radius_range=(0.12, 0.24),
                             camouflage=params.camouflage)
        seen = visible_pixels(scene, 0)
        whole = np.array([alone_pixels(scene, i, 0) for i in range(n)])
        if np.all(seen >= np.maximum(20, 0.4 * whole)):
            return scene
    raise ValueError(f"DAVIS sequence {index}: could not place {n} objects visibly in "
                     f"{params.davis_height}x{params.davis_width} frames; use fewer objects or larger frames")


def jhmdb_action(index: int) -> str:
    return ACTIONS[index % len(ACTIONS)]


def jhmdb_clip(params: SyntheticParams, seed: int, index: int):
    rng = item_rng(seed, "jhmdb", index)
    return figure_clip(rng, jhmdb_action(index), params.jhmdb_frames, params.jhmdb_height, params.jhmdb_width,
                       pan_speed=params.pan_speed, light=params.lighting, photo_fraction=params.photo_fraction)


def vip_clip(params: SyntheticParams, seed: int, index: int):
    rng = item_rng(seed, "vip", index)
    action = ACTIONS[int(rng.integers(len(ACTIONS)))]
    return figure_clip(rng, action, params.vip_frames, params.vip_height, params.vip_width,
                       pan_speed=params.pan_speed, light=params.lighting, photo_fraction=params.photo_fraction)


# ------------------------------------------------------------------------------------------------
# Names
# ------------------------------------------------------------------------------------------------

def video_name(params: SyntheticParams, index: int) -> str:
    kind = video_class(params, index)
    return f"{kind}/{kind}_{index:05d}.mp4"


def davis_name(index: int) -> str:
    return f"synth-{index:03d}"


def jhmdb_name(index: int) -> str:
    return f"{jhmdb_action(index)}_synth_{index:03d}"


def vip_name(index: int) -> str:
    return f"synth_{index:03d}"


def vip_frame_name(t: int) -> str:
    return f"{t + 1:012d}"


# ------------------------------------------------------------------------------------------------
# Writers per part
# ------------------------------------------------------------------------------------------------

def _bar(total: int, desc: str, progress: bool):
    return tqdm(total=total, desc=f"synthetic {desc}", unit="frame", disable=not progress, leave=False)


def write_videos(out: Path, params: SyntheticParams, seed: int, progress: bool) -> dict:
    frames_total = 0
    with _bar(params.train_videos * params.train_frames, "videos", progress) as bar:
        for i in range(params.train_videos):
            scene = train_scene(params, seed, i)
            frames = []
            for t in range(scene.frames):
                frames.append(to_uint8(scene.render(t)[0]))
                bar.update()
            writers.write_mp4(out / "videos" / video_name(params, i), frames, params.fps, params.video_crf)
            frames_total += len(frames)
    return {"videos": params.train_videos, "video_frames": frames_total,
            "video_classes": sorted({video_class(params, i) for i in range(params.train_videos)}),
            "figure_videos": sum(is_figure_video(params, i) for i in range(params.train_videos))}


def write_davis(out: Path, params: SyntheticParams, seed: int, progress: bool) -> dict:
    root = out / "DAVIS"
    names, objects = [], 0
    with _bar(params.davis_sequences * params.davis_frames, "DAVIS", progress) as bar:
        for i in range(params.davis_sequences):
            scene = davis_scene(params, seed, i)
            name = davis_name(i)
            for t in range(scene.frames):
                rgb, ids = scene.render(t)
                writers.save_jpeg(root / "JPEGImages" / "480p" / name / f"{t:05d}.jpg", to_uint8(rgb),
                                  params.jpeg_quality)
                writers.save_palette_png(root / "Annotations" / "480p" / name / f"{t:05d}.png", ids)
                bar.update()
            names.append(name)
            objects += len(scene.sprites)
    (root / "ImageSets" / "2017").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("".join(f"{n}\n" for n in names))
    return {"davis_sequences": len(names), "davis_frames": len(names) * params.davis_frames,
            "davis_objects": objects}


def write_jhmdb(out: Path, params: SyntheticParams, seed: int, progress: bool) -> dict:
    root = out / "jhmdb"
    by_class: dict[str, list[str]] = {}
    with _bar(params.jhmdb_videos * params.jhmdb_frames, "JHMDB", progress) as bar:
        for i in range(params.jhmdb_videos):
            clip = jhmdb_clip(params, seed, i)
            cls, name = jhmdb_action(i), jhmdb_name(i)
            for t in range(clip.frames):
                rgb, _ = clip.render(t)
                writers.save_png(root / "Rename_Images" / cls / name / f"{t + 1:05d}.png", to_uint8(rgb))
                bar.update()
            # (T, 15, 2) 0-based pixel centres → 2×15×T, x first, 1-based (MATLAB)
            pos_img = np.transpose(clip.figure.joints2d, (2, 1, 0)).astype(np.float64) + 1.0
            writers.save_mat(root / "joint_positions" / cls / name / "joint_positions.mat",
                             {"pos_img": pos_img, "scale": np.full(clip.frames, clip.figure.scale),
                              "viewpoint": "synthetic"})
            by_class.setdefault(cls, []).append(name)
    for cls in sorted(by_class):
        path = root / "splits" / f"{cls}_test_split1.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{name}.avi 2\n" for name in by_class[cls]))  # every video is a test video
    return {"jhmdb_videos": params.jhmdb_videos, "jhmdb_frames": params.jhmdb_videos * params.jhmdb_frames,
            "jhmdb_classes": sorted(by_class), "jhmdb_joints": len(JOINTS)}


def write_vip(out: Path, params: SyntheticParams, seed: int, progress: bool) -> dict:
    root = out / "vip" / "VIP_Fine"
    names, classes = [], np.zeros(20, np.int64)
    with _bar(params.vip_videos * params.vip_frames, "VIP", progress) as bar:
        for i in range(params.vip_videos):
            clip = vip_clip(params, seed, i)
            name = vip_name(i)
            for t in range(clip.frames):
                rgb, labels = clip.render(t)
                frame = vip_frame_name(t)
                writers.save_jpeg(root / "Images" / name / f"{frame}.jpg", to_uint8(rgb), params.jpeg_quality)
                writers.save_png(root / "Annotations" / "Category_ids" / name / f"{frame}.png", labels)
                classes += np.bincount(labels.ravel(), minlength=20)[:20] > 0
                bar.update()
            names.append(name)
    (root / "lists").mkdir(parents=True, exist_ok=True)
    (root / "lists" / "val_videos.txt").write_text("".join(f"{n}\n" for n in names))
    return {"vip_videos": len(names), "vip_frames": len(names) * params.vip_frames,
            "vip_classes": [int(c) for c in np.flatnonzero(classes)]}


def write_unaligned(out: Path, params: SyntheticParams, seed: int, progress: bool) -> dict:
    root = out / "unaligned"
    plan = [("trainA", "A", params.domain_train), ("trainB", "B", params.domain_train),
            ("testA", "A", params.domain_test), ("testB", "B", params.domain_test)]
    counts = {}
    with tqdm(total=sum(n for *_, n in plan), desc="synthetic unaligned", unit="image",
              disable=not progress, leave=False) as bar:
        for split, appearance, n in plan:
            for i in range(n):
                scene = random_domain_scene(item_rng(seed, split, i), params.domain_size, params.domain_shapes_max,
                                            tuple(params.domain_stripes), texture=params.domain_texture,
                                            background_octaves=params.domain_background_octaves,
                                            palette_mix=params.domain_palette_mix,
                                            shape_hues=tuple(params.domain_shape_hues))
                img, mask = scene.render(appearance)
                name = f"{i:05d}.png"
                writers.save_png(root / split / name, img)
                if split == "testA":
                    writers.save_png(root / "testA_gtB" / name, scene.render("B")[0])
                    writers.save_png(root / "testA_masks" / name, mask)
                bar.update()
            counts[split] = n
    counts["testA_gtB"] = counts["testA_masks"] = params.domain_test
    return {"unaligned": counts}


PARTS = (("videos", write_videos), ("davis", write_davis), ("jhmdb", write_jhmdb), ("vip", write_vip),
         ("unaligned", write_unaligned))


def _file_table(root: Path) -> dict[str, dict[str, Any]]:
    files = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        files[path.relative_to(root).as_posix()] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    return files


def generate(root: Path, params: SyntheticParams, seed: int, *, progress: bool = True) -> dict:
    """Write the synthetic world to `root` (replaced whole, atomically) and return a summary:
    {"root", "seed", "counts", "files", "bytes", "seconds"}. Same params and seed → identical bytes."""
    params = check_params(params)
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    root = Path(root)
    start = time.perf_counter()
    counts: dict[str, Any] = {}
    with atomic_dir(root) as tmp:
        for name, write in PARTS:
            t0 = time.perf_counter()
            counts.update(write(tmp, params, seed, progress))
            log.info("synthetic %s written in %.1f s", name, time.perf_counter() - t0)
        files = _file_table(tmp)
        total = sum(f["bytes"] for f in files.values())
        counts["files"] = len(files)
        write_json(tmp / "manifest.json", {
            "generator": "selfsup.data.synthetic", "format_version": FORMAT_VERSION, "seed": seed,
            "params": as_dict(params), "counts": counts, "bytes": total, "files": files})
        # temporary files and folders are created private; the data set is for everyone to read
        tmp.chmod(0o755)
        (tmp / "manifest.json").chmod(0o644)
    seconds = time.perf_counter() - start
    log.info("synthetic world: %d files, %.1f MB in %s (%.1f s)", len(files), total / 1e6, root, seconds)
    return {"root": str(root), "seed": seed, "counts": counts, "files": len(files), "bytes": total,
            "seconds": seconds}
