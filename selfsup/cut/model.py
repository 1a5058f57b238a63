"""CUT / FastCUT / SinCUT models: networks, optimisers and one training step.

One step, in the official order:
1. forward: G on [real_A; real_B] (CUT, SinCUT) or on real_A, flipped with p 0.5 (FastCUT; the
   output stays flipped);
2. D step on (fake_B.detach(), real_B);
3. G and F step against the just-updated, frozen D: GAN loss + PatchNCE (+ identity terms).

Differences from the official code that leave the math unchanged: the keys of the NCE terms are
the input features from the main forward (detached; re-encoded under no_grad only where the main
forward saw a flipped input), the projection of keys runs without autograd, the two query
encodings run as one batch, the D step sees fake and real in one batch (InstanceNorm is
per-sample), and patch positions are drawn on the device. PatchNCE logits and every loss are
float32 under bf16 autocast.
"""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from .losses import at_least_fp32, lsgan_d_loss, lsgan_g_loss, nonsat_d_loss, nonsat_g_loss, patch_nce, r1_penalty
from .networks import (DEFAULT_NCE_LAYERS, PatchGANDiscriminator, PatchSampleF, ResnetGenerator,
                       init_weights)
from .stylegan import DEFAULT_SINCUT_NCE_LAYERS, SinCUTDiscriminator, SinCUTGenerator

__all__ = ["MODES", "CUTConfig", "CUTModel", "SinCUTModel", "build_model", "autocast_context"]

MODES = ("cut", "fastcut", "sincut")

# Per-mode paper settings; any of them can be overridden in CUTConfig.
_PRESETS: dict[str, dict[str, Any]] = {
    "cut": dict(nce_idt=True, lambda_NCE=1.0, flip_equivariance=False, n_epochs=200, n_epochs_decay=200,
                lr=2e-4, beta1=0.5, beta2=0.999, nce_layers=DEFAULT_NCE_LAYERS, num_patches=256,
                ngf=64, ndf=64, batch_size=1, gan_mode="lsgan", negatives_from_batch=False),
    "fastcut": dict(nce_idt=False, lambda_NCE=10.0, flip_equivariance=True, n_epochs=150, n_epochs_decay=50,
                    lr=2e-4, beta1=0.5, beta2=0.999, nce_layers=DEFAULT_NCE_LAYERS, num_patches=256,
                    ngf=64, ndf=64, batch_size=1, gan_mode="lsgan", negatives_from_batch=False),
    "sincut": dict(nce_idt=True, lambda_NCE=4.0, flip_equivariance=False, n_epochs=8, n_epochs_decay=8,
                   lr=2e-3, beta1=0.0, beta2=0.99, nce_layers=DEFAULT_SINCUT_NCE_LAYERS, num_patches=1,
                   ngf=10, ndf=8, batch_size=16, gan_mode="nonsaturating", negatives_from_batch=True),
}


@dataclass(frozen=True)
class CUTConfig:
    """Model and optimiser settings. Fields left None take the mode's paper value (`resolved()`)."""

    mode: str = "cut"
    input_nc: int = 3
    output_nc: int = 3
    ngf: int | None = None
    ndf: int | None = None
    n_blocks: int = 9
    n_layers_D: int = 3
    netF_nc: int = 256
    nce_layers: tuple[int, ...] | None = None
    num_patches: int | None = None
    nce_T: float = 0.07
    nce_idt: bool | None = None
    lambda_NCE: float | None = None
    lambda_GAN: float = 1.0
    flip_equivariance: bool | None = None
    nce_diag_fill: float = -10.0
    detach_keys: bool = True
    shared_patch_ids: bool = True
    negatives_from_batch: bool | None = None
    gan_mode: str | None = None
    lambda_R1: float = 1.0          # SinCUT
    lambda_identity: float = 1.0    # SinCUT's L1(idt_B, real_B)
    lr: float | None = None
    beta1: float | None = None
    beta2: float | None = None
    n_epochs: int | None = None
    n_epochs_decay: int | None = None
    batch_size: int | None = None
    init_gain: float = 0.02
    bf16: bool = True               # autocast on CUDA only
    channels_last: bool = True      # on CUDA only

    def resolved(self) -> "CUTConfig":
        if self.mode not in _PRESETS:
            raise ValueError(f"unknown mode {self.mode!r}: expected one of {', '.join(MODES)}")
        preset = _PRESETS[self.mode]
        values = {k: (preset[k] if getattr(self, k) is None else getattr(self, k)) for k in preset}
        values["nce_layers"] = tuple(int(i) for i in values["nce_layers"])
        out = dataclasses.replace(self, **values)
        if out.gan_mode not in ("lsgan", "nonsaturating"):
            raise ValueError(f"gan_mode must be 'lsgan' or 'nonsaturating', got {out.gan_mode!r}")
        return out

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if d["nce_layers"] is not None:
            d["nce_layers"] = list(d["nce_layers"])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "CUTConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown CUT config keys: {', '.join(unknown)}")
        d = dict(d)
        if d.get("nce_layers") is not None:
            d["nce_layers"] = tuple(d["nce_layers"])
        return cls(**d)


