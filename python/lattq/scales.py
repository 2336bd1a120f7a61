"""Storage formats of the SU / SV scale vectors (docs/format.md §5).

In memory SU and SV are always float32.  In a checkpoint each is stored as ``f32``, ``f16``,
``q8`` (int8 + one float32 scale) or ``sign`` (bit-packed signs + one float32 scale).
``project`` maps a vector to the nearest one its format can store, so that what the quantizer trains
or chooses is exactly what is saved; ``encode``/``decode`` convert between the two.
"""

from __future__ import annotations

import torch

from .format import SCALE_FORMATS, scale_bits  # noqa: F401  (re-exported for callers)


def _check(fmt: str) -> None:
    if fmt not in SCALE_FORMATS:
        raise ValueError(f"unknown scale format {fmt!r}; expected one of {SCALE_FORMATS}")


def _scale_of(v: torch.Tensor, fmt: str) -> torch.Tensor:
    # float64 arithmetic so that recomputing the scale from a projected vector gives it back exactly
    # (a float32 mean of L copies of s is not always s).
    v = v.detach().to(torch.float64)
    if fmt == "q8":
        s = (v.abs().max() / 127.0).to(torch.float32)
    else:  # sign
        s = v.abs().mean().to(torch.float32)
    return torch.where(s > 0, s, torch.ones_like(s))


def project(v: torch.Tensor, fmt: str) -> torch.Tensor:
    """Nearest representable float32 vector in storage format ``fmt``."""
    _check(fmt)
    v32 = v.to(torch.float32)
    if fmt == "f32":
        return v32
    if fmt == "f16":
        return v32.to(torch.float16).to(torch.float32)
    s = _scale_of(v32, fmt)
    if fmt == "q8":
        return torch.clamp(torch.round(v32 / s), -127, 127) * s
    return torch.where(v32 < 0, -s, s)


def encode(v: torch.Tensor, fmt: str) -> dict[str, torch.Tensor]:
    """float32 vector -> stored tensors: {"": data} plus {"_scale": float32[1]} for q8 / sign.

    Raises ValueError if ``v`` is not exactly representable (call ``project`` first) or not finite.
    """
    _check(fmt)
    v32 = v.detach().to(torch.float32).cpu()
    if not bool(torch.isfinite(v32).all()):
        raise ValueError("scale vector contains NaN or Inf")
    if fmt == "f32":
        return {"": v32.clone()}
    if fmt == "f16":
        out = {"": v32.to(torch.float16)}
    elif fmt == "q8":
        s = _scale_of(v32, fmt)
        out = {"": torch.clamp(torch.round(v32 / s), -127, 127).to(torch.int8), "_scale": s.reshape(1)}
    else:
        s = _scale_of(v32, fmt)
        bits = (v32 < 0).to(torch.uint8)
        pad = (-bits.numel()) % 8
        bits = torch.cat([bits, torch.zeros(pad, dtype=torch.uint8)]).reshape(-1, 8)
        weights = (1 << torch.arange(8, dtype=torch.int32)).to(torch.uint8)
        packed = (bits.to(torch.int32) * weights.to(torch.int32)).sum(1).to(torch.uint8)
        out = {"": packed, "_scale": s.reshape(1)}
    back = decode(out, fmt, v32.numel())
    if not torch.equal(back, v32):
        err = (back - v32).abs().max().item()
        raise ValueError(f"scale vector is not representable in format {fmt!r} (max error {err:.3g}); project() it first")
    return out


def decode(stored: dict[str, torch.Tensor], fmt: str, length: int) -> torch.Tensor:
    """Stored tensors (as produced by ``encode``) -> float32 vector of ``length`` entries."""
    _check(fmt)
    data = stored[""]
    expected = {
        "f32": ((length,), torch.float32),
        "f16": ((length,), torch.float16),
        "q8": ((length,), torch.int8),
        "sign": (((length + 7) // 8,), torch.uint8),
    }[fmt]
    if tuple(data.shape) != expected[0] or data.dtype != expected[1]:
        raise ValueError(
            f"scale data for format {fmt!r} must be {expected[1]} of shape {expected[0]}, "
            f"got {data.dtype} of shape {tuple(data.shape)}"
        )
    if fmt in ("f32", "f16"):
        out = data.to(torch.float32)
    else:
        s = stored.get("_scale")
        if s is None or s.dtype != torch.float32 or s.numel() != 1:
            raise ValueError(f"format {fmt!r} needs a float32 scale of one element")
        if fmt == "q8":
            out = data.to(torch.float32) * s.reshape(())
        else:
            shifts = torch.arange(8, dtype=torch.int32)
            bits = ((data.to(torch.int32)[:, None] >> shifts) & 1).reshape(-1)[:length]
            out = torch.where(bits.bool(), -s.reshape(()), s.reshape(())).to(torch.float32)
    if not bool(torch.isfinite(out).all()):
        raise ValueError("stored scale vector decodes to NaN or Inf")
    return out
