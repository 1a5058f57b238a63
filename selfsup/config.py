"""Typed parameters: one dataclass per `params.yaml` section.

`load_params("params.yaml")` returns a `Params` whose sections are frozen dataclasses. Every
value is checked against its declared type and range; an unknown key, a wrong type or an
out-of-range value raises `ParamsError` naming the file, the dotted key and what is accepted.

Sections declare their fields with `param(default, ge=..., le=..., choices=..., help=...)`.
The library's own functions keep the paper's defaults; `params.yaml` holds the small values of
the embedded default, and named profiles (`profiles/<name>.yaml`) override it for paper-scale work.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml

__all__ = [
    "ParamsError", "param", "load_params", "load_section", "parse_section", "Params",
    "params_hash", "as_dict", "merge_overrides",
]


class ParamsError(ValueError):
    """A params file holds a key or value that the typed sections do not accept."""


def param(default: Any = dataclasses.MISSING, *, ge: float | None = None, gt: float | None = None,
          le: float | None = None, lt: float | None = None, choices: typing.Sequence | None = None,
          help: str = "") -> Any:
    """A dataclass field with a validated range or set of accepted values."""
    meta = {"ge": ge, "gt": gt, "le": le, "lt": lt, "choices": tuple(choices) if choices else None,
            "help": help}
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda d=default: typing.cast(Any, type(d)(d)), metadata=meta)
    return field(default=default, metadata=meta)


# --------------------------------------------------------------------------------------------
# Validation machinery
# --------------------------------------------------------------------------------------------

def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        args = typing.get_args(tp)
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        k, v = typing.get_args(tp)
        return f"mapping of {_type_name(k)} to {_type_name(v)}"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return f"mapping ({tp.__name__})"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str, file: str) -> Any:
    """Return `value` converted to `tp`, or raise ParamsError naming `key` in `file`."""
    def fail() -> typing.NoReturn:
        raise ParamsError(f"{file}: {key} = {value!r} is not accepted: expected {_type_name(tp)}")

    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key, file)
            except ParamsError as exc:
                errors.append(exc)
        fail()
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        fail()
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            fail()
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ParamsError(f"{file}: {key} = {value!r} is not accepted: expected "
                                  f"{len(args)} values")
            return tuple(_coerce(v, a, f"{key}[{i}]", file) for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        out = [_coerce(v, item, f"{key}[{i}]", file) for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, Mapping):
            fail()
        ktp, vtp = typing.get_args(tp)
        return {_coerce(k, ktp, key, file): _coerce(v, vtp, f"{key}.{k}", file) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            fail()
        return parse_section(tp, value, file=file, prefix=key)
    if tp is bool:
        if isinstance(value, bool):
            return value
        fail()
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        fail()
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML reads "1e-4" as a string
            try:
                return float(value)
            except ValueError:
                fail()
        fail()
    if tp is str:
        if isinstance(value, str):
            return value
        fail()
    if isinstance(value, tp):
        return value
    fail()


def _check_range(value: Any, meta: Mapping[str, Any], key: str, file: str) -> None:
    if value is None:
        return
    values = value if isinstance(value, (list, tuple)) else [value]
    for v in values:
        choices = meta.get("choices")
        if choices is not None and v not in choices:
            raise ParamsError(f"{file}: {key} = {v!r} is not accepted: expected one of "
                              f"{', '.join(map(repr, choices))}")
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        bounds = [("ge", lambda a, b: a >= b, ">="), ("gt", lambda a, b: a > b, ">"),
                  ("le", lambda a, b: a <= b, "<="), ("lt", lambda a, b: a < b, "<")]
        for name, ok, sym in bounds:
            bound = meta.get(name)
            if bound is not None and not ok(v, bound):
                raise ParamsError(f"{file}: {key} = {v!r} is out of range: expected a value {sym} {bound}")


def parse_section(cls: type, data: Mapping[str, Any] | None, *, file: str = "params.yaml",
                  prefix: str = "") -> Any:
    """Build dataclass `cls` from a mapping, validating every key and value."""
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise ParamsError(f"{file}: {prefix or 'top level'} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ParamsError(f"{file}: unknown key {where}{unknown[0]}; accepted keys under "
                          f"{prefix or 'the top level'}: {', '.join(sorted(known))}")
    kwargs = {}
    for name, f in known.items():
        key = f"{prefix}.{name}" if prefix else name
        if name in data:
            value = _coerce(data[name], hints[name], key, file)
            _check_range(value, f.metadata, key, file)
            kwargs[name] = value
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ParamsError(f"{file}: missing required key {key} ({_type_name(hints[name])})")
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        try:
            validate()
        except ValueError as exc:
            raise ParamsError(f"{file}: {prefix}: {exc}") from None
    return obj


def as_dict(obj: Any) -> Any:
    """Plain nested dict/list form of a section (for logging and hashing)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: as_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [as_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: as_dict(v) for k, v in obj.items()}
    return obj


