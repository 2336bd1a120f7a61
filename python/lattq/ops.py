"""torch.library custom ops of lattq (namespace ``lattq``).

Ops (all functional, nothing mutated):

``lattq::linear(x, codes, A, b, su, sv, bias?, bits, dim, had_in, had_out, n, k) -> y``
    The quantized linear layer ``y = SV ⊙ H_outᵀ(Ŵ · H_in(SU ⊙ x)) + bias`` (docs/format.md §2).
    ``codes`` is the TILED packed uint8 buffer (docs/format.md §4), ``x`` is ``[..., K]`` float32 /
    float16 / bfloat16, ``y`` is ``[..., N]`` in x's dtype (fp32 accumulation).  **Documented
    conversion:** x is reshaped to ``[m, K]`` and made contiguous by this wrapper (a copy only when x
    is not already contiguous); every other tensor must already be contiguous (the native code
    rejects it otherwise).  On CUDA, an x whose data pointer is not 16-byte aligned (a view at an odd
    offset) is copied as well.  Non-finite A / b / SU / SV / bias are rejected per call on the CPU
    (the core checks host memory); on CUDA that check would need a device sync, so there they are
    validated when a LatticeLinear is built or loaded (from_codes / load_state_dict).  Differentiable with respect to x, A, b, su, sv and bias (the codes are
    integers); the backward runs in float32 torch code on the decoded integer codes.
``lattq::linear_group(x, codes[], A[], b[], su[], sv[], bias?[], bits, dim, had_in[], had_out[], n[], k) -> y[]``
    Several quantized linear layers of one ``in_features = k`` on the same input (the Q, K and V projections,
    gate and up): ``y[i] = linear(x, codes[i], ...)``.  On CUDA one ``lattq_cuda_forward_group`` call per 8
    layers, which launches one kernel for all of them where the variant allows (f16 / bf16 activations, decode
    batch sizes; docs/kernels.md, "Grouped layers"); elsewhere the layers run one by one.  Same conversions and
    checks as ``lattq::linear``.  Inference only: no autograd formula (``LatticeLinearGroup`` runs its layers
    one by one when a gradient is needed).
``lattq::decode(codes, A, b, su, sv, bits, dim, had_in, had_out, n, k, with_transforms) -> W``
    float32 ``[N, K]``: the lattice-domain Ŵ, or with ``with_transforms`` the effective dense weight
    ``diag(SV) H_outᵀ Ŵ H_in diag(SU)``.  Not differentiable.
``lattq::hadamard(x, block) -> y``
    Orthonormal block Walsh-Hadamard transform along the last dimension (Sylvester order), any leading
    dims, float32 / float16 / bfloat16, output in x's dtype (the CPU kernel computes in float32, the
    CUDA kernel in the kernel's precision).  Differentiable (it is its own transpose).

Each op has a CPU kernel (native CPU core), a CUDA kernel (native CUDA, on
``torch.cuda.current_stream()`` under a device guard), a fake (meta) implementation for
torch.compile, and a pure-torch reference (``*_reference`` below, built on lattq.reference) that is
used when the native code is missing and by tests as a cross-check.
"""

import functools
from typing import List, Optional

import torch
from torch import Tensor

from . import _native
from . import reference as ref
from .format import LAYOUT_TILED, LayerDesc

_ACT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@functools.lru_cache(maxsize=4096)
def _desc(bits: int, dim: int, n: int, k: int, had_in: int, had_out: int) -> LayerDesc:
    return LayerDesc(bits, dim, n, k, had_in, had_out).validate()


def _check_act(x: Tensor, k: int, name: str = "x") -> None:
    if x.dtype not in _ACT_DTYPES:
        raise TypeError(f"argument {name!r} has dtype {x.dtype}; expected float32, float16 or bfloat16")
    if x.dim() < 1 or x.shape[-1] != k:
        raise ValueError(f"argument {name!r} has shape {tuple(x.shape)}; expected [..., {k}] (in_features = {k})")


