"""Bad input gets a clear exception naming the argument: never a crash, never a silent wrong answer.

Covers the public op / module layer and the C-level checks in lattq._C (reached through lattq._native
and with hand-made descriptors).
"""

from __future__ import annotations

import pytest
import torch

import lattq
from lattq import format as F

from conftest import make_layer, op_args


@pytest.fixture
def layer(gen):
    return make_layer(64, 128, gen, had_in=32, had_out=16)


def _native_forward(native, layer, x, **over):
    kw = dict(codes=layer["codes"], A=layer["A"], b=layer["b"], su=layer["su"], sv=layer["sv"], bias=layer["bias"])
    kw.update(over)
    return native.forward(layer["desc"], kw["codes"], kw["A"], kw["b"], kw["su"], kw["sv"], kw["bias"], x)


# ---------------------------------------------------------------------------------------------------
# dtype -> TypeError
# ---------------------------------------------------------------------------------------------------
def test_wrong_x_dtype(native, layer):
    for dt in (torch.int32, torch.float64, torch.uint8):
        with pytest.raises(TypeError, match="'x'"):
            torch.ops.lattq.linear(torch.zeros(2, 128, dtype=dt), *op_args(layer))
        with pytest.raises(TypeError, match="'x'"):
            _native_forward(native, layer, torch.zeros(2, 128, dtype=dt))


@pytest.mark.parametrize("name", ["A", "b", "su", "sv", "bias"])
def test_wrong_param_dtype(native, layer, name):
    bad = layer[name].double()
    with pytest.raises(TypeError, match=f"'{name}'"):
        _native_forward(native, layer, torch.zeros(2, 128), **{name: bad})
    args = list(op_args(layer))
    args[["A", "b", "su", "sv", "bias"].index(name) + 1] = bad
    with pytest.raises(TypeError, match=f"'{name}'"):
        torch.ops.lattq.linear(torch.zeros(2, 128), *args)


def test_wrong_codes_dtype(native, layer):
    with pytest.raises(TypeError, match="'codes'"):
        _native_forward(native, layer, torch.zeros(2, 128), codes=layer["codes"].to(torch.int8))


def test_output_dtype_mismatch_at_c_level(native, layer):
    C = native._C
    x = torch.zeros(2, 128)
    y = torch.zeros(2, 64, dtype=torch.float16)
    d = native.tensor_desc
    with pytest.raises(TypeError, match="'y'"):
        C.forward(native.layer_desc(layer["desc"]), F.LAYOUT_TILED, d(layer["codes"]), d(layer["A"]), d(layer["b"]),
                  d(layer["su"]), d(layer["sv"]), None, d(x), d(y), None, 0)


# ---------------------------------------------------------------------------------------------------
# shape -> ValueError
# ---------------------------------------------------------------------------------------------------
def test_wrong_x_shape(native, layer):
    with pytest.raises(ValueError, match="'x'.*128"):
        torch.ops.lattq.linear(torch.zeros(2, 127), *op_args(layer))
    with pytest.raises(ValueError, match="'x'"):
        _native_forward(native, layer, torch.zeros(2, 129))
    with pytest.raises(ValueError, match="'x'"):
        _native_forward(native, layer, torch.zeros(128))  # 1-D at the C level


@pytest.mark.parametrize("name,shape", [("A", (3, 3)), ("b", (5,)), ("su", (64,)), ("sv", (128,)), ("bias", (63,))])
def test_wrong_param_shape(native, layer, name, shape):
    bad = torch.ones(shape)
    with pytest.raises(ValueError, match=f"'{name}'"):
        _native_forward(native, layer, torch.zeros(2, 128), **{name: bad})
    args = list(op_args(layer))
    args[["A", "b", "su", "sv", "bias"].index(name) + 1] = bad
    with pytest.raises(ValueError, match=f"'{name}'"):
        torch.ops.lattq.linear(torch.zeros(2, 128), *args)


def test_wrong_codes_size(native, layer):
    with pytest.raises(ValueError, match="'codes'"):
        _native_forward(native, layer, torch.zeros(2, 128), codes=layer["codes"][:-16])
    with pytest.raises(ValueError, match="'codes'"):
        _native_forward(native, layer, torch.zeros(2, 128), codes=layer["canonical"])  # canonical where TILED is due
    args = list(op_args(layer))
    args[0] = layer["codes"][:-1]
    with pytest.raises(ValueError, match="'codes'"):
        torch.ops.lattq.linear(torch.zeros(2, 128), *args)


