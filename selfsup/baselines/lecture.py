"""The contrast: hand-made invariances and colourisation against the contrastive random walk.

Every encoder (a checkpoint of any method, the random encoder, raw pixels) is scored on:

- label propagation (the same `selfsup.propagate` code and official metrics as CRW: DAVIS J&F,
  JHMDB PCK, VIP mIoU), optionally on the first few videos of each set;
- two linear probes on frozen features, where the label is what an augmentation family throws
  away: orientation (a grating at 0/45/90/135 degrees laid over the crop; a horizontal flip swaps
  45 and 135) and colour (a gray crop tinted with one of K hues). Crops come from the training
  clips, split by video;
- retrieval of object instances in the synthetic DAVIS set, where identity is known: the first
  crop of each object is the query, every other crop of every object the collection;
  precision@k of the Exemplar-SVM ranking against the cosine ranking.

`render_table` lays the results out as `reports/tables/lecture-contrast.md`.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from .augment import hsv_to_rgb
from .models import FramePool
from .retrieval import (DescriptorConfig, ExemplarSVMConfig, describe, encode_collection, mean_precision_at_k,
                        query_jitter, rank_cosine, rank_esvm, read_images)

__all__ = ["LectureConfig", "propagation_metrics", "ProbeTask", "probe_tasks", "linear_probe", "probe_metrics",
           "RetrievalSet", "write_object_crops", "retrieval_metrics", "render_table", "identity_of",
           "grating_task", "tint_task", "split_videos"]

log = logging.getLogger(__name__)

FeatureExtractor = Callable[[torch.Tensor], torch.Tensor]
SET_FOLDERS = {"davis": "DAVIS", "jhmdb": "jhmdb", "vip": "vip"}


@dataclass(frozen=True)
class LectureConfig:
    sets: tuple[str, ...] = ("davis", "jhmdb", "vip")
    videos: int = 0                       # first N videos of each set (0 = all)
    probe_size: int = 48
    probe_train: int = 256                # crops per probe task (training videos)
    probe_test: int = 128                 # crops per probe task (held-out videos)
    probe_test_fraction: float = 0.25     # share of videos held out for the probes
    colours: int = 6
    retrieval_size: int = 64
    retrieval_per_object: int = 6
    retrieval_min_pixels: int = 100
    esvm_jitter: int = 8
    top_k: tuple[int, ...] = (1, 5)
    grid: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "sets", tuple(self.sets))
        object.__setattr__(self, "top_k", tuple(int(k) for k in self.top_k))
        unknown = [s for s in self.sets if s not in SET_FOLDERS]
        if unknown:
            raise ValueError(f"unknown evaluation set {unknown[0]!r}; expected some of {', '.join(SET_FOLDERS)}")
        if self.colours < 2:
            raise ValueError(f"colours must be >= 2, got {self.colours}")
        if not 0 < self.probe_test_fraction < 1:
            raise ValueError(f"probe_test_fraction must lie in (0, 1), got {self.probe_test_fraction}")
        if self.retrieval_per_object < 2:
            raise ValueError("retrieval_per_object must be >= 2 (a query and at least one match)")


# ------------------------------------------------------------------------------------------------
# Propagation
# ------------------------------------------------------------------------------------------------

def propagation_metrics(extractor: FeatureExtractor, data: str | Path, out: str | Path, sets: Sequence[str],
                        *, videos: int = 0, overrides: Mapping[str, Any] | None = None,
                        crop_sizes: Mapping[str, int] | None = None, label_resize_interp: str = "linear",
                        device: str | torch.device = "cpu", progress: bool = False) -> dict[str, dict[str, float]]:
    """Propagate on each set (the first `videos` videos, 0 = all) into `<out>/<set>/` and score it.

    `data` holds DAVIS/, jhmdb/ and vip/ (the synthetic world's layout); `overrides` are
    `PropagationConfig` fields (context, topk, radius, temperature) applied on top of each set's
    protocol; `crop_sizes` the square input size per set (-1 = native; default: the protocol's).
    """
    from .. import propagate as prop
    from ..data.davis import DavisSet
    from ..data.jhmdb import JhmdbSet, read_prediction
    from ..metrics import evaluate_davis, evaluate_vip
    from ..metrics.pck import PckAccumulator, decode_size, pck_distances

    data, out = Path(data), Path(out)
    overrides = dict(overrides or {})
    limit = videos if videos > 0 else None
    results: dict[str, dict[str, float]] = {}
    for name in sets:
        root = data / SET_FOLDERS[name]
        config = prop.protocol(name, **overrides)
        crop = (crop_sizes or {}).get(name, prop.PROTOCOLS[name]["crop_size"])
        if name == "davis":
            seqs = DavisSet(root).sequences[:limit]
            prop.propagate_davis(extractor, root, out / name, config, sequences=seqs, crop_size=crop, device=device,
                                 progress=progress)
            s = evaluate_davis(root, out / name, sequences=seqs).summary()
            results[name] = {k: float(s[k]) for k in ("J&F-Mean", "J-Mean", "F-Mean")}
        elif name == "jhmdb":
            jhmdb = JhmdbSet(root)
            chosen = jhmdb.videos[:limit]
            prop.propagate_jhmdb(extractor, root, out / name, config, videos=[v.key for v in chosen],
                                 crop_size=crop, device=device, progress=progress)
            acc = PckAccumulator()
            for video in chosen:            # the official PCK over the chosen videos only
                width, height = decode_size(jhmdb.frame_paths(video)[0])
                acc.add(pck_distances(read_prediction(out / name / f"{video.key}.npy"), jhmdb.joints(video),
                                      width, height, grid_size=crop / 8))
            results[name] = {k: float(v) for k, v in acc.summary((0.1, 0.2)).items() if k.startswith("PCK@")}
        else:
            from ..data.vip import VipSet

            names = VipSet(root).videos[:limit]
            prop.propagate_vip(extractor, root, out / name, config, videos=names, crop_size=crop,
                               label_resize_interp=label_resize_interp, device=device, progress=progress)
            results[name] = {"mIoU": float(evaluate_vip(root, out / name, videos=names)["mIoU"])}
    return results


# ------------------------------------------------------------------------------------------------
# Linear probes: orientation and colour
# ------------------------------------------------------------------------------------------------

@dataclass
class ProbeTask:
    name: str
    classes: int
    train_x: torch.Tensor
    train_y: np.ndarray
    test_x: torch.Tensor
    test_y: np.ndarray

    @property
    def chance(self) -> float:
        return 100.0 / self.classes


def split_videos(n_videos: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) video indices: a seeded permutation, `test_fraction` of them held out (>= 1 each)."""
    if n_videos < 2:
        raise ValueError(f"need at least 2 videos to hold some out, got {n_videos}")
    order = np.random.default_rng(seed).permutation(n_videos)
    n_test = min(n_videos - 1, max(1, int(round(test_fraction * n_videos))))
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def random_crops(pool: FramePool, n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    frames = pool.sample(n, generator)
    _, _, h, w = frames.shape
    if size > min(h, w):
        raise ValueError(f"probe crops of {size} pixels do not fit in {h}x{w} frames")
    ys = torch.randint(h - size + 1, (n,), generator=generator).tolist()
    xs = torch.randint(w - size + 1, (n,), generator=generator).tolist()
    return torch.stack([frames[i, :, y:y + size, x:x + size] for i, (y, x) in enumerate(zip(ys, xs))])


def grating_task(images: torch.Tensor, labels: np.ndarray, orientations: int = 4, period: float = 6.0,
                 phases: np.ndarray | None = None) -> torch.Tensor:
    """Image i modulated by a sinusoidal grating at labels[i] x 180 / orientations degrees (0 = vertical
    bars, angles counter-clockwise on screen), `period` pixels, phase `phases[i]` (radians).

    A horizontal flip maps orientation a to 180 - a (45 <-> 135 degrees): features made invariant to
    flips cannot tell those two apart.
    """
    n, _, h, w = images.shape
    theta = torch.as_tensor(np.asarray(labels), dtype=torch.float64) * math.pi / orientations
    phi = torch.zeros(n, dtype=torch.float64) if phases is None else torch.as_tensor(phases, dtype=torch.float64)
    ys = torch.arange(h, dtype=torch.float64).view(1, h, 1) - (h - 1) / 2
    xs = torch.arange(w, dtype=torch.float64).view(1, 1, w) - (w - 1) / 2
    # y points down: the wave vector (cos a, -sin a) turns counter-clockwise on screen with a
    proj = xs * torch.cos(theta).view(n, 1, 1) - ys * torch.sin(theta).view(n, 1, 1)
    grating = 0.5 + 0.5 * torch.sin(2 * math.pi * proj / period + phi.view(n, 1, 1))
    return (images * (0.35 + 0.65 * grating.unsqueeze(1)).to(images.dtype)).clamp(0, 1)


def tint_task(images: torch.Tensor, labels: np.ndarray, colours: int) -> torch.Tensor:
    """Image i as gray levels tinted with hue labels[i] / colours (saturation 0.7)."""
    hues = torch.arange(colours, dtype=torch.float32) / colours
    tints = hsv_to_rgb(torch.stack([hues, torch.full_like(hues, 0.7), torch.ones_like(hues)], 1)
                       .view(colours, 3, 1, 1))
    luma = (images * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    return (luma * tints[torch.as_tensor(labels, dtype=torch.long)]).clamp(0, 1)


def probe_tasks(cache: Any, config: LectureConfig) -> list[ProbeTask]:
    """The orientation and colour tasks on crops of the clip cache (train and test videos apart)."""
    train_v, test_v = split_videos(len(cache.videos), config.probe_test_fraction, config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    pools = FramePool.from_cache(cache, train_v), FramePool.from_cache(cache, test_v)
    tasks = []
    for name, classes in (("orientation", 4), ("colour", config.colours)):
        xs, ys = [], []
        for pool, n in zip(pools, (config.probe_train, config.probe_test)):
            crops = random_crops(pool, n, config.probe_size, generator)
            labels = rng.integers(classes, size=n)
            if name == "orientation":
                xs.append(grating_task(crops, labels, classes, phases=rng.uniform(0, 2 * math.pi, size=n)))
            else:
                xs.append(tint_task(crops, labels, classes))
            ys.append(labels)
        tasks.append(ProbeTask(name, classes, xs[0], ys[0], xs[1], ys[1]))
    return tasks


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                 c: float = 1.0) -> float:
    """Test accuracy (percent) of a logistic-regression classifier on standardised features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
    clf.fit(train_x, train_y)
    return 100.0 * float((clf.predict(test_x) == test_y).mean())


def probe_metrics(extractor: FeatureExtractor, tasks: Sequence[ProbeTask], grid: int = 1) -> dict[str, float]:
    """Linear-probe accuracy (percent) of frozen, pooled features on every task."""
    return {t.name: linear_probe(describe(extractor, t.train_x, grid), t.train_y,
                                 describe(extractor, t.test_x, grid), t.test_y) for t in tasks}


# ------------------------------------------------------------------------------------------------
# Retrieval of object instances
# ------------------------------------------------------------------------------------------------

def identity_of(path: str | Path) -> str:
    """`<seq>__obj<k>__<frame>.png` -> `<seq>__obj<k>`."""
    return Path(path).stem.rsplit("__", 1)[0]


@dataclass
class RetrievalSet:
    queries: list[Path]
    collection: Path
    identities: dict[str, int] = field(default_factory=dict)     # identity -> crops in the collection


def _square_crop(image: np.ndarray, box: tuple[int, int, int, int], margin: float, size: int) -> np.ndarray:
    from PIL import Image

    y0, x0, y1, x1 = box
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
    half = max(y1 - y0, x1 - x0) * (1 + margin) / 2
    top, left = int(math.floor(cy - half)), int(math.floor(cx - half))
    side = max(1, int(math.ceil(2 * half)))
    h, w = image.shape[:2]
    pad = max(0, -top, -left, top + side - h, left + side - w)
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    patch = padded[top + pad: top + pad + side, left + pad: left + pad + side]
    return np.asarray(Image.fromarray(patch).resize((size, size), Image.BILINEAR))


def write_object_crops(davis_root: str | Path, out: str | Path, config: LectureConfig) -> RetrievalSet:
    """Crops of every object of every DAVIS sequence (`retrieval_per_object` frames spread over the
    sequence, square boxes around the mask, 10 % margin): the first crop of each object goes to
    `<out>/queries/`, the others to `<out>/collection/`. Objects with no match are skipped."""
    from PIL import Image

    from ..data.davis import DavisSet, read_image
    from ..io import atomic_dir

    davis = DavisSet(davis_root)
    crops: dict[str, list[tuple[str, np.ndarray]]] = {}
    for seq in davis.sequences:
        frames = davis.frame_paths(seq)
        annotations = davis.annotation_paths(seq)
        ids = [int(v) for v in np.unique(davis.read_annotation(annotations[0])) if v != 0]
        picks = np.unique(np.round(np.linspace(0, len(annotations) - 1, config.retrieval_per_object)).astype(int))
        for obj in ids:
            for t in picks:
                mask = davis.read_annotation(annotations[t]) == obj
                if mask.sum() < config.retrieval_min_pixels:
                    continue
                ys, xs = np.nonzero(mask)
                image = read_image(frames[t])
                crop = _square_crop(image, (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1), 0.1,
                                    config.retrieval_size)
                crops.setdefault(f"{seq}__obj{obj}", []).append((annotations[t].stem, crop))
    out = Path(out)
    identities: dict[str, int] = {}
    with atomic_dir(out) as tmp:
        (tmp / "queries").mkdir()
        (tmp / "collection").mkdir()
        for identity, items in crops.items():
            if len(items) < 2:
                continue
            for i, (frame, crop) in enumerate(items):
                folder = "queries" if i == 0 else "collection"
                Image.fromarray(crop).save(tmp / folder / f"{identity}__{frame}.png")
            identities[identity] = len(items) - 1
    if not identities:
        raise ValueError(f"{davis_root}: no object visible in two or more frames; nothing to retrieve")
    queries = sorted((out / "queries").glob("*.png"))
    return RetrievalSet(queries, out / "collection", identities)


def retrieval_metrics(extractor: FeatureExtractor, rset: RetrievalSet, config: LectureConfig, *, model_id: str,
                      cache_dir: str | Path | None = None, svm: ExemplarSVMConfig = ExemplarSVMConfig()
                      ) -> dict[str, dict[str, float]]:
    """Mean precision@k over the queries, Exemplar-SVM and cosine rankings of the collection."""
    desc_cfg = DescriptorConfig(size=config.retrieval_size, grid=config.grid)
    files, collection, _ = encode_collection(extractor, rset.collection, model_id=model_id, config=desc_cfg,
                                             cache_dir=cache_dir)
    labels = np.array([identity_of(p) for p in files])
    query_images = read_images(rset.queries, config.retrieval_size)
    queries = describe(extractor, query_images, config.grid)
    rankings: dict[str, list[np.ndarray]] = {"esvm": [], "cosine": []}
    relevance = []
    for i, path in enumerate(rset.queries):
        jitter = query_jitter(query_images[i], config.esvm_jitter, seed=config.seed + i)
        extra = describe(extractor, jitter, config.grid) if len(jitter) else None
        rankings["esvm"].append(rank_esvm(queries[i], collection, extra, svm)[0])
        rankings["cosine"].append(rank_cosine(queries[i], collection)[0])
        relevance.append(labels == identity_of(path))
    return {method: {f"P@{k}": 100.0 * mean_precision_at_k(orders, relevance, k) for k in config.top_k}
            for method, orders in rankings.items()}


# ------------------------------------------------------------------------------------------------
# The table
# ------------------------------------------------------------------------------------------------

MODEL_LABELS = {
    "pixels": "raw pixels (stride-8 average)",
    "random": "random encoder",
    "exemplar": "Exemplar-CNN (surrogate classes)",
    "simclr": "SimCLR (NT-Xent, 2 views)",
    "colorization": "colourisation (Vondrick et al.)",
    "crw": "CRW (contrastive random walk)",
}


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def _get(d: Mapping[str, Any], *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, Mapping) or k not in d:
            return None
        d = d[k]
    return d


def render_table(results: Mapping[str, Any]) -> str:
    """Markdown of the `baselines` metrics block (see stages/baselines.py for its layout)."""
    s = results.get("settings", {})
    models = results.get("models", {})
    ks = s.get("top_k", [1, 5])
    videos = s.get("videos", 0)
    lines = ["# Lecture contrast: hand-made invariances, colourisation and the contrastive random walk", "",
             "Every encoder is the stride-8 ResNet-18 variant (width multiplier in the first table), trained "
             "on the same clips and scored by the same label propagation and metrics as CRW; features are "
             "layer3 maps. Embedded synthetic default: small models, few steps; the numbers show the pipeline "
             "working end to end, not the papers' values.", ""]
    subset = "every video" if not videos else f"the first {videos} video(s) of each set"
    lines += ["## Label propagation", "",
              f"Propagation on {subset}; DAVIS J&F / J / F ×100, JHMDB PCK and VIP mIoU in percent.", "",
              "| model | width | DAVIS J&F | J | F | JHMDB PCK@0.1 | PCK@0.2 | VIP mIoU |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, m in models.items():
        p = m.get("propagation", {})
        dv = [100 * v if v is not None else None for v in
              (_get(p, "davis", "J&F-Mean"), _get(p, "davis", "J-Mean"), _get(p, "davis", "F-Mean"))]
        width = m.get("width")
        lines.append(f"| {MODEL_LABELS.get(name, name)} | {'–' if width is None else f'{width:g}'} | "
                     f"{_fmt(dv[0])} | {_fmt(dv[1])} | {_fmt(dv[2])} | "
                     f"{_fmt(_get(p, 'jhmdb', 'PCK@0.1'))} | {_fmt(_get(p, 'jhmdb', 'PCK@0.2'))} | "
                     f"{_fmt(_get(p, 'vip', 'mIoU'))} |")
    chance = results.get("chance", {})
    lines += ["", "## What the features keep: linear probes on frozen features", "",
              "Crops of held-out training videos; the label is what the augmentations discard: the "
              "orientation of a grating laid over the crop (0/45/90/135°; a horizontal flip swaps 45° and "
              "135°) or the crop's colour (a gray crop tinted with one of "
              f"{s.get('colours', '?')} hues). Accuracy in percent; chance: orientation "
              f"{_fmt(chance.get('orientation'))}, colour {_fmt(chance.get('colour'))}.", "",
              "| model | orientation | colour |", "|---|---:|---:|"]
    for name, m in models.items():
        lines.append(f"| {MODEL_LABELS.get(name, name)} | {_fmt(_get(m, 'probe', 'orientation'))} | "
                     f"{_fmt(_get(m, 'probe', 'colour'))} |")
    r = results.get("retrieval", {})
    lines += ["", "## Instance retrieval: Exemplar-SVM against cosine nearest neighbours", "",
              f"{r.get('queries', '?')} queries (the first crop of each synthetic DAVIS object), a collection of "
              f"{r.get('collection', '?')} crops of the same objects in other frames; precision@k in percent.", "",
              "| model | " + " | ".join(f"ESVM P@{k}" for k in ks) + " | " + " | ".join(f"cosine P@{k}" for k in ks) + " |",
              "|---|" + "---:|" * (2 * len(ks))]
    for name, m in models.items():
        cells = [_fmt(_get(m, "retrieval", "esvm", f"P@{k}")) for k in ks] + \
                [_fmt(_get(m, "retrieval", "cosine", f"P@{k}")) for k in ks]
        lines.append(f"| {MODEL_LABELS.get(name, name)} | " + " | ".join(cells) + " |")
    ablation = results.get("ablation", {})
    if ablation:
        k = ks[-1]
        lines += ["", "## Augmentation leave-one-out (SimCLR)", "",
                  "SimCLR trained with the whole family and with one op left out at a time (same steps, same "
                  f"seed). DAVIS J&F ×100; probes and cosine P@{k} in percent; the last columns are the "
                  "training loss and view-matching accuracy at the end of training.", "",
                  f"| augmentations | DAVIS J&F | orientation | colour | cosine P@{k} | final loss | view acc. |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for label, m in ablation.items():
            jf = _get(m, "propagation", "davis", "J&F-Mean")
            acc = _get(m, "training", "accuracy")
            lines.append(f"| {label} | {_fmt(100 * jf if jf is not None else None)} | "
                         f"{_fmt(_get(m, 'probe', 'orientation'))} | {_fmt(_get(m, 'probe', 'colour'))} | "
                         f"{_fmt(_get(m, 'retrieval', 'cosine', f'P@{k}'))} | "
                         f"{_fmt(_get(m, 'training', 'loss'), 3)} | "
                         f"{_fmt(100 * acc if acc is not None else None)} |")
    training = {n: m.get("training") for n, m in models.items() if m.get("training")}
    if training:
        lines += ["", "## Training", "", "| model | steps | final loss | final accuracy | seconds |",
                  "|---|---:|---:|---:|---:|"]
        for name, t in training.items():
            lines.append(f"| {MODEL_LABELS.get(name, name)} | {t.get('steps', '–')} | {_fmt(t.get('loss'), 3)} | "
                         f"{_fmt(100 * t['accuracy'] if t.get('accuracy') is not None else None)} | "
                         f"{_fmt(t.get('seconds'), 0)} |")
    return "\n".join(lines) + "\n"
