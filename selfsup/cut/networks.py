"""CUT networks: the antialiased ResNet generator, the PatchGAN discriminator and the patch
projection heads (F).

Module indices follow the official build exactly (`model.N.*`), so an official
`latest_net_G.pth` / `latest_net_D.pth` / `latest_net_F.pth` state dict loads strictly into these
modules. The fixed blur filters (`filt` buffers) are checked against our own constants on load
instead of being trusted.
"""
from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "InstanceNorm", "Downsample", "Upsample", "ResnetBlock", "ResnetGenerator", "PatchGANDiscriminator",
    "PatchSampleF", "init_weights", "load_state_dict_checked", "check_filters", "count_parameters",
    "DEFAULT_NCE_LAYERS", "infer_generator_shape",
]

DEFAULT_NCE_LAYERS = (0, 4, 8, 12, 16)


def _blur_1d(size: int) -> torch.Tensor:
    """Binomial taps of length `size` (rows of Pascal's triangle)."""
    taps = {1: [1.0], 2: [1.0, 1.0], 3: [1.0, 2.0, 1.0], 4: [1.0, 3.0, 3.0, 1.0],
            5: [1.0, 4.0, 6.0, 4.0, 1.0], 6: [1.0, 5.0, 10.0, 10.0, 5.0, 1.0],
            7: [1.0, 6.0, 15.0, 20.0, 15.0, 6.0, 1.0]}
    if size not in taps:
        raise ValueError(f"blur filter size {size} not supported (1..7)")
    return torch.tensor(taps[size], dtype=torch.float64)


def blur_filter(size: int, channels: int, gain: float = 1.0) -> torch.Tensor:
    """Depthwise 2-D binomial filter, normalised to sum `gain`, shape channels×1×size×size."""
    a = _blur_1d(size)
    f = torch.outer(a, a)
    f = f / f.sum() * gain
    return f.to(torch.float32)[None, None].repeat(channels, 1, 1, 1)


class Downsample(nn.Module):
    """Blur then subsample by 2 (reflect padding), the antialiased replacement of a strided op."""

    def __init__(self, channels: int, filt_size: int = 3, stride: int = 2):
        super().__init__()
        self.channels, self.filt_size, self.stride = channels, filt_size, stride
        lo, hi = (filt_size - 1) // 2, int(math.ceil((filt_size - 1) / 2))
        self.pad = (lo, hi, lo, hi)
        self.register_buffer("filt", blur_filter(filt_size, channels))

    def expected_filter(self) -> torch.Tensor:
        return blur_filter(self.filt_size, self.channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, self.pad, mode="reflect")
        return F.conv2d(x, self.filt.to(x.dtype), stride=self.stride, groups=x.shape[1])


