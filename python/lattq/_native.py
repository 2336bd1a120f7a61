"""The only module that imports the compiled extension ``lattq._C``.

It converts torch tensors into the integer descriptors the bindings take
(``(data_ptr, dtype_code, shape, strides_in_elements, device)``; device -1 = host memory, else the
CUDA ordinal), allocates outputs and workspace with torch (the native code never allocates), and
passes CUDA streams as integers.  It performs no numerics itself and never makes tensors contiguous:
the native side validates dtype, shape, contiguity, alignment and device and raises
TypeError / ValueError / RuntimeError naming the argument.

If the extension cannot be imported (not built, or ``LATTQ_DISABLE_NATIVE=1`` in the environment),
``lattq`` still imports: ``available()`` is False and ``status()`` gives the reason.  Nothing here
initialises CUDA at import time.
"""

from __future__ import annotations

import functools
import os
import threading
from typing import Optional

import torch

from .format import LAYOUT_TILED, LayerDesc

_C = None
_REASON = ""

if os.environ.get("LATTQ_DISABLE_NATIVE", "") not in ("", "0"):
    _REASON = "disabled by the environment variable LATTQ_DISABLE_NATIVE"
else:
    try:
        import importlib.util as _ilu

        if _ilu.find_spec(__package__ + "._C") is None:
            raise ImportError("lattq._C is not built (build and install lattq with `pip install .`)")
        from . import _C  # type: ignore[attr-defined,no-redef]
    except ImportError as exc:  # not built / broken build: lattq still works through the reference path
        _C = None
        _REASON = f"the compiled extension lattq._C could not be imported ({type(exc).__name__}: {exc})"


# most layers in one lattq_cuda_forward_group call (LATTQ_CUDA_MAX_GROUP of the CUDA build; 8 without one)
CUDA_MAX_GROUP = int(getattr(_C, "CUDA_MAX_GROUP", 8))


def available() -> bool:
    """True when the native CPU kernels are usable."""
    return _C is not None


def cuda_compiled() -> bool:
    """True when the extension was compiled with the CUDA kernels (does not touch the GPU)."""
    return _C is not None and bool(_C.has_cuda)


def status() -> str:
    if _C is None:
        return f"native kernels unavailable: {_REASON}"
    kind = "CPU + CUDA" if _C.has_cuda else "CPU only (built without CUDA)"
    return f"native kernels available: {kind}, core {_C.version()}, format v{_C.format_version()}"


def require() -> None:
    if _C is None:
        raise RuntimeError(f"lattq native kernels are unavailable: {_REASON}")


def require_cuda() -> None:
    require()
    if not _C.has_cuda:
        raise RuntimeError(
            "lattq was built without CUDA kernels (rebuild with nvcc available, e.g. LATTQ_CUDA=ON pip install .); "
            "use CPU tensors or the pure-torch reference"
        )


# ---- descriptors ------------------------------------------------------------------------------------
_DTYPE_CODES = {
    torch.float32: 0,
    torch.float16: 1,
    torch.bfloat16: 2,
    torch.uint8: 16,
    torch.int8: 17,
    torch.uint16: 18,
    torch.int16: 19,
    torch.int32: 20,
    torch.int64: 21,
    torch.float64: 22,
}


def dtype_code(dtype: torch.dtype, name: str = "tensor") -> int:
    try:
        return _DTYPE_CODES[dtype]
    except KeyError:
        raise TypeError(f"argument {name!r} has dtype {dtype}, which lattq does not handle") from None


def tensor_desc(t: torch.Tensor, name: str = "tensor") -> tuple:
    """(data_ptr, dtype_code, shape, strides, device) of a tensor, as the bindings take it."""
    try:
        code = _DTYPE_CODES[t.dtype]
    except AttributeError:
        raise TypeError(f"argument {name!r} must be a torch.Tensor, got {type(t).__name__}") from None
    except KeyError:
        raise TypeError(f"argument {name!r} has dtype {t.dtype}, which lattq does not handle") from None
    if t.is_cpu:
        d = -1
    elif t.is_cuda:
        d = t.get_device()
    else:
        raise RuntimeError(f"argument {name!r} is on device {t.device}; lattq kernels run on cpu and cuda only")
    return (t.data_ptr(), code, t.shape, t.stride(), d)


