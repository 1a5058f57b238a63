"""CUT losses: PatchNCE, least-squares GAN, non-saturating GAN and the R1 penalty.

All losses are computed in float32 even under bf16 autocast: the 0.07 temperature amplifies
rounding error in the NCE logits.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["at_least_fp32", "patch_nce", "lsgan_d_loss", "lsgan_g_loss", "nonsat_d_loss", "nonsat_g_loss", "r1_penalty"]


def at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """Upcast half-precision tensors to float32; float32 and float64 stay as they are."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def patch_nce(feat_q: torch.Tensor, feat_k: torch.Tensor, tau: float = 0.07, *,
              diag_fill: float = -10.0, detach_keys: bool = True,
              negatives_from_batch: bool = False) -> torch.Tensor:
    """Per-patch PatchNCE loss.

    feat_q, feat_k: B×P×C L2-normalised queries (generated image) and keys (input image).
    Patch i's positive is k_i; its negatives are the other patches of the same image, or of the
    whole batch with `negatives_from_batch` (SinCUT). The negative q_i·k_i is replaced by
    `diag_fill` before dividing by `tau` (CUT's −10). Returns the cross-entropy of each of the
    B·P patches against the positive (shape B·P, float32 or wider).
    """
    if feat_q.dim() != 3 or feat_q.shape != feat_k.shape:
        raise ValueError(f"patch_nce expects two B×P×C tensors of equal shape, got "
                         f"{tuple(feat_q.shape)} and {tuple(feat_k.shape)}")
    q = at_least_fp32(feat_q)
    k = at_least_fp32(feat_k)
    if detach_keys:
        k = k.detach()
    b, p, c = q.shape
    l_pos = (q * k).sum(-1).reshape(b * p, 1)
    if negatives_from_batch:
        q, k = q.reshape(1, b * p, c), k.reshape(1, b * p, c)
    n = q.shape[1]
    l_neg = torch.bmm(q, k.transpose(1, 2))
    eye = torch.eye(n, dtype=torch.bool, device=q.device)
    l_neg = l_neg.masked_fill(eye[None], diag_fill).reshape(-1, n)
    logits = torch.cat([l_pos, l_neg], dim=1) / tau
    target = torch.zeros(logits.shape[0], dtype=torch.long, device=q.device)
    return F.cross_entropy(logits, target, reduction="none")


def lsgan_d_loss(pred_fake: torch.Tensor, pred_real: torch.Tensor) -> torch.Tensor:
    """0.5·(mean(D(fake)²) + mean((D(real) − 1)²))."""
    return 0.5 * (at_least_fp32(pred_fake).pow(2).mean() + (at_least_fp32(pred_real) - 1).pow(2).mean())


def lsgan_g_loss(pred_fake: torch.Tensor) -> torch.Tensor:
    """mean((D(fake) − 1)²)."""
    return (at_least_fp32(pred_fake) - 1).pow(2).mean()


def nonsat_d_loss(pred_fake: torch.Tensor, pred_real: torch.Tensor) -> torch.Tensor:
    """0.5·(mean softplus(D(fake)) + mean softplus(−D(real)))."""
    return 0.5 * (F.softplus(at_least_fp32(pred_fake)).mean() + F.softplus(-at_least_fp32(pred_real)).mean())


def nonsat_g_loss(pred_fake: torch.Tensor) -> torch.Tensor:
    """mean softplus(−D(fake))."""
    return F.softplus(-at_least_fp32(pred_fake)).mean()


def r1_penalty(pred_real: torch.Tensor, real: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
    """0.5·weight·mean over the batch of ‖∇_real D(real)‖² (differentiable: create_graph).

    `real` must have requires_grad set before D ran on it. The gradient is that of the summed
    logits (StyleGAN2's form): for a D whose logits depend on their own sample only it holds every
    per-sample gradient at once; with a minibatch-stddev feature it also carries the coupling.
    """
    (grad,) = torch.autograd.grad(at_least_fp32(pred_real).sum(), real, create_graph=True)
    return 0.5 * weight * at_least_fp32(grad).pow(2).flatten(1).sum(1).mean()