def test_wrong_output_shape_at_c_level(native, layer):
    C, d = native._C, native.tensor_desc
    x, y = torch.zeros(2, 128), torch.zeros(3, 64)
    with pytest.raises(ValueError, match="'y'"):
        C.forward(native.layer_desc(layer["desc"]), F.LAYOUT_TILED, d(layer["codes"]), d(layer["A"]), d(layer["b"]),
                  d(layer["su"]), d(layer["sv"]), None, d(x), d(y), None, 0)


def test_workspace_too_small_at_c_level(native, layer):
    C, d = native._C, native.tensor_desc
    x, y = torch.zeros(2, 128), torch.zeros(2, 64)
    need = C.forward_workspace_size(native.layer_desc(layer["desc"]), 2)
    if need == 0:
        pytest.skip("the core needs no workspace for this shape")
    ws = torch.empty(need + 64, dtype=torch.uint8)
    off = (-ws.data_ptr()) % 64
    small = ws[off : off + need - 1]
    with pytest.raises(ValueError, match="'workspace'"):
        C.forward(native.layer_desc(layer["desc"]), F.LAYOUT_TILED, d(layer["codes"]), d(layer["A"]), d(layer["b"]),
                  d(layer["su"]), d(layer["sv"]), None, d(x), d(y), d(small), 0)


# ---------------------------------------------------------------------------------------------------
# layout: non-contiguous -> ValueError at the C level (the op wrapper documents making x contiguous)
# ---------------------------------------------------------------------------------------------------
def test_noncontiguous_x_rejected_by_native(native, layer):
    x = torch.zeros(128, 2).T
    assert not x.is_contiguous()
    with pytest.raises(ValueError, match="'x' is not contiguous"):
        _native_forward(native, layer, x)


def test_noncontiguous_params_rejected_by_native(native, layer):
    su = torch.ones(256)[::2]
    with pytest.raises(ValueError, match="'su' is not contiguous"):
        _native_forward(native, layer, torch.zeros(2, 128), su=su)
    A = layer["A"].T
    with pytest.raises(ValueError, match="'A' is not contiguous"):
        _native_forward(native, layer, torch.zeros(2, 128), A=A)
    with pytest.raises(ValueError, match="'A'"):
        torch.ops.lattq.linear(torch.zeros(2, 128), *(op_args(layer)[:1] + (A,) + op_args(layer)[2:]))


def test_noncontiguous_codes_rejected(native, layer):
    codes = torch.zeros(layer["codes"].numel() * 2, dtype=torch.uint8)[::2]
    with pytest.raises(ValueError, match="'codes' is not contiguous"):
        _native_forward(native, layer, torch.zeros(2, 128), codes=codes)


# ---------------------------------------------------------------------------------------------------
# alignment -> ValueError
# ---------------------------------------------------------------------------------------------------
def _misaligned_f32(n: int) -> torch.Tensor:
    buf = bytearray(4 * n + 4)
    t = torch.frombuffer(buf, dtype=torch.float32, offset=1, count=n)
    t._lattq_keepalive = buf  # keep the Python buffer alive with the tensor
    assert t.data_ptr() % 4 != 0
    return t


def test_misaligned_x(native, layer):
    x = _misaligned_f32(2 * 128).reshape(2, 128)
    with pytest.raises(ValueError, match="'x'.*aligned"):
        _native_forward(native, layer, x)
    with pytest.raises(ValueError, match="'x'.*aligned"):
        torch.ops.lattq.linear(x, *op_args(layer))  # contiguous, so the wrapper passes it through


def test_misaligned_su(native, layer):
    with pytest.raises(ValueError, match="'su'.*aligned"):
        _native_forward(native, layer, torch.zeros(2, 128), su=_misaligned_f32(128))


def test_misaligned_workspace_at_c_level(native, layer):
    C, d = native._C, native.tensor_desc
    need = C.forward_workspace_size(native.layer_desc(layer["desc"]), 2)
    ws = torch.empty(need + 128, dtype=torch.uint8)
    off = (-ws.data_ptr()) % 64 + 1  # 1 byte past a 64-byte boundary
    x, y = torch.zeros(2, 128), torch.zeros(2, 64)
    with pytest.raises(ValueError, match="'workspace'.*aligned"):
        C.forward(native.layer_desc(layer["desc"]), F.LAYOUT_TILED, d(layer["codes"]), d(layer["A"]), d(layer["b"]),
                  d(layer["su"]), d(layer["sv"]), None, d(x), d(y), d(ws[off : off + need + 1]), 0)


