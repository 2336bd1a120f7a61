"""The numeric checks of test_ops.py on CUDA, plus CUDA-only properties.

Skipped (with a message) when no CUDA device is visible.  When a device is visible the CUDA kernels
must be compiled in: a CPU-only build on a GPU machine fails here rather than silently testing the
pure-torch fallback.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import lattq
from lattq.nn import LatticeLinear

from conftest import dense_dtype_error, make_layer, np_block_hadamard, np_layer_forward, np_w_hat, op_args, rel_err, to_device

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible: GPU tests skipped"),
]

FP32_TOL = 1e-5
LOW_PREC_FACTOR = 2.0
DEV = "cuda"


@pytest.fixture
def cuda_native(native):
    if not native.cuda_compiled():
        pytest.fail(f"a CUDA device is visible but lattq was built without CUDA kernels: {lattq.native_status()}")
    assert native.cuda_device_count() >= 1
    return native


def _capture(fn, static_x):
    """fn(static_x) captured in a CUDA graph after two warm-up calls on a side stream: (graph, its output)."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(2):  # warm-up outside capture
            fn(static_x)
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_y = fn(static_x)
    return graph, static_y


SHAPES = [(576, 1536), (1536, 576), (4096, 4096)]


@pytest.mark.parametrize("n,k", SHAPES)
@pytest.mark.parametrize("m", [1, 2, 3, 7, 9, 16, 17, 33])
def test_linear_fp32_cuda(cuda_native, gen, n, k, m):
    layer = make_layer(n, k, gen)
    x = torch.randn(m, k, generator=gen)
    y = torch.ops.lattq.linear(x.to(DEV), *op_args(to_device(layer, DEV)))
    assert y.device.type == "cuda" and y.shape == (m, n)
    assert rel_err(y, np_layer_forward(layer, x.double().numpy())) <= FP32_TOL


def test_linear_every_m_cuda(cuda_native, gen):
    layer = make_layer(96, 320, gen, had_in=64, had_out=32)
    lay = to_device(layer, DEV)
    for m in range(1, 34):
        x = torch.randn(m, 320, generator=gen)
        y = torch.ops.lattq.linear(x.to(DEV), *op_args(lay))
        assert rel_err(y, np_layer_forward(layer, x.double().numpy())) <= FP32_TOL, f"m={m}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("n,k,m", [(576, 1536, 1), (1536, 576, 33), (4096, 4096, 16), (11008, 4096, 1), (4096, 4096, 129)])
def test_linear_dtypes_cuda(cuda_native, gen, dtype, n, k, m):
    layer = make_layer(n, k, gen)
    x = torch.randn(m, k, generator=gen).to(dtype)
    y = torch.ops.lattq.linear(x.to(DEV), *op_args(to_device(layer, DEV)))
    assert y.dtype == dtype
    y_ref = np_layer_forward(layer, x.double().numpy())
    err = rel_err(y, y_ref)
    if dtype == torch.float32:
        assert err <= FP32_TOL
    else:
        dense = dense_dtype_error(layer, x.to(DEV), y_ref)
        assert err <= LOW_PREC_FACTOR * dense, f"lattq {err:.3g} vs dense {dtype} {dense:.3g}"