def _check_layer_tensors(desc: LayerDesc, codes, A, b, su, sv, bias, device) -> None:
    """Cheap Python-side checks shared by every implementation (the native code re-checks everything)."""
    if codes.dtype != torch.uint8:
        raise TypeError(f"argument 'codes' has dtype {codes.dtype}; expected torch.uint8 (TILED packed codes)")
    if codes.dim() != 1 or codes.numel() != desc.packed_bytes:
        raise ValueError(
            f"argument 'codes' has shape {tuple(codes.shape)}; expected a flat TILED buffer of "
            f"[{desc.packed_bytes}] bytes for n={desc.n}, k={desc.k}, bits={desc.bits}"
        )
    d = desc.dim
    for name, t, shape in (("A", A, (d, d)), ("b", b, (d,)), ("su", su, (desc.k,)), ("sv", sv, (desc.n,))) + (
        (("bias", bias, (desc.n,)),) if bias is not None else ()
    ):
        if t.dtype != torch.float32:
            raise TypeError(f"argument {name!r} has dtype {t.dtype}; expected torch.float32")
        if tuple(t.shape) != shape:
            raise ValueError(f"argument {name!r} has shape {tuple(t.shape)}; expected {list(shape)}")
    for name, t in (("codes", codes), ("A", A), ("b", b), ("su", su), ("sv", sv), ("bias", bias)):
        if t is not None and t.device != device:
            raise RuntimeError(f"argument {name!r} is on {t.device} but x is on {device}; move the layer to x's device")


# ---------------------------------------------------------------------------------------------------
# pure-torch references (fallback when native code is missing; cross-check in tests)
# ---------------------------------------------------------------------------------------------------
def codes_to_fields(codes: Tensor, desc: LayerDesc) -> Tensor:
    """TILED packed codes -> integer fields z (int64 [N, K]), pure torch, any device."""
    return ref.unpack_fields(ref.tiled_unpack(codes, desc), desc.bits, desc.k)


def linear_reference(x, codes, A, b, su, sv, bias, bits, dim, had_in, had_out, n, k, compute_dtype=torch.float32):
    desc = _desc(bits, dim, n, k, had_in, had_out)
    z = codes_to_fields(codes, desc)
    cd = compute_dtype
    y = ref.forward(
        x.to(cd), z, A.to(cd), b.to(cd), su.to(cd), sv.to(cd), had_in, had_out, None if bias is None else bias.to(cd)
    )
    return y.to(x.dtype)


def decode_reference(codes, A, b, su, sv, bits, dim, had_in, had_out, n, k, with_transforms, compute_dtype=torch.float32):
    desc = _desc(bits, dim, n, k, had_in, had_out)
    z = codes_to_fields(codes, desc)
    cd = compute_dtype
    w_hat = ref.decode(z, A.to(cd), b.to(cd))
    if not with_transforms:
        return w_hat.to(torch.float32)
    return ref.dense_weight(w_hat, su.to(cd), sv.to(cd), had_in, had_out).to(torch.float32)


def hadamard_reference(x, block, compute_dtype=torch.float32):
    return ref.block_hadamard(x.to(compute_dtype), block).to(x.dtype)


def _check_block(x: Tensor, block: int) -> None:
    if x.dtype not in _ACT_DTYPES:
        raise TypeError(f"argument 'x' has dtype {x.dtype}; expected float32, float16 or bfloat16")
    if block < 1 or block & (block - 1):
        raise ValueError(f"argument 'block' must be a power of two, got {block}")
    if x.dim() < 1 or x.shape[-1] % block:
        raise ValueError(f"argument 'block'={block} does not divide the last dimension of x (shape {tuple(x.shape)})")


def _cuda_native_ok() -> bool:
    return _native.cuda_compiled()


# ---------------------------------------------------------------------------------------------------
# lattq::linear
# ---------------------------------------------------------------------------------------------------
@torch.library.custom_op("lattq::linear", mutates_args=())
def linear(
    x: Tensor,
    codes: Tensor,
    A: Tensor,
    b: Tensor,
    su: Tensor,
    sv: Tensor,
    bias: Optional[Tensor],
    bits: int,
    dim: int,
    had_in: int,
    had_out: int,
    n: int,
    k: int,
) -> Tensor:
    """Quantized linear layer; see the module docstring.  This body serves devices without a kernel."""
    desc = _desc(bits, dim, n, k, had_in, had_out)
    _check_act(x, k)
    _check_layer_tensors(desc, codes, A, b, su, sv, bias, x.device)
    return linear_reference(x, codes, A, b, su, sv, bias, bits, dim, had_in, had_out, n, k)


