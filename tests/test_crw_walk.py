"""The walk's pure functions against slow, explicit loop references in float64."""
import math

import pytest
import torch

from selfsup.crw import walk

B, C, T, N = 2, 5, 5, 4
TAU = 0.1


@pytest.fixture(autouse=True)
def one_thread():
    """Small tensors on a shared 2-core machine: one intra-op thread avoids OpenMP oversubscription."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def embeddings(seed=0, b=B, c=C, t=T, n=N):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, c, t, n, generator=g, dtype=torch.float64)
    return q / q.norm(dim=1, keepdim=True)


# ----------------------------------------------------------------------------- references

def ref_affinity(q):
    b, c, t, n = q.shape
    out = [[[[0.0] * n for _ in range(n)] for _ in range(t - 1)] for _ in range(b)]
    for bi in range(b):
        for ti in range(t - 1):
            for i in range(n):
                for j in range(n):
                    out[bi][ti][i][j] = sum(float(q[bi, ci, ti, i]) * float(q[bi, ci, ti + 1, j]) for ci in range(c))
    return out


def ref_softmax_row(row, tau):
    m = max(row)
    e = [math.exp((v - m) / tau) for v in row]
    s = sum(e)
    return [v / s for v in e]


def ref_transitions(A, tau, p, u_fwd, u_bwd, leaky):
    """Follows the published code literally: mask the shared affinity in place (forward), then
    build the backward step from the (now masked) transpose and mask it again."""
    b, steps, n = len(A), len(A[0]), len(A[0][0])
    orig = A
    A = [[[row[:] for row in A[bi][ti]] for ti in range(steps)] for bi in range(b)]
    Pf = [[None] * steps for _ in range(b)]
    Pb = [[None] * steps for _ in range(b)]
    for bi in range(b):
        for ti in range(steps):
            for i in range(n):
                for j in range(n):
                    if float(u_fwd[bi, ti, i, j]) < p:
                        A[bi][ti][i][j] = -1e20
            Pf[bi][ti] = [ref_softmax_row(A[bi][ti][i], tau) for i in range(n)]
    for bi in range(b):
        for ti in range(steps):
            At = [[A[bi][ti][j][i] for j in range(n)] for i in range(n)]
            if not leaky:   # independent masks: start from the unmasked affinity
                At = [[orig[bi][ti][j][i] for j in range(n)] for i in range(n)]
            for i in range(n):
                for j in range(n):
                    if float(u_bwd[bi, ti, i, j]) < p:
                        At[i][j] = -1e20
            Pb[bi][ti] = [ref_softmax_row(At[i], tau) for i in range(n)]
    return Pf, Pb


def ref_matmul(X, Y):
    n = len(X)
    return [[sum(X[i][m] * Y[m][j] for m in range(n)) for j in range(n)] for i in range(n)]


def ref_walk(Pf, Pb, s, k):
    """P_{s->s+1} ... P_{s+k-1->s+k} P_{s+k->s+k-1} ... P_{s+1->s}, one matrix at a time."""
    W = None
    for t in range(s, s + k):
        W = Pf[t] if W is None else ref_matmul(W, Pf[t])
    for t in range(s + k - 1, s - 1, -1):
        W = ref_matmul(W, Pb[t])
    return W


# ---------------------------------------------------------------------------------- tests

def test_affinity_matches_loops():
    q = embeddings()
    A = walk.affinity(q)
    assert A.shape == (B, T - 1, N, N)
    assert torch.allclose(A, torch.tensor(ref_affinity(q), dtype=torch.float64), atol=1e-12)


@pytest.mark.parametrize("leaky", [True, False])
def test_transitions_match_loops(leaky):
    q = embeddings(1)
    A = walk.affinity(q)
    g = torch.Generator().manual_seed(3)
    u_fwd, u_bwd = walk.dropout_noise(tuple(A.shape), g)
    p = 0.3
    Pf, Pb = walk.transitions(A.double(), TAU, p, (u_fwd, u_bwd), leaky_backward_dropout=leaky)
    rPf, rPb = ref_transitions(A.tolist(), TAU, p, u_fwd, u_bwd, leaky)
    # transitions compute in fp32 (the walk's contract); compare at fp32 precision
    assert torch.allclose(Pf.double(), torch.tensor(rPf, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(Pb.double(), torch.tensor(rPb, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(Pf.sum(-1), torch.ones(B, T - 1, N), atol=1e-6)   # row-stochastic


def test_leaky_backward_rate():
    """Leaky masks drop backward edges at 1-(1-p)^2; independent masks at p."""
    n = 64
    A = torch.zeros(4, 3, n, n)
    g = torch.Generator().manual_seed(0)
    noise = walk.dropout_noise(tuple(A.shape), g)
    p = 0.1
    for leaky, rate in ((True, 1 - (1 - p) ** 2), (False, p)):
        _, Pb = walk.transitions(A, 1.0, p, noise, leaky_backward_dropout=leaky)
        dropped = (Pb == 0).float().mean().item()
        assert abs(dropped - rate) < 0.01, (leaky, dropped, rate)


def test_dropout_before_temperature():
    """A dropped edge gets exactly zero probability even at a tiny temperature."""
    A = torch.zeros(1, 1, 3, 3)
    u = torch.ones(1, 1, 3, 3)
    u[0, 0, 0, 1] = 0.0
    Pf, _ = walk.transitions(A, 1e-3, 0.5, (u, torch.ones_like(u)))
    assert Pf[0, 0, 0, 1] == 0 and torch.allclose(Pf[0, 0, 0], torch.tensor([0.5, 0.0, 0.5]))


@pytest.mark.parametrize("shortest,start", [(False, "first"), (True, "first"), (False, "all"), (True, "all")])
def test_palindromes_match_loops(shortest, start):
    q = embeddings(2)
    Pf, Pb = walk.transitions(walk.affinity(q), TAU)
    walks = walk.palindrome_walks(Pf.double(), Pb.double(), include_shortest_cycle=shortest, walk_start=start)
    k_min = 1 if shortest else 2
    expected_keys = [(s, k) for s in (range(T) if start == "all" else [0])
                     for k in range(k_min, T - s) if s + k <= T - 1]
    assert list(walks) == expected_keys
    for (s, k), W in walks.items():
        for bi in range(B):
            ref = ref_walk([Pf[bi, t].double().tolist() for t in range(T - 1)],
                           [Pb[bi, t].double().tolist() for t in range(T - 1)], s, k)
            assert torch.allclose(W[bi], torch.tensor(ref, dtype=torch.float64), atol=1e-12)


def test_published_cycles_for_four_frames():
    """T = 4: cycles 0->2->0 and 0->3->0 only (the 2-step cycle is skipped)."""
    q = embeddings(3, t=4)
    Pf, Pb = walk.transitions(walk.affinity(q), TAU)
    assert list(walk.palindrome_walks(Pf, Pb)) == [(0, 2), (0, 3)]


def test_loss_and_accuracy_match_loops():
    q = embeddings(4)
    Pf, Pb = walk.transitions(walk.affinity(q), TAU)
    walks = walk.palindrome_walks(Pf.double(), Pb.double())
    total, stats = walk.walk_loss(walks)
    ref_losses = []
    for (s, k), W in walks.items():
        losses, hits = [], []
        for bi in range(B):
            for i in range(N):
                losses.append(-math.log(float(W[bi, i, i]) + 1e-20))
                row = [float(W[bi, i, j]) for j in range(N)]
                hits.append(1.0 if max(range(N), key=lambda j: row[j]) == i else 0.0)
        ref_loss = sum(losses) / len(losses)
        ref_losses.append(ref_loss)
        assert stats[k][0].item() == pytest.approx(ref_loss, rel=1e-10)
        assert stats[k][1].item() == pytest.approx(sum(hits) / len(hits))
    assert total.item() == pytest.approx(sum(ref_losses) / len(ref_losses), rel=1e-10)


def test_loss_equals_cross_entropy_up_to_constant():
    """-log(W[n,n]+eps) is the published cross-entropy on log(W+eps) up to log(1+N*eps)."""
    q = embeddings(5)
    Pf, Pb = walk.transitions(walk.affinity(q), TAU)
    W = walk.palindrome_walks(Pf.double(), Pb.double())[(0, 2)]
    logits = torch.log(W + 1e-20).flatten(0, 1)
    ce = torch.nn.functional.cross_entropy(logits, torch.arange(N).repeat(B))
    loss, _ = walk.cycle_loss(W)
    log_norm = torch.log(W.sum(-1) + N * 1e-20).mean()     # log(1 + N*eps) for exact rows
    assert loss.item() == pytest.approx(ce.item() - log_norm.item(), abs=1e-12)
    assert abs(log_norm.item()) < 1e-6


def test_identity_walk_is_perfect():
    """Embeddings that stay put give return probability ~1 at low temperature: loss ~0, acc 1."""
    q = torch.eye(N, dtype=torch.float64)[:, None, :].expand(N, T, N).unsqueeze(0)   # 1 x N x T x N
    loss, stats = walk.contrastive_walk(q, 0.01)
    assert loss.item() < 1e-6
    assert all(acc.item() == 1.0 for _, acc in stats.values())


def test_gradient_blocked_through_dropped_edges():
    q = embeddings(6).float().requires_grad_(True)
    A = walk.affinity(q).detach().requires_grad_(True)
    u = torch.ones_like(A)
    u[0, 0, 1, 2] = 0.0
    Pf, Pb = walk.transitions(A, TAU, 0.5, (u, torch.ones_like(A)))
    loss, _ = walk.walk_loss(walk.palindrome_walks(Pf, Pb))
    loss.backward()
    assert A.grad[0, 0, 1, 2] == 0          # dropped forward and (leaky) backward
    assert A.grad[0, 0, 2, 1] != 0


def test_errors():
    with pytest.raises(ValueError, match="B x C x T x N"):
        walk.affinity(torch.zeros(3, 4, 5))
    Pf = torch.full((1, 1, 2, 2), 0.5)
    with pytest.raises(ValueError, match="no cycle fits"):
        walk.palindrome_walks(Pf, Pf)
    with pytest.raises(ValueError, match="walk_start"):
        walk.palindrome_walks(Pf, Pf, walk_start="middle")