# ---------------------------------------------------------------------------------------------------
# K / N not divisible by block or dim -> ValueError naming the field
# ---------------------------------------------------------------------------------------------------
def test_k_not_divisible_by_block(native, gen):
    with pytest.raises(ValueError, match="had_in"):
        lattq.LatticeLinear(96, 64, had_in=64)
    with pytest.raises(ValueError, match="had_in"):
        native._C.validate_desc((2, 4, 64, 96, 64, 1))
    layer = make_layer(64, 128, gen, had_in=32, had_out=16)
    args = list(op_args(layer))
    args[8] = 256  # had_in larger than K
    with pytest.raises(ValueError, match="had_in"):
        torch.ops.lattq.linear(torch.zeros(1, 128), *args)


def test_n_not_divisible_by_block(native):
    with pytest.raises(ValueError, match="had_out"):
        lattq.LatticeLinear(64, 96, had_out=64)
    with pytest.raises(ValueError, match="had_out"):
        native._C.validate_desc((2, 4, 96, 64, 1, 64))


def test_block_not_power_of_two(native):
    with pytest.raises(ValueError, match="had_in"):
        native._C.validate_desc((2, 4, 64, 96, 96, 1))
    with pytest.raises(ValueError, match="block"):
        torch.ops.lattq.hadamard(torch.zeros(2, 96), 96)
    with pytest.raises(ValueError, match="block"):
        torch.ops.lattq.hadamard(torch.zeros(2, 96), 64)


def test_k_not_divisible_by_dim(native):
    with pytest.raises(ValueError, match="dim"):
        lattq.LatticeLinear(66, 64, had_in=2)
    with pytest.raises(ValueError, match="dim"):
        native._C.validate_desc((2, 4, 64, 66, 2, 1))


def test_bad_desc_tuple(native):
    with pytest.raises(TypeError, match="desc"):
        native._C.validate_desc((2, 4, 64))
    with pytest.raises(TypeError, match="desc"):
        native._C.validate_desc((2, 4, 64, "x", 1, 1))


def test_bad_descriptor_tuple(native, layer):
    C = native._C
    with pytest.raises(TypeError, match="'canonical'"):
        C.pack(native.layer_desc(layer["desc"]), (0, 16), native.tensor_desc(layer["codes"]))
    with pytest.raises(TypeError, match="'data'.*dtype code"):
        C.fwht((torch.zeros(4).data_ptr(), 99, (1, 4), (4, 1), -1), 4)


# ---------------------------------------------------------------------------------------------------
# NaN / Inf -> ValueError
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["A", "b", "su", "sv", "bias"])
def test_nonfinite_params_cpu(native, layer, name):
    for bad_value in (float("nan"), float("inf")):
        bad = layer[name].clone()
        bad.view(-1)[-1] = bad_value
        with pytest.raises(ValueError, match="(?i)finite|nan|inf"):
            _native_forward(native, layer, torch.ones(2, 128), **{name: bad})
        args = list(op_args(layer))
        args[["A", "b", "su", "sv", "bias"].index(name) + 1] = bad
        with pytest.raises(ValueError, match="(?i)finite|nan|inf"):
            torch.ops.lattq.linear(torch.ones(2, 128), *args)


def test_nonfinite_validate_layer(native, layer):
    sv = layer["sv"].clone()
    sv[3] = float("nan")
    with pytest.raises(ValueError, match="sv"):
        native.validate_layer(layer["desc"], layer["codes"], layer["A"], layer["b"], layer["su"], sv)
    native.validate_layer(layer["desc"], layer["codes"], layer["A"], layer["b"], layer["su"], layer["sv"])


# ---------------------------------------------------------------------------------------------------
# device: CPU path vs CUDA memory, CUDA path vs CPU memory, CUDA unavailable
# ---------------------------------------------------------------------------------------------------
def _as_cuda_desc(native, t, dev=0):
    p, dt, shape, strides, _ = native.tensor_desc(t)
    return (p, dt, shape, strides, dev)


