"""Reading and writing CRW checkpoints.

Three layouts load into `CRW`:

- selfsup's own: `{"format": "selfsup.crw", "version": 1, "config": {...}, "model": state_dict, ...}`;
  the config (a plain dict of `CRWConfig`) rebuilds the model from the file alone.
- the official training container: `{"model": state_dict, "args": argparse.Namespace,
  "optimizer": ..., "lr_scheduler": ..., "epoch": ...}` (or a bare state dict) with keys
  `encoder.model.<resnet>` and `selfsim_fc.<i>`, possibly `module.`-prefixed, possibly in the
  older layout that stored each padded conv as `conv1.1.weight`. Width, head depth and
  embedding size are read off the weights; padding from `args.model_type`.
- a torchvision-layout ImageNet ResNet-18 state dict (`conv1`, `bn1`, `layer1..4`, `fc`): the
  ImageNet baseline, zero padding, no head (`fc` is the classifier and is dropped).

Files are read with `torch.load(weights_only=True)`; only `argparse.Namespace` is allow-listed
(the official container pickles its command-line arguments). Keys are mapped explicitly and
loaded strictly: a mismatch raises `CheckpointError` naming the file and listing the missing,
unexpected and wrongly shaped keys. Nothing is ever loaded partially.
"""
from __future__ import annotations

import argparse
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from ..io import torch_save
from .model import CRW, CRWConfig

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "read_checkpoint",
           "read_state_dict", "map_official_keys", "map_torchvision_keys", "FORMAT"]

FORMAT = "selfsup.crw"
VERSION = 1
SAFE_GLOBALS = [argparse.Namespace]


class CheckpointError(ValueError):
    """A checkpoint file cannot be read or does not match the model it should build."""


def _unwrap(model: nn.Module) -> CRW:
    inner = getattr(model, "module", model)     # DistributedDataParallel / DataParallel
    if not isinstance(inner, CRW):
        raise TypeError(f"expected a CRW model, got {type(inner).__name__}")
    return inner


def save_checkpoint(model: nn.Module, path: str | Path, **extra: Any) -> Path:
    """Write `model` (weights + config) atomically; `extra` entries (plain values) are stored too."""
    crw = _unwrap(model)
    reserved = {"format", "version", "config", "model"} & set(extra)
    if reserved:
        raise ValueError(f"extra keys clash with the checkpoint layout: {sorted(reserved)}")
    state = {k: v.detach().to("cpu").clone() for k, v in crw.state_dict().items()}
    blob = {"format": FORMAT, "version": VERSION, "config": crw.config.to_dict(), "model": state, **extra}
    return torch_save(blob, path)


def read_checkpoint(path: str | Path, map_location: Any = "cpu") -> Any:
    """torch.load with weights_only=True and only argparse.Namespace allow-listed; clear errors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "Weights only load failed" in text and ("Unsupported global" in text or "GLOBAL" in text):
            first = next((ln for ln in text.splitlines() if "Unsupported global" in ln), text.splitlines()[0])
            raise CheckpointError(f"{path}: holds objects that are not allowed in a weights-only load "
                                  f"({first.strip()}); refusing to unpickle arbitrary code") from None
        raise CheckpointError(f"{path}: not a readable checkpoint (corrupt or not a PyTorch file): "
                              f"{text.splitlines()[0] if text else type(exc).__name__}") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, AttributeError,
            IndexError, KeyError, TypeError) as exc:
        line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupt file?): {line}") from None


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


_OLD_PADDED_CONV = re.compile(r"(^|\.)(conv[12])\.1\.weight$")


def map_official_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official CRW key names -> selfsup's (`module.` stripped, `encoder.model.` -> `encoder.`,
    `selfsim_fc.` -> `head.`, old `conv1.1.weight` -> `conv1.weight`). Unknown keys are kept
    unchanged so that the strict load reports them."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        new = key[len("module."):] if key.startswith("module.") else key
        if new.startswith("encoder.model."):
            new = "encoder." + new[len("encoder.model."):]
        elif new.startswith("selfsim_fc."):
            new = "head." + new[len("selfsim_fc."):]
        new = _OLD_PADDED_CONV.sub(r"\1\2.weight", new)
        if new in out:
            raise CheckpointError(f"keys {key!r} and another key both map to {new!r}")
        out[new] = value
    return out


_TORCHVISION_PREFIXES = ("conv1.", "bn1.", "layer1.", "layer2.", "layer3.", "layer4.", "fc.")


def map_torchvision_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision ResNet-18 names -> selfsup's (`encoder.` prefix; the classifier `fc.*` dropped)."""
    return {f"encoder.{k}": v for k, v in state.items() if not k.startswith("fc.")}


def _layout(state: Mapping[str, torch.Tensor]) -> str:
    keys = [k[len("module."):] if k.startswith("module.") else k for k in state]
    if any(k.startswith(("encoder.model.", "selfsim_fc.")) for k in keys):
        return "official"
    if keys and all(k.startswith(_TORCHVISION_PREFIXES) for k in keys):
        return "torchvision"
    return "selfsup"


def _namespace_dict(args: Any) -> dict[str, Any]:
    if isinstance(args, argparse.Namespace):
        return dict(vars(args))
    if isinstance(args, Mapping):
        return dict(args)
    return {}


