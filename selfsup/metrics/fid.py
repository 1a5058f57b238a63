"""FID and KID with the pytorch-fid protocol (`python -m pytorch_fid REAL FAKE`, defaults).

- Files: one folder, non-recursive, lower-case extensions bmp/jpg/jpeg/pgm/png/ppm/tif/tiff/webp,
  sorted by path; every image is used, in batches of 50 (the last partial batch kept).
- Images: PIL → RGB → [0, 1]. `mode="legacy"`: bilinear resize to 299×299 without antialiasing
  (`F.interpolate(align_corners=False)`, pytorch-fid). `mode="clean"`: each channel resized as a
  float image with PIL's antialiased bicubic filter, clipped to [0, 255] (clean-fid's resize).
  Then 2x − 1.
- Network: Inception-v3 with the TF 2015-12-05 FID weights (`pt_inception-2015-12-05-6726825d.pth`,
  torchvision key names) and the FID patches; 2048-d pool3 features, float32, stored as float64.
- Statistics: mean and `np.cov(rowvar=False)`. Distance: ‖μ1 − μ2‖² + tr Σ1 + tr Σ2 − 2 tr √(Σ1Σ2),
  the square root by SciPy's Schur method; non-finite root → retry with Σ + 1e-6·I; a complex root
  is rejected when a diagonal imaginary part exceeds 1e-3, otherwise its real part is kept.
- KID: unbiased MMD² with the polynomial kernel (x·y/d + 1)³, averaged over random subsets.

The feature extractor is any callable mapping B×3×299×299 images in [−1, 1] to B×D features,
so the pipeline runs with any network; `load_fid_inception()` gives the reference one.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from tqdm import tqdm

log = logging.getLogger(__name__)

__all__ = [
    "FID_WEIGHTS_NAME", "FID_WEIGHTS_URL", "FID_EXTENSIONS", "frechet_distance",
    "feature_statistics", "kernel_inception_distance", "mmd2_unbiased", "FIDInceptionV3",
    "fid_weights_path", "load_fid_inception", "list_fid_images", "load_fid_image", "extract_features",
    "compute_fid", "configure_cli", "main_cli",
]

FID_WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                   "pt_inception-2015-12-05-6726825d.pth")
FID_EXTENSIONS = ("bmp", "jpg", "jpeg", "pgm", "png", "ppm", "tif", "tiff", "webp")
FID_SIZE = 299


# --------------------------------------------------------------------------------------------
# Matrix square root and the Fréchet distance
# --------------------------------------------------------------------------------------------

def _sqrtm(a: np.ndarray) -> np.ndarray:
    """scipy.linalg.sqrtm (Schur method). SciPy 1.16 deprecated `disp` (removed in 1.18): call it
    without where the installed SciPy allows, else with disp=False as pytorch-fid does."""
    major, minor = (int(v) for v in scipy.__version__.split(".")[:2])
    if (major, minor) >= (1, 16):
        out = scipy.linalg.sqrtm(a)
    else:
        out = scipy.linalg.sqrtm(a, disp=False)
    return out[0] if isinstance(out, tuple) else out


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """‖μ1 − μ2‖² + tr Σ1 + tr Σ2 − 2 tr √(Σ1Σ2), computed as pytorch-fid does (SciPy's Schur
    root; never the eigenvalue shortcut, which drifts ~1e-8 relative for singular Σ)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape:
        raise ValueError(f"mean vectors have different lengths: {mu1.shape} vs {mu2.shape}")
    if sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(f"covariances must be {mu1.size}×{mu1.size}, got {sigma1.shape} and {sigma2.shape}")
    diff = mu1 - mu2
    covmean = _sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        log.warning("fid: singular product; adding %g to the covariance diagonals", eps)
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = _sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            m = np.max(np.abs(covmean.imag))
            raise ValueError(f"fid: imaginary component {m} in the matrix square root")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (divisor N − 1) of N×D features, in float64."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need an N×D feature array with N >= 2, got shape {f.shape}")
    return np.mean(f, axis=0), np.cov(f, rowvar=False)


