"""lattq.ops (CPU) against float64 oracles written from the format (conftest.py), plus opcheck.

Tolerances, each named:
  * bit-exact: pack / unpack vs the independent torch implementation in lattq.reference.
  * numeric fp32: relative Frobenius error <= 1e-5 vs the float64 oracle.
  * numeric bf16/fp16: error <= 2x the error of the same layer computed densely by torch in that dtype.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import lattq
from lattq import reference as ref
from lattq.format import LayerDesc

from conftest import (
    dense_dtype_error,
    make_layer,
    np_block_hadamard,
    np_dense_weight,
    np_fields,
    np_layer_forward,
    np_w_hat,
    op_args,
    rel_err,
)

FP32_TOL = 1e-5  # numeric: fp32 activations vs float64 oracle
LOW_PREC_FACTOR = 2.0  # numeric: bf16/fp16 error <= 2x torch's dense error in the same dtype

FAMILIES = [(k, d) for k in (1, 2, 3, 4) for d in (1, 2, 4, 8) if k * d <= 16]


# ---------------------------------------------------------------------------------------------------
# packing (bit-exact)
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bits,dim", FAMILIES)
@pytest.mark.parametrize("n,k_groups", [(1, 8), (17, 24), (33, 72), (64, 128)])
def test_pack_unpack_bit_exact(native, gen, bits, dim, n, k_groups):
    k = k_groups * dim
    if (k * bits) % 8:
        k *= 8
    desc = LayerDesc(bits, dim, n, k).validate()
    canonical = torch.randint(0, 256, (n, desc.row_bytes), generator=gen, dtype=torch.int64).to(torch.uint8)
    packed = native.pack(desc, canonical)
    assert packed.dtype == torch.uint8 and packed.shape == (desc.packed_bytes,)
    assert native.packed_bytes(desc) == desc.packed_bytes
    assert native.canonical_bytes(desc) == desc.canonical_bytes
    assert torch.equal(packed, ref.tiled_pack(canonical, desc))
    assert torch.equal(native.unpack(desc, packed), canonical)


def test_pack_layout_by_hand(native):
    """The byte offset formula of docs/format.md §4, element by element, for an awkward shape."""
    n, k = 37, 4 * 40  # R = 40 bytes -> 3 chunks, 3 tiles
    desc = LayerDesc(2, 4, n, k).validate()
    canonical = torch.arange(n * desc.row_bytes, dtype=torch.int64).remainder(251).add(1).to(torch.uint8)
    canonical = canonical.reshape(n, desc.row_bytes)
    packed = native.pack(desc, canonical).numpy()
    chunks = -(-desc.row_bytes // 16)
    expect = np.zeros(desc.packed_bytes, dtype=np.uint8)
    for row in range(n):
        for byte in range(desc.row_bytes):
            c, j = divmod(byte, 16)
            expect[((row // 16) * chunks + c) * 256 + (row % 16) * 16 + j] = canonical[row, byte]
    assert np.array_equal(packed, expect)


# ---------------------------------------------------------------------------------------------------
# decode
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bits,dim", FAMILIES)
def test_decode_vs_oracle(native, gen, bits, dim):
    n, k = 48, 128
    layer = make_layer(n, k, gen, bits=bits, dim=dim, had_in=32, had_out=16, bias=False)
    w_hat = torch.ops.lattq.decode(*op_args(layer)[:5], bits, dim, 32, 16, n, k, False)
    w_hat_ref = np_w_hat(layer["codes64"], layer["A64"], layer["b64"], bits, dim, k)
    assert w_hat.dtype == torch.float32 and w_hat.shape == (n, k)
    np.testing.assert_allclose(w_hat.double().numpy(), w_hat_ref, rtol=1e-6, atol=1e-5)
    w = torch.ops.lattq.decode(*op_args(layer)[:5], bits, dim, 32, 16, n, k, True)
    assert rel_err(w, np_dense_weight(layer)) <= FP32_TOL
    # and the pure-torch reference (the fallback path) agrees with the native decode
    w_hat_torch = lattq.ops.decode_reference(*op_args(layer)[:5], bits, dim, 32, 16, n, k, False)
    torch.testing.assert_close(w_hat, w_hat_torch, rtol=1e-6, atol=1e-5)


def test_decode_reference_matches_oracle(gen):
    layer = make_layer(32, 64, gen, had_in=16, had_out=32, bias=False)
    w = lattq.ops.decode_reference(*op_args(layer)[:5], 2, 4, 16, 32, 32, 64, True, compute_dtype=torch.float64)
    assert rel_err(w, np_dense_weight(layer)) <= FP32_TOL


def test_oracle_fields_agree_with_format_example():
    """Hand-computed: for k=2, d=4 byte g of a row is the code index of group g, coordinate 0 lowest."""
    row = np.array([[0b11_10_01_00, 0b00_00_00_11]], dtype=np.uint8)
    assert np_fields(row, 2, 8).tolist() == [[0, 1, 2, 3, 3, 0, 0, 0]]
    row3 = np.array([[0b11_000_101, 0b0]], dtype=np.uint8)  # k=3: fields 5, 0, then bits 6,7 + bit 8
    assert np_fields(row3, 3, 3)[0].tolist()[:2] == [5, 0]
    assert np_fields(row3, 3, 3)[0, 2] == 3


# ---------------------------------------------------------------------------------------------------
# hadamard
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("block", [1, 2, 64, 128, 1024])
def test_hadamard_vs_oracle(native, gen, dtype, block):
    x = torch.randn(3, 5, 1024, generator=gen).to(dtype)
    y = torch.ops.lattq.hadamard(x, block)
    assert y.dtype == dtype and y.shape == x.shape
    y_ref = np_block_hadamard(x.double().numpy(), block)
    if dtype == torch.float32:
        assert rel_err(y, y_ref) <= FP32_TOL
    else:
        # the result is rounded once to the activation dtype: 2x the rounding of the exact result
        rounding = rel_err(torch.from_numpy(y_ref).to(dtype), y_ref)
        assert rel_err(y, y_ref) <= LOW_PREC_FACTOR * rounding + 1e-7


def test_hadamard_is_involution(native, gen):
    x = torch.randn(7, 256, generator=gen)
    yy = torch.ops.lattq.hadamard(torch.ops.lattq.hadamard(x, 256), 256)
    assert rel_err(yy, x.double().numpy()) <= FP32_TOL


# ---------------------------------------------------------------------------------------------------
# linear: fp32 vs float64
# ---------------------------------------------------------------------------------------------------
SHAPES = [(576, 1536), (1536, 576), (4096, 4096)]


@pytest.mark.parametrize("n,k", SHAPES)
@pytest.mark.parametrize("m", [1, 2, 3, 7, 16, 33])
def test_linear_fp32(native, gen, n, k, m):
    layer = make_layer(n, k, gen)
    x = torch.randn(m, k, generator=gen)
    y = torch.ops.lattq.linear(x, *op_args(layer))
    assert y.shape == (m, n) and y.dtype == torch.float32
    assert rel_err(y, np_layer_forward(layer, x.double().numpy())) <= FP32_TOL


def test_linear_fp32_large_m1(native, gen):
    n, k = 11008, 4096
    layer = make_layer(n, k, gen)
    x = torch.randn(1, k, generator=gen)
    y = torch.ops.lattq.linear(x, *op_args(layer))
    assert rel_err(y, np_layer_forward(layer, x.double().numpy())) <= FP32_TOL


def test_linear_every_m_1_to_33(native, gen):
    layer = make_layer(96, 320, gen, had_in=64, had_out=32)
    for m in range(1, 34):
        x = torch.randn(m, 320, generator=gen)
        y = torch.ops.lattq.linear(x, *op_args(layer))
        assert rel_err(y, np_layer_forward(layer, x.double().numpy())) <= FP32_TOL, f"m={m}"


@pytest.mark.parametrize("bits,dim", FAMILIES)
def test_linear_every_family(native, gen, bits, dim):
    layer = make_layer(40, 256, gen, bits=bits, dim=dim, had_in=256, had_out=8)
    x = torch.randn(5, 256, generator=gen)
    y = torch.ops.lattq.linear(x, *op_args(layer))
    assert rel_err(y, np_layer_forward(layer, x.double().numpy())) <= FP32_TOL


@pytest.mark.parametrize("had_in,had_out", [(1, 1), (4096, 1), (1, 4096), (4096, 4096), (16, 2048)])
def test_linear_hadamard_blocks(native, gen, had_in, had_out):
    layer = make_layer(4096, 4096, gen, had_in=had_in, had_out=had_out)
    x = torch.randn(2, 4096, generator=gen)
    y = torch.ops.lattq.linear(x, *op_args(layer))
    assert rel_err(y, np_layer_forward(layer, x.double().numpy())) <= FP32_TOL


def test_linear_no_bias_and_leading_dims(native, gen):
    layer = make_layer(64, 128, gen, bias=False)
    x = torch.randn(2, 3, 4, 128, generator=gen)
    y = torch.ops.lattq.linear(x, *op_args(layer))
    assert y.shape == (2, 3, 4, 64)
    y_ref = np_layer_forward(layer, x.double().reshape(-1, 128).numpy()).reshape(2, 3, 4, 64)
    assert rel_err(y, y_ref) <= FP32_TOL


def test_linear_noncontiguous_x_is_made_contiguous(native, gen):
    """Documented: lattq.ops.linear makes x contiguous (the native entry point itself rejects it)."""
    layer = make_layer(64, 128, gen)
    big = torch.randn(128, 10, generator=gen)
    x = big.T  # [10, 128], not contiguous
    assert not x.is_contiguous()
    y = torch.ops.lattq.linear(x, *op_args(layer))
    assert rel_err(y, np_layer_forward(layer, x.double().numpy())) <= FP32_TOL


def test_linear_empty_batch(native, gen):
    layer = make_layer(64, 128, gen)
    y = torch.ops.lattq.linear(torch.empty(0, 128), *op_args(layer))
    assert y.shape == (0, 64)


def test_threads_do_not_change_result(native, gen):
    layer = make_layer(256, 512, gen)
    x = torch.randn(3, 512, generator=gen)
    old = native.get_num_threads()
    try:
        native.set_num_threads(1)
        y1 = torch.ops.lattq.linear(x, *op_args(layer))
        native.set_num_threads(2)
        y2 = torch.ops.lattq.linear(x, *op_args(layer))
    finally:
        native.set_num_threads(old)
    y_ref = np_layer_forward(layer, x.double().numpy())
    assert rel_err(y1, y_ref) <= FP32_TOL and rel_err(y2, y_ref) <= FP32_TOL


def test_every_cpu_kernel(native, gen):
    """Each CPU kernel family this machine runs meets the fp32 tolerance (forced one by one)."""
    layer = make_layer(576, 1536, gen)
    x = torch.randn(5, 1536, generator=gen)
    y_ref = np_layer_forward(layer, x.double().numpy())
    ran = []
    try:
        for name in ("scalar", "avx2", "avx512"):
            try:
                native.set_cpu_kernel(name)
            except RuntimeError:
                continue  # not supported by this CPU / build
            assert native.cpu_kernel() == name
            y = torch.ops.lattq.linear(x, *op_args(layer))
            assert rel_err(y, y_ref) <= FP32_TOL, name
            ran.append(name)
    finally:
        native.set_cpu_kernel("auto")
    assert "scalar" in ran


# ---------------------------------------------------------------------------------------------------
# linear: bf16 / fp16
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("n,k,m", [(576, 1536, 1), (576, 1536, 17), (1536, 576, 33), (4096, 4096, 4), (11008, 4096, 1)])
def test_linear_low_precision(native, gen, dtype, n, k, m):
    layer = make_layer(n, k, gen)
    x = torch.randn(m, k, generator=gen).to(dtype)
    y = torch.ops.lattq.linear(x, *op_args(layer))
    assert y.dtype == dtype and y.shape == (m, n)
    y_ref = np_layer_forward(layer, x.double().numpy())
    err, dense = rel_err(y, y_ref), dense_dtype_error(layer, x, y_ref)
    assert err <= LOW_PREC_FACTOR * dense, f"lattq {err:.3g} vs dense {dtype} {dense:.3g}"


# ---------------------------------------------------------------------------------------------------
# reference fallback path == oracle, and native == reference
# ---------------------------------------------------------------------------------------------------
def test_reference_linear_matches_oracle(gen):
    layer = make_layer(128, 256, gen, had_in=64, had_out=128)
    x = torch.randn(4, 256, generator=gen)
    y = lattq.ops.linear_reference(x, *op_args(layer), compute_dtype=torch.float64)
    assert rel_err(y, np_layer_forward(layer, x.double().numpy())) <= FP32_TOL


def test_fallback_without_native(tmp_path):
    """With LATTQ_DISABLE_NATIVE=1 lattq imports, says why, and the ops still compute correctly."""
    import subprocess
    import sys

    code = (
        "import torch, lattq\n"
        "assert not lattq.native_available(), lattq.native_status()\n"
        "assert 'LATTQ_DISABLE_NATIVE' in lattq.native_status()\n"
        "lin = torch.nn.Linear(256, 64)\n"
        "m = lattq.LatticeLinear.from_float(lin, seed=3)\n"
        "x = torch.randn(3, 256)\n"
        "y = m(x)\n"
        "W = m.dense_weight().double()\n"
        "y_ref = x.double() @ W.T + lin.bias.double()\n"
        "err = ((y.double() - y_ref).norm() / y_ref.norm()).item()\n"
        "assert err < 1e-5, err\n"
        "print('ok')\n"
    )
    env = dict(__import__("os").environ, LATTQ_DISABLE_NATIVE="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "ok" in out.stdout


# ---------------------------------------------------------------------------------------------------
# autograd (float64 finite differences through the reference are the oracle)
# ---------------------------------------------------------------------------------------------------
def test_linear_backward_vs_reference_autograd(native, gen):
    layer = make_layer(32, 64, gen, had_in=16, had_out=32)
    x = torch.randn(3, 64, generator=gen)
    leaves = {name: layer[name].clone().requires_grad_(True) for name in ("A", "b", "su", "sv", "bias")}
    xg = x.clone().requires_grad_(True)
    args = list(op_args(layer))
    args[1], args[2], args[3], args[4], args[5] = leaves["A"], leaves["b"], leaves["su"], leaves["sv"], leaves["bias"]
    gy = torch.randn(3, 32, generator=gen)
    (torch.ops.lattq.linear(xg, *args) * gy).sum().backward()
    # oracle: autograd of the float64 dense form written from the math (independent of the op's backward)
    z = torch.from_numpy(np_fields(layer["codes64"], 2, 64))
    l64 = {k: v.detach().double().requires_grad_(True) for k, v in leaves.items()}
    x64 = x.double().requires_grad_(True)
    w_hat = (z.reshape(32, 16, 4).double() @ l64["A"].T + l64["b"]).reshape(32, 64)
    h_in = torch.from_numpy(np_block_hadamard(np.eye(64), 16))
    h_out = torch.from_numpy(np_block_hadamard(np.eye(32), 32))
    w = l64["sv"][:, None] * (h_out.T @ w_hat @ h_in) * l64["su"][None, :]
    ((x64 @ w.T + l64["bias"]) * gy.double()).sum().backward()
    assert rel_err(xg.grad, x64.grad.numpy()) <= 1e-5
    for name in leaves:
        assert rel_err(leaves[name].grad, l64[name].grad.numpy()) <= 1e-5, name


# ---------------------------------------------------------------------------------------------------
# opcheck
# ---------------------------------------------------------------------------------------------------
def test_opcheck_linear(native, gen):
    layer = make_layer(48, 128, gen, had_in=32, had_out=16)
    x = torch.randn(2, 3, 128, generator=gen)
    torch.library.opcheck(torch.ops.lattq.linear.default, (x, *op_args(layer)))
    layer_nb = make_layer(48, 128, gen, had_in=32, had_out=16, bias=False)
    torch.library.opcheck(torch.ops.lattq.linear.default, (x.to(torch.bfloat16), *op_args(layer_nb)))


def test_opcheck_linear_with_grad(native, gen):
    layer = make_layer(48, 128, gen, had_in=32, had_out=16)
    args = list(op_args(layer))
    for i in (1, 2, 3, 4, 5):
        args[i] = args[i].clone().requires_grad_(True)
    x = torch.randn(5, 128, generator=gen, requires_grad=True)
    torch.library.opcheck(torch.ops.lattq.linear.default, (x, *args))


def test_opcheck_decode(native, gen):
    layer = make_layer(48, 128, gen, had_in=32, had_out=16)
    for with_t in (False, True):
        torch.library.opcheck(torch.ops.lattq.decode.default, (*op_args(layer)[:5], 2, 4, 32, 16, 48, 128, with_t))


def test_opcheck_hadamard(native, gen):
    x = torch.randn(3, 256, generator=gen)
    torch.library.opcheck(torch.ops.lattq.hadamard.default, (x, 64))
    torch.library.opcheck(torch.ops.lattq.hadamard.default, (x.clone().requires_grad_(True), 256))
    torch.library.opcheck(torch.ops.lattq.hadamard.default, (x.to(torch.float16), 128))


# ---------------------------------------------------------------------------------------------------
# encode (nearest codeword)
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bits,dim", [(2, 4), (1, 1), (2, 2), (4, 2), (1, 8)])
def test_encode_vectors_is_nearest(native, gen, bits, dim):
    A = (torch.randn(dim, dim, generator=gen) * 0.3 + torch.eye(dim)).float()
    b = torch.randn(dim, generator=gen).float()
    x = (torch.randn(300, dim, generator=gen) * 2).float()
    idx, err = native.encode_vectors(bits, dim, A, b, x, method=lattq.format.ENCODE_EXHAUSTIVE, want_error=True)
    # brute force in float64
    c = np.arange(1 << (bits * dim))
    zs = (c[:, None] >> (np.arange(dim) * bits)) & ((1 << bits) - 1)
    pts = zs @ A.double().numpy().T + b.double().numpy()
    d2 = ((x.double().numpy()[:, None, :] - pts[None]) ** 2).sum(-1)
    best = d2.min(1)
    got = d2[np.arange(300), idx.numpy()]
    np.testing.assert_allclose(got, best, rtol=1e-5, atol=1e-6)  # nearest (ties may pick either)
    np.testing.assert_allclose(err.double().numpy(), got, rtol=1e-4, atol=1e-5)


def test_encode_matrix_roundtrip(native, gen):
    """Encoding the decoded lattice points gives the codes back exactly."""
    layer = make_layer(32, 64, gen, bias=False)
    w_hat = torch.ops.lattq.decode(*op_args(layer)[:5], 2, 4, layer["had_in"], layer["had_out"], 32, 64, False)
    codes = native.encode_matrix(layer["desc"], layer["A"], layer["b"], w_hat, lattq.format.ENCODE_EXHAUSTIVE)
    w_back = np_w_hat(codes.numpy(), layer["A64"], layer["b64"], 2, 4, 64)
    np.testing.assert_allclose(w_back, w_hat.double().numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bits,dim", list(itertools.islice(FAMILIES, 0, None, 3)))
def test_fields_of_reference_and_oracle_agree(gen, bits, dim):
    """lattq.reference (the fallback) and the NumPy oracle read the bitstream identically."""
    k = 8 * dim
    desc = LayerDesc(bits, dim, 5, k).validate()
    canonical = torch.randint(0, 256, (5, desc.row_bytes), generator=gen, dtype=torch.int64).to(torch.uint8)
    assert np.array_equal(ref.unpack_fields(canonical, bits, k).numpy(), np_fields(canonical.numpy(), bits, k))
