"""StyleGAN2-style generator and discriminator for SinCUT (single-image translation).

Written from the StyleGAN2 paper (Karras et al., CVPR 2020): equalised learning rate (weights
drawn from N(0, 1) and scaled at run time by 1/√fan_in), leaky ReLU ×√2, residual blocks whose
output is divided by √2, [1,3,3,1] blur around resampling, weight (de)modulation and per-pixel
noise injection, a minibatch standard-deviation feature in the discriminator.

The generator is fully convolutional (one downsampling, one upsampling), so it trains on 64×64
crops and translates whole images whose sides are multiples of 4.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SinCUTGenerator", "SinCUTDiscriminator", "DEFAULT_SINCUT_NCE_LAYERS"]

DEFAULT_SINCUT_NCE_LAYERS = (0, 2, 4)
_ACT_GAIN = math.sqrt(2.0)


def _blur_kernel() -> torch.Tensor:
    k = torch.tensor([1.0, 3.0, 3.0, 1.0])
    k = torch.outer(k, k)
    return k / k.sum()


class Blur(nn.Module):
    """Depthwise [1,3,3,1]² blur with explicit zero padding (pad0 before, pad1 after)."""

    def __init__(self, pad: tuple[int, int], gain: float = 1.0):
        super().__init__()
        self.pad = pad
        self.register_buffer("kernel", _blur_kernel() * gain, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        x = F.pad(x, (self.pad[0], self.pad[1], self.pad[0], self.pad[1]))
        w = self.kernel.to(x.dtype)[None, None].expand(c, 1, 4, 4)
        return F.conv2d(x, w, groups=c)


class EqualConv2d(nn.Module):
    """Conv with the equalised learning rate (weights N(0,1) scaled by 1/√fan_in at run time)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, padding: int = 0, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(c_out)) if bias else None
        self.scale = 1.0 / math.sqrt(c_in * kernel * kernel)
        self.stride, self.padding = stride, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)


class EqualLinear(nn.Module):
    def __init__(self, c_in: int, c_out: int, bias_init: float = 0.0, activate: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in))
        self.bias = nn.Parameter(torch.full((c_out,), float(bias_init)))
        self.scale = 1.0 / math.sqrt(c_in)
        self.activate = activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.weight * self.scale, self.bias)
        return F.leaky_relu(y, 0.2) * _ACT_GAIN if self.activate else y


class BiasLeakyReLU(nn.Module):
    """Learned bias then leaky ReLU(0.2) scaled by √2 (keeps activations at unit variance)."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x + self.bias.view(1, -1, 1, 1).to(x.dtype), 0.2) * _ACT_GAIN


class ConvLayer(nn.Sequential):
    """[blur] · equalised conv (stride 2 when downsampling) · [bias + scaled leaky ReLU]."""

    def __init__(self, c_in: int, c_out: int, kernel: int, downsample: bool = False,
                 bias: bool = True, activate: bool = True):
        layers: list[nn.Module] = []
        stride, padding = 1, kernel // 2
        if downsample:
            p = 4 - 2 + (kernel - 1)
            layers.append(Blur(((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        layers.append(EqualConv2d(c_in, c_out, kernel, stride=stride, padding=padding,
                                  bias=bias and not activate))
        if activate:
            layers.append(BiasLeakyReLU(c_out))
        super().__init__(*layers)


class ResBlock(nn.Module):
    """(main(x) + skip(x)) / √2; main = conv3×3 · conv3×3 (the second one downsamples if asked)."""

    def __init__(self, c_in: int, c_out: int, downsample: bool = False):
        super().__init__()
        self.conv1 = ConvLayer(c_in, c_in, 3)
        self.conv2 = ConvLayer(c_in, c_out, 3, downsample=downsample)
        self.skip = (ConvLayer(c_in, c_out, 1, downsample=downsample, bias=False, activate=False)
                     if downsample or c_in != c_out else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / _ACT_GAIN


class NoiseInjection(nn.Module):
    """x + w·noise with one learned strength w (zero at init) and fresh N(0,1) noise per pixel."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        noise = torch.randn(b, 1, h, w, device=x.device, dtype=x.dtype, generator=self.generator)
        return x + self.weight.to(x.dtype) * noise