@linear.register_kernel("cpu")
def _linear_cpu(x, codes, A, b, su, sv, bias, bits, dim, had_in, had_out, n, k):
    desc = _desc(bits, dim, n, k, had_in, had_out)
    _check_act(x, k)
    if not _native.available():
        _check_layer_tensors(desc, codes, A, b, su, sv, bias, x.device)
        return linear_reference(x, codes, A, b, su, sv, bias, bits, dim, had_in, had_out, n, k)
    lead = x.shape[:-1]
    x2 = x.reshape(-1, k).contiguous()  # documented: the only implicit conversion
    if x2.shape[0] == 0:
        return x.new_empty(*lead, n)
    y = _native.forward(desc, codes, A, b, su, sv, bias, x2)
    return y.reshape(*lead, n)


@linear.register_kernel("cuda")
def _linear_cuda(x, codes, A, b, su, sv, bias, bits, dim, had_in, had_out, n, k):
    desc = _desc(bits, dim, n, k, had_in, had_out)
    _check_act(x, k)
    if not _cuda_native_ok():
        _check_layer_tensors(desc, codes, A, b, su, sv, bias, x.device)
        return linear_reference(x, codes, A, b, su, sv, bias, bits, dim, had_in, had_out, n, k)
    lead = x.shape[:-1]
    x2 = x.reshape(-1, k).contiguous()
    if x2.shape[0] == 0:
        return x.new_empty(*lead, n)
    if x2.data_ptr() % 16:  # documented: the CUDA kernels need 16-byte aligned rows; copy such a view
        x2 = x2.clone()
    with torch.cuda.device(x.device):
        y = _native.cuda_forward(desc, codes, A, b, su, sv, bias, x2, stream=torch.cuda.current_stream(x.device))
    return y.reshape(*lead, n)


def linear_eager(x, codes, A, b, su, sv, bias, bits, dim, had_in, had_out, n, k):
    """The device kernel of lattq::linear called directly, without the dispatcher (eager inference only).

    Same computation as ``torch.ops.lattq.linear``; used by LatticeLinear on the batch-1 hot path when
    nothing needs to see the op (no autograd, no torch.compile / tracing, no torch function or
    dispatch mode).  Callers must check those conditions (see ``eager_fast_path_ok``).
    """
    dev = x.device.type
    if dev == "cpu":
        return _linear_cpu(x, codes, A, b, su, sv, bias, bits, dim, had_in, had_out, n, k)
    if dev == "cuda":
        return _linear_cuda(x, codes, A, b, su, sv, bias, bits, dim, had_in, had_out, n, k)
    return linear(x, codes, A, b, su, sv, bias, bits, dim, had_in, had_out, n, k)


_HAS_MODE_QUERIES = hasattr(torch._C, "_len_torch_dispatch_stack") and hasattr(
    torch._C, "_is_torch_function_mode_enabled"
)


def eager_fast_path_ok(x: Tensor, *tensors) -> bool:
    """True when calling ``linear_eager`` is indistinguishable from calling the op."""
    if not _HAS_MODE_QUERIES or type(x) is not torch.Tensor:
        return False
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        return False
    if torch._C._len_torch_dispatch_stack() or torch._C._is_torch_function_mode_enabled():
        return False
    if torch.is_grad_enabled():
        if x.requires_grad:
            return False
        for t in tensors:
            if t is not None and t.requires_grad:
                return False
    return True


@linear.register_fake
def _linear_fake(x, codes, A, b, su, sv, bias, bits, dim, had_in, had_out, n, k):
    desc = _desc(bits, dim, n, k, had_in, had_out)
    _check_act(x, k)
    _check_layer_tensors(desc, codes, A, b, su, sv, bias, x.device)
    return x.new_empty(*x.shape[:-1], n)