def read_state_dict(path: str | Path, map_location: Any = "cpu"
                    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The weights of a checkpoint under selfsup's key names, and what is known about it:
    {"layout": "selfsup" | "official" | "torchvision", "config": dict | None, "args": dict}."""
    path = Path(path)
    blob = read_checkpoint(path, map_location)
    if isinstance(blob, Mapping) and blob.get("format") == FORMAT:
        state, config = blob.get("model"), blob.get("config")
        if not _is_state_dict(state) or not isinstance(config, Mapping):
            raise CheckpointError(f"{path}: a selfsup checkpoint must hold 'model' (a state dict) "
                                  f"and 'config' (a mapping)")
        return dict(state), {"layout": "selfsup", "config": dict(config), "args": {},
                             "extra": {k: v for k, v in blob.items() if k not in ("model", "config")}}
    args: dict[str, Any] = {}
    if isinstance(blob, Mapping) and not _is_state_dict(blob):
        container = next((k for k in ("model", "state_dict") if k in blob), None)
        if container is None or not _is_state_dict(blob[container]):
            keys = ", ".join(map(str, list(blob)[:10]))
            raise CheckpointError(f"{path}: no model weights found: expected a state dict or a mapping "
                                  f"with a 'model' state dict; top-level keys: {keys}")
        args = _namespace_dict(blob.get("args"))
        state = dict(blob[container])
    elif _is_state_dict(blob):
        state = dict(blob)
    else:
        raise CheckpointError(f"{path}: not a checkpoint: holds a {type(blob).__name__}")
    layout = _layout(state)
    if layout == "official":
        state = map_official_keys(state)
    elif layout == "torchvision":
        state = map_torchvision_keys(state)
    else:
        state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    return state, {"layout": layout, "config": None, "args": args, "extra": {}}


def _head_linear_weights(state: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
    found = []
    for key, value in state.items():
        m = re.fullmatch(r"head\.(\d+)\.weight", key)
        if m:
            found.append((int(m.group(1)), value))
    return [v for _, v in sorted(found)]


def infer_config(state: Mapping[str, torch.Tensor], layout: str, args: Mapping[str, Any],
                 path: Path) -> CRWConfig:
    """Rebuild the config of an official or torchvision checkpoint from its weights (and args)."""
    if "encoder.conv1.weight" not in state:
        raise CheckpointError(f"{path}: no stem convolution ('conv1.weight') among the weights; "
                              f"not a ResNet checkpoint (first keys: {', '.join(list(state)[:5])})")
    width = state["encoder.conv1.weight"].shape[0] / 64.0
    with_layer4 = any(k.startswith("encoder.layer4.") for k in state)
    heads = _head_linear_weights(state)
    changes: dict[str, Any] = {"width": width, "with_layer4": with_layer4, "with_head": bool(heads)}
    if heads:
        changes["head_depth"] = len(heads) - 1
        changes["embed_dim"] = int(heads[-1].shape[0])
    if layout == "torchvision":
        changes["padding_mode"] = "zeros"
    else:
        model_type = str(args.get("model_type", "scratch"))
        changes["padding_mode"] = "zeros" if model_type in ("scratch_zeropad", "imagenet18") else "reflect"
        if isinstance(args.get("temp"), (int, float)):
            changes["temperature"] = float(args["temp"])
        if isinstance(args.get("dropout"), (int, float)):
            changes["edge_dropout"] = float(args["dropout"])
    return CRWConfig().replace(**changes)


def _strict_load(model: CRW, state: dict[str, torch.Tensor], path: Path, layout: str) -> None:
    expected = model.state_dict()
    # BatchNorm counters are absent from old torchvision files; they never affect the output
    for key in expected:
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros((), dtype=torch.long)
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
             for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong:
        def listing(name: str, items: list[str]) -> str:
            shown = ", ".join(items[:8]) + (f", ... ({len(items) - 8} more)" if len(items) > 8 else "")
            return f"{name} ({len(items)}): {shown}"
        parts = [listing(n, i) for n, i in (("missing keys", missing), ("unexpected keys", unexpected),
                                            ("shape mismatches", wrong)) if i]
        raise CheckpointError(f"{path}: {layout}-layout checkpoint does not match the model it describes "
                              f"(width {model.config.width}, head depth {model.config.head_depth}, "
                              f"layer4 {model.config.with_layer4}): " + "; ".join(parts))
    model.load_state_dict(state, strict=True)


def load_checkpoint(path: str | Path, map_location: Any = "cpu", *,
                    propagation_only: bool = False) -> CRW:
    """Build a CRW from a checkpoint file of any supported layout (strict, weights-only).

    `propagation_only=True` drops layer4 and the head (not needed for layer3 features) from
    both the weights and the model. The model is returned in eval mode.
    """
    path = Path(path)
    state, meta = read_state_dict(path, map_location)
    if meta["layout"] == "selfsup":
        try:
            config = CRWConfig.from_dict(meta["config"])
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: invalid CRW config in checkpoint: {exc}") from None
    else:
        config = infer_config(state, meta["layout"], meta["args"], path)
    if propagation_only:
        state = {k: v for k, v in state.items()
                 if not k.startswith(("encoder.layer4.", "head."))}
        config = config.replace(with_layer4=False, with_head=False)
    model = CRW(config)
    _strict_load(model, state, path, meta["layout"])
    model.to(map_location if isinstance(map_location, (str, torch.device)) else "cpu")
    return model.eval()