def autocast_context(device: torch.device, enabled: bool):
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _set_requires_grad(module: nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


class _Base(nn.Module):
    cfg: CUTConfig

    def _setup_device(self, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self.use_amp = self.cfg.bf16 and self.device.type == "cuda"
        self.memory_format = (torch.channels_last if self.cfg.channels_last and self.device.type == "cuda"
                              else torch.contiguous_format)
        self.to(self.device)
        if self.memory_format is torch.channels_last:
            self.netG.to(memory_format=torch.channels_last)
            self.netD.to(memory_format=torch.channels_last)
        c = self.cfg
        self.optimizer_G = torch.optim.Adam(self.netG.parameters(), lr=c.lr, betas=(c.beta1, c.beta2))
        self.optimizer_D = torch.optim.Adam(self.netD.parameters(), lr=c.lr, betas=(c.beta1, c.beta2))
        self.optimizer_F = torch.optim.Adam(self.netF.parameters(), lr=c.lr, betas=(c.beta1, c.beta2))

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"G": self.optimizer_G, "D": self.optimizer_D, "F": self.optimizer_F}

    def set_lr(self, lr: float) -> None:
        for opt in self.optimizers.values():
            for group in opt.param_groups:
                group["lr"] = lr

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)

    def amp(self):
        return autocast_context(self.device, self.use_amp)

    def nce_loss(self, feats_k: Sequence[torch.Tensor], feats_q: Sequence[torch.Tensor],
                 generator: torch.Generator | None) -> torch.Tensor:
        """λ_NCE · mean over layers of the mean per-patch PatchNCE (queries = generated image).

        Keys come in as features of the source image; with `detach_keys` their projection runs
        without autograd (no gradient may reach G or F through the key branch anyway).
        """
        c = self.cfg
        total = 0.0
        for i, (fk, fq) in enumerate(zip(feats_k, feats_q)):
            b, _, h, w = fk.shape
            if c.shared_patch_ids:
                ids = PatchSampleF.draw_ids(h * w, c.num_patches, fk.device, generator)
                k_raw = fk.flatten(2).transpose(1, 2)[:, ids]
                q_raw = fq.flatten(2).transpose(1, 2)[:, ids]
            else:  # independent positions per image
                ids = torch.stack([PatchSampleF.draw_ids(h * w, c.num_patches, fk.device, generator)
                                   for _ in range(b)])
                gather = ids[:, :, None].expand(-1, -1, fk.shape[1])
                k_raw = fk.flatten(2).transpose(1, 2).gather(1, gather)
                q_raw = fq.flatten(2).transpose(1, 2).gather(1, gather)
            with torch.autocast(self.device.type, enabled=False):
                grad_ctx = torch.no_grad() if c.detach_keys else contextlib.nullcontext()
                with grad_ctx:
                    k = self.netF.project(i, at_least_fp32(k_raw))
                q = self.netF.project(i, at_least_fp32(q_raw))
                loss = patch_nce(q, k, c.nce_T, diag_fill=c.nce_diag_fill, detach_keys=c.detach_keys,
                                 negatives_from_batch=c.negatives_from_batch)
            total = total + loss.mean() * c.lambda_NCE
        return total / len(feats_k)


