"""The contrastive random walk as small pure functions.

Shapes: B clips, C embedding channels, T frames, N nodes per frame.

    q  = node embeddings                  B x C x T x N   (L2-normalised over C)
    A  = affinity(q)                      B x (T-1) x N x N,   A[:, t] = q_t^T q_{t+1}
    Pf, Pb = transitions(A, tau, ...)     Pf[:, t] = P_{t->t+1},  Pb[:, t] = P_{t+1->t}
    walks = palindrome_walks(Pf, Pb)      {(start, k): W}   W = P_{s->s+1} ... P_{s+k->s+k-1} ... P_{s+1->s}
    loss, stats = walk_loss(walks)        -log(W[n, n] + 1e-20), mean over clips, nodes and cycles

All arithmetic here runs in fp32 or wider: the dropout fill value -1e20 overflows fp16, and the
products of row-stochastic matrices lose precision in bf16.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

__all__ = ["affinity", "dropout_noise", "edge_dropout", "transitions", "palindrome_walks",
           "cycle_loss", "walk_loss", "contrastive_walk", "DROPPED", "LOG_EPS"]

DROPPED = -1e20     # value a dropped edge takes on the raw affinity (before division by tau)
LOG_EPS = 1e-20     # added inside the log of the return probability

WalkStart = Literal["first", "all"]


def affinity(q: torch.Tensor) -> torch.Tensor:
    """Cosine affinities between consecutive frames: B x C x T x N -> B x (T-1) x N x N."""
    if q.dim() != 4:
        raise ValueError(f"expected node embeddings B x C x T x N, got shape {tuple(q.shape)}")
    return torch.einsum("bctn,bctm->btnm", q[:, :, :-1], q[:, :, 1:])


def dropout_noise(shape: tuple[int, ...], generator: torch.Generator | None = None,
                  device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independent U[0,1) fields of `shape` (forward and backward edge-dropout draws)."""
    u_fwd = torch.rand(shape, generator=generator)
    u_bwd = torch.rand(shape, generator=generator)
    return u_fwd.to(device), u_bwd.to(device)


def edge_dropout(logits: torch.Tensor, drop: torch.Tensor) -> torch.Tensor:
    """Set the entries of `logits` where `drop` is True to DROPPED (out of place)."""
    return logits.masked_fill(drop, DROPPED)


