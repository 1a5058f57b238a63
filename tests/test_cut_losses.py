"""CUT losses against slow, obviously-correct loops in float64."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from selfsup.cut.losses import (lsgan_d_loss, lsgan_g_loss, nonsat_d_loss, nonsat_g_loss, patch_nce,
                                r1_penalty)
from selfsup.cut.networks import l2_normalize


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one thread is faster than two and immune to a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def unit(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return l2_normalize(torch.randn(*shape, generator=g))


def nce_loop(q, k, tau=0.07, fill=-10.0, from_batch=False):
    """Per-patch loss, one patch at a time, in float64 Python arithmetic."""
    q, k = q.double().numpy(), k.double().numpy()
    b, p, _ = q.shape
    out = []
    for bi in range(b):
        for i in range(p):
            logits = [float(q[bi, i] @ k[bi, i]) / tau]
            negatives = [(bj, j) for bj in (range(b) if from_batch else [bi]) for j in range(p)]
            for bj, j in negatives:
                logits.append((fill if (bj, j) == (bi, i) else float(q[bi, i] @ k[bj, j])) / tau)
            m = max(logits)
            lse = m + math.log(sum(math.exp(v - m) for v in logits))
            out.append(lse - logits[0])
    return np.array(out)


@pytest.mark.parametrize("b,p,c", [(1, 7, 5), (3, 4, 8)])
def test_patch_nce_matches_loop(b, p, c):
    q, k = unit(b, p, c, seed=1), unit(b, p, c, seed=2)
    got = patch_nce(q, k)
    assert got.shape == (b * p,) and got.dtype == torch.float32
    np.testing.assert_allclose(got.double().numpy(), nce_loop(q, k), rtol=1e-5, atol=1e-5)


def test_patch_nce_negatives_from_batch_matches_loop():
    q, k = unit(4, 1, 6, seed=3), unit(4, 1, 6, seed=4)
    got = patch_nce(q, k, negatives_from_batch=True)
    np.testing.assert_allclose(got.double().numpy(), nce_loop(q, k, from_batch=True), rtol=1e-5, atol=1e-5)
    # without batch negatives a single patch per image has no negative but its own (filled) diagonal
    alone = patch_nce(q, k, negatives_from_batch=False)
    assert not torch.allclose(alone, got)


def test_patch_nce_diagonal_fill_is_used():
    """−10 on the diagonal, not the real similarity: with q = k the two give different losses."""
    k = unit(1, 5, 4, seed=5)
    q = k.clone()
    filled = patch_nce(q, k)
    np.testing.assert_allclose(filled.double().numpy(), nce_loop(q, k, fill=-10.0), rtol=1e-5, atol=1e-6)
    other = patch_nce(q, k, diag_fill=0.5)
    np.testing.assert_allclose(other.double().numpy(), nce_loop(q, k, fill=0.5), rtol=1e-5, atol=1e-6)
    assert (other > filled).all()


def test_patch_nce_keys_detached():
    q = unit(2, 3, 4, seed=6).requires_grad_(True)
    k = unit(2, 3, 4, seed=7).requires_grad_(True)
    patch_nce(q, k).sum().backward()
    assert q.grad is not None and q.grad.abs().sum() > 0
    assert k.grad is None
    k2 = unit(2, 3, 4, seed=7).requires_grad_(True)
    patch_nce(q, k2, detach_keys=False).sum().backward()
    assert k2.grad is not None and k2.grad.abs().sum() > 0


def test_patch_nce_fp32_logits_under_bf16_inputs():
    q, k = unit(1, 16, 8, seed=8), unit(1, 16, 8, seed=9)
    got = patch_nce(q.bfloat16(), k.bfloat16())
    assert got.dtype == torch.float32
    ref = nce_loop(q.bfloat16().float(), k.bfloat16().float())
    np.testing.assert_allclose(got.double().numpy(), ref, rtol=1e-5, atol=1e-5)


def test_patch_nce_shape_errors():
    with pytest.raises(ValueError, match="B×P×C"):
        patch_nce(torch.zeros(4, 3), torch.zeros(4, 3))


def test_lsgan_losses_match_loops():
    g = torch.Generator().manual_seed(0)
    fake, real = torch.randn(2, 1, 3, 3, generator=g), torch.randn(2, 1, 3, 3, generator=g)
    f, r = fake.double().flatten().tolist(), real.double().flatten().tolist()
    d_ref = 0.5 * (sum(v * v for v in f) / len(f) + sum((v - 1) ** 2 for v in r) / len(r))
    g_ref = sum((v - 1) ** 2 for v in f) / len(f)
    assert float(lsgan_d_loss(fake, real)) == pytest.approx(d_ref, rel=1e-6)
    assert float(lsgan_g_loss(fake)) == pytest.approx(g_ref, rel=1e-6)


def test_nonsaturating_losses_match_loops():
    fake, real = torch.tensor([[-2.0], [0.5], [3.0]]), torch.tensor([[1.0], [-0.25], [0.0]])
    sp = lambda x: math.log1p(math.exp(x))
    d_ref = 0.5 * (sum(sp(v) for v in [-2.0, 0.5, 3.0]) / 3 + sum(sp(-v) for v in [1.0, -0.25, 0.0]) / 3)
    g_ref = sum(sp(-v) for v in [-2.0, 0.5, 3.0]) / 3
    assert float(nonsat_d_loss(fake, real)) == pytest.approx(d_ref, rel=1e-6)
    assert float(nonsat_g_loss(fake)) == pytest.approx(g_ref, rel=1e-6)


def _tiny_d():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 1, 2), nn.Flatten(),
                         nn.Linear(4, 1)).double()


def test_r1_against_finite_differences():
    d = _tiny_d()
    x = torch.randn(2, 3, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    xr = x.clone().requires_grad_(True)
    got = float(r1_penalty(d(xr), xr, weight=2.0).detach())
    # central differences of each sample's logit with respect to each of its pixels
    h = 1e-6
    norms = []
    for i in range(x.shape[0]):
        sq = 0.0
        for idx in np.ndindex(*x.shape[1:]):
            xp, xm = x.clone(), x.clone()
            xp[(i, *idx)] += h
            xm[(i, *idx)] -= h
            with torch.no_grad():
                g = (float(d(xp)[i]) - float(d(xm)[i])) / (2 * h)
            sq += g * g
        norms.append(sq)
    ref = 0.5 * 2.0 * sum(norms) / len(norms)
    assert got == pytest.approx(ref, rel=1e-6)


def test_r1_is_differentiable_wrt_d():
    d = _tiny_d()
    x = torch.randn(2, 3, 3, 3, dtype=torch.float64).requires_grad_(True)
    r1_penalty(d(x), x).backward()
    # the penalty trains D (the last bias cannot change an input gradient, the weights do)
    assert d[0].weight.grad is not None and d[0].weight.grad.abs().sum() > 0
    assert d[4].weight.grad is not None and d[4].weight.grad.abs().sum() > 0