class CUTModel(_Base):
    """CUT and FastCUT: ResNet generator, PatchGAN discriminator, PatchSampleF, LSGAN + PatchNCE."""

    def __init__(self, cfg: CUTConfig, device: torch.device | str = "cpu"):
        super().__init__()
        cfg = cfg.resolved()
        if cfg.mode == "sincut":
            raise ValueError("use SinCUTModel for mode 'sincut'")
        self.cfg = cfg
        self.netG = init_weights(ResnetGenerator(cfg.input_nc, cfg.output_nc, cfg.ngf, cfg.n_blocks), cfg.init_gain)
        self.netG.check_layers(cfg.nce_layers)
        self.netD = init_weights(PatchGANDiscriminator(cfg.output_nc, cfg.ndf, cfg.n_layers_D), cfg.init_gain)
        self.netF = init_weights(PatchSampleF(self.netG.nce_channels(cfg.nce_layers), cfg.netF_nc), cfg.init_gain)
        self._setup_device(device)

    def translate(self, real_A: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), self.amp():
            return self.netG(self.prepare(real_A)).float()

    def train_step(self, real_A: torch.Tensor, real_B: torch.Tensor, *, flip: bool = False,
                   generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """One D step then one G/F step. `flip` (FastCUT) mirrors the generator's input.

        Returns the detached losses (device tensors: reading them is the caller's choice of sync).
        """
        c = self.cfg
        real_A, real_B = self.prepare(real_A), self.prepare(real_B)
        n = real_A.shape[0]
        layers = c.nce_layers
        flip = bool(flip) and c.flip_equivariance
        G, D = self.netG, self.netD

        # 1. forward
        real = torch.cat([real_A, real_B]) if c.nce_idt else real_A
        if flip:
            real = torch.flip(real, [3])
        with self.amp():
            fake, feats_real = G.forward_with_features(real, layers)
        fake_B = fake[:n]
        idt_B = fake[n:] if c.nce_idt else None

        # 2. D step
        _set_requires_grad(D, True)
        self.optimizer_D.zero_grad(set_to_none=True)
        with self.amp():
            pred = D(torch.cat([fake_B.detach(), real_B]))
        loss_D = lsgan_d_loss(pred[:n], pred[n:])
        loss_D.backward()
        self.optimizer_D.step()

        # 3. G and F step
        _set_requires_grad(D, False)
        self.optimizer_G.zero_grad(set_to_none=True)
        self.optimizer_F.zero_grad(set_to_none=True)
        with self.amp():
            loss_G_GAN = lsgan_g_loss(D(fake_B)) * c.lambda_GAN
            feats_fake = G.encode(fake, layers)  # queries of fake_B (and idt_B), one batch
        if flip:
            feats_fake = [torch.flip(f, [3]) for f in feats_fake]
        if flip and c.detach_keys:
            # keys are features of the unflipped input: the main forward saw the mirrored one
            with torch.no_grad(), self.amp():
                feats_key = G.encode(real_A, layers)
        elif flip:
            with self.amp():
                feats_key = G.encode(real_A, layers)
        else:
            feats_key = [f.detach() for f in feats_real] if c.detach_keys else list(feats_real)
        loss_NCE = self.nce_loss([f[:n] for f in feats_key], [f[:n] for f in feats_fake], generator)
        if c.nce_idt:
            loss_NCE_Y = self.nce_loss([f[n:] for f in feats_key], [f[n:] for f in feats_fake], generator)
            loss_NCE_both = 0.5 * (loss_NCE + loss_NCE_Y)
        else:
            loss_NCE_Y = torch.zeros((), device=self.device)
            loss_NCE_both = loss_NCE
        loss_G = loss_G_GAN + loss_NCE_both
        loss_G.backward()
        self.optimizer_G.step()
        self.optimizer_F.step()
        _set_requires_grad(D, True)
        return {"D": loss_D.detach(), "G_GAN": loss_G_GAN.detach(), "NCE": loss_NCE.detach(),
                "NCE_Y": loss_NCE_Y.detach(), "G": loss_G.detach()}


class SinCUTModel(_Base):
    """SinCUT: StyleGAN2-style G/D on 64×64 crops of one image pair, non-saturating GAN + R1,
    PatchNCE with one patch per layer per crop and the other crops as negatives, identity L1."""

    def __init__(self, cfg: CUTConfig, device: torch.device | str = "cpu"):
        super().__init__()
        cfg = cfg.resolved()
        if cfg.mode != "sincut":
            raise ValueError(f"SinCUTModel needs mode 'sincut', got {cfg.mode!r}")
        self.cfg = cfg
        self.netG = SinCUTGenerator(cfg.ngf, cfg.input_nc, cfg.output_nc)
        self.netG.check_layers(cfg.nce_layers)
        self.netD = SinCUTDiscriminator(cfg.ndf, cfg.output_nc)
        self.netF = init_weights(PatchSampleF(self.netG.nce_channels(cfg.nce_layers), cfg.netF_nc), cfg.init_gain)
        self._setup_device(device)

    def translate(self, real_A: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), self.amp():
            return self.netG(self.prepare(real_A)).float()

    def train_step(self, real_A: torch.Tensor, real_B: torch.Tensor, *, flip: bool = False,
                   generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        c = self.cfg
        real_A, real_B = self.prepare(real_A), self.prepare(real_B)
        n = real_A.shape[0]
        layers = c.nce_layers
        G, D = self.netG, self.netD
        G.set_noise_generator(generator)

        with self.amp():
            fake, feats_real = G.forward_with_features(torch.cat([real_A, real_B]), layers)
        fake_B, idt_B = fake[:n], fake[n:]

        # D step: separate calls (the minibatch-stddev feature couples the samples of one call)
        _set_requires_grad(D, True)
        self.optimizer_D.zero_grad(set_to_none=True)
        real_B_r1 = real_B.detach().requires_grad_(True)
        with self.amp():
            pred_fake = D(fake_B.detach())
            pred_real = D(real_B_r1)
        loss_D_gan = nonsat_d_loss(pred_fake, pred_real)
        loss_R1 = r1_penalty(pred_real, real_B_r1, c.lambda_R1) if c.lambda_R1 > 0 else torch.zeros((), device=self.device)
        loss_D = loss_D_gan + loss_R1
        loss_D.backward()
        self.optimizer_D.step()

        _set_requires_grad(D, False)
        self.optimizer_G.zero_grad(set_to_none=True)
        self.optimizer_F.zero_grad(set_to_none=True)
        with self.amp():
            loss_G_GAN = nonsat_g_loss(D(fake_B)) * c.lambda_GAN
            feats_fake = G.encode(fake, layers)
        feats_key = [f.detach() for f in feats_real] if c.detach_keys else list(feats_real)
        loss_NCE = self.nce_loss([f[:n] for f in feats_key], [f[:n] for f in feats_fake], generator)
        loss_NCE_Y = self.nce_loss([f[n:] for f in feats_key], [f[n:] for f in feats_fake], generator)
        loss_idt = (at_least_fp32(idt_B) - at_least_fp32(real_B)).abs().mean() * c.lambda_identity
        loss_G = loss_G_GAN + 0.5 * (loss_NCE + loss_NCE_Y) + loss_idt
        loss_G.backward()
        self.optimizer_G.step()
        self.optimizer_F.step()
        _set_requires_grad(D, True)
        G.set_noise_generator(None)
        return {"D": loss_D_gan.detach(), "R1": loss_R1.detach(), "G_GAN": loss_G_GAN.detach(),
                "NCE": loss_NCE.detach(), "NCE_Y": loss_NCE_Y.detach(), "idt": loss_idt.detach(),
                "G": loss_G.detach()}


def build_model(cfg: CUTConfig, device: torch.device | str = "cpu") -> CUTModel | SinCUTModel:
    return SinCUTModel(cfg, device) if cfg.mode == "sincut" else CUTModel(cfg, device)


def flip_draw(seed_seq: Sequence[int]) -> bool:
    """FastCUT's coin: p 0.5, from a NumPy generator seeded by (seed, step)."""
    return bool(np.random.default_rng(list(seed_seq)).random() < 0.5)