class Upsample(nn.Module):
    """Upsample by 2 with a binomial transposed filter (replicate padding, border rows trimmed)."""

    def __init__(self, channels: int, filt_size: int = 4, stride: int = 2):
        super().__init__()
        self.channels, self.filt_size, self.stride = channels, filt_size, stride
        self.pad_size = (filt_size - 1) // 2
        self.odd = filt_size % 2 == 1
        self.register_buffer("filt", blur_filter(filt_size, channels, gain=float(stride ** 2)))

    def expected_filter(self) -> torch.Tensor:
        return blur_filter(self.filt_size, self.channels, gain=float(self.stride ** 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.pad_size
        x = F.pad(x, (p, p, p, p), mode="replicate")
        y = F.conv_transpose2d(x, self.filt.to(x.dtype), stride=self.stride, padding=1 + p,
                               groups=x.shape[1])[:, :, 1:, 1:]
        return y if self.odd else y[:, :, :-1, :-1]


class InstanceNorm(nn.InstanceNorm2d):
    """InstanceNorm without affine parameters or running statistics (no state-dict keys),
    computed from mean and biased variance over H×W in float32 or wider.

    Written out instead of `F.instance_norm`: that kernel's CPU backward returns a wrong input
    gradient when the incoming gradient is channels-last strided at batch 1 (which PatchNCE's
    flatten/transpose/index sampling produces), and the explicit form keeps any memory format.
    """

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__(channels, eps=eps, affine=False, track_running_stats=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        var, mean = torch.var_mean(xf, dim=(2, 3), unbiased=False, keepdim=True)
        return ((xf - mean) * torch.rsqrt(var + self.eps)).to(x.dtype)


def _norm(channels: int) -> nn.Module:
    return InstanceNorm(channels)


class ResnetBlock(nn.Module):
    """x + [reflect pad, conv3×3, IN, ReLU, reflect pad, conv3×3, IN](x); keys conv_block.{1,5}."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=True), _norm(dim), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=True), _norm(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """ResNet generator with antialiased down/upsampling (CUT's `resnet_9blocks`, `antialias`).

    Indices of `self.model` (n_blocks = 9): 0 pad · 1–3 conv7×7/IN/ReLU · 4 conv (NCE) · 5–6 IN/ReLU
    · 7 down · 8 conv (NCE) · 9–11 IN/ReLU/down · 12–20 residual blocks · 21 up · 22–24 conv/IN/ReLU
    · 25 up · 26–28 conv/IN/ReLU · 29–31 pad/conv7×7/tanh.
    """

    def __init__(self, input_nc: int = 3, output_nc: int = 3, ngf: int = 64, n_blocks: int = 9):
        super().__init__()
        if n_blocks < 1:
            raise ValueError(f"n_blocks must be >= 1, got {n_blocks}")
        self.ngf, self.n_blocks = ngf, n_blocks
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7, bias=True), _norm(ngf), nn.ReLU(True)]
        for i in range(2):  # two antialiased downsamplings: conv stride 1 then blur-subsample
            mult = 2 ** i
            c_in, c_out = ngf * mult, ngf * mult * 2
            layers += [nn.Conv2d(c_in, c_out, 3, stride=1, padding=1, bias=True), _norm(c_out),
                       nn.ReLU(True), Downsample(c_out)]
        dim = ngf * 4
        layers += [ResnetBlock(dim) for _ in range(n_blocks)]
        for i in range(2):
            mult = 2 ** (2 - i)
            c_in, c_out = ngf * mult, ngf * mult // 2
            layers += [Upsample(c_in), nn.Conv2d(c_in, c_out, 3, stride=1, padding=1, bias=True),
                       _norm(c_out), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7, bias=True), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    @property
    def encoder_end(self) -> int:
        """Index of the last residual block (the deepest layer usable for NCE)."""
        return 11 + self.n_blocks

    def nce_channels(self, layers: Sequence[int]) -> list[int]:
        """Channel count of each NCE layer's output."""
        x = torch.zeros(1, 3, 16, 16)
        return [f.shape[1] for f in self.encode(x, layers)]

    def check_layers(self, layers: Sequence[int]) -> None:
        bad = [i for i in layers if not 0 <= i <= self.encoder_end]
        if bad:
            raise ValueError(f"NCE layer indices {bad} outside the encoder (0..{self.encoder_end} "
                             f"for n_blocks={self.n_blocks})")

    def encode(self, x: torch.Tensor, layers: Sequence[int]) -> list[torch.Tensor]:
        """Outputs at the given module indices, stopping after the last one ("encode mode")."""
        self.check_layers(layers)
        wanted = set(layers)
        feats: dict[int, torch.Tensor] = {}
        last = max(layers)
        for i, module in enumerate(self.model):
            x = module(x)
            if i in wanted:
                feats[i] = x
            if i == last:
                break
        return [feats[i] for i in layers]

    def forward_with_features(self, x: torch.Tensor, layers: Sequence[int]
                              ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The translated image and the NCE features of the input, from one pass."""
        self.check_layers(layers)
        wanted = set(layers)
        feats: dict[int, torch.Tensor] = {}
        for i, module in enumerate(self.model):
            x = module(x)
            if i in wanted:
                feats[i] = x
        return x, [feats[i] for i in layers]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class PatchGANDiscriminator(nn.Module):
    """70×70 PatchGAN with 3 layers and antialiased downsampling (keys model.{0,3,7,11,14})."""

    def __init__(self, input_nc: int = 3, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        kw, pad = 4, 1
        layers: list[nn.Module] = [nn.Conv2d(input_nc, ndf, kw, stride=1, padding=pad),
                                   nn.LeakyReLU(0.2, True), Downsample(ndf)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2 ** n, 8)
            layers += [nn.Conv2d(ndf * prev, ndf * mult, kw, stride=1, padding=pad, bias=True),
                       _norm(ndf * mult), nn.LeakyReLU(0.2, True), Downsample(ndf * mult)]
        prev, mult = mult, min(2 ** n_layers, 8)
        layers += [nn.Conv2d(ndf * prev, ndf * mult, kw, stride=1, padding=pad, bias=True),
                   _norm(ndf * mult), nn.LeakyReLU(0.2, True),
                   nn.Conv2d(ndf * mult, 1, kw, stride=1, padding=pad)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def l2_normalize(x: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """x / (‖x‖₂ + eps) along the last dimension.

    `vector_norm` rather than sqrt(sum x²): same value, but a finite gradient where a projection
    is exactly zero (sqrt's backward at 0 is NaN and would poison every weight).
    """
    return x / (torch.linalg.vector_norm(x, dim=-1, keepdim=True) + eps)


class PatchSampleF(nn.Module):
    """Per-layer 2-layer MLP heads applied to sampled feature locations (keys mlp_{l}.{0,2}).

    `forward(feats, num_patches, patch_ids)` returns, for each layer, L2-normalised B×P×nc
    projections and the location indices used (shared by every image in the batch). Locations are
    drawn on the features' device; pass the key call's ids to the query call.
    """

    def __init__(self, in_channels: Sequence[int], nc: int = 256):
        super().__init__()
        self.in_channels, self.nc = list(in_channels), nc
        for i, c in enumerate(self.in_channels):
            setattr(self, f"mlp_{i}", nn.Sequential(nn.Linear(c, nc), nn.ReLU(), nn.Linear(nc, nc)))

    def mlp(self, i: int) -> nn.Module:
        return getattr(self, f"mlp_{i}")

    @staticmethod
    def draw_ids(hw: int, num_patches: int, device: torch.device | str,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """First min(num_patches, hw) entries of a random permutation of the hw locations."""
        perm = torch.randperm(hw, device=device, generator=generator)
        return perm[:min(num_patches, hw)]

    def sample(self, feats: Sequence[torch.Tensor], num_patches: int,
               patch_ids: Sequence[torch.Tensor] | None = None,
               generator: torch.Generator | None = None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Gather B×P×C raw features at shared random locations (no projection)."""
        if len(feats) != len(self.in_channels):
            raise ValueError(f"expected {len(self.in_channels)} feature maps, got {len(feats)}")
        out, ids = [], []
        for i, f in enumerate(feats):
            b, c, h, w = f.shape
            flat = f.flatten(2).transpose(1, 2)  # B×HW×C
            pid = patch_ids[i] if patch_ids is not None else self.draw_ids(h * w, num_patches, f.device,
                                                                            generator)
            out.append(flat[:, pid, :])
            ids.append(pid)
        return out, ids

    def project(self, i: int, x: torch.Tensor) -> torch.Tensor:
        return l2_normalize(self.mlp(i)(x))

    def forward(self, feats: Sequence[torch.Tensor], num_patches: int = 256,
                patch_ids: Sequence[torch.Tensor] | None = None,
                generator: torch.Generator | None = None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        sampled, ids = self.sample(feats, num_patches, patch_ids, generator)
        return [self.project(i, x) for i, x in enumerate(sampled)], ids


def init_weights(module: nn.Module, gain: float = 0.02) -> nn.Module:
    """Xavier-normal weights (gain 0.02) and zero biases for every Conv/Linear, as in CUT."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.xavier_normal_(m.weight, gain=gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def check_filters(module: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str = "state dict") -> None:
    """Raise if any `filt` buffer in `state_dict` differs from the module's own fixed filter."""
    for name, m in module.named_modules():
        if isinstance(m, (Downsample, Upsample)):
            key = f"{name}.filt" if name else "filt"
            if key not in state_dict:
                continue
            got = state_dict[key]
            want = m.expected_filter()
            if tuple(got.shape) != tuple(want.shape):
                raise ValueError(f"{source}: {key} has shape {tuple(got.shape)}, expected {tuple(want.shape)}")
            if not torch.allclose(got.detach().float().cpu(), want, rtol=0, atol=1e-6):
                raise ValueError(f"{source}: {key} holds different blur filter values than the fixed "
                                 f"antialiasing filter (a non-antialiased or altered checkpoint?)")


def load_state_dict_checked(module: nn.Module, state_dict: Mapping[str, torch.Tensor],
                            source: str = "state dict") -> None:
    """Strict load with a readable error listing missing / unexpected keys and wrong shapes."""
    state_dict = dict(state_dict)
    if any(k.startswith("module.") for k in state_dict):  # saved from a DataParallel wrapper
        state_dict = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state_dict.items()}
    own = module.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = sorted(f"{k}: {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)}"
                    for k in set(own) & set(state_dict) if tuple(state_dict[k].shape) != tuple(own[k].shape))
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys: {', '.join(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {', '.join(unexpected)}")
        if shapes:
            parts.append(f"shape mismatches (file vs model): {'; '.join(shapes)}")
        raise ValueError(f"{source} does not match {type(module).__name__}: " + " | ".join(parts))
    check_filters(module, state_dict, source)
    module.load_state_dict(state_dict, strict=True)


def infer_generator_shape(state_dict: Mapping[str, torch.Tensor]) -> dict:
    """ngf and n_blocks of an official-layout generator state dict (from its key names / shapes)."""
    if "model.1.weight" not in state_dict:
        raise ValueError("not a ResNet generator state dict: key model.1.weight missing")
    ngf = int(state_dict["model.1.weight"].shape[0])
    blocks = {int(k.split(".")[1]) for k in state_dict if ".conv_block." in k}
    return {"ngf": ngf, "n_blocks": len(blocks), "input_nc": int(state_dict["model.1.weight"].shape[1])}


def iter_nce_modules(gen: ResnetGenerator, layers: Iterable[int]) -> list[str]:
    """Human-readable names of the NCE layers (for logs)."""
    return [f"{i}:{type(gen.model[i]).__name__}" for i in layers]
