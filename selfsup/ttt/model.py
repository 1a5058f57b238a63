"""The Y-shaped network of test-time training (Sun et al., ICML 2020).

A CIFAR-style pre-activation ResNet of depth 6n+2 (three groups of n blocks at 16, 32, 64 channels
times `width / 16`) is cut after `split` ("layer1" or "layer2"): everything up to the cut is the
shared encoder; the rest is duplicated into two heads with their own weights, one ending in a
`classes`-way classifier, the other in a 4-way rotation classifier (0, 90, 180, 270 degrees).
Normalisation is GroupNorm by default, as in the paper (a test-time batch holds copies of one image,
whose batch statistics would be meaningless); BatchNorm is an option.
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn

__all__ = ["TTTNet", "PreActBlock", "make_norm"]

Norm = Literal["group", "batch"]


def make_norm(kind: str, channels: int, groups: int) -> nn.Module:
    if kind == "group":
        g = min(groups, channels)
        while channels % g:
            g -= 1
        return nn.GroupNorm(g, channels)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    raise ValueError(f"norm must be 'group' or 'batch', got {kind!r}")


class PreActBlock(nn.Module):
    """norm-relu-conv3x3 twice, identity or strided 1x1-conv shortcut."""

    def __init__(self, cin: int, cout: int, stride: int, norm: str, groups: int):
        super().__init__()
        self.norm1 = make_norm(norm, cin, groups)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.norm2 = make_norm(norm, cout, groups)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.relu = nn.ReLU(inplace=False)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.norm1(x))
        identity = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(self.relu(self.norm2(out)))
        return out + identity


class _Head(nn.Module):
    def __init__(self, stages: nn.Sequential, channels: int, outputs: int, norm: str, groups: int):
        super().__init__()
        self.stages = stages
        self.norm = make_norm(norm, channels, groups)
        self.relu = nn.ReLU(inplace=False)
        self.fc = nn.Linear(channels, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.norm(self.stages(x)))
        return self.fc(x.mean(dim=(2, 3)))


class TTTNet(nn.Module):
    """Shared encoder + classification head + rotation head."""

    def __init__(self, classes: int = 10, depth: int = 26, width: int = 16, norm: Norm = "group",
                 groups: int = 8, split: Literal["layer1", "layer2"] = "layer2"):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth must be 6n+2 with n >= 1 (8, 14, 20, 26, ...), got {depth}")
        if split not in ("layer1", "layer2"):
            raise ValueError(f"split must be 'layer1' or 'layer2', got {split!r}")
        if classes < 1 or width < 1:
            raise ValueError("classes and width must be >= 1")
        self.classes, self.depth, self.width, self.norm_kind, self.split = classes, depth, width, norm, split
        self.groups = groups
        n = (depth - 2) // 6
        channels = (width, 2 * width, 4 * width)

        def group(index: int) -> nn.Sequential:
            cin = channels[max(0, index - 1)]
            stride = 1 if index == 0 else 2
            blocks = [PreActBlock(cin, channels[index], stride, norm, groups)]
            blocks += [PreActBlock(channels[index], channels[index], 1, norm, groups) for _ in range(n - 1)]
            return nn.Sequential(*blocks)

        shared_groups = 1 if split == "layer1" else 2
        self.encoder = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False),
                                     *[group(i) for i in range(shared_groups)])

        def head(outputs: int) -> _Head:
            return _Head(nn.Sequential(*[group(i) for i in range(shared_groups, 3)]), channels[2], outputs,
                         norm, groups)

        self.classifier = head(classes)
        self.rotation = head(4)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def config(self) -> dict:
        return {"classes": self.classes, "depth": self.depth, "width": self.width, "norm": self.norm_kind,
                "groups": self.groups, "split": self.split}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.encoder(x))

    def predict_rotation(self, x: torch.Tensor) -> torch.Tensor:
        return self.rotation(self.encoder(x))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encoder(x)
        return self.classifier(z), self.rotation(z)

    def self_supervised_parameters(self) -> list[nn.Parameter]:
        """What test-time training updates: the shared encoder and the rotation head."""
        return list(self.encoder.parameters()) + list(self.rotation.parameters())
