"""Every real data set and weight file the paper tables need: where it comes from, how it is checked,
what it must look like once in place.

An entry is a `Dataset`: the files to fetch (`RemoteFile`: URLs, expected size, published checksums,
archive type), the final layout (`Expect` patterns that must match under `<root>/<name>/` after
extraction; they are what verification means), the licence, and for data sets behind a registration
or a web form the instructions to follow by hand.

No author of these data sets publishes a SHA-256. Where a host publishes another checksum (the
CIFAR page and Zenodo list MD5 sums) it is checked; every file's SHA-256 is recorded in a lock file
at its first verified download and checked on every later one (`selfsup.data.download`). Weight files
named in the torch.hub convention (`<stem>-<hex>.<ext>`) carry the leading hex digits of their own
SHA-256 in the name; that prefix is checked too.

    >>> from selfsup.data import registry
    >>> registry.get("davis").layout[0].pattern
    'DAVIS/JPEGImages/480p/*'
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

__all__ = [
    "RemoteFile", "Expect", "Dataset", "UnknownDataset", "REGISTRY", "get", "names", "register",
    "check_layout", "archive_kind", "name_tag_prefix",
]

ArchiveKind = Literal["zip", "tar", "tar.gz", "tar.bz2", "tar.xz", "file"]

_NAME_TAG = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z0-9]+$")


def archive_kind(filename: str) -> ArchiveKind:
    """The archive type implied by a file name (`file` = used as is)."""
    lower = filename.lower()
    for suffix, kind in ((".zip", "zip"), (".tar.gz", "tar.gz"), (".tgz", "tar.gz"),
                         (".tar.bz2", "tar.bz2"), (".tar.xz", "tar.xz"), (".tar", "tar")):
        if lower.endswith(suffix):
            return kind  # type: ignore[return-value]
    return "file"


def name_tag_prefix(filename: str) -> str | None:
    """The SHA-256 prefix a torch.hub-style file name carries (`resnet18-f37072fd.pth` → `f37072fd`)."""
    m = _NAME_TAG.search(filename)
    return m.group(1) if m else None


@dataclass(frozen=True)
class RemoteFile:
    """One file of a data set.

    `urls` are tried in order (an empty tuple: the file cannot be fetched automatically, see the
    entry's instructions). `size` in bytes, `sha256` / `md5` as published (None: none published).
    `name_tag=True`: the file name carries a SHA-256 prefix (torch.hub convention) that must match.
    `archive`: how to unpack it into the data set's folder (`file`: copied there as is).
    """
    filename: str
    urls: tuple[str, ...] = ()
    size: int | None = None
    sha256: str | None = None
    md5: str | None = None
    checksum_source: str = ""
    name_tag: bool = False
    archive: ArchiveKind | None = None

    def __post_init__(self) -> None:
        if "/" in self.filename or self.filename in {"", ".", ".."}:
            raise ValueError(f"RemoteFile.filename must be a plain file name, got {self.filename!r}")
        if self.archive is None:
            object.__setattr__(self, "archive", archive_kind(self.filename))
        if self.sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", self.sha256):
            raise ValueError(f"{self.filename}: sha256 must be 64 lower-case hex digits")
        if self.md5 is not None and not re.fullmatch(r"[0-9a-f]{32}", self.md5):
            raise ValueError(f"{self.filename}: md5 must be 32 lower-case hex digits")
        if self.name_tag and name_tag_prefix(self.filename) is None:
            raise ValueError(f"{self.filename}: name_tag=True but the name carries no '-<hex>.' tag")

    @property
    def sha256_prefix(self) -> str | None:
        """The SHA-256 prefix the file name promises, if it follows the torch.hub convention."""
        return name_tag_prefix(self.filename) if self.name_tag else None


@dataclass(frozen=True)
class Expect:
    """A layout check: `pattern` (a path or glob relative to the data set's folder) must match at
    least `at_least` existing paths."""
    pattern: str
    at_least: int = 1

    def count(self, root: Path, limit: int | None = None) -> int:
        """How many paths match (stops counting at `limit`)."""
        if not any(ch in self.pattern for ch in "*?["):
            return int((root / self.pattern).exists())
        return sum(1 for _ in itertools.islice(root.glob(self.pattern), limit))


@dataclass(frozen=True)
class Dataset:
    """A registry entry. It lands in `<root>/<name>/`; readers look in `<root>/<name>/<data_root>`."""
    name: str
    title: str
    kind: Literal["dataset", "weights"]
    homepage: str
    licence: str
    files: tuple[RemoteFile, ...]
    layout: tuple[Expect, ...]
    manual: bool = False
    instructions: str = ""
    data_root: str = ""
    counts: str = ""
    notes: str = ""
    aliases: tuple[str, ...] = ()
    views: dict[str, dict[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.name):
            raise ValueError(f"data set name {self.name!r}: lower-case letters, digits and '_' only")
        if not self.layout:
            raise ValueError(f"{self.name}: an entry needs a layout to verify against")
        if not self.manual and not all(f.urls for f in self.files):
            raise ValueError(f"{self.name}: a file without URLs makes the entry manual")
        if self.manual and not self.instructions:
            raise ValueError(f"{self.name}: a manual entry needs instructions")

    def target(self, root: str | Path) -> Path:
        """The folder the entry is placed in."""
        return Path(root) / self.name

    def path(self, root: str | Path) -> Path:
        """The folder its readers are pointed at."""
        return self.target(root) / self.data_root if self.data_root else self.target(root)

    def view(self, root: str | Path, name: str) -> dict[str, Path]:
        """A named unpaired (CycleGAN-style) view: domain folder name → existing folder."""
        if name not in self.views:
            raise ValueError(f"{self.name}: no view {name!r}; views: {', '.join(sorted(self.views)) or 'none'}")
        return {part: self.target(root) / rel for part, rel in self.views[name].items()}

    @property
    def total_size(self) -> int | None:
        sizes = [f.size for f in self.files]
        return sum(sizes) if sizes and all(s is not None for s in sizes) else None  # type: ignore[misc]


def check_layout(entry: Dataset, folder: str | Path) -> list[str]:
    """What is missing from `folder` for `entry`'s layout (empty list: the layout is complete)."""
    folder = Path(folder)
    if not folder.is_dir():
        return [f"{folder} does not exist"]
    problems = []
    for exp in entry.layout:
        n = exp.count(folder, limit=exp.at_least)
        if n < exp.at_least:
            if exp.at_least == 1:
                problems.append(f"missing {exp.pattern}")
            else:
                problems.append(f"{exp.pattern}: {n} found, at least {exp.at_least} expected")
    return problems


# --------------------------------------------------------------------------------------------
# The entries
# --------------------------------------------------------------------------------------------

_CYCLEGAN = "https://efrosgans.eecs.berkeley.edu/cyclegan/datasets"
_CUT = "http://efrosgans.eecs.berkeley.edu/CUT"
_JHMDB = "http://files.is.tue.mpg.de/jhmdb"
_K400 = "https://s3.amazonaws.com/kinetics/400"
_CIFAR10C_CORRUPTIONS = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
    "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
    "jpeg_compression",
)

_ENTRIES: list[Dataset] = [
    Dataset(
        name="davis", title="DAVIS-2017 semi-supervised, trainval 480p", kind="dataset",
        homepage="https://davischallenge.org/davis2017/code.html",
        licence="DAVIS challenge terms (research use); see davischallenge.org",
        files=(RemoteFile("DAVIS-2017-trainval-480p.zip",
                          ("https://data.vision.ee.ethz.ch/csergi/share/davis/DAVIS-2017-trainval-480p.zip",)),),
        layout=(Expect("DAVIS/JPEGImages/480p/*", 30), Expect("DAVIS/Annotations/480p/*", 30),
                Expect("DAVIS/ImageSets/2017/val.txt"), Expect("DAVIS/ImageSets/2017/train.txt"),
                Expect("DAVIS/JPEGImages/480p/*/00000.jpg", 30), Expect("DAVIS/Annotations/480p/*/00000.png", 30)),
        data_root="DAVIS",
        counts="30 val sequences (1,999 frames, 61 objects) + 60 train; 480×854 except bike-packing "
               "(480×910) and shooting (480×1152)",
    ),
    Dataset(
        name="jhmdb", title="JHMDB (frames, joint positions, splits)", kind="dataset",
        homepage="http://jhmdb.is.tue.mpg.de/",
        licence="JHMDB terms (research use); see jhmdb.is.tue.mpg.de",
        files=(RemoteFile("Rename_Images.tar.gz", (f"{_JHMDB}/Rename_Images.tar.gz",)),
               RemoteFile("joint_positions.zip", (f"{_JHMDB}/joint_positions.zip",)),
               RemoteFile("splits.zip", (f"{_JHMDB}/splits.zip",))),
        layout=(Expect("Rename_Images/*", 21), Expect("Rename_Images/*/*", 900),
                Expect("Rename_Images/*/*/00001.png", 900),
                Expect("joint_positions/*/*/joint_positions.mat", 900),
                Expect("splits/*_test_split1.txt", 21)),
        counts="928 clips in 21 classes, 320×240; split 1 test: 268 videos",
    ),
    Dataset(
        name="vip", title="VIP (Video Instance-level Parsing), VIP_Fine", kind="dataset",
        homepage="http://sysu-hcp.net/lip/overview.php",
        licence="LIP/VIP terms (non-commercial research use); see sysu-hcp.net/lip",
        files=(), manual=True,
        layout=(Expect("VIP_Fine/Images/*", 1), Expect("VIP_Fine/Annotations/Category_ids/*", 1),
                Expect("VIP_Fine/lists/val_videos.txt")),
        instructions=(
            "VIP is distributed through the LIP project page (http://sysu-hcp.net/lip, 'VIP' data set) "
            "as a Google Drive folder (a Baidu mirror is also linked). Download the VIP_Fine part and "
            "extract it so that these exist:\n"
            "  {target}/VIP_Fine/Images/<video>/<frame>.jpg\n"
            "  {target}/VIP_Fine/Annotations/Category_ids/<video>/<frame>.png\n"
            "  {target}/VIP_Fine/lists/val_videos.txt\n"
            "then run the command again: the layout is checked and the data set accepted."),
        counts="404 videos, 20 classes; val 50 videos (unverified)",
    ),
    Dataset(
        name="kinetics400", title="Kinetics-400 (training videos for CRW)", kind="dataset",
        homepage="https://github.com/cvdfoundation/kinetics-dataset",
        licence="annotations CC BY 4.0 (Google); the videos belong to their YouTube uploaders",
        files=(), manual=True,
        layout=(Expect("train/*/*.mp4"), Expect("val/*/*.mp4")),
        instructions=(
            "Kinetics-400 is ~435 GiB in hundreds of archives; fetch it with the CVDF mirror's lists "
            "(github.com/cvdfoundation/kinetics-dataset):\n"
            f"  archive lists: {_K400}/train/k400_train_path.txt, {_K400}/val/k400_val_path.txt\n"
            f"  annotations:   {_K400}/annotations/train.csv, {_K400}/annotations/val.csv\n"
            "  e.g.  wget -c -i k400_train_path.txt -P archives/train && "
            "for f in archives/train/*.tar.gz; do tar -xzf \"$f\" -C flat/train; done\n"
            "(the CVDF repository also provides a replacement archive for corrupted train videos).\n"
            "Then sort the videos into class folders using the CSV (columns label, youtube_id, "
            "time_start, time_end; file name <youtube_id>_<start:06d>_<end:06d>.mp4) so that these exist:\n"
            "  {target}/train/<class>/<id>_<start>_<end>.mp4\n"
            "  {target}/val/<class>/<id>_<start>_<end>.mp4\n"
            "and run the command again. Point `clips.videos` at {target}/train to train on it."),
        counts="≈240 k train videos on disk (246,534 in the CSV), 400 classes, ≈435 GiB (unverified)",
    ),
    Dataset(
        name="horse2zebra", title="horse2zebra (CycleGAN unpaired set)", kind="dataset",
        homepage="https://github.com/junyanz/pytorch-CycleGAN-and-pix2pix",
        licence="images from ImageNet: ImageNet terms of access (non-commercial research)",
        files=(RemoteFile("horse2zebra.zip", (f"{_CYCLEGAN}/horse2zebra.zip",)),),
        layout=(Expect("trainA/*.jpg", 900), Expect("trainB/*.jpg", 1100),
                Expect("testA/*.jpg", 120), Expect("testB/*.jpg", 140)),
        counts="trainA 1,067 / trainB 1,334 (unverified; the CycleGAN docs quote 939 / 1,177), "
               "testA 120 / testB 140, 256×256",
        views={"horse2zebra": {"trainA": "trainA", "trainB": "trainB", "testA": "testA", "testB": "testB"}},
    ),
    Dataset(
        name="afhq", title="AFHQ v1 (StarGAN v2); CUT's cat2dog", kind="dataset",
        homepage="https://github.com/clovaai/stargan-v2",
        licence="CC BY-NC 4.0 (NAVER Corporation)",
        files=(RemoteFile("afhq.zip", ("https://www.dropbox.com/s/t9l9o3vsx2jai3z/afhq.zip?dl=1",)),),
        layout=(Expect("train/cat/*.jpg", 1000), Expect("train/dog/*.jpg", 1000),
                Expect("val/cat/*.jpg", 500), Expect("val/dog/*.jpg", 500), Expect("val/wild")),
        counts="val 500 cats + 500 dogs, 512×512; train ≈5.1 k cats / ≈4.7 k dogs (unverified)",
        notes="AFHQ v2 is a different release; CUT used v1",
        aliases=("cat2dog",),
        views={"cat2dog": {"trainA": "train/cat", "trainB": "train/dog", "testA": "val/cat", "testB": "val/dog"}},
    ),
    Dataset(
        name="cityscapes", title="Cityscapes (fine annotations + left 8-bit images)", kind="dataset",
        homepage="https://www.cityscapes-dataset.com/",
        licence="Cityscapes licence (registration; non-commercial research)",
        files=(RemoteFile("gtFine_trainvaltest.zip"), RemoteFile("leftImg8bit_trainvaltest.zip")),
        manual=True,
        layout=(Expect("leftImg8bit/train/*/*_leftImg8bit.png", 2975),
                Expect("leftImg8bit/val/*/*_leftImg8bit.png", 500),
                Expect("gtFine/train/*/*_gtFine_color.png", 2975),
                Expect("gtFine/val/*/*_gtFine_color.png", 500)),
        instructions=(
            "Cityscapes needs a registered account: log in at https://www.cityscapes-dataset.com/downloads/ "
            "and download gtFine_trainvaltest.zip and leftImg8bit_trainvaltest.zip. Either put both "
            "archives in {cache} (or the mirror folder) and run the command again (they are extracted, "
            "checked and recorded in the lock file), or extract them yourself so that these exist:\n"
            "  {target}/leftImg8bit/{{train,val}}/<city>/*_leftImg8bit.png\n"
            "  {target}/gtFine/{{train,val}}/<city>/*_gtFine_color.png"),
        counts="2,975 train / 500 val images",
    ),
    Dataset(
        name="cityscapes_val_cut", title="Cityscapes val as resized for the CUT pretrained models",
        kind="dataset", homepage="https://github.com/taesungp/contrastive-unpaired-translation",
        licence="derived from Cityscapes: Cityscapes licence",
        files=(RemoteFile("cityscapes_val_for_CUT.tar", (f"{_CUT}/datasets/cityscapes_val_for_CUT.tar",)),),
        layout=(Expect("valA/*", 500), Expect("valB/*", 500)),
        counts="500 photos (valA) + 500 label maps (valB)",
        notes="required to evaluate the pretrained Cityscapes models (direction BtoA, phase val)",
        views={"cityscapes": {"testA": "valA", "testB": "valB"}},
    ),
    Dataset(
        name="cut_pretrained", title="CUT / FastCUT pretrained generators", kind="weights",
        homepage="https://github.com/taesungp/contrastive-unpaired-translation",
        licence="CUT repository licence (BSD-style; parts under NVIDIA Source Code License-NC)",
        files=(RemoteFile("pretrained_models.tar", (f"{_CUT}/pretrained_models.tar",)),),
        layout=tuple(Expect(f"checkpoints/{task}_{mode}_pretrained/latest_net_G.pth")
                     for task in ("horse2zebra", "cat2dog", "cityscapes") for mode in ("cut", "fastcut")),
        counts="6 generators",
    ),
    Dataset(
        name="crw_pretrained", title="CRW pretrained.pth (DAVIS J&F 67.6)", kind="weights",
        homepage="https://github.com/ajabri/videowalk",
        licence="MIT (videowalk repository)",
        files=(RemoteFile("pretrained.pth", ("https://github.com/ajabri/videowalk/raw/master/pretrained.pth",
                                            "https://raw.githubusercontent.com/ajabri/videowalk/master/pretrained.pth")),),
        layout=(Expect("pretrained.pth"),),
        notes="load with selfsup.crw.load_checkpoint",
    ),
    Dataset(
        name="imagenet_resnet18", title="ImageNet ResNet-18 (torchvision IMAGENET1K_V1), CRW's imagenet18 baseline",
        kind="weights", homepage="https://pytorch.org/vision/stable/models.html",
        licence="BSD-3-Clause (torchvision); trained on ImageNet (ImageNet terms)",
        files=(RemoteFile("resnet18-f37072fd.pth", ("https://download.pytorch.org/models/resnet18-f37072fd.pth",),
                          name_tag=True, checksum_source="torch.hub file-name tag"),),
        layout=(Expect("resnet18-f37072fd.pth"),),
        notes="same weights as the official code's resnet18-5c106cde.pth (unverified)",
    ),
    Dataset(
        name="fid_inception", title="Inception-v3 FID weights (TF 2015-12-05, pytorch-fid port)", kind="weights",
        homepage="https://github.com/mseitzer/pytorch-fid",
        licence="Apache-2.0 (pytorch-fid; weights ported from TensorFlow's inception-2015-12-05)",
        files=(RemoteFile("pt_inception-2015-12-05-6726825d.pth",
                          ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                           "pt_inception-2015-12-05-6726825d.pth",),
                          name_tag=True, checksum_source="torch.hub file-name tag"),),
        layout=(Expect("pt_inception-2015-12-05-6726825d.pth"),),
        notes="the FID code takes this file's path; the name tag 6726825d is the SHA-256 prefix "
              "(torch.hub convention); it may also be copied to $TORCH_HOME/hub/checkpoints/",
    ),
    Dataset(
        name="cifar10", title="CIFAR-10, python version", kind="dataset",
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
        licence="no licence stated; cite Krizhevsky (2009)",
        files=(RemoteFile("cifar-10-python.tar.gz", ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
                          size=170_498_071, md5="c58f30108f718f92721af3b95e74349a",
                          checksum_source="MD5 published on the CIFAR page"),),
        layout=tuple(Expect(f"cifar-10-batches-py/{n}") for n in
                     ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
                      "test_batch", "batches.meta")),
        data_root="cifar-10-batches-py",
        counts="50,000 train + 10,000 test, 32×32, 10 classes",
    ),
    Dataset(
        name="cifar10c", title="CIFAR-10-C (common corruptions)", kind="dataset",
        homepage="https://zenodo.org/records/2535967",
        licence="CC BY 4.0 (Zenodo record 2535967)",
        files=(RemoteFile("CIFAR-10-C.tar", ("https://zenodo.org/records/2535967/files/CIFAR-10-C.tar?download=1",
                                            "https://zenodo.org/record/2535967/files/CIFAR-10-C.tar"),
                          md5="56bf5dcef84df0e2308c6dcbcbbd8499", checksum_source="MD5 listed by Zenodo"),),
        layout=(Expect("CIFAR-10-C/labels.npy"),
                *(Expect(f"CIFAR-10-C/{c}.npy") for c in _CIFAR10C_CORRUPTIONS)),
        data_root="CIFAR-10-C",
        counts="15 benchmark corruptions (+4 extra) × 5 severities × 10,000 test images; labels.npy",
    ),
]

