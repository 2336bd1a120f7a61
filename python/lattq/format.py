"""Format v1, mirrored from the core header ``cpp/include/lattq/lattq.h`` (the single source of truth).

``tests/python/test_format.py`` checks that every constant here agrees with the compiled core.
See ``docs/format.md`` for the specification.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

FORMAT_VERSION = 1
TILE_ROWS = 16
TILE_BYTES = 16
MAX_BITS = 4
MAX_DIM = 8
MAX_CODE_BITS = 16

# lattq_status
STATUS = {
    "OK": 0,
    "ERR_INVALID_ARGUMENT": 1,
    "ERR_DTYPE": 2,
    "ERR_SHAPE": 3,
    "ERR_ALIGNMENT": 4,
    "ERR_LAYOUT": 5,
    "ERR_NONFINITE": 6,
    "ERR_UNSUPPORTED": 7,
    "ERR_WORKSPACE": 8,
    "ERR_DEVICE": 9,
    "ERR_NO_CUDA": 10,
    "ERR_INTERNAL": 11,
}
# lattq_dtype
DTYPE_F32, DTYPE_F16, DTYPE_BF16 = 0, 1, 2
# lattq_layout
LAYOUT_CANONICAL, LAYOUT_TILED = 0, 1
# lattq_encode_method
ENCODE_AUTO, ENCODE_EXHAUSTIVE, ENCODE_ORTHOGONAL = 0, 1, 2

ALLOWED_BITS = (1, 2, 3, 4)
ALLOWED_DIMS = (1, 2, 4, 8)
SCALE_FORMATS = ("f32", "f16", "q8", "sign")


def _is_pow2(x: int) -> bool:
    return x >= 1 and (x & (x - 1)) == 0


def default_hadamard_block(size: int, cap: int = 128) -> int:
    """Largest power of two dividing ``size``, capped at ``cap`` (576 -> 64, 4096 -> 128)."""
    if size <= 0:
        raise ValueError(f"dimension must be positive, got {size}")
    blk = size & -size
    return min(blk, cap)


@dataclass(frozen=True)
class LayerDesc:
    """Shape and lattice family of one quantized linear layer (mirror of ``lattq_layer_desc``)."""

    bits: int
    dim: int
    n: int
    k: int
    had_in: int = 1
    had_out: int = 1

    def validate(self) -> "LayerDesc":
        if self.bits not in ALLOWED_BITS:
            raise ValueError(f"bits must be one of {ALLOWED_BITS}, got {self.bits}")
        if self.dim not in ALLOWED_DIMS:
            raise ValueError(f"dim must be one of {ALLOWED_DIMS}, got {self.dim}")
        if self.bits * self.dim > MAX_CODE_BITS:
            raise ValueError(f"bits*dim must be <= {MAX_CODE_BITS}, got {self.bits}*{self.dim}")
        if self.n <= 0 or self.k <= 0:
            raise ValueError(f"n and k must be positive, got n={self.n}, k={self.k}")
        if self.k % self.dim:
            raise ValueError(f"k={self.k} (in_features) is not divisible by dim={self.dim}")
        if (self.k * self.bits) % 8:
            raise ValueError(f"k*bits = {self.k}*{self.bits} is not a multiple of 8")
        for name, blk, size in (("had_in", self.had_in, self.k), ("had_out", self.had_out, self.n)):
            if not _is_pow2(blk):
                raise ValueError(f"{name}={blk} is not a power of two")
            if size % blk:
                raise ValueError(f"{name}={blk} does not divide the dimension {size}")
        return self

    @property
    def row_bytes(self) -> int:
        return self.k * self.bits // 8

    @property
    def canonical_bytes(self) -> int:
        return self.n * self.row_bytes

    @property
    def packed_bytes(self) -> int:
        chunks = -(-self.row_bytes // TILE_BYTES)
        tiles = -(-self.n // TILE_ROWS)
        return tiles * chunks * TILE_ROWS * TILE_BYTES


def scale_bits(fmt: str, length: int) -> int:
    """Stored bits of a scale vector of ``length`` entries in storage format ``fmt`` (docs/format.md §5)."""
    if fmt == "f32":
        return 32 * length
    if fmt == "f16":
        return 16 * length
    if fmt == "q8":
        return 8 * length + 32
    if fmt == "sign":
        return 8 * math.ceil(length / 8) + 32
    raise ValueError(f"unknown scale format {fmt!r}; expected one of {SCALE_FORMATS}")


def layer_bits(desc: LayerDesc, su_format: str = "f32", sv_format: str = "f32", bias: bool = False) -> int:
    """Every stored bit of one layer (docs/format.md §6)."""
    d = desc.dim
    return (
        desc.n * desc.k * desc.bits
        + 32 * (d * d + d)
        + scale_bits(su_format, desc.k)
        + scale_bits(sv_format, desc.n)
        + (32 * desc.n if bias else 0)
    )


def bpw(desc: LayerDesc, su_format: str = "f32", sv_format: str = "f32", bias: bool = False) -> float:
    """Bits per weight of one layer, counting every stored parameter."""
    return layer_bits(desc, su_format, sv_format, bias) / (desc.n * desc.k)
