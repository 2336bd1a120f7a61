"""Tests of the UniSVQ PTQ algorithm (lattq.ptq).

Oracles: float64 NumPy/SciPy computations written from the math in DESIGN.md §2.1/§2.3 (brute-force
codeword search, explicit least squares, scipy's Sylvester Hadamard), never lattq's own output.
Tolerances: "numeric" (float64 reference vs float64 implementation: 1e-9 relative) and "quality"
(orderings of the layer objective: a stage never makes it worse).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.linalg
import torch

from lattq.ptq import LattqConfig, quantize_weight
from lattq.ptq.lattice_fit import objective, refit_lattice, refit_scales
from lattq.ptq.layer import init_lattice
from lattq.ptq.ldlq import block_ldlq, nearest_codes
from lattq.ptq.incoherence import rotate_hessian, rotate_weight

NUMERIC = 1e-9  # numeric tolerance: float64 vs float64


def _seed():
    s = int(np.random.SeedSequence().entropy % (2**31))
    print("seed", s)
    return s


def _all_codewords(A, b, bits=2, d=4):
    """Oracle: every integer vector of {0..2^bits-1}^d (coordinate 0 lowest) and its codeword A z + b."""
    zs = np.array([list(reversed(t)) for t in itertools.product(range(1 << bits), repeat=d)], dtype=np.float64)
    return zs, zs @ A.T + b


def _corr_hessian(k, rng, n=None):
    n = n or 4 * k
    X = rng.standard_normal((n, k)) @ (np.eye(k) + 0.4 * rng.standard_normal((k, k)) / math.sqrt(k))
    X[:, : k // 3] *= 3.0  # uneven input energy
    return X.T @ X / n


# ------------------------------------------------------------------------------------- config
def test_config_roundtrip_and_rejections():
    c = LattqConfig(a_init="orthogonal", refit_lattice=3, finetune=False)
    d = c.to_dict()
    assert d["config_version"] == 1
    assert LattqConfig.from_dict(d) == c
    with pytest.raises(ValueError, match="config_version"):
        LattqConfig.from_dict({**d, "config_version": 2})
    with pytest.raises(ValueError, match="unknown LattqConfig keys"):
        LattqConfig.from_dict({**d, "bogus": 1})
    with pytest.raises(ValueError, match="a_init"):
        LattqConfig(a_init="random")
    with pytest.raises(ValueError, match="sv_format"):
        LattqConfig(sv_format="int4")
    with pytest.raises(ValueError, match="method"):
        LattqConfig(method="awq")
    with pytest.raises(ValueError, match="had_block"):
        LattqConfig(had_block=96)


# ------------------------------------------------------------------------------------- code choice
def test_nearest_codes_matches_bruteforce():
    rng = np.random.default_rng(_seed())
    g = torch.Generator().manual_seed(int(rng.integers(1 << 30)))
    A, b = init_lattice(4, 2, "orthogonal", g)
    A = A + 0.1 * torch.randn(4, 4, generator=g, dtype=torch.float64)  # general (non-orthogonal) A
    W = rng.standard_normal((7, 24)) * 1.3
    z = nearest_codes(torch.from_numpy(W), A, b, 2).numpy()
    zs, cws = _all_codewords(A.numpy(), b.numpy())
    for v, zz in zip(W.reshape(-1, 4), z.reshape(-1, 4)):
        dist = ((cws - v) ** 2).sum(1)
        best = dist.min()
        mine = ((A.numpy() @ zz + b.numpy() - v) ** 2).sum()
        assert mine <= best + 1e-12


def test_block_ldlq_single_block_is_exact_hessian_nearest():
    # with K = d there is no feedback: LDLQ must return argmin_q (w-q)^T H_damped (w-q) for each row.
    rng = np.random.default_rng(_seed())
    H = _corr_hessian(4, rng)
    damp = 0.01
    Hd = H + damp * np.mean(np.diag(H)) * np.eye(4)
    A, b = init_lattice(4, 2, "identity", torch.Generator().manual_seed(1))
    W = rng.standard_normal((50, 4))
    z = block_ldlq(torch.from_numpy(W), torch.from_numpy(H), A, b, 2, damp=damp).numpy()
    zs, cws = _all_codewords(A.numpy(), b.numpy())
    for w, zz in zip(W, z):
        e_all = cws - w
        dist = np.einsum("ci,ij,cj->c", e_all, Hd, e_all)
        e = A.numpy() @ zz + b.numpy() - w
        assert e @ Hd @ e <= dist.min() * (1 + 1e-9) + 1e-12


def test_block_ldlq_diagonal_hessian_equals_nearest():
    rng = np.random.default_rng(_seed())
    H = np.diag(rng.uniform(0.5, 2.0, 32))
    A, b = init_lattice(4, 2, "identity", torch.Generator())
    W = torch.from_numpy(rng.standard_normal((9, 32)))
    # a diagonal H has no cross terms: no error feedback, and the block metric is diagonal; with A = sI
    # the codeword set is a box, so the diagonal-metric nearest point is coordinate-wise = Euclidean nearest.
    z1 = block_ldlq(W, torch.from_numpy(H), A, b, 2, damp=0.0)
    z2 = nearest_codes(W, A, b, 2)
    assert torch.equal(z1, z2)


def _obj_np(W, H, z, A, b, alpha):
    n, k = W.shape
    Q = (z.reshape(n, k // 4, 4) @ A.T + b).reshape(n, k)
    E = W - alpha[:, None] * Q
    return float(np.einsum("ni,ij,nj->", E, H, E))


def test_block_ldlq_beats_nearest_on_correlated_hessian():
    rng = np.random.default_rng(_seed())
    k = 64
    H = _corr_hessian(k, rng)
    A, b = init_lattice(4, 2, "identity", torch.Generator())
    W = rng.standard_normal((64, k))
    Wt, Ht = torch.from_numpy(W), torch.from_numpy(H)
    z_l = block_ldlq(Wt, Ht, A, b, 2).numpy()
    z_n = nearest_codes(Wt, A, b, 2).numpy()
    one = np.ones(64)
    ol = _obj_np(W, H, z_l, A.numpy(), b.numpy(), one)
    on = _obj_np(W, H, z_n, A.numpy(), b.numpy(), one)
    assert ol < on


# ------------------------------------------------------------------------------------- refits
def test_refit_lattice_matches_explicit_least_squares():
    # oracle: vec form, loss = (w - Phi theta)^T (M kron H) (w - Phi theta), solved by numpy lstsq
    rng = np.random.default_rng(_seed())
    n, k = 6, 16
    H = _corr_hessian(k, rng)
    Bm = rng.standard_normal((n, n))
    M = Bm @ Bm.T + n * np.eye(n)  # a general (non-diagonal) PSD row metric
    W = rng.standard_normal((n, k))
    z = rng.integers(0, 4, (n, k)).astype(np.float64)
    A, b = refit_lattice(torch.from_numpy(W), torch.from_numpy(H), torch.from_numpy(z).long(), torch.from_numpy(M), 4)
    Phi = np.zeros((n * k, 20))
    for r in range(n):
        for g in range(k // 4):
            for i in range(4):
                for j in range(4):
                    Phi[r * k + 4 * g + i, i * 5 + j] = z[r, 4 * g + j]
                Phi[r * k + 4 * g + i, i * 5 + 4] = 1.0
    C = np.linalg.cholesky(np.kron(M, H))
    theta = np.linalg.lstsq(C.T @ Phi, C.T @ W.reshape(-1), rcond=None)[0].reshape(4, 5)
    np.testing.assert_allclose(A.numpy(), theta[:, :4], rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(b.numpy(), theta[:, 4], rtol=1e-7, atol=1e-9)


def test_refit_scales_closed_form():
    rng = np.random.default_rng(_seed())
    n, k = 8, 16
    H = _corr_hessian(k, rng)
    W = rng.standard_normal((n, k))
    z = rng.integers(0, 4, (n, k))
    A, b = init_lattice(4, 2, "identity", torch.Generator())
    su = rng.choice([-1.0, 1.0], k)
    sv = rng.choice([-1.0, 1.0], n)
    a = refit_scales(torch.from_numpy(W), torch.from_numpy(H), torch.from_numpy(z), A, b, torch.from_numpy(su),
                     torch.from_numpy(sv), torch.ones(n, dtype=torch.float64), 8, 4).numpy()
    Hin = np.kron(np.eye(k // 8), scipy.linalg.hadamard(8) / math.sqrt(8))
    Hout = np.kron(np.eye(n // 4), scipy.linalg.hadamard(4) / math.sqrt(4))
    Q = (z.reshape(n, k // 4, 4) @ A.numpy().T + b.numpy()).reshape(n, k)
    B = np.diag(sv) @ Hout @ Q @ Hin @ np.diag(su)
    for r in range(n):
        # d/da (w - a B_r) H (w - a B_r)^T = 0  at  a = B_r H w^T / B_r H B_r^T
        expect = (B[r] @ H @ W[r]) / (B[r] @ H @ B[r])
        if expect > 0:
            assert abs(a[r] - expect) <= NUMERIC * max(1.0, abs(expect))
        else:
            assert a[r] == 1.0  # a non-positive scale is refused (keeps the previous one)


# ------------------------------------------------------------------------------------- incoherence
def test_rotation_matches_scipy_hadamard():
    rng = np.random.default_rng(_seed())
    n, k, bo, bi = 24, 48, 8, 16
    W = rng.standard_normal((n, k))
    su = rng.choice([-1.0, 1.0], k)
    sv = rng.choice([-1.0, 1.0], n)
    Hin = np.kron(np.eye(k // bi), scipy.linalg.hadamard(bi) / math.sqrt(bi))
    Hout = np.kron(np.eye(n // bo), scipy.linalg.hadamard(bo) / math.sqrt(bo))
    expect = Hout @ np.diag(sv) @ W @ np.diag(su) @ Hin
    got = rotate_weight(torch.from_numpy(W), torch.from_numpy(su), torch.from_numpy(sv), bi, bo).numpy()
    np.testing.assert_allclose(got, expect, rtol=0, atol=1e-12)
    Hs = _corr_hessian(k, rng)
    gotH = rotate_hessian(torch.from_numpy(Hs), torch.from_numpy(su), bi).numpy()
    np.testing.assert_allclose(gotH, Hin @ np.diag(su) @ Hs @ np.diag(su) @ Hin, rtol=0, atol=1e-12)


# ------------------------------------------------------------------------------------- whole layer
@pytest.mark.parametrize("a_init", ["identity", "orthogonal"])
@pytest.mark.parametrize("ldlq", [True, False])
def test_quantize_weight_stages_never_worse_and_report_is_true(a_init, ldlq):
    rng = np.random.default_rng(_seed())
    n, k = 48, 64
    W = rng.standard_normal((n, k)) * rng.uniform(0.2, 3.0, (n, 1))
    H = _corr_hessian(k, rng)
    q = quantize_weight(torch.from_numpy(W), torch.from_numpy(H), name="t", had_block=16, a_init=a_init,
                        ldlq=ldlq, refit=3, su_format="f32", sv_format="f32",
                        generator=torch.Generator().manual_seed(int(rng.integers(1 << 30))))
    objs = [o for s, o in q.stages if s != "stored"]
    for a, bb in zip(objs, objs[1:]):
        assert bb <= a * (1 + 1e-12)
    # oracle of the stored layer: W^ = diag(SV) Hout What Hin diag(SU) built from scipy's Hadamard
    Hin = np.kron(np.eye(k // q.had_in), scipy.linalg.hadamard(q.had_in) / math.sqrt(q.had_in))
    Hout = np.kron(np.eye(n // q.had_out), scipy.linalg.hadamard(q.had_out) / math.sqrt(q.had_out))
    z = q.z.numpy().astype(np.float64)
    What = (z.reshape(n, k // 4, 4) @ q.A.double().numpy().T + q.b.double().numpy()).reshape(n, k)
    Wq = np.diag(q.sv.double().numpy()) @ Hout @ What @ Hin @ np.diag(q.su.double().numpy())
    E = W - Wq
    rel = np.einsum("ni,ij,nj->", E, H, E) / np.einsum("ni,ij,nj->", W, H, W)
    assert abs(rel - q.rel_err) <= 1e-5 * rel  # f32 storage of A, b, SU, SV
    assert rel < 0.2  # quality: a 2-bit vector quantizer with LDLQ on a 48x64 Gaussian layer


def test_quantize_weight_stages_improve_over_plain_rtn():
    rng = np.random.default_rng(_seed())
    n, k = 64, 128
    W = rng.standard_normal((n, k))
    W[:, 5] *= 20.0  # an outlier input channel: incoherence should help
    H = _corr_hessian(k, rng)
    kw = dict(name="t", had_block=128, su_format="f32", sv_format="f32")
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    rtn = quantize_weight(torch.from_numpy(W), torch.from_numpy(H), incoherence=False, ldlq=False, refit=0, generator=g(), **kw)
    had = quantize_weight(torch.from_numpy(W), torch.from_numpy(H), incoherence=True, ldlq=False, refit=0, generator=g(), **kw)
    ldl = quantize_weight(torch.from_numpy(W), torch.from_numpy(H), incoherence=True, ldlq=True, refit=0, generator=g(), **kw)
    ref = quantize_weight(torch.from_numpy(W), torch.from_numpy(H), incoherence=True, ldlq=True, refit=2, generator=g(), **kw)
    assert had.rel_err < rtn.rel_err
    assert ldl.rel_err < had.rel_err
    assert ref.rel_err <= ldl.rel_err * (1 + 1e-12)


def test_quantize_weight_rejects_nonfinite_naming_layer():
    from lattq.ptq import NonFiniteError

    W = torch.randn(8, 16, dtype=torch.float64)
    W[2, 3] = float("nan")
    with pytest.raises(NonFiniteError, match="layers.7.mlp.up_proj"):
        quantize_weight(W, torch.eye(16, dtype=torch.float64), name="layers.7.mlp.up_proj")
