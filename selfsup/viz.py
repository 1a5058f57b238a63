"""Pictures of propagation results: label overlays, keypoint skeletons, GIFs (PIL only).

    frames = davis_overlay_frames(davis_root, results_dir, "bike-packing")
    save_gif(frames, "bike-packing.gif", fps=8)
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from .data.davis import DAVIS_PALETTE, DavisSet, read_image, read_indexed_png
from .io import atomic_path

__all__ = ["overlay_labels", "draw_keypoints", "save_gif", "side_by_side", "davis_overlay_frames",
           "jhmdb_overlay_frames", "vip_overlay_frames"]


def overlay_labels(image: np.ndarray, labels: np.ndarray, alpha: float = 0.5,
                   palette: np.ndarray = DAVIS_PALETTE, contour: bool = True) -> np.ndarray:
    """Blend the colour of every non-zero label into an RGB image (uint8 H×W×3); outline regions."""
    image = np.asarray(image, dtype=np.uint8)
    labels = np.asarray(labels)
    if labels.shape != image.shape[:2]:
        labels = np.array(Image.fromarray(labels.astype(np.uint8)).resize(
            (image.shape[1], image.shape[0]), Image.NEAREST))
    colours = np.asarray(palette, dtype=np.float32)[labels.astype(np.int64) % len(palette)]
    fg = labels > 0
    out = image.astype(np.float32)
    out[fg] = (1 - alpha) * out[fg] + alpha * colours[fg]
    if contour:
        edge = np.zeros_like(fg)
        edge[:-1] |= labels[:-1] != labels[1:]
        edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
        out[edge] = colours[edge] * 0.6 + 255 * 0.4 * (labels[edge] > 0)[:, None]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def draw_keypoints(image: np.ndarray, joints: np.ndarray, skeleton: Sequence[tuple[int, int]] = (),
                   visible: np.ndarray | None = None, radius: int = 3,
                   palette: np.ndarray = DAVIS_PALETTE) -> np.ndarray:
    """Draw joints (2×J pixel coordinates) and the limbs between visible ones."""
    joints = np.asarray(joints, dtype=np.float64)
    visible = (joints[0] >= 0) if visible is None else np.asarray(visible, dtype=bool)
    img = Image.fromarray(np.asarray(image, dtype=np.uint8).copy())
    draw = ImageDraw.Draw(img)
    for a, b in skeleton:
        if visible[a] and visible[b]:
            draw.line([(joints[0, a], joints[1, a]), (joints[0, b], joints[1, b])], fill=(255, 255, 255), width=2)
    for j in range(joints.shape[1]):
        if visible[j]:
            x, y = joints[0, j], joints[1, j]
            colour = tuple(int(c) for c in palette[(j % (len(palette) - 1)) + 1])
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=colour, outline=(0, 0, 0))
    return np.asarray(img)


def side_by_side(*images: np.ndarray) -> np.ndarray:
    """Images of one height next to each other."""
    height = max(i.shape[0] for i in images)
    padded = [np.pad(i, ((0, height - i.shape[0]), (0, 0), (0, 0))) for i in images]
    return np.concatenate(padded, axis=1)


def save_gif(frames: Sequence[np.ndarray], path: str | Path, fps: float = 8.0, max_side: int = 480) -> Path:
    """Write RGB frames as a looping GIF (downscaled so the long side is at most `max_side`)."""
    if not frames:
        raise ValueError(f"{path}: no frames to write")
    images = [Image.fromarray(np.asarray(f, dtype=np.uint8)) for f in frames]
    scale = max_side / max(images[0].size)
    if scale < 1:
        size = (max(1, round(images[0].width * scale)), max(1, round(images[0].height * scale)))
        images = [im.resize(size, Image.BILINEAR) for im in images]
    images = [im.convert("P", palette=Image.ADAPTIVE, colors=255) for im in images]
    path = Path(path)
    with atomic_path(path, suffix=".gif") as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                       duration=int(round(1000 / fps)), loop=0)
    return path


def davis_overlay_frames(root: str | Path, results: str | Path, seq: str, set_name: str = "val",
                         with_ground_truth: bool = True, max_frames: int | None = None) -> list[np.ndarray]:
    """Each frame with its propagated mask (left) and, optionally, the ground truth (right)."""
    davis = DavisSet(root, set_name)
    gts = {p.stem: p for p in davis.annotation_paths(seq)}
    frames = []
    for path in davis.frame_paths(seq)[:max_frames]:
        image = read_image(path)
        pred = read_indexed_png(Path(results) / seq / f"{path.stem}.png")
        panel = overlay_labels(image, pred)
        if with_ground_truth and path.stem in gts:
            panel = side_by_side(panel, overlay_labels(image, davis.read_annotation(gts[path.stem])))
        frames.append(panel)
    return frames


def jhmdb_overlay_frames(root: str | Path, results: str | Path, key: str, grid_size: float = 40.0,
                         split: int = 1, with_ground_truth: bool = True) -> list[np.ndarray]:
    """Each frame with the propagated skeleton (left) and, optionally, the ground truth (right)."""
    from .data.jhmdb import SKELETON, JhmdbSet, read_prediction

    jhmdb = JhmdbSet(root, split=split)
    video = next((v for v in jhmdb.videos if v.key == key), None)
    if video is None:
        raise ValueError(f"{jhmdb.root}: no video {key!r} in split {split}")
    pred = read_prediction(Path(results) / f"{key}.npy")
    gt = jhmdb.joints(video)
    frames = []
    for t, path in enumerate(jhmdb.frame_paths(video)[: pred.shape[2]]):
        image = read_image(path)
        height, width = image.shape[:2]
        px = np.stack([pred[0, :, t] / grid_size * width, pred[1, :, t] / grid_size * height])
        panel = draw_keypoints(image, px, SKELETON, visible=pred[0, :, t] >= 0)
        if with_ground_truth and t < gt.shape[2]:
            panel = side_by_side(panel, draw_keypoints(image, gt[:, :, t], SKELETON))
        frames.append(panel)
    return frames


def vip_overlay_frames(root: str | Path, results: str | Path, video: str, subset: str = "val",
                       with_ground_truth: bool = True) -> list[np.ndarray]:
    """Each frame with its propagated parts (left) and, optionally, the ground truth (right)."""
    from .data.vip import VipSet

    vip = VipSet(root, subset)
    frames = []
    for path in vip.frame_paths(video):
        pred_path = Path(results) / video / f"{path.stem}.png"
        if not pred_path.exists():
            continue
        image = read_image(path)
        panel = overlay_labels(image, read_indexed_png(pred_path))
        gt_path = vip.annotation_path(video, path.name)
        if with_ground_truth and gt_path.exists():
            panel = side_by_side(panel, overlay_labels(image, vip.read_annotation(gt_path)))
        frames.append(panel)
    return frames