# ---------------------------------------------------------------------------------------------------
# lattq::linear_group
# ---------------------------------------------------------------------------------------------------
def _group_descs(x, codes, A, b, su, sv, bias, bits, dim, had_in, had_out, n, k):
    """Cheap checks of lattq::linear_group (list lengths, x, each layer's shape parameters); the descriptors."""
    g = len(codes)
    if g < 1:
        raise ValueError("lattq::linear_group needs at least one layer")
    for name, lst in (("A", A), ("b", b), ("su", su), ("sv", sv), ("bias", bias), ("had_in", had_in),
                      ("had_out", had_out), ("n", n)):
        if len(lst) != g:
            raise ValueError(f"argument {name!r} has {len(lst)} entries but 'codes' has {g}: one per layer")
    _check_act(x, k)
    descs = []
    for i in range(g):
        try:
            descs.append(_desc(bits, dim, n[i], k, had_in[i], had_out[i]))
        except (TypeError, ValueError) as e:
            raise type(e)(f"layers[{i}]: {e}") from None
    return descs


def _group_checks(x, codes, A, b, su, sv, bias, bits, dim, had_in, had_out, n, k):
    """Every check of lattq::linear, per layer (messages name the layer); returns the descriptors."""
    descs = _group_descs(x, codes, A, b, su, sv, bias, bits, dim, had_in, had_out, n, k)
    for i, d in enumerate(descs):
        try:
            _check_layer_tensors(d, codes[i], A[i], b[i], su[i], sv[i], bias[i], x.device)
        except (TypeError, ValueError, RuntimeError) as e:
            raise type(e)(f"layers[{i}]: {e}") from None
    return descs


@torch.library.custom_op("lattq::linear_group", mutates_args=())
def linear_group(
    x: Tensor,
    codes: List[Tensor],
    A: List[Tensor],
    b: List[Tensor],
    su: List[Tensor],
    sv: List[Tensor],
    bias: List[Optional[Tensor]],
    bits: int,
    dim: int,
    had_in: List[int],
    had_out: List[int],
    n: List[int],
    k: int,
) -> List[Tensor]:
    """Several quantized linear layers on one input; see the module docstring."""
    _group_checks(x, codes, A, b, su, sv, bias, bits, dim, had_in, had_out, n, k)
    return [linear(x, codes[i], A[i], b[i], su[i], sv[i], bias[i], bits, dim, had_in[i], had_out[i], n[i], k)
            for i in range(len(codes))]


@linear_group.register_kernel("cuda")
def _linear_group_cuda(x, codes, A, b, su, sv, bias, bits, dim, had_in, had_out, n, k):
    g = len(codes)
    if not _cuda_native_ok():
        _group_checks(x, codes, A, b, su, sv, bias, bits, dim, had_in, had_out, n, k)
        return [linear_reference(x, codes[i], A[i], b[i], su[i], sv[i], bias[i], bits, dim, had_in[i], had_out[i],
                                 n[i], k) for i in range(g)]
    # the native call checks every tensor and names the layer (like lattq::linear's CUDA path, which leaves the
    # tensor checks to the native code: the batch-1 hot path); more layers than one call takes go in chunks, after
    # the Python checks (whose messages then carry the layer's index in the whole group)
    mx = _native.CUDA_MAX_GROUP
    descs = (_group_checks if g > mx else _group_descs)(x, codes, A, b, su, sv, bias, bits, dim, had_in, had_out, n, k)
    lead = x.shape[:-1]
    x2 = x.reshape(-1, k).contiguous()
    if x2.shape[0] == 0:
        return [x.new_empty(*lead, ni) for ni in n]
    if x2.data_ptr() % 16:
        x2 = x2.clone()
    ys = []
    with torch.cuda.device(x.device):
        stream = torch.cuda.current_stream(x.device)
        for s in range(0, g, mx):
            e = s + mx
            ys += _native.cuda_forward_group(descs[s:e], codes[s:e], A[s:e], b[s:e], su[s:e], sv[s:e], bias[s:e], x2,
                                             stream=stream)
    return [y.reshape(*lead, ni) for y, ni in zip(ys, n)]


@linear_group.register_fake
def _linear_group_fake(x, codes, A, b, su, sv, bias, bits, dim, had_in, had_out, n, k):
    _group_checks(x, codes, A, b, su, sv, bias, bits, dim, had_in, had_out, n, k)
    return [x.new_empty(*x.shape[:-1], ni) for ni in n]


