"""Pure-torch reference of the lattq format and layer math, written from docs/format.md.

Used as (1) the fallback implementation of the ops when no native kernel applies, (2) the
differentiable path for fine-tuning, and (3) an oracle in tests (run it in float64).  It never calls
the native code.
"""

from __future__ import annotations

import math

import torch

from .format import TILE_BYTES, TILE_ROWS, LayerDesc


def hadamard_matrix(block: int, dtype=torch.float64, device=None) -> torch.Tensor:
    """Orthonormal Sylvester Hadamard matrix H[i, j] = (-1)^popcount(i & j) / sqrt(block)."""
    if block < 1 or block & (block - 1):
        raise ValueError(f"Hadamard block must be a power of two, got {block}")
    idx = torch.arange(block, device=device)
    anded = idx[:, None] & idx[None, :]
    parity = torch.zeros_like(anded)
    while bool((anded != 0).any()):
        parity ^= anded & 1
        anded = anded >> 1
    h = 1.0 - 2.0 * parity.to(dtype)
    return h / math.sqrt(block)


def block_hadamard(x: torch.Tensor, block: int) -> torch.Tensor:
    """Apply I ⊗ H_block along the last dimension (differentiable; H is symmetric so this is also H^T)."""
    if block == 1:
        return x
    size = x.shape[-1]
    if size % block:
        raise ValueError(f"Hadamard block {block} does not divide the dimension {size}")
    h = hadamard_matrix(block, dtype=x.dtype, device=x.device)
    y = x.reshape(*x.shape[:-1], size // block, block) @ h
    return y.reshape(x.shape)


def unpack_fields(codes: torch.Tensor, bits: int, k: int) -> torch.Tensor:
    """Canonical codes (uint8 [N, K*bits/8]) -> integer fields z (int64 [N, K])."""
    n, r = codes.shape
    if r * 8 != k * bits:
        raise ValueError(f"codes have {r} bytes per row, expected {k * bits // 8}")
    bitpos = torch.arange(k, device=codes.device) * bits
    c = codes.to(torch.int64)
    out = torch.zeros(n, k, dtype=torch.int64, device=codes.device)
    for j in range(bits):
        p = bitpos + j
        out |= ((c[:, p // 8] >> (p % 8)) & 1) << j
    return out


def pack_fields(z: torch.Tensor, bits: int) -> torch.Tensor:
    """Integer fields z (int [N, K], 0 <= z < 2^bits) -> canonical codes (uint8 [N, K*bits/8])."""
    n, k = z.shape
    if (k * bits) % 8:
        raise ValueError(f"K*bits = {k}*{bits} is not a multiple of 8")
    if bool(((z < 0) | (z >= (1 << bits))).any()):
        raise ValueError(f"fields must lie in [0, {1 << bits})")
    z = z.to(torch.int64)
    out = torch.zeros(n, k * bits // 8, dtype=torch.int64, device=z.device)
    bitpos = torch.arange(k, device=z.device) * bits
    for j in range(bits):
        p = bitpos + j
        out.index_add_(1, p // 8, ((z >> j) & 1) << (p % 8))
    return out.to(torch.uint8)


def codeword_ints(bits: int, dim: int, device=None) -> torch.Tensor:
    """All 2^(bits*dim) integer vectors z(c), as int64 [2^(bits*dim), dim], row c = z(c)."""
    c = torch.arange(1 << (bits * dim), device=device)
    shifts = torch.arange(dim, device=device) * bits
    return (c[:, None] >> shifts[None, :]) & ((1 << bits) - 1)


def decode(z: torch.Tensor, A: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Integer fields z [N, K] -> What [N, K]: What[n, d g : d g + d] = A z[n, g] + b."""
    n, k = z.shape
    d = A.shape[0]
    zg = z.reshape(n, k // d, d).to(A.dtype)
    return (zg @ A.T + b).reshape(n, k)


def dense_weight(w_hat: torch.Tensor, su: torch.Tensor, sv: torch.Tensor, had_in: int, had_out: int) -> torch.Tensor:
    """W = diag(SV) H_out^T What H_in diag(SU)."""
    w = block_hadamard(w_hat, had_in)  # What @ H_in (H symmetric, acts on rows' K axis)
    w = block_hadamard(w.T, had_out).T  # H_out^T @ (...)
    return sv[:, None] * w * su[None, :]


def forward(x, z, A, b, su, sv, had_in: int, had_out: int, bias=None):
    """y = SV ⊙ H_out^T( What · H_in(SU ⊙ x) ) + bias, computed in x's dtype via the folded form."""
    d = A.shape[0]
    u = block_hadamard(x * su, had_in)
    ug = u.reshape(*u.shape[:-1], -1, d)
    v = (ug @ A).reshape(u.shape)  # v_g = A^T u_g
    c = (ug @ b).sum(-1, keepdim=True)  # sum_g b . u_g
    t = v @ z.to(v.dtype).T + c
    y = sv * block_hadamard(t, had_out)
    return y if bias is None else y + bias


def tiled_pack(canonical: torch.Tensor, desc: LayerDesc) -> torch.Tensor:
    """Canonical [N, R] -> TILED flat uint8 buffer (docs/format.md §4), written independently of the core."""
    n, r = desc.n, desc.row_bytes
    chunks = -(-r // TILE_BYTES)
    tiles = -(-n // TILE_ROWS)
    padded = torch.zeros(tiles * TILE_ROWS, chunks * TILE_BYTES, dtype=torch.uint8, device=canonical.device)
    padded[:n, :r] = canonical
    t = padded.reshape(tiles, TILE_ROWS, chunks, TILE_BYTES).permute(0, 2, 1, 3)
    return t.contiguous().reshape(-1)


def tiled_unpack(packed: torch.Tensor, desc: LayerDesc) -> torch.Tensor:
    n, r = desc.n, desc.row_bytes
    chunks = -(-r // TILE_BYTES)
    tiles = -(-n // TILE_ROWS)
    t = packed.reshape(tiles, chunks, TILE_ROWS, TILE_BYTES).permute(0, 2, 1, 3)
    return t.reshape(tiles * TILE_ROWS, chunks * TILE_BYTES)[:n, :r].contiguous()