def _opt(t: Optional[torch.Tensor], name: str):
    return None if t is None else tensor_desc(t, name)


@functools.lru_cache(maxsize=4096)
def layer_desc(desc: LayerDesc) -> tuple:
    return (int(desc.bits), int(desc.dim), int(desc.n), int(desc.k), int(desc.had_in), int(desc.had_out))


_TLS = threading.local()


def _cpu_workspace(nbytes: int):
    """A 64-byte aligned host workspace of at least nbytes, reused per thread (the CPU path is synchronous)."""
    if nbytes == 0:
        return None
    buf = getattr(_TLS, "ws", None)
    if buf is None or buf.numel() < nbytes:
        buf = _aligned_bytes(max(nbytes, 1 << 16), 64, "cpu")
        _TLS.ws = buf
    return buf


def _aligned_bytes(nbytes: int, align: int, device) -> torch.Tensor:
    """A uint8 buffer of ``nbytes`` whose data pointer is aligned to ``align`` bytes."""
    if nbytes == 0:
        return None
    raw = torch.empty(nbytes + align, dtype=torch.uint8, device=device)
    off = (-raw.data_ptr()) % align
    return raw[off : off + nbytes]


# ---- core (CPU) --------------------------------------------------------------------------------------
def validate_layer(desc: LayerDesc, codes, A, b, su, sv, bias=None, layout: int = LAYOUT_TILED) -> None:
    require()
    _C.validate_layer(
        layer_desc(desc), layout, tensor_desc(codes, "codes"), tensor_desc(A, "A"), tensor_desc(b, "b"),
        tensor_desc(su, "su"), tensor_desc(sv, "sv"), _opt(bias, "bias"),
    )


def canonical_bytes(desc: LayerDesc) -> int:
    require()
    return int(_C.canonical_bytes(layer_desc(desc)))


def packed_bytes(desc: LayerDesc) -> int:
    require()
    return int(_C.packed_bytes(layer_desc(desc)))


def pack(desc: LayerDesc, canonical: torch.Tensor) -> torch.Tensor:
    """Canonical codes [N, R] uint8 (host) -> TILED flat uint8 buffer."""
    require()
    out = torch.empty(_C.packed_bytes(layer_desc(desc)), dtype=torch.uint8)
    _C.pack(layer_desc(desc), tensor_desc(canonical, "canonical"), tensor_desc(out, "packed"))
    return out


def unpack(desc: LayerDesc, packed: torch.Tensor) -> torch.Tensor:
    """TILED flat uint8 buffer (host) -> canonical codes [N, R]."""
    require()
    out = torch.empty(desc.n, desc.row_bytes, dtype=torch.uint8)
    _C.unpack(layer_desc(desc), tensor_desc(packed, "packed"), tensor_desc(out, "canonical"))
    return out


def decode(desc: LayerDesc, codes, A, b, su, sv, with_transforms: bool, layout: int = LAYOUT_TILED) -> torch.Tensor:
    """Codes -> What (lattice domain) or the effective dense W (with_transforms), float32 [N, K], host."""
    require()
    out = torch.empty(desc.n, desc.k, dtype=torch.float32)
    _C.decode(
        layer_desc(desc), layout, tensor_desc(codes, "codes"), tensor_desc(A, "A"), tensor_desc(b, "b"),
        tensor_desc(su, "su"), tensor_desc(sv, "sv"), None, bool(with_transforms), tensor_desc(out, "out"),
    )
    return out