def test_cuda_pointer_rejected_by_cpu_path(native, layer):
    """A descriptor that claims device memory never reaches the CPU core (checked before any read)."""
    C, d = native._C, native.tensor_desc
    x, y = torch.zeros(2, 128), torch.zeros(2, 64)
    ws = native._aligned_bytes(C.forward_workspace_size(native.layer_desc(layer["desc"]), 2) or 1, 64, "cpu")
    with pytest.raises(RuntimeError, match="'x' is on cuda:0 but this is the CPU path"):
        C.forward(native.layer_desc(layer["desc"]), F.LAYOUT_TILED, d(layer["codes"]), d(layer["A"]), d(layer["b"]),
                  d(layer["su"]), d(layer["sv"]), None, _as_cuda_desc(native, x), d(y), d(ws), 0)
    with pytest.raises(RuntimeError, match="'codes' is on cuda:1"):
        C.forward(native.layer_desc(layer["desc"]), F.LAYOUT_TILED, _as_cuda_desc(native, layer["codes"], 1),
                  d(layer["A"]), d(layer["b"]), d(layer["su"]), d(layer["sv"]), None, d(x), d(y), d(ws), 0)
    with pytest.raises(RuntimeError, match="'data' is on cuda:0"):
        C.fwht(_as_cuda_desc(native, torch.zeros(2, 8)), 8)


def test_cpu_tensor_to_cuda_path(native, layer):
    x = torch.zeros(2, 128)
    if not native.cuda_compiled():
        with pytest.raises(RuntimeError, match="without CUDA"):
            native.cuda_forward(layer["desc"], *op_args(layer)[:6], x)
        with pytest.raises(RuntimeError, match="without CUDA"):
            native.cuda_fwht_(x, 8)
        assert native.cuda_device_count() == 0
        return
    # compiled with CUDA: host tensors are refused by _native and by the C-level check
    with pytest.raises(RuntimeError, match="'x' is on cpu"):
        native.cuda_forward(layer["desc"], *op_args(layer)[:6], x)
    C, d = native._C, native.tensor_desc
    with pytest.raises(RuntimeError, match="'x' is on cpu but this is the CUDA path"):
        C.cuda_forward(native.layer_desc(layer["desc"]), d(layer["codes"]), d(layer["A"]), d(layer["b"]),
                       d(layer["su"]), d(layer["sv"]), None, d(x), d(torch.zeros(2, 64)), None, 0, 0)
    with pytest.raises(RuntimeError, match="'data' is on cpu"):
        C.cuda_fwht(d(torch.zeros(2, 8)), 8, 0)


def test_cuda_unavailable_clear_error(native, layer):
    """Without CUDA kernels or without a GPU, asking for the CUDA path is a RuntimeError, not a crash."""
    if torch.cuda.is_available() and native.cuda_compiled():
        pytest.skip("a GPU and the CUDA kernels are present: covered by test_gpu.py")
    if not native.cuda_compiled():
        with pytest.raises(RuntimeError, match="built without CUDA"):
            native.require_cuda()
        assert not lattq.cuda_kernels_available()
        return
    # kernels compiled but no GPU visible: host pointers claiming to be device memory on cuda:0 must be
    # rejected by the CUDA API's own pointer check (never launched on).
    C = native._C
    x, y = torch.zeros(16, 128), torch.zeros(16, 64)
    lay = make_layer(64, 128, torch.Generator().manual_seed(0), had_in=32, had_out=16)
    cu = lambda t: _as_cuda_desc(native, t)  # noqa: E731
    need = C.cuda_forward_workspace_size(native.layer_desc(lay["desc"]), 16, 0)
    ws = native._aligned_bytes(max(need, 1), 256, "cpu")
    with pytest.raises(RuntimeError):
        C.cuda_forward(native.layer_desc(lay["desc"]), cu(lay["codes"]), cu(lay["A"]), cu(lay["b"]), cu(lay["su"]),
                       cu(lay["sv"]), None, cu(x), cu(y), cu(ws), 0, 0)
    assert native.cuda_device_count() == 0


def test_layer_on_other_device_than_x(native, layer):
    """A module left on the CPU with x elsewhere (here: meta) is refused with a clear message."""
    args = list(op_args(layer))
    with pytest.raises((RuntimeError, NotImplementedError)):
        torch.ops.lattq.linear(torch.zeros(2, 128, device="meta"), *args)


def test_lattq_import_does_not_initialise_cuda():
    import subprocess
    import sys

    code = "import torch, lattq, lattq.nn, lattq.ops; lattq.cuda_kernels_available(); print(torch.cuda.is_initialized())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