def linear_group_eager(x, codes, A, b, su, sv, bias, bits, dim, had_in, had_out, n, k):
    """lattq::linear_group's device kernel called directly (eager inference only; see ``linear_eager``)."""
    if x.device.type == "cuda":
        return _linear_group_cuda(x, codes, A, b, su, sv, bias, bits, dim, had_in, had_out, n, k)
    return linear_group(x, codes, A, b, su, sv, bias, bits, dim, had_in, had_out, n, k)


def _fields_as_float(codes, bits, dim, had_in, had_out, n, k) -> Tensor:
    """Integer codes z as a float32 [N, K] matrix (decode with A = I, b = 0, no transforms)."""
    eye = torch.eye(dim, dtype=torch.float32, device=codes.device)
    zero_b = torch.zeros(dim, dtype=torch.float32, device=codes.device)
    ones_k = torch.ones(k, dtype=torch.float32, device=codes.device)
    ones_n = torch.ones(n, dtype=torch.float32, device=codes.device)
    return torch.ops.lattq.decode(codes, eye, zero_b, ones_k, ones_n, bits, dim, had_in, had_out, n, k, False)


def _had(x: Tensor, block: int) -> Tensor:
    """Block Hadamard for the backward: the lattq::hadamard op (traceable under torch.compile)."""
    return x if block == 1 else torch.ops.lattq.hadamard(x, block)


def _linear_setup_context(ctx, inputs, output):
    x, codes, A, b, su, sv, bias, bits, dim, had_in, had_out, n, k = inputs
    ctx.meta = (bits, dim, had_in, had_out, n, k)
    ctx.has_bias = bias is not None
    ctx.save_for_backward(x, codes, A, b, su, sv)