REGISTRY: dict[str, Dataset] = {}
_ALIASES: dict[str, str] = {}


def register(entry: Dataset, *, replace: bool = False) -> Dataset:
    """Add an entry (a project's own data set or a private mirror's); names are unique."""
    taken = entry.name in REGISTRY or entry.name in _ALIASES or entry.name == "synthetic"
    if taken and not replace:
        raise ValueError(f"a data set named {entry.name!r} is already registered")
    REGISTRY[entry.name] = entry
    for alias in entry.aliases:
        _ALIASES[alias] = entry.name
    return entry


for _entry in _ENTRIES:
    register(_entry)


class UnknownDataset(ValueError):
    """A name that is not in the registry."""


def names() -> list[str]:
    """Registered names, sorted (aliases not included)."""
    return sorted(REGISTRY)


def get(name: str) -> Dataset:
    """The entry called `name` (or one of its aliases)."""
    key = _ALIASES.get(name, name)
    try:
        return REGISTRY[key]
    except KeyError:
        known = ", ".join(names())
        aliases = ", ".join(f"{a} (= {t})" for a, t in sorted(_ALIASES.items()))
        raise UnknownDataset(f"unknown data set {name!r}; known: {known}; aliases: {aliases}; "
                             "'synthetic' is generated") from None
