"""Randomized block-Hadamard incoherence processing (DESIGN.md §2.1).

With random sign vectors ``su`` (K) and ``sv`` (N) and orthonormal block Hadamards ``H_in``, ``H_out``
(symmetric, Sylvester order), the stored matrix is ``What = H_out diag(sv) W diag(su) H_in`` so that
``W = diag(sv) H_out What H_in diag(su)`` (reference.dense_weight).  The Hessian of the rotated input
``u = H_in(su * x)`` is ``H' = H_in diag(su) H diag(su) H_in``.
"""

from __future__ import annotations

import torch

import functools

from ..format import default_hadamard_block
from ..reference import hadamard_matrix


@functools.lru_cache(maxsize=64)
def _had_cached(block: int, dtype: torch.dtype, device: str) -> torch.Tensor:
    return hadamard_matrix(block, dtype=dtype, device=torch.device(device))


def block_hadamard(x: torch.Tensor, block: int) -> torch.Tensor:
    """Same math as lattq.reference.block_hadamard (x reshaped in blocks along the last axis, times the
    symmetric orthonormal Sylvester H), with the Hadamard matrices cached: the quantizer calls it
    thousands of times on small matrices."""
    if block == 1:
        return x
    size = x.shape[-1]
    if size % block:
        raise ValueError(f"Hadamard block {block} does not divide the dimension {size}")
    h = _had_cached(block, x.dtype, str(x.device))
    return (x.reshape(*x.shape[:-1], size // block, block) @ h).reshape(x.shape)


def dense_weight(w_hat: torch.Tensor, su: torch.Tensor, sv: torch.Tensor, had_in: int, had_out: int) -> torch.Tensor:
    """W = diag(SV) H_out^T What H_in diag(SU) (lattq.reference.dense_weight with cached Hadamards)."""
    w = block_hadamard(w_hat, had_in)
    w = block_hadamard(w.T, had_out).T
    return sv[:, None] * w * su[None, :]


def hadamard_block(size: int, cap: int) -> int:
    return default_hadamard_block(size, cap)


def random_signs(n: int, generator: torch.Generator, dtype=torch.float64) -> torch.Tensor:
    return (torch.randint(0, 2, (n,), generator=generator) * 2 - 1).to(dtype)


def rotate_weight(W: torch.Tensor, su: torch.Tensor, sv: torch.Tensor, had_in: int, had_out: int) -> torch.Tensor:
    w = sv[:, None] * W * su[None, :]
    w = block_hadamard(w, had_in)  # w @ H_in
    return block_hadamard(w.T, had_out).T  # H_out @ w


def rotate_hessian(H: torch.Tensor, su: torch.Tensor, had_in: int) -> torch.Tensor:
    h = su[:, None] * H * su[None, :]
    h = block_hadamard(h, had_in)
    h = block_hadamard(h.T, had_in).T
    return 0.5 * (h + h.T)