# --------------------------------------------------------------------------------------------
# KID
# --------------------------------------------------------------------------------------------

def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² with the polynomial kernel k(a, b) = (a·b/d + 1)³."""
    d = x.shape[1]
    kxx = (x @ x.T / d + 1) ** 3
    kyy = (y @ y.T / d + 1) ** 3
    kxy = (x @ y.T / d + 1) ** 3
    m, n = x.shape[0], y.shape[0]
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2 * kxy.mean())


def kernel_inception_distance(feats1: np.ndarray, feats2: np.ndarray, num_subsets: int = 100,
                              subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """KID: mean and standard deviation over `num_subsets` random subsets (drawn without
    replacement, size min(subset_size, N1, N2)) of the unbiased polynomial-kernel MMD²."""
    f1, f2 = np.asarray(feats1, np.float64), np.asarray(feats2, np.float64)
    m = min(subset_size, f1.shape[0], f2.shape[0])
    if m < 2:
        raise ValueError("KID needs at least 2 samples in each set")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(num_subsets):
        a = f1[rng.choice(f1.shape[0], m, replace=False)]
        b = f2[rng.choice(f2.shape[0], m, replace=False)]
        values.append(mmd2_unbiased(a, b))
    return float(np.mean(values)), float(np.std(values))


# --------------------------------------------------------------------------------------------
# The FID Inception network (torchvision key names, FID patches)
# --------------------------------------------------------------------------------------------

class BasicConv2d(nn.Module):
    def __init__(self, c_in: int, c_out: int, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(c_out, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


def _avg_pool_no_pad_count(x: torch.Tensor) -> torch.Tensor:
    # the FID network (TF graph) excludes padding from the average
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    def __init__(self, c_in: int, pool_features: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(c_in, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(c_in, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(c_in, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(c_in, pool_features, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_avg_pool_no_pad_count(x))
        return torch.cat([b1, b5, b3, bp], 1)


class InceptionB(nn.Module):
    def __init__(self, c_in: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(c_in, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(c_in, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3(x)
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([b3, bd, bp], 1)


class InceptionC(nn.Module):
    def __init__(self, c_in: int, channels_7x7: int):
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(c_in, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(c_in, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(c_in, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(c_in, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            bd = layer(bd)
        bp = self.branch_pool(_avg_pool_no_pad_count(x))
        return torch.cat([b1, b7, bd, bp], 1)


class InceptionD(nn.Module):
    def __init__(self, c_in: int):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(c_in, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(c_in, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([b3, b7, bp], 1)


class InceptionE(nn.Module):
    """`pool="avg"`: Mixed_7b (average without padding in the count); `pool="max"`: Mixed_7c."""

    def __init__(self, c_in: int, pool: str):
        super().__init__()
        self.pool = pool
        self.branch1x1 = BasicConv2d(c_in, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(c_in, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(c_in, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(c_in, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        if self.pool == "max":
            pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        else:
            pooled = _avg_pool_no_pad_count(x)
        return torch.cat([b1, b3, bd, self.branch_pool(pooled)], 1)


class FIDInceptionV3(nn.Module):
    """Inception-v3 as used for FID: torchvision's module names (so the FID weights load
    strictly), BN eps 1e-3, 1008-class `fc` (kept for loading, unused). `forward` takes
    B×3×299×299 images in [−1, 1] and returns the B×2048 pool3 features."""

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, pool="avg")
        self.Mixed_7c = InceptionE(2048, pool="max")
        self.fc = nn.Linear(2048, 1008)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
                     "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"):
            x = getattr(self, name)(x)
        return F.adaptive_avg_pool2d(x, (1, 1)).flatten(1)


def fid_weights_path(path: str | os.PathLike | None = None) -> Path:
    """Where the FID Inception weights are: `path`, else `$SELFSUP_FID_WEIGHTS`, else the
    registry's location when it names one, else `$TORCH_HOME/hub/checkpoints/<name>`.
    Raises FileNotFoundError saying which file is missing and how to get it."""
    candidates: list[Path] = []
    if path is not None:
        candidates.append(Path(path))
    elif os.environ.get("SELFSUP_FID_WEIGHTS"):
        candidates.append(Path(os.environ["SELFSUP_FID_WEIGHTS"]))
    else:
        registry_path = _registry_location()
        if registry_path is not None:
            candidates.append(registry_path)
        torch_home = Path(os.environ.get("TORCH_HOME", Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")) / "torch"))
        candidates.append(torch_home.expanduser() / "hub" / "checkpoints" / FID_WEIGHTS_NAME)
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError(
        f"FID Inception weights not found (looked at: {', '.join(str(c) for c in candidates)}). "
        f"Get {FID_WEIGHTS_NAME} with `selfsup download fid_inception`, or download {FID_WEIGHTS_URL} "
        f"and pass --weights PATH, set SELFSUP_FID_WEIGHTS=PATH, or place it in "
        f"$TORCH_HOME/hub/checkpoints/.")


def _registry_location(root: str | os.PathLike = "data/raw") -> Path | None:
    """Where `selfsup download fid_inception` puts the weights (`<root>/fid_inception/`)."""
    try:
        from selfsup.data import registry  # optional: the FID code works without it
        entry = registry.get("fid_inception")
    except (ImportError, ValueError, KeyError):
        return None
    return Path(entry.path(root)) / FID_WEIGHTS_NAME


def load_fid_inception(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> FIDInceptionV3:
    """The FID network with its weights loaded strictly (weights-only unpickling), in eval mode."""
    file = fid_weights_path(path)
    state = torch.load(file, map_location="cpu", weights_only=True)
    net = FIDInceptionV3()
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{file}: not the FID Inception weights ({exc})") from None
    return net.to(device).eval()


# --------------------------------------------------------------------------------------------
# Images → features → statistics
# --------------------------------------------------------------------------------------------

def list_fid_images(folder: str | os.PathLike) -> list[Path]:
    """Files of `folder` (non-recursive) with a lower-case FID extension, sorted by path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix[1:] in FID_EXTENSIONS)
    if not files:
        raise ValueError(f"no images in {folder} (extensions: {', '.join(FID_EXTENSIONS)}, lower-case)")
    return files


