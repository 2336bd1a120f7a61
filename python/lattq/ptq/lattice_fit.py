"""Least-squares refits under the Hessian metric with the codes fixed.

A layer is stored as ``W^ = diag(alpha) diag(sv) H_out Q H_in diag(su)`` with ``Q = decode(z; A, b)``,
the per-row scales ``alpha`` acting on the ORIGINAL output rows (so that they fold into SV).  Its
objective is ``L = tr((W - W^) H (W - W^)^T)``.  Writing ``Wr = H_out diag(sv) diag(1/alpha) W diag(su) H_in``
(the normalised, rotated target) and ``Hr = H_in diag(su) H diag(su) H_in`` this is exactly

    L = tr(M (Wr - Q) Hr (Wr - Q)^T),     M = H_out diag(alpha^2) H_out.

``refit_scales`` minimises L over alpha (closed form per original row), ``refit_lattice`` over the
d*(d+1) entries of [A | b] for fixed alpha (one small normal-equation solve).  Each is an exact
minimiser of its block of variables, so alternating them never increases L.
"""

from __future__ import annotations

import torch

from ..reference import decode
from .incoherence import block_hadamard, dense_weight


def row_metric(alpha: torch.Tensor, had_out: int) -> torch.Tensor:
    """M = H_out diag(alpha^2) H_out, block diagonal: returned as its blocks [N/B, B, B] (B = had_out)."""
    n = alpha.shape[0]
    a2 = (alpha * alpha).reshape(n // had_out, had_out)
    if had_out == 1:
        return a2.reshape(n, 1, 1)
    from .incoherence import _had_cached

    h = _had_cached(had_out, alpha.dtype, str(alpha.device))
    return torch.einsum("ij,bj,jk->bik", h, a2, h)


def _apply_metric(M: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """M @ X for M given as a dense [N, N] matrix or as diagonal blocks [N/B, B, B]."""
    if M.dim() == 2:
        return M @ X
    nb, B, _ = M.shape
    return (M @ X.reshape(nb, B, -1)).reshape(X.shape)


def reconstruct(z, A, b, su, sv, alpha, had_in: int, had_out: int) -> torch.Tensor:
    """W^ = diag(alpha * sv) H_out decode(z) H_in diag(su)."""
    return dense_weight(decode(z, A.to(su.dtype), b.to(su.dtype)), su, sv * alpha, had_in, had_out)


def objective(W, H, z, A, b, su, sv, alpha, had_in: int, had_out: int) -> float:
    E = W - reconstruct(z, A, b, su, sv, alpha, had_in, had_out)
    return float(((E @ H) * E).sum())


def refit_scales(W, H, z, A, b, su, sv, alpha, had_in: int, had_out: int) -> torch.Tensor:
    """alpha_n = <B_n, W_n>_H / <B_n, B_n>_H with B = reconstruct(alpha = 1)."""
    B = reconstruct(z, A, b, su, sv, torch.ones_like(alpha), had_in, had_out)
    BH = B @ H
    num = (BH * W).sum(1)
    den = (BH * B).sum(1)
    ok = den > 1e-300
    new = torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), alpha)
    # a non-positive scale would flip a row; keep the previous value there
    return torch.where(new > 0, new, alpha)


def refit_lattice(Wr: torch.Tensor, Hr: torch.Tensor, z: torch.Tensor, M: torch.Tensor, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[A | b] minimising tr(M (Wr - Q) Hr (Wr - Q)^T), Q[n, dg + i] = sum_j A_ij z[n, dg + j] + b_i.

    ``M``: the N x N row metric, dense or as diagonal blocks [N/B, B, B] (``row_metric``)."""
    n, k = Wr.shape
    g = k // d
    dt = Wr.dtype
    zh = torch.cat([z.reshape(n, g, d).to(dt), torch.ones(n, g, 1, dtype=dt, device=Wr.device)], dim=2)
    Yf = zh.reshape(n, g * (d + 1))
    S = (Yf.T @ _apply_metric(M, Yf)).reshape(g, d + 1, g, d + 1)
    Hq = Hr.reshape(g, d, g, d)
    gram = torch.einsum("gihk,gjhl->ijkl", Hq, S).reshape(d * (d + 1), d * (d + 1))
    R = (_apply_metric(M, Wr) @ Hr).reshape(n, g, d)
    rhs = torch.einsum("ngi,ngj->ij", R, zh).reshape(-1)
    gram = 0.5 * (gram + gram.T)
    ridge = 1e-12 * torch.diagonal(gram).abs().mean().clamp_min(1e-300)
    theta = torch.linalg.solve(gram + ridge * torch.eye(gram.shape[0], dtype=dt, device=Wr.device), rhs)
    theta = theta.reshape(d, d + 1)
    return theta[:, :d].contiguous(), theta[:, d].contiguous()