def encode_vectors(bits: int, dim: int, A, b, x, method: int = 0, want_error: bool = False):
    """Nearest codeword index (int64 [count]) of each row of x [count, dim] (and squared errors)."""
    require()
    count = x.shape[0] if x.dim() == 2 else -1
    idx = torch.empty(max(count, 0), dtype=torch.uint16)
    err = torch.empty(max(count, 0), dtype=torch.float32) if want_error else None
    _C.encode_vectors(
        int(bits), int(dim), tensor_desc(A, "A"), tensor_desc(b, "b"), tensor_desc(x, "x"), int(method),
        tensor_desc(idx, "idx"), _opt(err, "sq_err"),
    )
    idx = idx.to(torch.int64)
    return (idx, err) if want_error else idx


def encode_matrix(desc: LayerDesc, A, b, w_hat, method: int = 0) -> torch.Tensor:
    """Nearest-codeword encode of What [N, K] float32 (host) into canonical codes [N, R]."""
    require()
    out = torch.empty(desc.n, desc.row_bytes, dtype=torch.uint8)
    _C.encode_matrix(
        layer_desc(desc), tensor_desc(A, "A"), tensor_desc(b, "b"), tensor_desc(w_hat, "w_hat"), int(method),
        tensor_desc(out, "canonical"),
    )
    return out


def fwht_(data: torch.Tensor, block: int) -> torch.Tensor:
    """In-place block Walsh-Hadamard transform of a [rows, len] float32 host tensor."""
    require()
    _C.fwht(tensor_desc(data, "data"), int(block))
    return data


def forward_workspace_size(desc: LayerDesc, m: int) -> int:
    require()
    return int(_C.forward_workspace_size(layer_desc(desc), int(m)))


def forward(desc: LayerDesc, codes, A, b, su, sv, bias, x, num_threads: int = 0, layout: int = LAYOUT_TILED):
    """y [m, N] = layer(x [m, K]) on the CPU; x must already be contiguous (checked natively)."""
    require()
    d = layer_desc(desc)
    m = x.shape[0] if x.dim() == 2 else 0
    y = torch.empty(m, desc.n, dtype=x.dtype)
    ws = _cpu_workspace(_C.forward_workspace_size(d, m)) if m >= 1 else None
    _C.forward(
        d, layout, tensor_desc(codes, "codes"), tensor_desc(A, "A"), tensor_desc(b, "b"), tensor_desc(su, "su"),
        tensor_desc(sv, "sv"), _opt(bias, "bias"), tensor_desc(x, "x"), tensor_desc(y, "y"), _opt(ws, "workspace"),
        int(num_threads),
    )
    return y


def set_num_threads(n: int) -> None:
    require()
    _C.set_num_threads(int(n))


def get_num_threads() -> int:
    require()
    return int(_C.get_num_threads())


# ---- CUDA --------------------------------------------------------------------------------------------
def cuda_device_count() -> int:
    """Devices the lattq CUDA kernels can use (0 without CUDA kernels).  Initialises the CUDA runtime."""
    if _C is None:
        return 0
    return int(_C.cuda_device_count())


def _stream_of(t: torch.Tensor, stream=None) -> int:
    if stream is None:
        stream = torch.cuda.current_stream(t.device)
    return int(stream.cuda_stream) if hasattr(stream, "cuda_stream") else int(stream)


def _cuda_arg_device(t: torch.Tensor, name: str) -> None:
    if t.device.type != "cuda":
        raise RuntimeError(f"argument {name!r} is on {t.device} but this is the CUDA path; move it to a CUDA device")


def cuda_forward_workspace_size(desc: LayerDesc, m: int, variant: int = 0) -> int:
    require_cuda()
    return int(_C.cuda_forward_workspace_size(layer_desc(desc), int(m), int(variant)))


def cuda_forward(desc: LayerDesc, codes, A, b, su, sv, bias, x, variant: int = 0, stream=None):
    """y [m, N] = layer(x [m, K]) on x's CUDA device, on ``stream`` (default: torch's current stream)."""
    require_cuda()
    _cuda_arg_device(x, "x")
    d = layer_desc(desc)
    m = x.shape[0] if x.dim() == 2 else 0
    y = torch.empty(m, desc.n, dtype=x.dtype, device=x.device)
    ws = None
    if m >= 1:
        ws = _aligned_bytes(_C.cuda_forward_workspace_size(d, m, int(variant)), 256, x.device)
    _C.cuda_forward(
        d, tensor_desc(codes, "codes"), tensor_desc(A, "A"), tensor_desc(b, "b"), tensor_desc(su, "su"),
        tensor_desc(sv, "sv"), _opt(bias, "bias"), tensor_desc(x, "x"), tensor_desc(y, "y"), _opt(ws, "workspace"),
        int(variant), _stream_of(x, stream),
    )
    return y


