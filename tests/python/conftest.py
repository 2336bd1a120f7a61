"""Shared fixtures and float64 oracles for the lattq Python tests.

The oracles here are written from docs/format.md with NumPy in float64 and do not use lattq's code
(neither the native core nor lattq.reference): canonical codes are decoded with np.unpackbits, the
Hadamard matrix is built by the Sylvester recursion, and the layer is evaluated by its definition
``y = SV ⊙ H_outᵀ(Ŵ · H_in(SU ⊙ x)) + bias`` with Ŵ formed explicitly.

Random inputs are fresh on every run: the seed comes from LATTQ_TEST_SEED or the clock and is printed
in the pytest header so that a failure can be reproduced.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch

SEED = int(os.environ.get("LATTQ_TEST_SEED", str(int(time.time() * 1000) % (2**31))))


def pytest_report_header(config):
    import lattq

    return [f"lattq test seed: LATTQ_TEST_SEED={SEED}", f"lattq: {lattq.native_status()}"]


@pytest.fixture
def seed(request) -> int:
    # a different, reproducible stream per test
    return (SEED * 1000003 + sum(map(ord, request.node.nodeid))) % (2**31)


@pytest.fixture
def gen(seed) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def native():
    """The _native module; fails (not skips) when the extension is missing, unless disabled on purpose."""
    import lattq
    from lattq import _native

    if not lattq.native_available():
        if os.environ.get("LATTQ_DISABLE_NATIVE", "") not in ("", "0"):
            pytest.skip("native kernels disabled by LATTQ_DISABLE_NATIVE")
        pytest.fail(f"native kernels are not available: {lattq.native_status()}")
    return _native


# ---------------------------------------------------------------------------------------------------
# independent float64 oracle (NumPy)
# ---------------------------------------------------------------------------------------------------
def np_fields(canonical: np.ndarray, bits: int, k: int) -> np.ndarray:
    """Canonical codes uint8 [N, R] -> integer fields [N, K] (little-endian bitstream per row)."""
    n = canonical.shape[0]
    bitstream = np.unpackbits(canonical, axis=1, bitorder="little")  # [N, 8R], bit i of the row
    b = bitstream[:, : k * bits].reshape(n, k, bits).astype(np.int64)
    return (b << np.arange(bits)).sum(-1)


def np_hadamard(block: int) -> np.ndarray:
    h = np.ones((1, 1))
    while h.shape[0] < block:
        h = np.block([[h, h], [h, -h]])
    return h / np.sqrt(block)


def np_block_hadamard(x: np.ndarray, block: int) -> np.ndarray:
    """(I ⊗ H_block) applied along the last axis."""
    if block == 1:
        return x
    h = np_hadamard(block)
    shp = x.shape
    return (x.reshape(*shp[:-1], shp[-1] // block, block) @ h).reshape(shp)


def np_w_hat(canonical, A, b, bits, dim, k) -> np.ndarray:
    z = np_fields(canonical, bits, k)
    n = z.shape[0]
    zg = z.reshape(n, k // dim, dim).astype(np.float64)
    return (zg @ A.T + b).reshape(n, k)


def np_dense_weight(layer: dict) -> np.ndarray:
    """W = diag(SV) H_outᵀ Ŵ H_in diag(SU), float64."""
    w_hat = np_w_hat(layer["codes64"], layer["A64"], layer["b64"], layer["bits"], layer["dim"], layer["k"])
    w = np_block_hadamard(w_hat, layer["had_in"])  # Ŵ H_in (H symmetric)
    w = np_block_hadamard(w.T, layer["had_out"]).T  # H_outᵀ (...)
    return layer["sv64"][:, None] * w * layer["su64"][None, :]


def np_layer_forward(layer: dict, x: np.ndarray, row_chunk: int = 2048) -> np.ndarray:
    """y = SV ⊙ H_outᵀ(Ŵ · H_in(SU ⊙ x)) + bias for x [m, K] float64 (Ŵ formed in row chunks)."""
    u = np_block_hadamard(x * layer["su64"][None, :], layer["had_in"])  # [m, K]
    n = layer["n"]
    t = np.empty((x.shape[0], n))
    for r0 in range(0, n, row_chunk):
        w_hat = np_w_hat(layer["codes64"][r0 : r0 + row_chunk], layer["A64"], layer["b64"], layer["bits"],
                         layer["dim"], layer["k"])
        t[:, r0 : r0 + row_chunk] = u @ w_hat.T
    y = layer["sv64"][None, :] * np_block_hadamard(t, layer["had_out"])
    if layer["bias"] is not None:
        y = y + layer["bias64"][None, :]
    return y


def rel_err(y, y_ref) -> float:
    y = np.asarray(y.detach().to(torch.float64).cpu().numpy() if isinstance(y, torch.Tensor) else y, dtype=np.float64)
    y_ref = np.asarray(y_ref, dtype=np.float64)
    return float(np.linalg.norm(y - y_ref) / np.linalg.norm(y_ref))


def make_layer(n, k, gen, *, bits=2, dim=4, had_in=None, had_out=None, bias=True, a_kind="general"):
    """A random layer: canonical codes (uniform random fields), a random A / b, SU / SV random scales."""
    from lattq.format import LayerDesc, default_hadamard_block
    from lattq.nn import pack_codes

    had_in = default_hadamard_block(k) if had_in is None else had_in
    had_out = default_hadamard_block(n) if had_out is None else had_out
    desc = LayerDesc(bits, dim, n, k, had_in, had_out).validate()
    canonical = torch.randint(0, 256, (n, desc.row_bytes), generator=gen, dtype=torch.int64).to(torch.uint8)
    if a_kind == "general":
        A = torch.randn(dim, dim, generator=gen) * 0.5 + torch.eye(dim)
    else:
        A = 0.9 * torch.eye(dim)
    b = torch.randn(dim, generator=gen)
    su = (torch.rand(k, generator=gen) + 0.5) * torch.where(torch.rand(k, generator=gen) < 0.5, -1.0, 1.0)
    sv = (torch.rand(n, generator=gen) + 0.5) * torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    bvec = torch.randn(n, generator=gen) if bias else None
    layer = dict(
        desc=desc, n=n, k=k, bits=bits, dim=dim, had_in=had_in, had_out=had_out,
        canonical=canonical, codes=pack_codes(desc, canonical), A=A.float(), b=b.float(), su=su.float(),
        sv=sv.float(), bias=None if bvec is None else bvec.float(),
    )
    layer.update(
        codes64=canonical.numpy(), A64=layer["A"].double().numpy(), b64=layer["b"].double().numpy(),
        su64=layer["su"].double().numpy(), sv64=layer["sv"].double().numpy(),
        bias64=None if bvec is None else layer["bias"].double().numpy(),
    )
    return layer


def op_args(layer: dict):
    """Arguments after x of torch.ops.lattq.linear for a layer from make_layer."""
    return (layer["codes"], layer["A"], layer["b"], layer["su"], layer["sv"], layer["bias"], layer["bits"],
            layer["dim"], layer["had_in"], layer["had_out"], layer["n"], layer["k"])


def to_device(layer: dict, device) -> dict:
    out = dict(layer)
    for key in ("codes", "A", "b", "su", "sv", "bias"):
        if out[key] is not None:
            out[key] = out[key].to(device)
    return out


def dense_dtype_error(layer: dict, x: torch.Tensor, y_ref: np.ndarray) -> float:
    """Relative error of the same layer computed densely by torch in x's dtype (the numeric yardstick)."""
    w = torch.from_numpy(np_dense_weight(layer)).to(device=x.device, dtype=x.dtype)
    bias = None if layer["bias"] is None else layer["bias"].to(device=x.device, dtype=x.dtype)
    y = torch.nn.functional.linear(x, w, bias)
    return rel_err(y, y_ref)