def params_hash(obj: Any) -> str:
    """Stable short hash of a section's values."""
    blob = json.dumps(as_dict(obj), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


# --------------------------------------------------------------------------------------------
# Sections. Each stage owns one; field defaults here are the embedded default's values only
# where the library's paper defaults would not fit a 2-core CPU run.
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DownloadParams:
    datasets: list[str] = param(["synthetic"], help="data sets to fetch or generate (registry names)")
    root: str = param("data/raw", help="where data sets land: <root>/<name>/")
    mirror: str | None = param(None, help="local folder or base URL replacing the public hosts "
                                          "(also SELFSUP_MIRROR)")
    retries: int = param(5, ge=0, le=100, help="retries per file after a network error or a 5xx answer")
    timeout_s: float = param(60.0, gt=0, help="socket timeout per request")
    backoff_s: float = param(1.0, ge=0, help="first retry delay; doubles on every retry (at most 60 s)")
    cache: str = param("data/downloads", help="archives and partial downloads (kept outside the stage's "
                                              "output, which DVC clears before a run)")
    lock: str = param("registry.lock.json", help="SHA-256 of every file at its first download, checked later")
    keep_archives: bool = param(True, help="keep verified archives in the cache (re-extraction needs no download)")


@dataclass(frozen=True)
class SyntheticParams:
    """The embedded synthetic world (`selfsup.data.synthetic.generate`); every size is a param."""
    train_videos: int = param(64, ge=1, help="training videos (class folders: motion type or action)")
    train_figures: float = param(0.0, ge=0, le=1, help="share of training videos that show a person "
                                                       "doing an action (walk, run, wave, jump), as "
                                                       "Kinetics does; the rest are object scenes")
    train_frames: int = param(48, ge=2)
    train_size: int = param(128, ge=32, le=1024, help="training video side (square, even for H.264)")
    fps: int = param(24, ge=1, le=120)
    objects_min: int = param(2, ge=1, le=20, help="textured objects per training video / DAVIS sequence")
    objects_max: int = param(4, ge=1, le=20)
    camouflage: float = param(0.0, ge=0, le=1, help="chance that an object of a training video or DAVIS "
                                                    "sequence wears the background's colours")
    davis_sequences: int = param(6, ge=1)
    davis_frames: int = param(24, ge=3)
    davis_height: int = param(240, ge=32)
    davis_width: int = param(427, ge=32)
    jhmdb_videos: int = param(6, ge=1)
    jhmdb_frames: int = param(20, ge=2)
    jhmdb_height: int = param(240, ge=64, help="the real JHMDB is 320x240")
    jhmdb_width: int = param(320, ge=48)
    vip_videos: int = param(4, ge=1)
    vip_frames: int = param(12, ge=2)
    vip_height: int = param(240, ge=64)
    vip_width: int = param(160, ge=48)
    domain_train: int = param(200, ge=1, help="unpaired images per domain (trainA, trainB)")
    domain_test: int = param(40, ge=1, help="test images per domain (testA, testB)")
    domain_size: int = param(64, ge=16, le=1024)
    domain_shapes_max: int = param(3, ge=1, le=8, help="shapes per unpaired image (1..this)")
    domain_stripes: list[float] = param([0.12, 0.22], help="B stripe period as a fraction of the "
                                                           "shape's diameter: [low, high]")
    domain_texture: float = param(0.0, ge=0, le=1, help="contrast of the A shapes' own fine texture "
                                  "(0: flat colour); the conv generator hangs B's stripes on it")
    domain_background_octaves: int = param(4, ge=1, le=6, help="noise octaves of the unpaired "
                                           "images' background (fewer: smoother)")
    domain_palette_mix: float = param(0.3, ge=0, le=1, help="chance that a background blends random "
                                      "colours into its earthy greens and browns")
    domain_shape_hues: list[float] = param([0.0, 1.0], help="hue range of the A shapes: [low, high] "
                                           "on the colour wheel (the backgrounds keep to 0.08-0.38)")
    pan_speed: float = param(0.6, ge=0, le=8, help="background pan, pixels per frame at 128 px")
    lighting: float = param(0.08, ge=0, le=0.5, help="amplitude of the slow brightness change")
    photo_fraction: float = param(0.4, ge=0, le=1, help="share of textures cut from skimage photographs")
    jpeg_quality: int = param(90, ge=1, le=100)
    video_crf: int = param(18, ge=0, le=51, help="H.264 constant rate factor of the training videos")

    def validate(self) -> None:
        if self.objects_max < self.objects_min:
            raise ValueError(f"objects_max ({self.objects_max}) < objects_min ({self.objects_min})")
        if self.train_size % 2:
            raise ValueError(f"train_size = {self.train_size} must be even (H.264 stores 4:2:0 colour)")
        if self.train_figures > 0 and self.train_size < 56:
            raise ValueError(f"train_size = {self.train_size} is too small for the person videos of "
                             f"train_figures = {self.train_figures}: need at least 56")
        low_high = self.domain_stripes
        if len(low_high) != 2 or not 0 < low_high[0] <= low_high[1] <= 1:
            raise ValueError(f"domain_stripes = {low_high}: expected [low, high] with 0 < low <= high <= 1")
        hues = self.domain_shape_hues
        if len(hues) != 2 or not 0 <= hues[0] < hues[1] <= 1:
            raise ValueError(f"domain_shape_hues = {hues}: expected [low, high] with 0 <= low < high <= 1")
        for name in ("jhmdb", "vip"):
            h, w = getattr(self, f"{name}_height"), getattr(self, f"{name}_width")
            if h < 64 or w < 48:
                raise ValueError(f"{name}_height x {name}_width = {h}x{w} is too small for the "
                                 f"articulated figures: need at least 64x48")


@dataclass(frozen=True)
class ClipsParams:
    videos: str = param("data/raw/synthetic/videos", help="folder of training videos (class sub-folders allowed)")
    out: str = param("data/clips")
    fps: float = param(8.0, gt=0, help="resampled frame rate")
    short_side: int = param(128, ge=16, help="frames resized so that their short side is this")
    clip_len: int = param(4, ge=2)
    cache_frames: bool = param(True, help="write the uint8 frame cache that training reads")
    extensions: list[str] = param([".mp4", ".avi", ".mkv", ".webm"],
                                  help="video file endings to scan for (case-insensitive)")

    def validate(self) -> None:
        if not self.extensions:
            raise ValueError("extensions is empty: no video would be found")


@dataclass(frozen=True)
class PretrainParams:
    data: str = param("data/clips", help="clip cache written by the clips stage")
    out: str = param("models/crw", help="checkpoint.pt (final weights + config) lands here")
    resume_dir: str = param("models/crw.resume", help="resume state of an interrupted run "
                                                       "(outside the DVC output; removed after success)")
    steps: int = param(150, ge=1)
    batch_size: int = param(8, ge=1, help="global batch (clips); per device = batch_size / processes")
    clip_len: int = param(4, ge=3)
    clips_per_video: int = param(5, ge=1, help="clips drawn per video per epoch")
    lr: float = param(1e-3, gt=0)
    lr_milestones: list[float] = param([0.8], help="fractions of the total steps where lr *= lr_gamma")
    lr_gamma: float = param(0.3, gt=0, le=1)
    temperature: float = param(0.05, gt=0)
    edge_dropout: float = param(0.1, ge=0, lt=1)
    leaky_backward_dropout: bool = param(True, help="backward step also drops the forward step's "
                                                    "edges (published behaviour)")
    include_shortest_cycle: bool = param(False, help="also train on the 0->1->0 cycle")
    walk_start: str = param("first", choices=["first", "all"], help="walks start at frame 0 or at every frame")
    frame_size: int = param(64, ge=16)
    patch_size: int = param(16, ge=8)
    patch_stride: int = param(16, ge=1)
    frame_scale: list[float] = param([0.8, 0.95], help="per-frame RandomResizedCrop area range (published)")
    frame_ratio: list[float] = param([0.7, 1.3], help="per-frame crop aspect-ratio range (published)")
    patch_scale: list[float] = param([0.7, 0.9], help="per-patch jitter crop area range (published)")
    patch_ratio: list[float] = param([0.75, 1.3333333333333333], help="per-patch jitter aspect-ratio range (published)")
    width: float = param(0.25, gt=0, le=4, help="encoder width multiplier (1.0 = ResNet-18)")
    head_depth: int = param(0, ge=0, help="hidden layers of the projection head (0 = one Linear)")
    padding_mode: str = param("reflect", choices=["reflect", "zeros"])
    bn_group_size: int = param(0, ge=0, help="clips per BatchNorm group (0 = the whole per-device batch)")
    checkpoint_every: int = param(50, ge=1)
    log_every: int = param(10, ge=1)
    workers: int = param(0, ge=0)
    threads: int = param(1, ge=0, help="CPU threads per process (0 = PyTorch's default); 1 is fastest "
                                       "on a busy shared machine")
    device: str = param("auto", choices=["auto", "cpu", "cuda"])
    bf16: bool = param(True, help="bf16 autocast for the encoder on GPU (the walk stays fp32)")
    channels_last: bool = param(True)
    compile: bool = param(False, help="torch.compile the encoder")
    distributed: bool = param(False, help="run under torchrun with DDP (also on when WORLD_SIZE > 1)")
    sync_batchnorm: bool = param(False, help="SyncBN across DDP processes (CUDA only)")

    def validate(self) -> None:
        for name in ("frame_scale", "frame_ratio", "patch_scale", "patch_ratio"):
            value = getattr(self, name)
            if len(value) != 2 or not 0 < value[0] <= value[1]:
                raise ValueError(f"{name} = {value}: expected [low, high] with 0 < low <= high")
            if name.endswith("scale") and value[1] > 1:
                raise ValueError(f"{name} = {value}: an area fraction of at most 1")


@dataclass(frozen=True)
class PropagateParams:
    sets: list[str] = param(["davis", "jhmdb", "vip"], choices=["davis", "jhmdb", "vip"])
    models: list[str] = param(["crw", "random", "pixels"], choices=["crw", "random", "pixels", "imagenet"],
                              help="crw: `checkpoint`; random: seeded random init of its architecture; "
                                   "pixels: 8×8-pooled pixels; imagenet: torchvision ResNet-18 `imagenet_weights`")
    data: str = param("data/raw/synthetic", help="folder holding DAVIS/, jhmdb/ and vip/ (or vip/VIP_Fine)")
    checkpoint: str = param("models/crw/checkpoint.pt", help="CRW weights of model `crw`")
    imagenet_weights: str | None = param(None, help="torchvision-layout ResNet-18 file of model `imagenet`")
    out: str = param("outputs/propagate", help="results: <out>/<model>/<set>/ in each set's result format")
    figures: str = param("reports/figures/propagate", help="overlay GIFs: <figures>/<model>/<set>/<video>.gif")
    timing: str = param("reports/propagate.json", help="frames, seconds and frames/s of every run")
    gif_videos: int = param(2, ge=0, help="videos per set and model drawn as GIFs")
    context: int = param(20, ge=0, help="short-term context frames L (official: DAVIS 20, JHMDB 7, VIP 4)")
    topk: int = param(10, ge=1)
    radius: float = param(12.0, gt=0, help="feature-grid cells; short-term keys with distance < radius")
    temperature: float = param(0.05, gt=0)
    davis_crop_size: int = param(-1, ge=-1, help="square input size for DAVIS; -1 = native (official)")
    jhmdb_crop_size: int = param(320, ge=8, help="square input size for JHMDB (official 320)")
    vip_crop_size: int = param(560, ge=8, help="square input size for VIP (official 560)")
    label_resize_interp: str = param("linear", choices=["linear", "nearest"],
                                     help="VIP first-label resize to the crop (official quirk: linear)")
    batch_size: int = param(8, ge=1, help="frames encoded at once")
    device: str = param("auto", choices=["auto", "cpu", "cuda"])


@dataclass(frozen=True)
class TranslateParams:
    modes: list[str] = param(["cut", "fastcut"], choices=["cut", "fastcut"],
                             help="models trained on the unpaired set (SinCUT: `selfsup translate train`)")
    data: str = param("data/raw/synthetic/unaligned", help="CycleGAN layout: trainA/ trainB/ testA/ testB/ "
                                                           "(+ testA_gtB/, testA_masks/ for the scores)")
    out: str = param("models/cut", help="checkpoints: <out>/<mode>/latest.pt, latest_net_{G,D,F}.pth")
    results: str = param("outputs/translate", help="translated testA: <results>/<mode>/<stem>.png")
    figures: str = param("reports/figures/translate", help="input | output | ground-truth grids")
    plots: str = param("reports/plots/translate.csv", help="losses of every mode (dvc plots)")
    image_size: int = param(64, ge=16, help="crop size in training, resize size in test (paper: 256)")
    load_size: int = param(72, ge=16, help="resize before the random crop (paper: 286)")
    ngf: int = param(16, ge=1, help="generator width (paper: 64)")
    ndf: int = param(16, ge=1, help="discriminator width (paper: 64)")
    n_layers_d: int = param(3, ge=1, help="PatchGAN depth: receptive field 16/34/70 px for 1/2/3 "
                                          "(paper: 3, i.e. 70 px on 256-px crops)")
    n_blocks: int = param(9, ge=5, help="residual blocks (NCE layer 16 is block 5)")
    num_patches: int = param(256, ge=1)
    lambda_nce: dict[str, float] = param({"cut": 1.0, "fastcut": 1.0},
                                         help="per-mode λ_NCE (paper: cut 1, fastcut 10; omitted modes: paper)")
    steps_constant: int = param(500, ge=0, help="steps at constant lr (the paper counts epochs)")
    steps_decay: int = param(500, ge=0, help="steps of linear decay to lr/(steps_decay+1)")
    lr: float = param(5e-4, gt=0, help="Adam learning rate (paper: 2e-4)")
    bf16: bool = param(True, help="bf16 autocast and channels_last on GPU (PatchNCE stays fp32)")
    checkpoint_every: int = param(200, ge=1)
    log_every: int = param(20, ge=1)
    image_every: int = param(250, ge=1, help="steps between logged image grids")
    device: str = param("auto", choices=["auto", "cpu", "cuda"])
    parallel_modes: bool = param(True, help="on the CPU, train the modes at once, one process each with "
                                            "an equal share of the cores (small networks use a second "
                                            "core poorly: 1.3x for CUT)")
    eval_threshold: float = param(0.15, gt=0, help="colour distance from the input's background "
                                                   "that counts as foreground (structure score)")
    eval_support: float = param(0.01, ge=0, lt=1, help="shape_iou: a colour shown by at least this "
                                                      "fraction of the output's background is background")
    classifier_steps: int = param(200, ge=1, help="training steps of the A-vs-B appearance classifier")

    def validate(self) -> None:
        if self.load_size < self.image_size:
            raise ValueError(f"load_size ({self.load_size}) < image_size ({self.image_size})")
        if self.steps_constant + self.steps_decay < 1:
            raise ValueError("steps_constant + steps_decay must be at least 1")


@dataclass(frozen=True)
class EvaluateParams:
    out: str = param("reports/metrics.json")
    details: str = param("reports/evaluation", help="per object / joint / class scores: <details>/<set>-<model>.json")
    workers: int = param(1, ge=1, help="processes scoring DAVIS sequences in parallel")


@dataclass(frozen=True)
class ReportParams:
    out: str = param("reports", help="report folder: index.md/.html, tables/, curves/")
    mlflow_url: str = param("http://127.0.0.1:5001", help="MLflow UI that run links point to "
                                                          "(`make ui` serves it)")


# --- test-time learning (selfsup.crw.adapt, selfsup.stream, selfsup.ttt; the `adapt` and `ttt` stages) ---

@dataclass(frozen=True)
class AdaptParams:
    """CRW test-time adaptation (an original design, spec crw.md §7) and the online stream."""
    propagate: bool = param(False, help="also adapt to each video inside the propagate stage (off: the "
                                        "reproduction numbers use the published protocol)")
    checkpoint: str = param("models/crw/checkpoint.pt", help="the CRW that is adapted")
    data: str = param("data/raw/synthetic", help="folder holding DAVIS/ (or the DAVIS folder itself)")
    sequences: list[str] = param([], help="DAVIS val sequences in stream order (empty: all, list order)")
    out: str = param("outputs/test_time", help="predictions: <out>/{frozen,adapted}/davis/<seq>/*.png")
    steps: int = param(5, ge=0, help="Adam steps per video before propagating it")
    lr: float = param(3e-4, gt=0, help="the embedded pretraining lr (published: 1e-4)")
    window: int = param(4, ge=3, help="clip length in frames")
    frame_gap: int = param(3, ge=1, help="frames between clip frames (24 fps video vs 8 fps training clips)")
    batch_size: int = param(2, ge=1, help="clips per step")
    layers: list[str] = param(["all"], choices=["all", "stem", "layer1", "layer2", "layer3", "layer4", "head"],
                              help="parameter groups that are updated")
    batchnorm: str = param("reestimate", choices=["frozen", "train", "reestimate"],
                           help="frozen: running statistics; train: batch statistics, running ones updated; "
                                "reestimate: frozen steps, then statistics recomputed on the video's frames")
    objective: str = param("patches", choices=["patches", "dense"],
                           help="patches: the training loss on the video's frames; dense: walks between "
                                "layer3 cells of whole frames")
    dense_size: int = param(0, ge=0, help="dense: frames resized to this short side (0: as stored)")
    dense_pool: int = param(2, ge=1, help="dense: layer3 cells average-pooled by this factor")
    compare: list[str] = param(["statistics_only"],
                               choices=["statistics_only", "bn_frozen", "bn_train", "bn_reestimate", "dense"],
                               help="also evaluate these variants of the adaptation: statistics_only = no "
                                    "gradient step, BatchNorm statistics re-estimated; bn_* = another "
                                    "BatchNorm mode; dense = the dense objective")
    stream: bool = param(True, help="also run the online test-then-train stream over the sequences")
    stream_steps: int = param(5, ge=0, help="stream: Adam steps on each video after scoring it")
    stream_lr: float = param(3e-4, gt=0)
    stream_state: str = param("outputs/test_time_state/stream.pt",
                              help="stream state, rewritten after every video (a stopped stream resumes)")
    device: str = param("auto", choices=["auto", "cpu", "cuda"])


@dataclass(frozen=True)
class TTTParams:
    """Test-time training with rotation prediction (Sun et al. 2020) on synthetic shape images."""
    out: str = param("models/ttt", help="the jointly trained model: <out>/model.pt")
    classes: int = param(10, ge=2, le=10, help="shape classes (circle, square, triangle, ...)")
    image_size: int = param(32, ge=16, le=256)
    train_images: int = param(2000, ge=10)
    test_images: int = param(100, ge=1, help="test images per shift (the same images under every shift)")
    depth: int = param(8, ge=8, help="ResNet depth 6n+2 (paper: 26)")
    width: int = param(16, ge=1, help="channels of the first group (paper: 16)")
    norm: str = param("group", choices=["group", "batch"], help="paper: GroupNorm")
    groups: int = param(8, ge=1)
    split: str = param("layer2", choices=["layer1", "layer2"], help="last group of the shared encoder")
    epochs: int = param(10, ge=1, help="joint training epochs (paper: 75)")
    batch_size: int = param(16, ge=1, help="paper: 128")
    lr: float = param(0.05, gt=0, help="SGD lr (paper: 0.1)")
    lr_milestones: list[float] = param([0.8, 0.95], help="fractions of the epochs where lr /= 10")
    rotation: str = param("rand", choices=["rand", "expand"], help="rotation labels per training image")
    train_augment: bool = param(False, help="random crops and flips in joint training (paper: on; off "
                                            "learns faster in a short run)")
    shifts: list[str] = param(["gaussian_noise", "impulse_noise", "defocus_blur", "motion_blur", "fog",
                               "brightness", "contrast", "jpeg_compression"],
                              choices=["gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise",
                                       "gaussian_blur", "defocus_blur", "motion_blur", "zoom_blur", "fog",
                                       "brightness", "contrast", "saturate", "pixelate", "jpeg_compression"])
    severities: list[int] = param([5], choices=[1, 2, 3, 4, 5])
    ttt_steps: int = param(5, ge=0, help="standard TTT: SGD steps per test image (paper: 10)")
    ttt_lr: float = param(0.001, gt=0, help="paper: 0.001")
    ttt_batch: int = param(8, ge=1, help="augmented copies per step (paper: 32)")
    online_steps: int = param(1, ge=0, help="online TTT: steps per test image (paper: 1)")
    device: str = param("auto", choices=["auto", "cpu", "cuda"])

    def validate(self) -> None:
        if (self.depth - 2) % 6:
            raise ValueError(f"depth = {self.depth} must be 6n+2 (8, 14, 20, 26, ...)")
        if any(not 0 < m < 1 for m in self.lr_milestones):
            raise ValueError(f"lr_milestones = {self.lr_milestones}: fractions strictly between 0 and 1")


# --- baselines (selfsup.baselines; the `baselines` stage) ---------------------------------------

_BASELINE_OPS = ["crop", "flip", "rotation", "color", "grayscale", "blur", "noise", "cutout"]
_EVAL_SETS = ["davis", "jhmdb", "vip"]


@dataclass(frozen=True)
class BaselinesExemplarParams:
    classes: int = param(128, ge=2, help="surrogate classes = seed patches (the paper: 8000)")
    seed_size: int = param(64, ge=8, help="side of each seed region, clip-cache pixels")
    batch_size: int = param(32, ge=1, help="augmented patches per step")
    steps: int = param(200, ge=1)
    lr: float = param(1e-3, gt=0)


@dataclass(frozen=True)
class BaselinesSimCLRParams:
    batch_size: int = param(32, ge=2, help="images per step, two views each (the paper: 256-4096)")
    temperature: float = param(0.2, gt=0, help="NT-Xent temperature (the paper: 0.1 on ImageNet)")
    steps: int = param(200, ge=1)
    lr: float = param(1e-3, gt=0)


@dataclass(frozen=True)
class BaselinesColorizationParams:
    clusters: int = param(16, ge=2, help="k-means colour clusters in the ab plane (the paper: 16)")
    kmeans_pixels: int = param(20000, ge=100, help="training pixels the clusters are fitted on")
    frame_size: int = param(64, ge=16, help="frame side at training (the paper: 256)")
    batch_size: int = param(4, ge=1, help="clips per step, each 3 reference frames + 1 target")
    temperature: float = param(1.0, gt=0, help="attention softmax temperature (the paper: 1)")
    steps: int = param(200, ge=1)
    lr: float = param(1e-3, gt=0)


@dataclass(frozen=True)
class BaselinesEvalParams:
    sets: list[str] = param(["davis", "jhmdb", "vip"], choices=_EVAL_SETS,
                            help="propagation sets every model is scored on")
    videos: int = param(2, ge=0, help="first N videos of each set (0 = all)")
    ablation_sets: list[str] = param(["davis"], choices=_EVAL_SETS,
                                     help="propagation sets of the leave-one-out models")
    probe_size: int = param(48, ge=8, help="side of the probe crops")
    probe_train: int = param(256, ge=2, help="probe crops from training videos, per task")
    probe_test: int = param(128, ge=1, help="probe crops from held-out videos, per task")
    colours: int = param(6, ge=2, help="tint classes of the colour probe")
    retrieval_size: int = param(64, ge=8, help="side of the object crops")
    retrieval_per_object: int = param(6, ge=2, help="frames per DAVIS object (the first is the query)")
    esvm_jitter: int = param(8, ge=0, help="jittered copies of the query added as positives")
    top_k: list[int] = param([1, 5], help="precision@k cut-offs")
    grid: int = param(2, ge=1, le=8, help="descriptors (probes, retrieval): layer3 map average pooled "
                                         "to grid x grid")

    def validate(self) -> None:
        if not self.top_k or min(self.top_k) < 1:
            raise ValueError(f"top_k must list values >= 1, got {self.top_k}")


@dataclass(frozen=True)
class BaselinesParams:
    out: str = param("models/baselines", help="checkpoints: <out>/<method>/checkpoint.pt, <out>/ablation/")
    results: str = param("outputs/baselines", help="propagation results and retrieval crops")
    data: str = param("data/raw/synthetic", help="folder holding DAVIS/, jhmdb/, vip/")
    clips: str = param("data/clips", help="clip cache the methods train on")
    crw_checkpoint: str = param("models/crw/checkpoint.pt", help="CRW model compared against")
    methods: list[str] = param(["exemplar", "simclr", "colorization"],
                               choices=["exemplar", "simclr", "colorization"])
    augmentations: list[str] = param(["crop", "flip", "color", "grayscale", "blur"], choices=_BASELINE_OPS,
                                     help="SimCLR's augmentation family (also the leave-one-out list)")
    color_strength: float = param(0.5, ge=0, le=2.5, help="SimCLR's colour-distortion strength s: brightness, "
                                  "contrast, saturation 0.8 s, hue 0.2 s (paper: 1 on ImageNet, 0.5 on CIFAR-10)")
    ablation: bool = param(True, help="train SimCLR once per left-out augmentation")
    image_size: int = param(32, ge=8, help="side of the augmented views / patches")
    width: float = param(0.125, gt=0, le=4, help="encoder width multiplier (1.0 = ResNet-18)")
    device: str = param("auto", choices=["auto", "cpu", "cuda"])
    threads: int = param(1, ge=0, help="CPU threads of PyTorch (0 = its default); small convolutions "
                                       "run best on one thread per process")
    exemplar: BaselinesExemplarParams = param(BaselinesExemplarParams())
    simclr: BaselinesSimCLRParams = param(BaselinesSimCLRParams())
    colorization: BaselinesColorizationParams = param(BaselinesColorizationParams())
    evaluate: BaselinesEvalParams = param(BaselinesEvalParams())

    def validate(self) -> None:
        if len(set(self.augmentations)) != len(self.augmentations):
            raise ValueError(f"augmentations lists an op twice: {self.augmentations}")
        missing = [s for s in self.evaluate.ablation_sets if s not in self.evaluate.sets]
        if missing:
            raise ValueError(f"evaluate.ablation_sets must be among evaluate.sets; {missing[0]!r} is not")
        if self.ablation and "simclr" not in self.methods:
            raise ValueError("ablation needs simclr among the methods (it ablates SimCLR's augmentations)")
        if self.exemplar.seed_size < self.image_size // 2:
            raise ValueError(f"exemplar.seed_size ({self.exemplar.seed_size}) is too small for "
                             f"image_size {self.image_size}")


@dataclass(frozen=True)
class Params:
    seed: int = param(0, ge=0, help="drives every random choice of every stage")
    download: DownloadParams = param(DownloadParams())
    synthetic: SyntheticParams = param(SyntheticParams())
    clips: ClipsParams = param(ClipsParams())
    pretrain: PretrainParams = param(PretrainParams())
    propagate: PropagateParams = param(PropagateParams())
    translate: TranslateParams = param(TranslateParams())
    evaluate: EvaluateParams = param(EvaluateParams())
    report: ReportParams = param(ReportParams())
    adapt: AdaptParams = param(AdaptParams())
    ttt: TTTParams = param(TTTParams())
    baselines: BaselinesParams = param(BaselinesParams())


def merge_overrides(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict:
    """Deep-merge `override` into `base` (mappings merge, everything else replaces)."""
    out = dict(base)
    for k, v in override.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = merge_overrides(out[k], v)
        else:
            out[k] = v
    return out


def _read_yaml(path: Path) -> dict:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ParamsError(f"{path}: params file not found") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: the top level must be a mapping of sections")
    return data


def load_params(path: str | Path = "params.yaml", profile: str | Path | None = None) -> Params:
    """Load and validate a params file, optionally overridden by a profile file."""
    path = Path(path)
    data = _read_yaml(path)
    file = str(path)
    if profile is not None:
        ppath = Path(profile)
        data = merge_overrides(data, _read_yaml(ppath))
        file = f"{path} + {ppath}"
    return parse_section(Params, data, file=file)


def load_section(name: str, path: str | Path = "params.yaml") -> Any:
    """Load one section (and validate the whole file, so errors elsewhere are not hidden)."""
    params = load_params(path)
    if not hasattr(params, name):
        raise ParamsError(f"{path}: no section {name!r}")
    return getattr(params, name)
