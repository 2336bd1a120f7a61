"""Peer methods run in the same harness (bench/ptq/ablation.py): group-wise 2-bit RTN and GPTQ.

Both are asymmetric min-max uniform quantizers per group of ``g`` consecutive input weights of a row.
Stored per group: one fp16 scale and one ``bits``-bit zero point, so bpw = bits + (16 + bits)/g
(2.28 for g64, 2.14 for g128: the convention of issue 4's table).  When ``in_features`` is not a
multiple of ``g`` (SmolLM2's 576 with g = 128) the last group of each row is partial and still
stores its own scale and zero point, so the counted bpw is a little above the nominal one.  The weight is replaced by its
dequantized values (simulated quantization); only the quality is compared.
"""

from __future__ import annotations

import torch


def _group_params(w: torch.Tensor, bits: int):
    qmax = (1 << bits) - 1
    lo = w.min(1).values.clamp(max=0)
    hi = w.max(1).values.clamp(min=0)
    scale = (hi - lo) / qmax
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    scale = scale.to(torch.float16).to(w.dtype)  # stored as fp16
    zero = torch.clamp(torch.round(-lo / scale), 0, qmax)
    return scale, zero


def _quant(w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int) -> torch.Tensor:
    q = torch.clamp(torch.round(w / scale) + zero, 0, (1 << bits) - 1)
    return (q - zero) * scale


def rtn_groupwise(W: torch.Tensor, bits: int, group: int) -> torch.Tensor:
    out = torch.empty_like(W)
    for c0 in range(0, W.shape[1], group):  # the last group may be partial
        s, z = _group_params(W[:, c0 : c0 + group], bits)
        out[:, c0 : c0 + group] = _quant(W[:, c0 : c0 + group], s[:, None], z[:, None], bits)
    return out


def gptq_groupwise(W: torch.Tensor, H: torch.Tensor, bits: int, group: int, damp: float = 0.01, lazy: int = 128) -> torch.Tensor:
    """GPTQ (Frantar et al. 2022) with per-group min-max parameters taken on the updated weights."""
    n, k = W.shape
    W = W.clone()
    Hd = H.to(W.dtype).clone()
    diag = torch.diagonal(Hd)
    dead = diag <= 0
    diag[dead] = 1.0
    W[:, dead] = 0.0
    diag += damp * diag.mean()
    Hinv = torch.cholesky_inverse(torch.linalg.cholesky(Hd))
    U = torch.linalg.cholesky(Hinv, upper=True)
    from .ldlq import few_threads
    import contextlib

    ctx = few_threads(1) if W.device.type == "cpu" else contextlib.nullcontext()
    with ctx:
        return _gptq_loop(W, U, n, k, group, bits, lazy)


def _gptq_loop(W, U, n, k, group, bits, lazy):
    Q = torch.zeros_like(W)
    scale = zero = None
    for c0 in range(0, k, lazy):
        c1 = min(c0 + lazy, k)
        err = torch.zeros(n, c1 - c0, dtype=W.dtype, device=W.device)
        for i in range(c0, c1):
            if i % group == 0:
                scale, zero = _group_params(W[:, i : i + group], bits)
            w = W[:, i]
            q = _quant(w, scale, zero, bits)
            Q[:, i] = q
            e = (w - q) / U[i, i]
            err[:, i - c0] = e
            W[:, i + 1 : c1] -= e[:, None] * U[i, i + 1 : c1][None, :]
        W[:, c1:] -= err @ U[c0:c1, c1:]
    return Q


def hqq_groupwise(W: torch.Tensor, bits: int, group: int) -> torch.Tensor:
    """HQQ (Badri & Shaji 2023) through the optional ``hqq`` package: calibration-free, optimised zero points."""
    try:
        from hqq.core.quantize import Quantizer
    except ImportError:
        raise RuntimeError("method hqq_g64 needs the optional package `hqq` (pip install hqq)") from None
    Wq, meta = Quantizer.quantize(W.float().cpu(), nbits=bits, group_size=group, optimize=True, axis=1, device="cpu")
    return Quantizer.dequantize(Wq, meta).reshape(W.shape).to(W.dtype).to(W.device)


def quantize_peer_weight(W: torch.Tensor, H: torch.Tensor, method: str, bits: int = 2, damp: float = 0.01):
    """(dequantized weight, stored bits) of a peer method: rtn_g64, rtn_g128, gptq_g64, gptq_g128, hqq_g64.

    HQQ stores a float16 scale and a float16 zero per group: bits + 32/g."""
    kind, g = method.split("_g")
    g = int(g)
    n, k = W.shape
    groups = n * -(-k // g)  # a partial last group per row stores its own parameters
    if kind == "hqq":
        return hqq_groupwise(W, bits, g), n * k * bits + groups * 32
    if kind == "rtn":
        Wq = rtn_groupwise(W, bits, g)
    elif kind == "gptq":
        Wq = gptq_groupwise(W, H, bits, g, damp=damp)
    else:
        raise ValueError(f"unknown peer method {method!r}")
    return Wq, n * k * bits + groups * (16 + bits)