def _linear_backward(ctx, gy):
    x, codes, A, b, su, sv = ctx.saved_tensors
    bits, dim, had_in, had_out, n, k = ctx.meta
    need = ctx.needs_input_grad
    f32 = torch.float32
    gy2 = gy.reshape(-1, n).to(f32)
    x2 = x.reshape(-1, k).to(f32)
    m = x2.shape[0]
    A32, b32, su32, sv32 = A.to(f32), b.to(f32), su.to(f32), sv.to(f32)
    z = _fields_as_float(codes, bits, dim, had_in, had_out, n, k)  # [N, K]
    u = _had(x2 * su32, had_in)  # [m, K]
    ug = u.reshape(m, k // dim, dim)
    gx = gA = gb = gsu = gsv = gbias = None
    gt = _had(gy2 * sv32, had_out)  # dL/dt, [m, N]
    if need[5]:
        v = (ug @ A32).reshape(m, k)
        c = (ug @ b32).sum(-1, keepdim=True)
        ht = _had(v @ z.T + c, had_out)
        gsv = (gy2 * ht).sum(0)
    if need[0] or need[2] or need[3] or need[4]:
        gv = (gt @ z).reshape(m, k // dim, dim)  # dL/dv
        gc = gt.sum(-1)  # dL/dc, [m]
        if need[2]:
            gA = torch.einsum("mgi,mgj->ij", ug, gv)
        if need[3]:
            gb = torch.einsum("mgi,m->i", ug, gc)
        if need[0] or need[4]:
            gu = (gv @ A32.T + gc[:, None, None] * b32).reshape(m, k)
            gxs = _had(gu, had_in)  # dL/d(su ⊙ x)
            if need[0]:
                gx = (gxs * su32).reshape(x.shape).to(x.dtype)
            if need[4]:
                gsu = (gxs * x2).sum(0)
    if ctx.has_bias and need[6]:
        gbias = gy2.sum(0)
    cast = lambda g, t: None if g is None else g.to(t.dtype)  # noqa: E731
    return (gx, None, cast(gA, A), cast(gb, b), cast(gsu, su), cast(gsv, sv), gbias,
            None, None, None, None, None, None)


linear.register_autograd(_linear_backward, setup_context=_linear_setup_context)


# ---------------------------------------------------------------------------------------------------
# lattq::decode
# ---------------------------------------------------------------------------------------------------
@torch.library.custom_op("lattq::decode", mutates_args=())
def decode(
    codes: Tensor,
    A: Tensor,
    b: Tensor,
    su: Tensor,
    sv: Tensor,
    bits: int,
    dim: int,
    had_in: int,
    had_out: int,
    n: int,
    k: int,
    with_transforms: bool,
) -> Tensor:
    """TILED codes -> float32 [N, K] (Ŵ, or the effective W with transforms); see the module docstring."""
    desc = _desc(bits, dim, n, k, had_in, had_out)
    _check_layer_tensors(desc, codes, A, b, su, sv, None, codes.device)
    return decode_reference(codes, A, b, su, sv, bits, dim, had_in, had_out, n, k, with_transforms)


@decode.register_kernel("cpu")
def _decode_cpu(codes, A, b, su, sv, bits, dim, had_in, had_out, n, k, with_transforms):
    desc = _desc(bits, dim, n, k, had_in, had_out)
    if not _native.available():
        _check_layer_tensors(desc, codes, A, b, su, sv, None, codes.device)
        return decode_reference(codes, A, b, su, sv, bits, dim, had_in, had_out, n, k, with_transforms)
    return _native.decode(desc, codes, A, b, su, sv, with_transforms, layout=LAYOUT_TILED)


@decode.register_kernel("cuda")
def _decode_cuda(codes, A, b, su, sv, bits, dim, had_in, had_out, n, k, with_transforms):
    desc = _desc(bits, dim, n, k, had_in, had_out)
    _check_layer_tensors(desc, codes, A, b, su, sv, None, codes.device)
    if not _cuda_native_ok():
        return decode_reference(codes, A, b, su, sv, bits, dim, had_in, had_out, n, k, with_transforms)
    with torch.cuda.device(codes.device):
        w_hat = _native.cuda_decode(desc, codes, A, b, su, sv, stream=torch.cuda.current_stream(codes.device))
        if not with_transforms:
            return w_hat
        # W = diag(SV) H_out^T What H_in diag(SU): transforms over rows (K axis) then columns (N axis).
        w = hadamard(w_hat, had_in)
        w = hadamard(w.T.contiguous(), had_out).T
        return (sv[:, None] * w * su[None, :]).contiguous()


@decode.register_fake
def _decode_fake(codes, A, b, su, sv, bits, dim, had_in, had_out, n, k, with_transforms):
    desc = _desc(bits, dim, n, k, had_in, had_out)
    _check_layer_tensors(desc, codes, A, b, su, sv, None, codes.device)
    return codes.new_empty(n, k, dtype=torch.float32)


# ---------------------------------------------------------------------------------------------------
# lattq::hadamard
# ---------------------------------------------------------------------------------------------------
@torch.library.custom_op("lattq::hadamard", mutates_args=())
def hadamard(x: Tensor, block: int) -> Tensor:
    """Orthonormal block Walsh-Hadamard transform along the last dimension; see the module docstring."""
    _check_block(x, block)
    return hadamard_reference(x, block)


@hadamard.register_kernel("cpu")
def _hadamard_cpu(x, block):
    _check_block(x, block)
    if not _native.available():
        return hadamard_reference(x, block)
    size = x.shape[-1]
    y = x.to(torch.float32, copy=True).contiguous().reshape(-1, size)
    if y.numel():
        _native.fwht_(y, block)
    return y.to(x.dtype).reshape(x.shape)


@hadamard.register_kernel("cuda")
def _hadamard_cuda(x, block):
    _check_block(x, block)
    if not _cuda_native_ok():
        return hadamard_reference(x, block)
    size = x.shape[-1]
    y = x.clone(memory_format=torch.contiguous_format).reshape(-1, size)
    if y.numel():
        with torch.cuda.device(x.device):
            _native.cuda_fwht_(y, block, stream=torch.cuda.current_stream(x.device))
    return y.reshape(x.shape)


@hadamard.register_fake
def _hadamard_fake(x, block):
    _check_block(x, block)
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def _hadamard_setup_context(ctx, inputs, output):
    ctx.block = inputs[1]


def _hadamard_backward(ctx, gy):
    return hadamard(gy, ctx.block), None


hadamard.register_autograd(_hadamard_backward, setup_context=_hadamard_setup_context)


__all__ = [
    "linear",
    "decode",
    "hadamard",
    "linear_reference",
    "linear_eager",
    "eager_fast_path_ok",
    "decode_reference",
    "hadamard_reference",
    "codes_to_fields",
]
