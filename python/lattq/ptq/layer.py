"""Quantize one linear layer to the affine lattice (DESIGN.md §2.1, §2.3)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from .hessian import NonFiniteError
from .incoherence import hadamard_block, random_signs, rotate_hessian, rotate_weight
from .lattice_fit import objective, refit_lattice, refit_scales, row_metric
from .ldlq import block_ldlq, ldl_factor, nearest_codes


@dataclass
class QuantizedLayer:
    """Plain-tensor result of one layer (float32 on CPU), convertible to ``LatticeLinear``."""

    z: torch.Tensor  # int64 [N, K] integer fields
    A: torch.Tensor  # f32 [d, d]
    b: torch.Tensor  # f32 [d]
    su: torch.Tensor  # f32 [K]
    sv: torch.Tensor  # f32 [N]
    had_in: int
    had_out: int
    bits: int
    dim: int
    su_format: str
    sv_format: str
    bias: torch.Tensor | None = None
    stages: list = field(default_factory=list)  # (stage name, objective)
    rel_err: float = float("nan")
    seconds: float = 0.0


def init_lattice(d: int, bits: int, kind: str, generator: torch.Generator, dtype=torch.float64):
    """A = s Q, b = -c s Q 1 with s = 1/sqrt(mean of centred z^2) (1/sqrt(1.25) for 2 bits), c = (2^bits-1)/2."""
    levels = 1 << bits
    c = (levels - 1) / 2.0
    var = sum((i - c) ** 2 for i in range(levels)) / levels
    s = 1.0 / math.sqrt(var)
    if kind == "identity":
        Q = torch.eye(d, dtype=dtype)
    elif kind == "orthogonal":
        g = torch.randn(d, d, generator=generator, dtype=torch.float64)
        Q, R = torch.linalg.qr(g)
        Q = (Q * torch.sign(torch.diagonal(R))[None, :]).to(dtype)
    else:
        raise ValueError(f"a_init must be 'identity' or 'orthogonal', got {kind!r}")
    A = s * Q
    b = -c * s * Q @ torch.ones(d, dtype=dtype)
    return A, b


def quantize_weight(
    W: torch.Tensor,
    H: torch.Tensor,
    *,
    name: str,
    bits: int = 2,
    dim: int = 4,
    had_block: int = 128,
    incoherence: bool = True,
    ldlq: bool = True,
    a_init: str = "identity",
    refit: int = 2,
    damp: float = 0.01,
    su_format: str = "sign",
    sv_format: str = "q8",
    generator: torch.Generator | None = None,
    bias: torch.Tensor | None = None,
    compute_dtype=torch.float64,
) -> QuantizedLayer:
    """Choose codes, A, b and scales for W [N, K] under the input second moment H [K, K].

    Every stage is accepted only if it does not increase the layer objective tr((W-W^)H(W-W^)^T);
    ``stages`` records the objective after each.
    """
    from .. import scales as _scales

    t0 = time.time()
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    if not bool(torch.isfinite(W).all()):
        raise NonFiniteError(f"weight of {name} contains NaN or Inf")
    if not bool(torch.isfinite(H).all()):
        raise NonFiniteError(f"Hessian of {name} contains NaN or Inf")
    n, k = W.shape
    dev = W.device
    W = W.to(compute_dtype)
    H = H.to(device=dev, dtype=compute_dtype)
    if incoherence:
        had_in, had_out = hadamard_block(k, had_block), hadamard_block(n, had_block)
        su = random_signs(k, generator, compute_dtype).to(dev)
        sv = random_signs(n, generator, compute_dtype).to(dev)
    else:
        had_in = had_out = 1
        su = torch.ones(k, dtype=compute_dtype, device=dev)
        sv = torch.ones(n, dtype=compute_dtype, device=dev)
    Hr = rotate_hessian(H, su, had_in)
    total = float(((W @ H) * W).sum())
    alpha = W.pow(2).mean(1).sqrt()  # per ORIGINAL row: folds exactly into SV
    alpha = torch.where(alpha > 0, alpha, torch.ones_like(alpha))
    A, b = init_lattice(dim, bits, a_init, generator, compute_dtype)
    A, b = A.to(dev), b.to(dev)

    factor = ldl_factor(Hr, damp) if ldlq else None

    def target(alpha_):
        return rotate_weight(W / alpha_[:, None], su, sv, had_in, had_out)

    def choose(A_, b_, alpha_):
        # row-wise code choice (the row metric M is ignored here; the refits use it exactly)
        if ldlq:
            return block_ldlq(target(alpha_), Hr, A_, b_, bits, damp=damp, factor=factor)
        return nearest_codes(target(alpha_), A_, b_, bits)

    def obj(z_, A_, b_, alpha_):
        return objective(W, H, z_, A_, b_, su, sv, alpha_, had_in, had_out)

    def fit_scales(z_, A_, b_, alpha_):
        return refit_scales(W, H, z_, A_, b_, su, sv, alpha_, had_in, had_out)

    def fit_lattice(z_, alpha_):
        return refit_lattice(target(alpha_), Hr, z_, row_metric(alpha_, had_out), dim)

    z = choose(A, b, alpha)
    best = obj(z, A, b, alpha)
    stages = [("ldlq" if ldlq else "nearest", best)]
    for r in range(refit):
        # alternating exact minimisers with the codes fixed: never worse
        alpha_r = fit_scales(z, A, b, alpha)
        A_r, b_r = fit_lattice(z, alpha_r)
        alpha_r = fit_scales(z, A_r, b_r, alpha_r)
        loss_r = obj(z, A_r, b_r, alpha_r)
        if loss_r <= best:
            A, b, alpha, best = A_r, b_r, alpha_r, loss_r
        stages.append((f"refit{r + 1}", best))
        # re-choose the codes in the refitted lattice; keep them only if better
        z_r = choose(A, b, alpha)
        alpha_z = fit_scales(z_r, A, b, alpha)
        loss_z = obj(z_r, A, b, alpha_z)
        if loss_z < best:
            z, alpha, best = z_r, alpha_z, loss_z
        stages.append((f"recode{r + 1}", best))
    # storage projection of the scales (exactly what is saved), then A, b refitted to the projected
    # scales (an exact minimiser: kept only if it helps)
    sv_full = _scales.project((sv * alpha).to(torch.float32), sv_format).to(compute_dtype)
    su_full = _scales.project(su.to(torch.float32), su_format).to(compute_dtype)
    alpha_p = sv_full * sv  # signs are +-1
    su_p = su_full
    proj = objective(W, H, z, A, b, su_p, sv, alpha_p, had_in, had_out)
    if refit > 0 and bool((alpha_p > 0).all()) and torch.equal(su_p, su):
        A_p, b_p = fit_lattice(z, alpha_p)
        loss_p = objective(W, H, z, A_p, b_p, su_p, sv, alpha_p, had_in, had_out)
        if loss_p < proj:
            A, b, proj = A_p, b_p, loss_p
    final = objective(W, H, z, A.to(torch.float32).to(compute_dtype), b.to(torch.float32).to(compute_dtype),
                      su_full, torch.ones_like(sv_full), sv_full, had_in, had_out)
    stages.append(("stored", final))
    return QuantizedLayer(
        z=z.cpu(),
        A=A.to(torch.float32).cpu(),
        b=b.to(torch.float32).cpu(),
        su=su_full.to(torch.float32).cpu(),
        sv=sv_full.to(torch.float32).cpu(),
        had_in=had_in,
        had_out=had_out,
        bits=bits,
        dim=dim,
        su_format=su_format,
        sv_format=sv_format,
        bias=None if bias is None else bias.detach().to(torch.float32).cpu(),
        stages=stages,
        rel_err=final / total if total > 0 else 0.0,
        seconds=time.time() - t0,
    )