def _clean_resize(rgb: np.ndarray, size: int) -> np.ndarray:
    """clean-fid's resize: each channel as a float image, PIL bicubic (antialiased), clipped."""
    chans = []
    for c in range(3):
        im = Image.fromarray(rgb[:, :, c].astype(np.float32))
        chans.append(np.asarray(im.resize((size, size), resample=Image.BICUBIC)).clip(0, 255))
    return np.stack(chans, axis=0) / 255.0


def load_fid_image(path: str | os.PathLike, mode: str = "legacy", size: int = FID_SIZE) -> torch.Tensor:
    """One image as a 3×size×size float32 tensor in [−1, 1]."""
    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB"))
    if mode == "legacy":
        x = torch.from_numpy(rgb.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)[0]
    elif mode == "clean":
        x = torch.from_numpy(_clean_resize(rgb, size).astype(np.float32))
    else:
        raise ValueError(f"mode must be 'legacy' or 'clean', got {mode!r}")
    return 2 * x - 1


def extract_features(files: Sequence[Path], extractor: Callable[[torch.Tensor], torch.Tensor], *,
                     mode: str = "legacy", batch_size: int = 50, device: str | torch.device = "cpu",
                     size: int = FID_SIZE, progress: bool = True) -> np.ndarray:
    """N×D float64 features of the images, in batches of `batch_size` (last partial batch kept)."""
    out = []
    with torch.no_grad():
        for i in tqdm(range(0, len(files), batch_size), desc="fid features", disable=not progress, unit="batch"):
            batch = torch.stack([load_fid_image(f, mode, size) for f in files[i:i + batch_size]])
            feats = extractor(batch.to(device))
            if feats.dim() == 4:  # B×D×1×1 from a pooled network
                feats = feats.flatten(1)
            out.append(feats.float().cpu().numpy().astype(np.float64))
    return np.concatenate(out, axis=0)


