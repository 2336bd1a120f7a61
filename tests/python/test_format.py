"""The Python mirror (lattq.format) agrees with the compiled core, and bpw matches hand computation."""

from __future__ import annotations

import pytest
import torch

import lattq
from lattq import format as F


def test_constants_match_core(native):
    C = native._C
    assert F.FORMAT_VERSION == C.FORMAT_VERSION == C.format_version()
    assert F.TILE_ROWS == C.TILE_ROWS
    assert F.TILE_BYTES == C.TILE_BYTES
    assert F.MAX_BITS == C.MAX_BITS
    assert F.MAX_DIM == C.MAX_DIM
    assert F.MAX_CODE_BITS == C.MAX_CODE_BITS
    assert F.STATUS == dict(C.STATUS)
    assert (F.DTYPE_F32, F.DTYPE_F16, F.DTYPE_BF16) == (C.DTYPE_F32, C.DTYPE_F16, C.DTYPE_BF16)
    assert (F.LAYOUT_CANONICAL, F.LAYOUT_TILED) == (C.LAYOUT_CANONICAL, C.LAYOUT_TILED)
    assert (F.ENCODE_AUTO, F.ENCODE_EXHAUSTIVE, F.ENCODE_ORTHOGONAL) == (
        C.ENCODE_AUTO, C.ENCODE_EXHAUSTIVE, C.ENCODE_ORTHOGONAL)


def test_activation_dtype_codes_match(native):
    """_native's torch-dtype table uses the core's activation ids."""
    assert native.dtype_code(torch.float32) == native._C.DTYPE_F32
    assert native.dtype_code(torch.float16) == native._C.DTYPE_F16
    assert native.dtype_code(torch.bfloat16) == native._C.DTYPE_BF16
    assert native.dtype_code(torch.uint8) == native._C.DTYPE_U8


def test_status_strings_exist(native):
    for name, code in F.STATUS.items():
        s = native._C.status_string(code)
        assert isinstance(s, str) and s


def test_version_strings(native):
    assert native._C.version() == lattq.__version__


@pytest.mark.parametrize(
    "n,k,bits,dim",
    [(4096, 4096, 2, 4), (576, 1536, 2, 4), (11008, 4096, 2, 4), (37, 40, 3, 2), (5, 24, 1, 8), (3, 16, 4, 1)],
)
def test_sizes_match_core(native, n, k, bits, dim):
    desc = F.LayerDesc(bits, dim, n, k).validate()
    assert native.canonical_bytes(desc) == desc.canonical_bytes == n * k * bits // 8
    assert native.packed_bytes(desc) == desc.packed_bytes


def test_packed_bytes_by_hand():
    # 576 x 1536, k=2: R = 384 bytes = 24 chunks; 36 tiles; 36 * 24 * 256 bytes
    assert F.LayerDesc(2, 4, 576, 1536).packed_bytes == 36 * 24 * 256
    # 37 x 40, k=3: R = 15 bytes -> 1 chunk (padded); 3 tiles
    assert F.LayerDesc(3, 2, 37, 40).packed_bytes == 3 * 1 * 256


def test_bpw_by_hand():
    d = F.LayerDesc(2, 4, 4096, 4096)
    # codes 2*N*K, A+b 32*(16+4), SU 32*K, SV 32*N
    bits = 2 * 4096 * 4096 + 32 * 20 + 32 * 4096 + 32 * 4096
    assert F.layer_bits(d) == bits
    assert F.bpw(d) == pytest.approx(bits / (4096 * 4096), rel=0, abs=1e-15)
    assert F.bpw(d) == pytest.approx(2.0 + 640 / 16777216 + 2 / 128, abs=1e-12)
    # sign SU (K/8 bytes + scale), q8 SV (N bytes + scale), bias
    bits2 = 2 * 4096 * 4096 + 640 + (8 * 512 + 32) + (8 * 4096 + 32) + 32 * 4096
    assert F.layer_bits(d, "sign", "q8", bias=True) == bits2
    # 576 x 1536 with f16 scales
    d2 = F.LayerDesc(2, 4, 576, 1536)
    bits3 = 2 * 576 * 1536 + 640 + 16 * 1536 + 16 * 576
    assert F.bpw(d2, "f16", "f16") == pytest.approx(bits3 / (576 * 1536), abs=1e-15)
    # sign vector of a length that is not a multiple of 8 rounds up to whole bytes
    assert F.scale_bits("sign", 13) == 16 + 32


def test_desc_validation_matches_core(native):
    """Every rejection of LayerDesc.validate is also a rejection of the core, and vice versa on samples."""
    cases = [
        (2, 4, 64, 64, 64, 64, True),
        (2, 4, 64, 62, 1, 1, False),  # k % dim
        (3, 1, 64, 12, 1, 1, False),  # k*bits % 8
        (5, 1, 64, 64, 1, 1, False),  # bits
        (2, 3, 64, 60, 1, 1, False),  # dim
        (4, 8, 64, 64, 1, 1, False),  # bits*dim > 16
        (2, 4, 64, 64, 48, 1, False),  # had_in not a power of two
        (2, 4, 64, 64, 128, 1, False),  # had_in does not divide k
        (2, 4, 96, 64, 1, 64, False),  # had_out does not divide n
        (2, 4, 0, 64, 1, 1, False),
        (2, 4, 576, 1536, 64, 64, True),
    ]
    for bits, dim, n, k, hi, ho, ok in cases:
        desc = F.LayerDesc(bits, dim, n, k, hi, ho)
        if ok:
            desc.validate()
            native._C.validate_desc((bits, dim, n, k, hi, ho))
        else:
            with pytest.raises(ValueError):
                desc.validate()
            with pytest.raises(ValueError):
                native._C.validate_desc((bits, dim, n, k, hi, ho))


def test_default_hadamard_block():
    assert F.default_hadamard_block(576) == 64
    assert F.default_hadamard_block(1536) == 128
    assert F.default_hadamard_block(11008) == 128
    assert F.default_hadamard_block(40) == 8


def test_cmake_dir_of_installed_package():
    """lattq.cmake_dir() points at the installed lattqConfig.cmake (find_package(lattq)) when installed."""
    import os

    pkg = os.path.dirname(lattq.__file__)
    installed = os.path.isdir(os.path.join(pkg, "lib")) or os.path.isdir(os.path.join(pkg, "lib64"))
    if not installed:
        with pytest.raises(FileNotFoundError, match="lattqConfig.cmake"):
            lattq.cmake_dir()
        return
    d = lattq.cmake_dir()
    assert os.path.isfile(os.path.join(d, "lattqConfig.cmake"))
    assert os.path.isfile(os.path.join(d, "lattqConfigVersion.cmake"))
    assert os.path.isfile(os.path.join(d, "lattqTargets.cmake"))