def cuda_forward_group_workspace_size(descs, m: int, variant: int = 0) -> int:
    require_cuda()
    return int(_C.cuda_forward_group_workspace_size([layer_desc(d) for d in descs], int(m), int(variant)))


def cuda_forward_group(descs, codes, A, b, su, sv, bias, x, variant: int = 0, stream=None):
    """[y_i [m, N_i]] = [layer_i(x [m, K])] for layers of one K sharing x (lattq_cuda_forward_group): one kernel
    launch for all of them where the variant allows; the per-layer arguments are lists of equal length."""
    require_cuda()
    _cuda_arg_device(x, "x")
    ds = [layer_desc(d) for d in descs]
    m = x.shape[0] if x.dim() == 2 else 0
    ys = [torch.empty(m, d.n, dtype=x.dtype, device=x.device) for d in descs]
    ws = None
    if m >= 1:
        ws = _aligned_bytes(_C.cuda_forward_group_workspace_size(ds, m, int(variant)), 256, x.device)
    _C.cuda_forward_group(
        ds, [tensor_desc(t, "codes") for t in codes], [tensor_desc(t, "A") for t in A], [tensor_desc(t, "b") for t in b],
        [tensor_desc(t, "su") for t in su], [tensor_desc(t, "sv") for t in sv], [_opt(t, "bias") for t in bias],
        tensor_desc(x, "x"), [tensor_desc(y, "y") for y in ys], _opt(ws, "workspace"), int(variant),
        _stream_of(x, stream),
    )
    return ys


def cuda_decode(desc: LayerDesc, codes, A, b, su, sv, layout: int = LAYOUT_TILED, stream=None) -> torch.Tensor:
    """Codes -> What (lattice domain, no transforms) float32 [N, K] on the codes' CUDA device."""
    require_cuda()
    _cuda_arg_device(codes, "codes")
    out = torch.empty(desc.n, desc.k, dtype=torch.float32, device=codes.device)
    _C.cuda_decode(
        layer_desc(desc), layout, tensor_desc(codes, "codes"), tensor_desc(A, "A"), tensor_desc(b, "b"),
        tensor_desc(su, "su"), tensor_desc(sv, "sv"), tensor_desc(out, "out"), _stream_of(codes, stream),
    )
    return out


def cuda_fwht_(data: torch.Tensor, block: int, stream=None) -> torch.Tensor:
    """In-place block Walsh-Hadamard transform of a [rows, len] CUDA tensor (f32 / f16 / bf16)."""
    require_cuda()
    _cuda_arg_device(data, "data")
    _C.cuda_fwht(tensor_desc(data, "data"), int(block), _stream_of(data, stream))
    return data


# ---- CPU kernel family (tests / benchmarks) ----------------------------------------------------------
def set_cpu_kernel(name: str) -> None:
    """Force the CPU forward kernel: 'auto', 'scalar', 'avx2' or 'avx512' (RuntimeError if unsupported)."""
    require()
    ids = {"auto": _C.CPU_KERNEL_AUTO, "scalar": _C.CPU_KERNEL_SCALAR, "avx2": _C.CPU_KERNEL_AVX2,
           "avx512": _C.CPU_KERNEL_AVX512}
    if name not in ids:
        raise ValueError(f"unknown CPU kernel {name!r}; expected one of {sorted(ids)}")
    _C.set_cpu_kernel(ids[name])


def cpu_kernel() -> str:
    """Name of the CPU forward kernel in use ('scalar', 'avx2', 'avx512')."""
    require()
    return str(_C.cpu_kernel_name(_C.get_cpu_kernel()))