def transitions(A: torch.Tensor, temperature: float, edge_dropout_rate: float = 0.0,
                noise: tuple[torch.Tensor, torch.Tensor] | None = None,
                leaky_backward_dropout: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-stochastic forward and backward transition matrices from affinities.

    Forward  Pf[:, t] = softmax_rows(drop(A_t) / tau)          (P_{t -> t+1})
    Backward Pb[:, t] = softmax_rows(drop'(A_t^T) / tau)       (P_{t+1 -> t})

    Edge dropout acts on the raw affinity before division by tau: an entry whose uniform draw
    is below `edge_dropout_rate` becomes DROPPED. `noise = (u_fwd, u_bwd)` supplies the draws
    (each shaped like A; u_bwd is indexed in the transposed, backward orientation). With
    `leaky_backward_dropout` (the published behaviour) the backward step also drops the edges
    the forward step dropped, because the published code masked the shared affinity in place:
    the effective backward rate is 1 - (1 - p)^2. Without it the two masks are independent.
    """
    A = A.float()
    At = A.transpose(-1, -2)
    if edge_dropout_rate > 0:
        if noise is None:
            noise = dropout_noise(tuple(A.shape), device=A.device)
        u_fwd, u_bwd = noise
        if u_fwd.shape != A.shape or u_bwd.shape != A.shape:
            raise ValueError(f"dropout noise shapes {tuple(u_fwd.shape)}, {tuple(u_bwd.shape)} "
                             f"do not match the affinity {tuple(A.shape)}")
        drop_fwd = u_fwd < edge_dropout_rate
        drop_bwd = u_bwd < edge_dropout_rate
        if leaky_backward_dropout:
            drop_bwd = drop_bwd | drop_fwd.transpose(-1, -2)
        A = edge_dropout(A, drop_fwd)
        At = edge_dropout(At, drop_bwd)
    Pf = F.softmax(A / temperature, dim=-1)
    Pb = F.softmax(At / temperature, dim=-1)
    return Pf, Pb


def palindrome_walks(Pf: torch.Tensor, Pb: torch.Tensor, include_shortest_cycle: bool = False,
                     walk_start: WalkStart = "first") -> dict[tuple[int, int], torch.Tensor]:
    """Return-trip transition matrices of the palindrome walks.

    For a start frame s and a turn-around frame s+k the walk is
        W = P_{s->s+1} ... P_{s+k-1->s+k} . P_{s+k->s+k-1} ... P_{s+1->s}
    (right products, B x N x N). k runs from 2 (1 with `include_shortest_cycle`) to T-1-s;
    s is 0 only (`walk_start="first"`, the published walk) or every frame that admits a cycle
    (`"all"`). Products are built incrementally: O(T) matrix products per start frame.
    Returns {(s, k): W} in increasing (s, k) order.
    """
    if walk_start not in ("first", "all"):
        raise ValueError(f"walk_start must be 'first' or 'all', got {walk_start!r}")
    steps = Pf.shape[1]             # T - 1
    k_min = 1 if include_shortest_cycle else 2
    starts = [0] if walk_start == "first" else list(range(0, steps - k_min + 1))
    walks: dict[tuple[int, int], torch.Tensor] = {}
    for s in starts:
        fwd = None
        bwd = None
        for k in range(1, steps - s + 1):
            t = s + k - 1                               # step t -> t+1
            fwd = Pf[:, t] if fwd is None else fwd @ Pf[:, t]
            bwd = Pb[:, t] if bwd is None else Pb[:, t] @ bwd
            if k >= k_min:
                walks[(s, k)] = fwd @ bwd
    if not walks:
        raise ValueError(f"no cycle fits in {steps + 1} frames (need at least {k_min + 1})")
    return walks


def cycle_loss(W: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss and accuracy of one cycle: mean of -log(W[n, n] + 1e-20) and of argmax_m W[n, m] == n."""
    diag = torch.diagonal(W, dim1=-2, dim2=-1)
    loss = -torch.log(diag + LOG_EPS).mean()
    target = torch.arange(W.shape[-1], device=W.device)
    accuracy = (W.argmax(dim=-1) == target).float().mean()
    return loss, accuracy


def walk_loss(walks: dict[tuple[int, int], torch.Tensor]
              ) -> tuple[torch.Tensor, dict[int, tuple[torch.Tensor, torch.Tensor]]]:
    """Mean loss over all cycles, and per cycle length k: (mean loss, mean accuracy) over starts."""
    losses = []
    per_k: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}
    for (_, k), W in walks.items():
        loss, acc = cycle_loss(W)
        losses.append(loss)
        per_k.setdefault(k, []).append((loss, acc))
    total = torch.stack(losses).mean()
    stats = {k: (torch.stack([l for l, _ in v]).mean().detach(), torch.stack([a for _, a in v]).mean())
             for k, v in sorted(per_k.items())}
    return total, stats


def contrastive_walk(q: torch.Tensor, temperature: float, edge_dropout_rate: float = 0.0,
                     noise: tuple[torch.Tensor, torch.Tensor] | None = None,
                     leaky_backward_dropout: bool = True, include_shortest_cycle: bool = False,
                     walk_start: WalkStart = "first"
                     ) -> tuple[torch.Tensor, dict[int, tuple[torch.Tensor, torch.Tensor]]]:
    """Affinities -> transitions -> palindromes -> loss, in fp32 (see the functions above)."""
    A = affinity(q.float())
    Pf, Pb = transitions(A, temperature, edge_dropout_rate, noise, leaky_backward_dropout)
    walks = palindrome_walks(Pf, Pb, include_shortest_cycle, walk_start)
    return walk_loss(walks)