class ModulatedUpConv(nn.Module):
    """Modulated, demodulated transposed 3×3 conv (×2) + blur, noise, bias and activation.

    There is no style input: the per-input-channel modulation is a learned vector (initialised to
    1), so the layer is the StyleGAN2 synthesis layer with a constant style.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, demodulate: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in, kernel, kernel))
        self.style = nn.Parameter(torch.ones(c_in))
        self.scale = 1.0 / math.sqrt(c_in * kernel * kernel)
        self.demodulate = demodulate
        p = (4 - 2) - (kernel - 1)
        self.blur = Blur(((p + 1) // 2 + 1, p // 2 + 1), gain=4.0)
        self.noise = NoiseInjection()
        self.act = BiasLeakyReLU(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight * self.scale * self.style.view(1, -1, 1, 1)
        if self.demodulate:
            w = w * torch.rsqrt(w.pow(2).sum(dim=(1, 2, 3), keepdim=True) + 1e-8)
        # transposed conv wants in×out×k×k
        y = F.conv_transpose2d(x, w.transpose(0, 1).to(x.dtype), stride=2, padding=0)
        y = self.blur(y)
        return self.act(self.noise(y))


class _Stack(nn.Module):
    def __init__(self, convs: Sequence[nn.Module]):
        super().__init__()
        self.convs = nn.ModuleList(convs)


class SinCUTGenerator(nn.Module):
    """Encoder (`encoder.convs.0..5`) and decoder (`decoder.convs.0..4`), ngf 10 by default.

    Encoder: 0 identity (NCE 0 = input RGB), 1 1×1 conv 3→8·ngf, 2 downsampling residual block
    8·ngf→16·ngf (NCE 2), 3–5 residual blocks (NCE 4 = module 4). Decoder: 3 residual blocks, a
    modulated upsampling conv with noise (16·ngf→8·ngf), 1×1 conv to RGB.
    """

    def __init__(self, ngf: int = 10, input_nc: int = 3, output_nc: int = 3):
        super().__init__()
        c1, c2 = 8 * ngf, 16 * ngf
        self.encoder = _Stack([nn.Identity(), ConvLayer(input_nc, c1, 1), ResBlock(c1, c2, downsample=True),
                               ResBlock(c2, c2), ResBlock(c2, c2), ResBlock(c2, c2)])
        self.decoder = _Stack([ResBlock(c2, c2), ResBlock(c2, c2), ResBlock(c2, c2),
                               ModulatedUpConv(c2, c1), ConvLayer(c1, output_nc, 1, activate=False)])

    @property
    def encoder_end(self) -> int:
        return len(self.encoder.convs) - 1

    def check_layers(self, layers: Sequence[int]) -> None:
        bad = [i for i in layers if not 0 <= i <= self.encoder_end]
        if bad:
            raise ValueError(f"NCE layer indices {bad} outside the encoder (0..{self.encoder_end})")

    def set_noise_generator(self, generator: torch.Generator | None) -> None:
        for m in self.modules():
            if isinstance(m, NoiseInjection):
                m.generator = generator

    def nce_channels(self, layers: Sequence[int]) -> list[int]:
        return [f.shape[1] for f in self.encode(torch.zeros(1, 3, 16, 16), layers)]

    def encode(self, x: torch.Tensor, layers: Sequence[int]) -> list[torch.Tensor]:
        self.check_layers(layers)
        feats: dict[int, torch.Tensor] = {}
        last = max(layers)
        for i, module in enumerate(self.encoder.convs):
            x = module(x)
            if i in layers:
                feats[i] = x
            if i == last:
                break
        return [feats[i] for i in layers]

    def forward_with_features(self, x: torch.Tensor, layers: Sequence[int]
                              ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        self.check_layers(layers)
        feats: dict[int, torch.Tensor] = {}
        for i, module in enumerate(self.encoder.convs):
            x = module(x)
            if i in layers:
                feats[i] = x
        for module in self.decoder.convs:
            x = module(x)
        return x, [feats[i] for i in layers]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_features(x, [0])[0]


class MinibatchStd(nn.Module):
    """Append the mean (over channels and pixels) of the per-group feature standard deviation."""

    def __init__(self, group: int = 4):
        super().__init__()
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        g = max(d for d in range(1, min(self.group, b) + 1) if b % d == 0)
        y = x.float().view(g, b // g, c, h, w)
        y = torch.sqrt(y.var(0, unbiased=False) + 1e-8).mean(dim=(1, 2, 3))  # (b//g,)
        y = y.view(b // g, 1, 1, 1).repeat(g, 1, h, w).to(x.dtype)
        return torch.cat([x, y], dim=1)


class SinCUTDiscriminator(nn.Module):
    """StyleGAN2 residual discriminator for 64×64 crops (`convs.*`, `final_*`), ndf 8 by default."""

    def __init__(self, ndf: int = 8, input_nc: int = 3, size: int = 64):
        super().__init__()
        if size < 8 or size & (size - 1):
            raise ValueError(f"discriminator input size must be a power of two >= 8, got {size}")
        self.size = size
        c_top, c = 16 * ndf, 32 * ndf
        blocks: list[nn.Module] = [ConvLayer(input_nc, c_top, 1)]
        c_prev, res = c_top, size
        while res > 4:
            blocks.append(ResBlock(c_prev, c, downsample=True))
            c_prev, res = c, res // 2
        self.convs = nn.Sequential(*blocks)
        self.stddev = MinibatchStd(4)
        self.final_conv = ConvLayer(c + 1, c, 3)
        self.final_linear = nn.Sequential(EqualLinear(c * 16, c, activate=True), EqualLinear(c, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.size, self.size):
            raise ValueError(f"SinCUT discriminator expects {self.size}×{self.size} crops, got "
                             f"{tuple(x.shape[-2:])}")
        y = self.final_conv(self.stddev(self.convs(x)))
        return self.final_linear(y.flatten(1))
