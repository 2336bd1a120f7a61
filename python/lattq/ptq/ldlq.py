"""Code choice in the affine lattice: nearest codeword (RTN) and BlockLDLQ (DESIGN.md §2.3).

Objective of a layer, in the rotated and normalised space: ``sum_n r_n^2 (w_n - q_n) H (w_n - q_n)^T``
where ``q_n`` are the rows of the decoded codewords and ``r_n`` the row scales.  BlockLDLQ chooses the
codes of ``d`` columns at a time with the error feedback of the LDL decomposition of ``H`` (GPTQ-style,
through the upper Cholesky factor ``U`` of ``H^-1``: ``H^-1 = U^T U``), and for each ``d``-vector takes
the codeword nearest in the block metric ``U_bb^-1 U_bb^-T`` by exhaustive search over all
``2^(bits*d)`` codewords.  Row scales do not change the per-row choice, so they are not needed here.
"""

from __future__ import annotations

import contextlib

import torch

from ..reference import codeword_ints


@contextlib.contextmanager
def few_threads(n: int = 1):
    """Run a loop of many small CPU ops on ``n`` intra-op threads (thread start-up and contention cost
    far more than the ops themselves; measured ~20x on a shared 2-core machine)."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def codebook(A: torch.Tensor, b: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(integer vectors Z [C, d] int64, codewords Z A^T + b [C, d] in A's dtype)."""
    d = A.shape[0]
    Z = codeword_ints(bits, d, device=A.device)
    return Z, Z.to(A.dtype) @ A.T + b


def _nearest(w: torch.Tensor, cw: torch.Tensor, T: torch.Tensor | None = None) -> torch.Tensor:
    """Index of the nearest codeword for each row of w [M, d] in metric ||(w - c) T||."""
    if T is not None:
        w = w @ T
        cw = cw @ T
    dist = (cw * cw).sum(1)[None, :] - 2.0 * (w @ cw.T)
    return dist.argmin(1)


def nearest_codes(W: torch.Tensor, A: torch.Tensor, b: torch.Tensor, bits: int, chunk: int = 1 << 16) -> torch.Tensor:
    """Round every d-vector of W [N, K] to its nearest codeword (Euclidean). Returns z int64 [N, K]."""
    n, k = W.shape
    d = A.shape[0]
    Z, cw = codebook(A.to(W.dtype), b.to(W.dtype), bits)
    v = W.reshape(-1, d)
    idx = torch.empty(v.shape[0], dtype=torch.int64, device=W.device)
    for s in range(0, v.shape[0], chunk):
        idx[s : s + chunk] = _nearest(v[s : s + chunk], cw)
    return Z[idx].reshape(n, k)


def ldl_factor(H: torch.Tensor, damp: float) -> torch.Tensor:
    """Upper Cholesky factor U of (H + damp*mean(diag H) I)^-1 (H^-1 = U^T U), as used by block_ldlq."""
    Hd = H.clone()
    diag = torch.diagonal(Hd)
    dead = diag <= 0
    if bool(dead.any()):  # inputs that never fire: any code is as good; keep H invertible
        diag[dead] = 1.0
    diag += damp * diag.mean()
    L = torch.linalg.cholesky(Hd)
    Hinv = torch.cholesky_inverse(L)
    return torch.linalg.cholesky(Hinv, upper=True)


def block_ldlq(
    W: torch.Tensor,
    H: torch.Tensor,
    A: torch.Tensor,
    b: torch.Tensor,
    bits: int,
    damp: float = 0.01,
    lazy: int = 128,
    factor: torch.Tensor | None = None,
) -> torch.Tensor:
    """BlockLDLQ codes z (int64 [N, K]) for target W [N, K] under Hessian H [K, K].

    ``damp`` adds ``damp * mean(diag H)`` to the diagonal before factoring (the objective reported
    elsewhere always uses the undamped H).
    """
    n, k = W.shape
    d = A.shape[0]
    if k % d:
        raise ValueError(f"K={k} is not divisible by the codeword dimension {d}")
    dt = W.dtype
    U = ldl_factor(H.to(dt), damp) if factor is None else factor.to(dt)
    Z, cw = codebook(A.to(dt), b.to(dt), bits)
    W = W.clone()
    z = torch.empty(n, k, dtype=torch.int64, device=W.device)
    lazy = max(d, (lazy // d) * d)
    ctx = few_threads(1) if W.device.type == "cpu" else contextlib.nullcontext()
    with ctx:
        _ldlq_loop(W, U, Z, cw, z, n, k, d, dt, lazy)
    return z


def _ldlq_loop(W, U, Z, cw, z, n, k, d, dt, lazy):
    for c0 in range(0, k, lazy):
        c1 = min(c0 + lazy, k)
        err = torch.zeros(n, c1 - c0, dtype=dt, device=W.device)
        for i in range(c0, c1, d):
            Ubb = U[i : i + d, i : i + d]
            Tinv = torch.linalg.solve_triangular(Ubb, torch.eye(d, dtype=dt, device=W.device), upper=True)
            w = W[:, i : i + d]
            idx = _nearest(w, cw, Tinv)
            q = cw[idx]
            z[:, i : i + d] = Z[idx]
            e = (w - q) @ Tinv  # E_b U_bb^-1
            err[:, i - c0 : i - c0 + d] = e
            if i + d < c1:
                W[:, i + d : c1] -= e @ U[i : i + d, i + d : c1]
        if c1 < k:
            W[:, c1:] -= err @ U[c0:c1, c1:]
    return z
