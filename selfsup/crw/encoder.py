"""The CRW encoder: a ResNet-18 with output stride 8 and reflect padding, in plain PyTorch.

Module and parameter names follow torchvision's ResNet-18 exactly (`conv1`, `bn1`,
`layer1.0.conv1`, `layer2.0.downsample.0`, ...), so torchvision-layout ImageNet weights and the
official CRW weights (after stripping their wrapper prefix) load by name.

Differences from torchvision's ResNet-18, all from the CRW recipe:
- every convolution of layer3 and layer4, including the 1x1 downsample convs, has stride 1
  (output stride 8: stem /2, max-pool /2, layer2 /2);
- every convolution with padding > 0 pads by reflection (`padding_mode="reflect"`);
  `"zeros"` gives the ImageNet baseline's zero padding;
- no average pool and no classifier;
- a width multiplier scales every channel count (1.0 = ResNet-18).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import torch
from torch import nn

__all__ = ["BasicBlock", "ResNetEncoder", "stage_channels", "inspect_checkpoint"]

PaddingMode = Literal["reflect", "zeros"]


def stage_channels(width: float) -> tuple[int, int, int, int]:
    """Channel counts of layer1..layer4 for a width multiplier (64, 128, 256, 512 at 1.0)."""
    return tuple(max(1, int(round(c * width))) for c in (64, 128, 256, 512))  # type: ignore[return-value]


def _conv(cin: int, cout: int, kernel: int, stride: int, padding_mode: str) -> nn.Conv2d:
    pad = kernel // 2
    return nn.Conv2d(cin, cout, kernel, stride=stride, padding=pad, bias=False,
                     padding_mode=padding_mode if pad > 0 else "zeros")


class BasicBlock(nn.Module):
    """torchvision's BasicBlock (two 3x3 convs, identity or 1x1-conv shortcut)."""

    def __init__(self, cin: int, cout: int, stride: int, padding_mode: str):
        super().__init__()
        self.conv1 = _conv(cin, cout, 3, stride, padding_mode)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv(cout, cout, 3, 1, padding_mode)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample: nn.Module | None = None
        # torchvision adds the projection whenever the shape changes; with stride 1 in layer3/4
        # the channel change alone still requires it (and the official weights carry it).
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNetEncoder(nn.Module):
    """ResNet-18 trunk at output stride 8.

    `forward(x, layer="layer3")` returns the feature map after `layer` ("layer3" or "layer4").
    With `with_layer4=False` the module has no layer4 (propagation-only models).
    """

    def __init__(self, width: float = 1.0, padding_mode: PaddingMode = "reflect",
                 with_layer4: bool = True):
        super().__init__()
        if padding_mode not in ("reflect", "zeros"):
            raise ValueError(f"padding_mode must be 'reflect' or 'zeros', got {padding_mode!r}")
        c1, c2, c3, c4 = stage_channels(width)
        self.channels = (c1, c2, c3, c4)
        self.conv1 = _conv(3, c1, 7, 2, padding_mode)
        self.bn1 = nn.BatchNorm2d(c1)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._stage(c1, c1, 1, padding_mode)
        self.layer2 = self._stage(c1, c2, 2, padding_mode)
        self.layer3 = self._stage(c2, c3, 1, padding_mode)
        self.layer4 = self._stage(c3, c4, 1, padding_mode) if with_layer4 else None
        self._init_weights()

    @staticmethod
    def _stage(cin: int, cout: int, stride: int, padding_mode: str) -> nn.Sequential:
        return nn.Sequential(BasicBlock(cin, cout, stride, padding_mode),
                             BasicBlock(cout, cout, 1, padding_mode))

    def _init_weights(self) -> None:
        # torchvision's ResNet initialisation
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def out_channels(self) -> int:
        return self.channels[3]

    @property
    def feature_channels(self) -> int:
        return self.channels[2]

    def forward(self, x: torch.Tensor, layer: str = "layer3") -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        if layer == "layer3":
            return x
        if layer != "layer4":
            raise ValueError(f"layer must be 'layer3' or 'layer4', got {layer!r}")
        if self.layer4 is None:
            raise ValueError("this encoder was built without layer4 (propagation-only)")
        return self.layer4(x)


def width_from_state_dict(state: dict[str, torch.Tensor], prefix: str = "") -> float:
    """The width multiplier of a ResNet-18 state dict (from the stem's output channels)."""
    key = f"{prefix}conv1.weight"
    if key not in state:
        raise KeyError(key)
    return state[key].shape[0] / 64.0


def inspect_checkpoint(path: str | Path) -> list[tuple[str, tuple[int, ...]]]:
    """List (key, shape) of the weights in a checkpoint file (any supported layout)."""
    from .checkpoint import read_state_dict

    state, _ = read_state_dict(path)
    return [(k, tuple(v.shape)) for k, v in state.items() if isinstance(v, torch.Tensor)]


def output_size(size: int) -> int:
    """Feature-map size of an input side length (ceil(size / 8))."""
    return math.ceil(size / 8)