@pytest.mark.parametrize("n,k", [(576, 1536), (11008, 4096), (37, 40)])
def test_decode_cuda_bit_exact_vs_cpu(cuda_native, gen, n, k):
    layer = make_layer(n, k, gen, had_in=8 if k == 40 else None, had_out=1 if n == 37 else None)
    args = op_args(layer)[:5]
    meta = (layer["bits"], layer["dim"], layer["had_in"], layer["had_out"], n, k)
    cpu = torch.ops.lattq.decode(*args, *meta, False)
    gpu = torch.ops.lattq.decode(*[t.to(DEV) for t in args], *meta, False)
    assert torch.equal(gpu.cpu(), cpu)  # bit-exact
    np.testing.assert_allclose(cpu.double().numpy(), np_w_hat(layer["codes64"], layer["A64"], layer["b64"], 2, 4, k),
                               rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_hadamard_cuda(cuda_native, gen, dtype):
    x = torch.randn(5, 2048, generator=gen).to(dtype)
    for block in (1, 16, 128, 2048):
        y = torch.ops.lattq.hadamard(x.to(DEV), block)
        y_ref = np_block_hadamard(x.double().numpy(), block)
        if dtype == torch.float32:
            assert rel_err(y, y_ref) <= FP32_TOL
        else:
            # the fp16 / bf16 kernel may keep its arithmetic in that dtype: compare with torch doing the
            # same transform as a matmul in that dtype
            h = torch.from_numpy(np_block_hadamard(np.eye(block), block)).to(DEV, dtype) if block > 1 else None
            yt = x.to(DEV) if h is None else (x.to(DEV).reshape(5, -1, block) @ h).reshape(5, 2048)
            assert rel_err(y, y_ref) <= LOW_PREC_FACTOR * max(rel_err(yt, y_ref), 2.0**-12)


def test_module_cuda_matches_cpu(cuda_native, gen):
    mod = LatticeLinear.from_float(torch.nn.Linear(1536, 576, bias=True), seed=3)
    x = torch.randn(4, 1536, generator=gen)
    y_cpu = mod(x)
    mod_gpu = copy.deepcopy(mod).to(DEV)
    assert mod_gpu.codes.device.type == "cuda" and mod.codes.device.type == "cpu"
    assert torch.equal(mod_gpu.codes.cpu(), mod.codes)  # same TILED layout on both devices
    y_gpu = mod_gpu(x.to(DEV))
    assert rel_err(y_gpu, y_cpu.double().numpy()) <= 2 * FP32_TOL  # both within 1e-5 of the truth
    assert torch.equal(mod_gpu.canonical_codes().cpu(), mod.canonical_codes())
    w = mod_gpu.dense_weight()
    assert w.device.type == "cuda"
    assert rel_err(w, mod.dense_weight().double().numpy()) <= 2 * FP32_TOL


def test_state_dict_roundtrip_cuda(cuda_native):
    mod = LatticeLinear.from_float(torch.nn.Linear(256, 128, bias=True), seed=1).to(DEV)
    sd = mod.state_dict()
    back = LatticeLinear(256, 128, bias=True, device=DEV)
    back.load_state_dict(sd)
    for name in ("codes", "A", "b", "su", "sv", "bias"):
        assert torch.equal(getattr(back, name), getattr(mod, name))


def test_non_default_stream(cuda_native, gen):
    layer = make_layer(4096, 4096, gen)
    lay = to_device(layer, DEV)
    x = torch.randn(8, 4096, generator=gen).to(DEV)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            y = torch.ops.lattq.linear(x, *op_args(lay))
    torch.cuda.current_stream().wait_stream(s)
    torch.cuda.synchronize()
    assert rel_err(y, np_layer_forward(layer, x.double().cpu().numpy())) <= FP32_TOL


def test_cuda_graph_capture(cuda_native, gen):
    layer = make_layer(1536, 576, gen)
    lay = to_device(layer, DEV)
    static_x = torch.zeros(4, 576, device=DEV, dtype=torch.bfloat16)
    graph, static_y = _capture(lambda t: torch.ops.lattq.linear(t, *op_args(lay)), static_x)
    for _ in range(2):
        x = torch.randn(4, 576, generator=gen).to(torch.bfloat16)
        static_x.copy_(x.to(DEV))
        graph.replay()
        torch.cuda.synchronize()
        y_ref = np_layer_forward(layer, x.double().numpy())
        assert rel_err(static_y, y_ref) <= LOW_PREC_FACTOR * dense_dtype_error(layer, x.to(DEV), y_ref)


def test_opcheck_cuda(cuda_native, gen):
    layer = to_device(make_layer(48, 128, gen, had_in=32, had_out=16), DEV)
    x = torch.randn(2, 3, 128, generator=gen).to(DEV)
    torch.library.opcheck(torch.ops.lattq.linear.default, (x, *op_args(layer)))
    torch.library.opcheck(torch.ops.lattq.decode.default, (*op_args(layer)[:5], 2, 4, 32, 16, 48, 128, True))
    torch.library.opcheck(torch.ops.lattq.hadamard.default, (x.to(torch.float16), 64))


def test_compile_cuda(cuda_native, gen):
    mod = LatticeLinear.from_float(torch.nn.Linear(256, 128, bias=True), seed=0).to(DEV)
    x = torch.randn(3, 256, generator=gen).to(DEV, torch.bfloat16)
    torch._dynamo.reset()
    assert torch.equal(torch.compile(mod, fullgraph=True)(x), mod(x))


def test_wrong_device_mix_cuda(cuda_native, gen):
    layer = make_layer(64, 128, gen, had_in=32, had_out=16)
    with pytest.raises(RuntimeError, match="cuda|cpu"):
        torch.ops.lattq.linear(torch.zeros(2, 128, device=DEV), *op_args(layer))  # layer on the CPU
    lay = to_device(layer, DEV)
    with pytest.raises(RuntimeError, match="'x' is on cpu"):
        cuda_native.cuda_forward(layer["desc"], *op_args(lay)[:6], torch.zeros(2, 128))


def test_misaligned_cuda(cuda_native, gen):
    layer = to_device(make_layer(64, 128, gen, had_in=32, had_out=16), DEV)
    buf = torch.zeros(2 * 128 + 8, device=DEV)
    x = buf[1 : 1 + 256].view(2, 128)  # 4-byte aligned, not 16-byte aligned
    with pytest.raises(ValueError, match="'x'.*aligned"):
        cuda_native.cuda_forward(layer["desc"], *op_args(layer)[:6], x)
    # documented: the op wrapper copies such a view, so the module-level call works
    x.copy_(torch.randn(2, 128, generator=gen).to(DEV))
    y = torch.ops.lattq.linear(x, *op_args(layer))
    y_ref = torch.ops.lattq.linear(x.clone(), *op_args(layer))
    assert torch.equal(y, y_ref)


# ---------------------------------------------------------------------------------------------------
# LatticeLinearGroup / lattq::linear_group: one launch for several layers on one input
# ---------------------------------------------------------------------------------------------------
def _group(gen, k, ns, had_outs, biases):
    layers = [make_layer(n, k, gen, had_out=h, bias=b) for n, h, b in zip(ns, had_outs, biases)]
    mods = [LatticeLinear.from_codes(l["canonical"], l["A"], l["b"], l["su"], l["sv"], l["bias"], bits=2, dim=4,
                                     had_in=l["had_in"], had_out=l["had_out"]) for l in layers]
    return layers, mods


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("m", [1, 3, 17])
def test_group_cuda_matches_oracle(cuda_native, gen, dtype, m):
    layers, mods = _group(gen, 1024, (512, 136, 1040), (128, 8, 16), (True, False, True))
    group = lattq.LatticeLinearGroup(mods).to(DEV)
    x = torch.randn(m, 1024, generator=gen).to(dtype)
    ys = group(x.to(DEV))
    for y, layer in zip(ys, layers):
        assert y.dtype == dtype and y.shape == (m, layer["n"])
        y_ref = np_layer_forward(layer, x.double().numpy())
        if dtype == torch.float32:
            assert rel_err(y, y_ref) <= FP32_TOL
        else:
            assert rel_err(y, y_ref) <= LOW_PREC_FACTOR * dense_dtype_error(layer, x.to(DEV), y_ref)
        assert torch.isfinite(y).all()


def test_group_cuda_variants_equal_single_layers(cuda_native, gen, monkeypatch):
    # every variant through the native group call against the native single-layer calls, bit for bit: the layers
    # that run one by one always; GEMV / GEMV_PDL (one launch, split-K planned for the whole group) when every plan
    # has one split (LATTQ_GEMV_MAX_SPLITS=1, read per launch); AUTO (which may pick another variant for the group
    # than for one layer) against the float64 oracle
    layers, _ = _group(gen, 2048, (4096, 1024), (128, 128), (False, True))
    lays = [to_device(l, DEV) for l in layers]
    x = torch.randn(2, 2048, generator=gen).to(torch.bfloat16)
    xd = x.to(DEV)
    args = [[l[a] for l in lays] for a in ("codes", "A", "b", "su", "sv", "bias")]
    descs = [l["desc"] for l in lays]
    for variant in (1, 2, 6, 8):
        if variant in (6, 8):
            monkeypatch.setenv("LATTQ_GEMV_MAX_SPLITS", "1")
        ys = cuda_native.cuda_forward_group(descs, *args, xd, variant=variant)
        for y, l in zip(ys, lays):
            assert torch.equal(y, cuda_native.cuda_forward(l["desc"], *op_args(l)[:6], xd, variant=variant)), variant
        monkeypatch.delenv("LATTQ_GEMV_MAX_SPLITS", raising=False)
    for y, layer in zip(cuda_native.cuda_forward_group(descs, *args, xd, variant=0), layers):
        y_ref = np_layer_forward(layer, x.double().numpy())
        assert rel_err(y, y_ref) <= LOW_PREC_FACTOR * dense_dtype_error(layer, xd, y_ref)


def test_group_cuda_graph_and_compile(cuda_native, gen):
    _, mods = _group(gen, 512, (256, 64), (128, 64), (True, False))
    group = lattq.LatticeLinearGroup(mods).to(DEV)
    static_x = torch.zeros(1, 512, device=DEV, dtype=torch.bfloat16)
    graph, static_y = _capture(group, static_x)
    x = torch.randn(1, 512, generator=gen).to(DEV, torch.bfloat16)
    static_x.copy_(x)
    graph.replay()
    torch.cuda.synchronize()
    direct = group(x)
    assert all(torch.equal(a, b) for a, b in zip(static_y, direct))
    torch._dynamo.reset()
    compiled = torch.compile(group, fullgraph=True)(x)
    assert all(torch.equal(a, b) for a, b in zip(compiled, direct))
    cols = [[getattr(m, a) for m in group.layers] for a in ("codes", "A", "b", "su", "sv", "bias")]
    static = (2, 4, [m.desc.had_in for m in group.layers], [m.desc.had_out for m in group.layers],
              [m.desc.n for m in group.layers], 512)
    torch.library.opcheck(torch.ops.lattq.linear_group.default, (x, *cols, *static))


def test_group_cuda_errors_name_the_layer(cuda_native, gen):
    _, mods = _group(gen, 256, (64, 32), (64, 32), (True, True))
    group = lattq.LatticeLinearGroup(mods).to(DEV)
    group.layers[1].to("cpu")
    with pytest.raises(RuntimeError, match=r"layers\[1\].*'codes' is on cpu"):
        group(torch.zeros(1, 256, device=DEV))


def test_group_cuda_edge_cases(cuda_native, gen):
    # m = 0, an x view that is not 16-byte aligned (copied by the op, as lattq::linear does), and more layers than
    # one native call takes (9: two calls), each against the layers called one by one
    _, mods = _group(gen, 256, tuple(16 * (i + 1) for i in range(9)), (16,) * 9, (True, False) * 4 + (True,))
    group = lattq.LatticeLinearGroup(mods).to(DEV)
    ys = group(torch.zeros(0, 256, device=DEV, dtype=torch.bfloat16))
    assert [tuple(y.shape) for y in ys] == [(0, 16 * (i + 1)) for i in range(9)]
    buf = torch.zeros(3 * 256 + 8, device=DEV, dtype=torch.bfloat16)
    x = buf[4 : 4 + 3 * 256].view(3, 256)  # 8-byte aligned
    x.copy_(torch.randn(3, 256, generator=gen).to(DEV, torch.bfloat16))
    assert x.data_ptr() % 16
    for y, mod in zip(group(x), group.layers):
        y1 = mod(x.clone())
        assert y.shape == y1.shape and rel_err(y.float(), y1.double().cpu().numpy()) <= 1e-2
    with pytest.raises(ValueError, match="1..8 layers, got 0"):
        cuda_native.cuda_forward_group_workspace_size([], 1)


def test_group_projections_cuda(cuda_native, gen, monkeypatch):
    # a block that calls q/k/v one by one (as transformers' attention does) after lattq.group_projections: one group
    # call per input, outputs against the float64 oracle, the same bits as the LatticeLinearGroup call, and a CUDA
    # graph that captures the grouped launch (replayed with new x) and torch.compile (which computes each layer alone)
    layers, mods = _group(gen, 1024, (512, 136, 1040), (128, 8, 16), (True, False, True))
    block = torch.nn.Module()
    block.q_proj, block.k_proj, block.v_proj = mods
    block = block.to(DEV)
    assert lattq.group_projections(block) == 1
    calls = []
    real = lattq.nn._group_forward
    monkeypatch.setattr(lattq.nn, "_group_forward", lambda ls, t: calls.append(len(ls)) or real(ls, t))
    run = lambda t: (block.q_proj(t), block.k_proj(t), block.v_proj(t))  # noqa: E731
    x = torch.randn(1, 1024, generator=gen).to(torch.bfloat16)
    xd = x.to(DEV)
    ys = run(xd)
    assert calls == [1 * 3]
    grouped = lattq.LatticeLinearGroup(list(mods))(xd)
    for y, g, layer in zip(ys, grouped, layers):
        assert torch.equal(y, g)
        y_ref = np_layer_forward(layer, x.double().numpy())
        assert rel_err(y, y_ref) <= LOW_PREC_FACTOR * dense_dtype_error(layer, xd, y_ref)
    static_x = torch.zeros(1, 1024, device=DEV, dtype=torch.bfloat16)
    calls.clear()
    graph, static_y = _capture(run, static_x)
    assert calls == [3, 3, 3]  # one group call in each warm-up and in the capture
    x2 = torch.randn(1, 1024, generator=gen).to(DEV, torch.bfloat16)
    static_x.copy_(x2)
    graph.replay()
    torch.cuda.synchronize()
    assert all(torch.equal(a, b) for a, b in zip(static_y, lattq.LatticeLinearGroup(list(mods))(x2)))
    torch._dynamo.reset()
    compiled = torch.compile(run, fullgraph=True)(x2)
    lattq.ungroup_projections(block)
    assert all(torch.equal(a, b) for a, b in zip(compiled, run(x2)))
