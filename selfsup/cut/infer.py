"""Inference: load a generator (official `latest_net_G.pth` or a selfsup checkpoint) and translate
every image of a folder into PNGs.

Official test protocol: resize to 256×256 bicubic, no flip, sorted order, batch 1; uint8 =
clamp(x, −1, 1) → (x + 1)/2·255 → truncated. Unlike the official `test.py` (first 50 inputs),
every image is translated unless `num_test` says otherwise.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm import tqdm

from selfsup.data.unaligned import TransformSpec, list_images, load_rgb, tensor_to_uint8, transform_image
from selfsup.io import atomic_path

from .model import CUTConfig, autocast_context
from .networks import ResnetGenerator, infer_generator_shape, load_state_dict_checked
from .stylegan import SinCUTGenerator

log = logging.getLogger(__name__)

__all__ = ["load_generator", "translate_folder", "translate_images"]


def _generator_from_config(cfg: CUTConfig) -> nn.Module:
    cfg = cfg.resolved()
    if cfg.mode == "sincut":
        return SinCUTGenerator(cfg.ngf, cfg.input_nc, cfg.output_nc)
    return ResnetGenerator(cfg.input_nc, cfg.output_nc, cfg.ngf, cfg.n_blocks)


def load_generator(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[nn.Module, str]:
    """(generator, mode) from an official `*_net_G.pth` state dict or a selfsup `latest.pt`.

    Loading is strict: a mismatched file raises listing missing / unexpected keys, and the fixed
    blur filters of an official file are compared with selfsup's own.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"generator checkpoint not found: {path}")
    state = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(state, Mapping):
        raise ValueError(f"{path}: expected a state dict or a selfsup checkpoint, got {type(state).__name__}")
    if state.get("format", "").startswith("selfsup-cut"):
        cfg = CUTConfig.from_dict(state["config"]["model"]).resolved()
        gen = _generator_from_config(cfg)
        load_state_dict_checked(gen, state["G"], f"{path} [G]")
        return gen, cfg.mode
    keys = {k[len("module."):] if k.startswith("module.") else k for k in state}
    if "model.1.weight" in keys:
        sd = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
        shape = infer_generator_shape(sd)
        gen = ResnetGenerator(shape["input_nc"], 3, shape["ngf"], shape["n_blocks"])
        load_state_dict_checked(gen, sd, str(path))
        return gen, "cut"
    if "encoder.convs.1.0.weight" in keys:
        ngf = int(state["encoder.convs.1.0.weight"].shape[0]) // 8
        gen = SinCUTGenerator(ngf)
        load_state_dict_checked(gen, state, str(path))
        return gen, "sincut"
    raise ValueError(f"{path}: not a CUT generator (no model.1.weight or encoder.convs.* keys); "
                     f"first keys: {', '.join(list(state)[:5])}")


def translate_images(gen: nn.Module, images: torch.Tensor, device: torch.device | str = "cpu",
                     bf16: bool = False) -> torch.Tensor:
    device = torch.device(device)
    with torch.no_grad(), autocast_context(device, bf16):
        return gen(images.to(device)).float().cpu()


def translate_folder(gen: nn.Module, input_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
                     size: int | None = 256, device: str | torch.device = "cpu", rounding: str = "truncate",
                     num_test: int | None = None, bf16: bool = False, batch_size: int = 1,
                     progress: bool = True) -> list[Path]:
    """Translate every image of `input_dir` (sorted) into `<out_dir>/<stem>.png`.

    `size`: resize to size×size bicubic (official test); None keeps the image, sides rounded to a
    multiple of 4 (SinCUT, one image at a time). `batch_size` > 1 runs several inputs per pass
    (the generator normalises each image on its own, so only the speed changes). Returns the
    written paths.
    """
    files = list_images(input_dir)
    if not files:
        raise ValueError(f"no images in {input_dir}")
    if num_test is not None:
        files = files[:num_test]
    stems = [f.stem for f in files]
    dupes = sorted({s for s in stems if stems.count(s) > 1})
    if dupes:
        raise ValueError(f"{input_dir}: several inputs share the output name {dupes[0]}.png")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    gen = gen.to(device).eval()
    step = batch_size if size is not None else 1
    written = []
    with tqdm(total=len(files), desc=f"translate {Path(input_dir).name}", disable=not progress, unit="img") as bar:
        for i in range(0, len(files), step):
            chunk = files[i:i + step]
            xs = []
            for f in chunk:
                img = load_rgb(f)
                if size is None:
                    w, h = img.size
                    spec = TransformSpec((max(4, round(h / 4) * 4), max(4, round(w / 4) * 4)), max(h, w) * 2, flip=False)
                else:
                    spec = TransformSpec(size, size, flip=False)
                xs.append(transform_image(img, spec, None))
            ys = translate_images(gen, torch.stack(xs), device, bf16)
            for f, y in zip(chunk, ys):
                target = out_dir / f"{f.stem}.png"
                with atomic_path(target, suffix=".png") as tmp:
                    Image.fromarray(tensor_to_uint8(y, rounding)).save(tmp, format="PNG")
                written.append(target)
            bar.update(len(chunk))
    log.info("translated %d images from %s into %s", len(written), input_dir, out_dir)
    return written
