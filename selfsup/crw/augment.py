"""Training-time frame and patch augmentation, batched on tensors.

The published pipeline crops every frame with RandomResizedCrop, cuts a grid of overlapping
patches and crops every patch again with RandomResizedCrop, one PIL call at a time. Here the
crop boxes of a whole batch are drawn at once and applied with one `grid_sample` for all frames
and one for all patches (each frame's N jittered patches are sampled as one tall image, so the
frame is never copied per patch).

Boxes are continuous (sub-pixel) rather than rounded to whole pixels; sampling is bilinear with
half-pixel centres (the convention of PIL's resize and of `align_corners=False`). Crops here only
enlarge (crop area < 1), so the missing antialiasing of the downscaling case does not arise.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["sample_resized_crops", "crop_resize", "grid_boxes", "jitter_patches", "grid_size",
           "normalize"]


def grid_size(frame_size: int, patch_size: int, stride: int) -> int:
    """Patches per row of the grid (7 for 256-pixel frames, 64-pixel patches, stride 32)."""
    if patch_size > frame_size:
        raise ValueError(f"patch_size {patch_size} is larger than frame_size {frame_size}")
    return (frame_size - patch_size) // stride + 1


def sample_resized_crops(n: int, height: float, width: float, scale: tuple[float, float],
                         ratio: tuple[float, float], generator: torch.Generator | None = None,
                         attempts: int = 10) -> torch.Tensor:
    """Draw `n` RandomResizedCrop boxes (y0, x0, h, w) inside a height x width image.

    As torchvision: area fraction ~ U(scale), log aspect ratio ~ U(log ratio), up to `attempts`
    tries for a box that fits, else the central crop with the aspect ratio clamped to `ratio`.
    All draws happen for all boxes at once (a fixed number of random numbers per box, so the
    result is a pure function of the generator state).
    """
    area = height * width
    frac = torch.empty(n, attempts, dtype=torch.float64).uniform_(scale[0], scale[1], generator=generator)
    log_r = torch.empty(n, attempts, dtype=torch.float64).uniform_(
        math.log(ratio[0]), math.log(ratio[1]), generator=generator)
    pos = torch.rand(n, 2, dtype=torch.float64, generator=generator)
    aspect = torch.exp(log_r)
    w = torch.sqrt(frac * area * aspect)
    h = torch.sqrt(frac * area / aspect)
    fits = (w <= width) & (h <= height)
    first = torch.argmax(fits.to(torch.int8), dim=1)      # first fitting attempt (0 if none)
    any_fit = fits.any(dim=1)
    rows = torch.arange(n)
    w = w[rows, first]
    h = h[rows, first]
    # fallback: central crop, aspect ratio clamped into the accepted range
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fw, fh = width, width / ratio[0]
    elif in_ratio > ratio[1]:
        fw, fh = height * ratio[1], height
    else:
        fw, fh = width, height
    w = torch.where(any_fit, w, torch.full_like(w, fw))
    h = torch.where(any_fit, h, torch.full_like(h, fh))
    y0 = torch.where(any_fit, pos[:, 0] * (height - h), (height - h) / 2)
    x0 = torch.where(any_fit, pos[:, 1] * (width - w), (width - w) / 2)
    return torch.stack([y0, x0, h, w], dim=1).float()


def _box_theta(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """affine_grid matrices mapping output [-1, 1] coordinates onto each box (y0, x0, h, w)."""
    y0, x0, h, w = boxes.unbind(-1)
    theta = torch.zeros(*boxes.shape[:-1], 2, 3, dtype=boxes.dtype, device=boxes.device)
    theta[..., 0, 0] = w / width
    theta[..., 0, 2] = (2 * x0 + w) / width - 1
    theta[..., 1, 1] = h / height
    theta[..., 1, 2] = (2 * y0 + h) / height - 1
    return theta


def crop_resize(images: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Crop box i of image i and resize it to size x size (bilinear): M x C x H x W -> M x C x s x s."""
    m, c, H, W = images.shape
    theta = _box_theta(boxes.to(images.device, torch.float32), H, W)
    grid = F.affine_grid(theta, [m, c, size, size], align_corners=False)
    return F.grid_sample(images, grid.to(images.dtype), mode="bilinear", padding_mode="border",
                         align_corners=False)


def grid_boxes(frame_size: int, patch_size: int, stride: int) -> torch.Tensor:
    """The unjittered patch grid as boxes (y0, x0, h, w), row-major (n = rows * row + col)."""
    g = grid_size(frame_size, patch_size, stride)
    r, c = torch.meshgrid(torch.arange(g), torch.arange(g), indexing="ij")
    y0 = (r * stride).flatten().float()
    x0 = (c * stride).flatten().float()
    size = torch.full_like(y0, float(patch_size))
    return torch.stack([y0, x0, size, size], dim=1)


def jitter_patches(frames: torch.Tensor, boxes: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Sample N boxes from each frame, each resized to patch_size: M x C x H x W, boxes M x N x 4
    (in frame pixels) -> M x N x C x p x p. One grid_sample for the whole batch."""
    m, c, H, W = frames.shape
    n = boxes.shape[1]
    p = patch_size
    theta = _box_theta(boxes.to(frames.device, torch.float32), H, W)          # M x N x 2 x 3
    base = F.affine_grid(torch.eye(2, 3, device=frames.device).unsqueeze(0), [1, 1, p, p],
                         align_corners=False)[0]                              # p x p x 2 (x, y)
    # grid[m, n, i, j] = theta[m, n] @ (x_j, y_i, 1)
    grid = torch.einsum("mnab,ijb->mnija", theta[..., :2], base) + theta[..., 2][:, :, None, None, :]
    grid = grid.reshape(m, n * p, p, 2)                                       # N patches stacked
    out = F.grid_sample(frames, grid.to(frames.dtype), mode="bilinear", padding_mode="border",
                        align_corners=False)                                  # M x C x N*p x p
    return out.reshape(m, c, n, p, p).permute(0, 2, 1, 3, 4)


def normalize(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """(x - mean) / std over the channel axis (dim -3)."""
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return (x - m) / s