def compute_fid(real: str | os.PathLike, fake: str | os.PathLike, *,
                extractor: Callable[[torch.Tensor], torch.Tensor] | None = None,
                weights: str | os.PathLike | None = None, mode: str = "legacy", kid: bool = False,
                batch_size: int = 50, device: str | torch.device = "cpu", kid_subsets: int = 100,
                kid_subset_size: int = 1000, progress: bool = True,
                stats_out: dict | None = None) -> dict:
    """FID (and optionally KID) between two image folders (or `.npz` files holding mu and sigma).

    Without `extractor` the FID Inception network is loaded from `weights` (see
    `fid_weights_path`). Returns {"fid", "n_real", "n_fake", "mode"[, "kid", "kid_std"]}; the
    (mu, sigma) of both sides go into `stats_out["real"]` / `stats_out["fake"]` when given.
    """
    if extractor is None:
        extractor = load_fid_inception(weights, device)
    stats, feats, counts = [], [], []
    for source in (real, fake):
        p = Path(source)
        if p.suffix == ".npz":
            if kid:
                raise ValueError(f"{p}: KID needs image features, not precomputed statistics")
            with np.load(p) as data:
                stats.append((data["mu"], data["sigma"]))
            counts.append(None)
            continue
        f = extract_features(list_fid_images(p), extractor, mode=mode, batch_size=batch_size, device=device,
                             progress=progress)
        feats.append(f)
        stats.append(feature_statistics(f))
        counts.append(int(f.shape[0]))
    if stats_out is not None:
        stats_out["real"], stats_out["fake"] = stats
    result = {"fid": frechet_distance(*stats[0], *stats[1]), "n_real": counts[0],
              "n_fake": counts[1], "mode": mode}
    if kid:
        result["kid"], result["kid_std"] = kernel_inception_distance(feats[0], feats[1], kid_subsets,
                                                                     kid_subset_size)
    return result


# --------------------------------------------------------------------------------------------
# Command line: `selfsup eval fid REAL_DIR FAKE_DIR`
# --------------------------------------------------------------------------------------------

def configure_cli(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("real", help="folder of real images (or an .npz with mu and sigma)")
    parser.add_argument("fake", help="folder of generated images (or an .npz with mu and sigma)")
    parser.add_argument("--weights", default=None,
                        help=f"path to {FID_WEIGHTS_NAME} (default: $SELFSUP_FID_WEIGHTS, then "
                             f"$TORCH_HOME/hub/checkpoints/)")
    parser.add_argument("--mode", choices=["legacy", "clean"], default="legacy",
                        help="legacy: pytorch-fid bilinear resize (paper-comparable); clean: antialiased bicubic")
    parser.add_argument("--kid", action="store_true", help="also report KID (mean and std over subsets)")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--save-stats", default=None, metavar="NPZ",
                        help="also save the fake set's mu and sigma to this .npz")


def main_cli(args: argparse.Namespace) -> int:
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    extractor = load_fid_inception(args.weights, device)
    stats: dict = {}
    result = compute_fid(args.real, args.fake, extractor=extractor, mode=args.mode, kid=args.kid,
                         batch_size=args.batch_size, device=device, stats_out=stats)
    if args.save_stats:
        from selfsup.io import atomic_path

        mu, sigma = stats["fake"]
        with atomic_path(args.save_stats, suffix=".npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, mu=mu, sigma=sigma)
    print(json.dumps(result, indent=2))
    return 0
