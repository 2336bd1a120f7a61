"""``LatticeLinear``: a quantized drop-in for ``torch.nn.Linear`` (docs/format.md §2).

The layer computes ``y = SV ⊙ H_outᵀ(Ŵ · H_in(SU ⊙ x)) + bias`` through ``torch.ops.lattq.linear``
(native CPU / CUDA kernels, pure-torch fallback).  Buffers (all float32 except the codes):

=========  =================================================================
``codes``  uint8, flat TILED packed buffer (docs/format.md §4), same on CPU and CUDA
``A``      [dim, dim]            ``b``   [dim]
``su``     [in_features]         ``sv``  [out_features]
``bias``   [out_features] or None
=========  =================================================================

``state_dict()`` is the checkpoint format of docs/format.md §5: ``codes`` canonical ``[N, K*bits/8]``
uint8, ``su``/``sv`` in their storage format (``su_scale``/``sv_scale`` for ``q8``/``sign``).
``load_state_dict`` converts back and validates shapes, dtypes and values.

Casting the module's dtype (``.half()``, ``.to(torch.bfloat16)``) leaves these float32 tensors in
float32 (only device moves apply): the kernels need them in float32 and a cast would lose the
stored values.  Activations may be float32, float16 or bfloat16; the output has x's dtype.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from . import _native, ops, scales
from . import reference as ref
from .format import (
    ENCODE_ORTHOGONAL,
    SCALE_FORMATS,
    LayerDesc,
    bpw as _bpw,
    default_hadamard_block,
)

_FLOAT_BUFFERS = ("A", "b", "su", "sv", "bias")
_LINEAR = torch.ops.lattq.linear.default


def _check_format(name: str, fmt: str) -> str:
    if fmt not in SCALE_FORMATS:
        raise ValueError(f"{name}={fmt!r} is not a scale storage format; expected one of {SCALE_FORMATS}")
    return fmt


def pack_codes(desc: LayerDesc, canonical: torch.Tensor) -> torch.Tensor:
    """Canonical [N, R] uint8 -> TILED flat buffer on the same device (native core on the host)."""
    if _native.available():
        return _native.pack(desc, canonical.detach().to("cpu").contiguous()).to(canonical.device)
    return ref.tiled_pack(canonical, desc)


def unpack_codes(desc: LayerDesc, packed: torch.Tensor) -> torch.Tensor:
    """TILED flat buffer -> canonical [N, R] uint8 on the same device."""
    if _native.available():
        return _native.unpack(desc, packed.detach().to("cpu").contiguous()).to(packed.device)
    return ref.tiled_unpack(packed, desc)


def _as_f32(name: str, t, shape: tuple, finite: bool = True) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {t.dtype}")
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{name} has shape {tuple(t.shape)}; expected {tuple(shape)}")
    t = t.detach().to(torch.float32)
    if finite and not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or Inf")
    return t.contiguous()


def _random_orthogonal(d: int, gen: torch.Generator) -> torch.Tensor:
    g = torch.randn(d, d, generator=gen, dtype=torch.float64)
    q, r = torch.linalg.qr(g)
    return q * torch.sign(torch.diagonal(r))[None, :]


class LatticeLinear(nn.Module):
    """Affine-lattice quantized linear layer (see the module docstring)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = False,
        *,
        bits: int = 2,
        dim: int = 4,
        had_in: Optional[int] = None,
        had_out: Optional[int] = None,
        su_format: str = "f32",
        sv_format: str = "f32",
        device=None,
    ) -> None:
        super().__init__()
        if had_in is None:
            had_in = default_hadamard_block(in_features)
        if had_out is None:
            had_out = default_hadamard_block(out_features)
        self.desc = LayerDesc(int(bits), int(dim), int(out_features), int(in_features), int(had_in), int(had_out))
        self.desc.validate()
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.su_format = _check_format("su_format", su_format)
        self.sv_format = _check_format("sv_format", sv_format)
        d = self.desc.dim
        levels = (1 << self.desc.bits) - 1
        s = 1.0 / math.sqrt(1.25)  # the authors' initialisation: A = s I, b = -(levels/2) s 1
        f32 = dict(dtype=torch.float32, device=device)
        self.register_buffer("codes", torch.zeros(self.desc.packed_bytes, dtype=torch.uint8, device=device))
        self.register_buffer("A", s * torch.eye(d, **f32))
        self.register_buffer("b", torch.full((d,), -0.5 * levels * s, **f32))
        self.register_buffer("su", torch.ones(self.desc.k, **f32))
        self.register_buffer("sv", torch.ones(self.desc.n, **f32))
        self.register_buffer("bias", torch.zeros(self.desc.n, **f32) if bias else None)

    # ---- construction ------------------------------------------------------------------------------
    @classmethod
    def from_codes(
        cls,
        codes: torch.Tensor,
        A: torch.Tensor,
        b: torch.Tensor,
        su: torch.Tensor,
        sv: torch.Tensor,
        bias: Optional[torch.Tensor] = None,
        *,
        bits: int,
        dim: int,
        had_in: Optional[int] = None,
        had_out: Optional[int] = None,
        su_format: str = "f32",
        sv_format: str = "f32",
    ) -> "LatticeLinear":
        """Build from canonical codes ``[N, K*bits/8]`` uint8 and the layer parameters (validated).

        The module is created on the device of ``codes``.
        """
        if not isinstance(codes, torch.Tensor):
            raise TypeError(f"codes must be a torch.Tensor, got {type(codes).__name__}")
        if codes.dtype != torch.uint8:
            raise TypeError(f"codes must be uint8 (canonical layout), got {codes.dtype}")
        if codes.dim() != 2:
            raise ValueError(f"codes must be 2-D [N, K*bits/8] (canonical layout), got shape {tuple(codes.shape)}")
        if not isinstance(su, torch.Tensor) or su.dim() != 1:
            raise ValueError("su must be a 1-D tensor of length in_features")
        n, k = codes.shape[0], su.shape[0]
        desc = LayerDesc(int(bits), int(dim), n, k, 1, 1).validate()
        if codes.shape[1] != desc.row_bytes:
            raise ValueError(
                f"codes have {codes.shape[1]} bytes per row; expected K*bits/8 = {k}*{bits}/8 = {desc.row_bytes} "
                f"(K taken from su)"
            )
        mod = cls(
            k, n, bias is not None, bits=bits, dim=dim, had_in=had_in, had_out=had_out,
            su_format=su_format, sv_format=sv_format, device=codes.device,
        )
        d = mod.desc.dim
        A32 = _as_f32("A", A, (d, d))
        b32 = _as_f32("b", b, (d,))
        su32 = _as_f32("su", su, (k,))
        sv32 = _as_f32("sv", sv, (n,))
        bias32 = None if bias is None else _as_f32("bias", bias, (n,))
        for name, v, fmt in (("su", su32, mod.su_format), ("sv", sv32, mod.sv_format)):
            try:
                scales.encode(v, fmt)  # exactly what saving the checkpoint will do
            except ValueError:
                raise ValueError(
                    f"{name} is not representable in its storage format {fmt!r}; "
                    f"pass lattq.scales.project({name}, {fmt!r}) instead"
                ) from None
        dev = codes.device
        with torch.no_grad():
            mod.codes.copy_(pack_codes(mod.desc, codes.detach().contiguous()))
            mod.A.copy_(A32.to(dev))
            mod.b.copy_(b32.to(dev))
            mod.su.copy_(su32.to(dev))
            mod.sv.copy_(sv32.to(dev))
            if bias32 is not None:
                mod.bias.copy_(bias32.to(dev))
        return mod

    @classmethod
    def from_float(
        cls,
        linear: nn.Linear,
        *,
        bits: int = 2,
        dim: int = 4,
        had_in: Optional[int] = None,
        had_out: Optional[int] = None,
        a_init: str = "identity",
        seed: int = 0,
        su_format: str = "f32",
        sv_format: str = "f32",
    ) -> "LatticeLinear":
        """Quick round-to-nearest quantization of a dense ``nn.Linear`` (no calibration data).

        Random ±1 SU / SV signs from ``seed``, block Hadamard on both sides, the RMS of the rotated
        weight folded into SV, ``A = s·Q`` (``Q`` = I for ``a_init="identity"``, a seeded random
        orthogonal matrix for ``"orthogonal"``), ``b = −(2^bits−1)/2 · s·Q·1``, with ``s`` chosen to
        minimise the rounding MSE over a sample of the rotated weights; then nearest-codeword codes
        (exact box rounding in ``Q``'s coordinates).
        """
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"from_float expects a torch.nn.Linear, got {type(linear).__name__}")
        if a_init not in ("identity", "orthogonal"):
            raise ValueError(f"a_init must be 'identity' or 'orthogonal', got {a_init!r}")
        w = linear.weight.detach()
        n, k = w.shape
        mod = cls(
            k, n, linear.bias is not None, bits=bits, dim=dim, had_in=had_in, had_out=had_out,
            su_format=su_format, sv_format=sv_format, device="cpu",
        )
        desc = mod.desc
        d, levels = desc.dim, 1 << desc.bits
        w64 = w.to(device="cpu", dtype=torch.float64)
        if not bool(torch.isfinite(w64).all()):
            raise ValueError("the weight of the linear layer contains NaN or Inf")
        gen = torch.Generator().manual_seed(int(seed))
        su0 = torch.where(torch.rand(k, generator=gen) < 0.5, -1.0, 1.0).to(torch.float64)
        sv0 = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0).to(torch.float64)
        # What target = H_out diag(sv0) W diag(su0) H_in  (H symmetric, orthonormal)
        rot = ref.block_hadamard(sv0[:, None] * w64 * su0[None, :], desc.had_in)
        rot = ref.block_hadamard(rot.T.contiguous(), desc.had_out).T.contiguous()
        sigma = float(rot.pow(2).mean().sqrt())
        if sigma == 0.0:
            sigma = 1.0
        rot = rot / sigma
        q = torch.eye(d, dtype=torch.float64) if a_init == "identity" else _random_orthogonal(d, gen)
        center = 0.5 * (levels - 1)
        groups = rot.reshape(-1, d)
        if groups.shape[0] > 65536:
            pick = torch.randperm(groups.shape[0], generator=gen)[:65536]
            sample = groups[pick]
        else:
            sample = groups
        rs = sample @ q  # Q^T x_g, as rows

        def mse(s: torch.Tensor) -> torch.Tensor:  # s: [S] candidates -> [S] mean squared error
            xq = rs[None] / s[:, None, None] + center
            zq = torch.clamp(torch.round(xq), 0, levels - 1)
            return (s[:, None, None] ** 2 * (zq - xq) ** 2).mean(dim=(1, 2))

        cand = torch.logspace(math.log10(0.02), math.log10(4.0), 96, dtype=torch.float64)
        best = float(cand[torch.argmin(mse(cand))])
        fine = torch.linspace(best * 0.9, best * 1.1, 41, dtype=torch.float64)
        s = float(fine[torch.argmin(mse(fine))])
        A = (s * q).to(torch.float32)
        b = (-center * s * q.sum(1)).to(torch.float32)  # b = -center * s * Q 1
        w_hat = rot.to(torch.float32).contiguous()
        canonical = None
        if _native.available():
            try:
                canonical = _native.encode_matrix(desc, A, b, w_hat, ENCODE_ORTHOGONAL)
            except ValueError:
                canonical = None  # the core judged A not orthogonal enough: exact torch rounding below
        if canonical is None:
            xq = (w_hat.to(torch.float64).reshape(-1, d) - b.to(torch.float64)) @ A.to(torch.float64).inverse().T
            z = torch.clamp(torch.round(xq), 0, levels - 1).to(torch.int64).reshape(n, k)
            canonical = ref.pack_fields(z, desc.bits)
        su = scales.project(su0.to(torch.float32), mod.su_format)
        sv = scales.project((sv0 * sigma).to(torch.float32), mod.sv_format)
        with torch.no_grad():
            mod.codes.copy_(pack_codes(desc, canonical))
            mod.A.copy_(A)
            mod.b.copy_(b)
            mod.su.copy_(su)
            mod.sv.copy_(sv)
            if linear.bias is not None:
                mod.bias.copy_(linear.bias.detach().to(device="cpu", dtype=torch.float32))
        return mod.to(w.device)

    # ---- properties / helpers ----------------------------------------------------------------------
    @property
    def bits(self) -> int:
        return self.desc.bits

    @property
    def dim(self) -> int:
        return self.desc.dim

    @property
    def had_in(self) -> int:
        return self.desc.had_in

    @property
    def had_out(self) -> int:
        return self.desc.had_out

    @property
    def bpw(self) -> float:
        """Bits per weight counting every stored parameter (docs/format.md §6)."""
        return _bpw(self.desc, self.su_format, self.sv_format, bias=self.bias is not None)

    def _op_args(self):
        d = self.desc
        return (d.bits, d.dim, d.had_in, d.had_out, d.n, d.k)

    def __setattr__(self, name, value):
        super().__setattr__(name, value)
        if name == "desc":
            d = value
            super().__setattr__("_static_args", (d.bits, d.dim, d.had_in, d.had_out, d.n, d.k))

    def canonical_codes(self) -> torch.Tensor:
        """Codes in the canonical layout, uint8 [N, K*bits/8], on the module's device."""
        return unpack_codes(self.desc, self.codes)

    def dense_weight(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The effective dense weight W = diag(SV) H_outᵀ Ŵ H_in diag(SU), [N, K]."""
        w = torch.ops.lattq.decode(self.codes, self.A, self.b, self.su, self.sv, *self._op_args(), True)
        return w.to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"LatticeLinear expects a torch.Tensor input, got {type(x).__name__}")
        shared = self.__dict__.get("_lattq_shared")  # group_projections: (the group's _SharedInput, this layer's index)
        if shared is not None:
            y = shared[0].output(shared[1], x)
            if y is not None:
                return y
        buf = self._buffers  # direct lookups: nn.Module.__getattr__ is slow on the batch-1 hot path
        if "bias" in buf and "A" in buf and "b" in buf and "su" in buf and "sv" in buf:
            args = (buf["codes"], buf["A"], buf["b"], buf["su"], buf["sv"], buf["bias"])
        else:  # some of them were made nn.Parameters (e.g. for fine-tuning)
            args = (self.codes, self.A, self.b, self.su, self.sv, self.bias)
        if ops.eager_fast_path_ok(x, *args):  # plain eager inference: skip the dispatcher (~20 us a call)
            return ops.linear_eager(x, *args, *self._static_args)
        return _LINEAR(x, *args, *self._static_args)

    def extra_repr(self) -> str:
        d = self.desc
        return (
            f"in_features={d.k}, out_features={d.n}, bias={self.bias is not None}, bits={d.bits}, dim={d.dim}, "
            f"had_in={d.had_in}, had_out={d.had_out}, su_format={self.su_format!r}, sv_format={self.sv_format!r}, "
            f"bpw={self.bpw:.4f}"
        )

    # ---- dtype casts keep the float32 parameters in float32 ----------------------------------------
    def _apply(self, fn, recurse=True):
        before = {}
        for name in _FLOAT_BUFFERS:
            t = getattr(self, name, None)
            if isinstance(t, torch.Tensor) and t.dtype == torch.float32:
                before[name] = t
        super()._apply(fn, recurse)
        for name, old in before.items():
            new = getattr(self, name)
            if isinstance(new, torch.Tensor) and new.dtype != torch.float32:
                fixed = old.detach().to(device=new.device)
                if isinstance(new, nn.Parameter):
                    new.data = fixed
                else:
                    self._buffers[name] = fixed
        return self

    # ---- checkpoint format (docs/format.md §5) -----------------------------------------------------
    def _save_to_state_dict(self, destination, prefix, keep_vars):
        dev = self.codes.device
        destination[prefix + "codes"] = self.canonical_codes()
        for name in ("A", "b"):
            t = getattr(self, name)
            destination[prefix + name] = t if keep_vars else t.detach()
        for name, fmt, length in (("su", self.su_format, self.desc.k), ("sv", self.sv_format, self.desc.n)):
            try:
                stored = scales.encode(getattr(self, name), fmt)
            except ValueError as exc:
                raise ValueError(f"cannot save {prefix}{name} in storage format {fmt!r}: {exc}") from None
            destination[prefix + name] = stored[""].to(dev)
            if "_scale" in stored:
                destination[prefix + name + "_scale"] = stored["_scale"].to(dev)
        if self.bias is not None:
            destination[prefix + "bias"] = self.bias if keep_vars else self.bias.detach()

    def _expected_keys(self) -> list:
        keys = ["codes", "A", "b", "su", "sv"]
        if self.su_format in ("q8", "sign"):
            keys.append("su_scale")
        if self.sv_format in ("q8", "sign"):
            keys.append("sv_scale")
        if self.bias is not None:
            keys.append("bias")
        return keys

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        expected = self._expected_keys()
        for key in state_dict:
            if key.startswith(prefix) and "." not in key[len(prefix):] and key[len(prefix):] not in expected:
                if strict:
                    unexpected_keys.append(key)
        absent = [prefix + k for k in expected if prefix + k not in state_dict]
        if absent:
            missing_keys.extend(absent)
            return
        try:
            new = self._convert_loaded({k: state_dict[prefix + k] for k in expected}, prefix)
        except (TypeError, ValueError) as exc:
            error_msgs.append(str(exc))
            return
        assign = bool(local_metadata.get("assign_to_params_buffers", False))
        with torch.no_grad():
            for name, value in new.items():
                cur = getattr(self, name)
                if assign or cur.is_meta:
                    value = value.to(cur.device) if not cur.is_meta else value
                    if isinstance(cur, nn.Parameter):
                        setattr(self, name, nn.Parameter(value, requires_grad=cur.requires_grad))
                    else:
                        self._buffers[name] = value
                else:
                    cur.copy_(value.to(cur.device))

    def _convert_loaded(self, sd: dict, prefix: str) -> dict:
        """Checkpoint tensors -> in-memory buffers (host), with validation naming the key."""
        desc = self.desc
        d = desc.dim
        codes = sd["codes"]
        if not isinstance(codes, torch.Tensor) or codes.dtype != torch.uint8:
            raise TypeError(f"{prefix}codes must be a uint8 tensor (canonical layout), got {getattr(codes, 'dtype', type(codes))}")
        if tuple(codes.shape) != (desc.n, desc.row_bytes):
            raise ValueError(
                f"{prefix}codes has shape {tuple(codes.shape)}; expected [{desc.n}, {desc.row_bytes}] "
                f"(N, K*bits/8 for n={desc.n}, k={desc.k}, bits={desc.bits})"
            )
        out = {"codes": pack_codes(desc, codes.detach().to("cpu").contiguous())}
        for name, shape in (("A", (d, d)), ("b", (d,))):
            t = sd[name]
            if not isinstance(t, torch.Tensor) or t.dtype != torch.float32:
                raise TypeError(f"{prefix}{name} must be float32, got {getattr(t, 'dtype', type(t))}")
            if tuple(t.shape) != shape:
                raise ValueError(f"{prefix}{name} has shape {tuple(t.shape)}; expected {list(shape)}")
            t = t.detach().to("cpu")
            if not bool(torch.isfinite(t).all()):
                raise ValueError(f"{prefix}{name} contains NaN or Inf")
            out[name] = t.clone()
        for name, fmt, length in (("su", self.su_format, desc.k), ("sv", self.sv_format, desc.n)):
            stored = {"": sd[name].detach().to("cpu")}
            if name + "_scale" in sd:
                stored["_scale"] = sd[name + "_scale"].detach().to("cpu")
            try:
                out[name] = scales.decode(stored, fmt, length)
            except (ValueError, KeyError) as exc:
                raise ValueError(f"{prefix}{name} (storage format {fmt!r}, length {length}): {exc}") from None
        if self.bias is not None:
            t = sd["bias"]
            if not isinstance(t, torch.Tensor) or t.dtype != torch.float32:
                raise TypeError(f"{prefix}bias must be float32, got {getattr(t, 'dtype', type(t))}")
            if tuple(t.shape) != (desc.n,):
                raise ValueError(f"{prefix}bias has shape {tuple(t.shape)}; expected [{desc.n}]")
            t = t.detach().to("cpu")
            if not bool(torch.isfinite(t).all()):
                raise ValueError(f"{prefix}bias contains NaN or Inf")
            out["bias"] = t.clone()
        return out


class LatticeLinearGroup(nn.Module):
    """Several ``LatticeLinear`` layers that read the same input (Q, K and V; gate and up), in one call.

    ``q, k, v = LatticeLinearGroup([q_proj, k_proj, v_proj])(x)`` returns a tuple with each layer's output,
    equal to calling the layers one by one (up to fp32 summation order).  On CUDA, with f16 / bf16 activations at
    decode batch sizes, the layers run in one kernel launch (``torch.ops.lattq.linear_group``; at batch 1 a launch
    costs several microseconds, more than a small layer's weights take to read: docs/kernels.md, "Grouped
    layers"); otherwise the kernels run one after the other.  The layers stay the group's
    submodules (``group.layers[i]``, state-dict keys ``layers.<i>.*``); they must share ``in_features``,
    ``bits`` and ``dim``.  When a gradient is needed the layers run one by one through the differentiable
    ``lattq::linear``.
    """

    def __init__(self, layers):
        super().__init__()
        layers = list(layers)
        if not layers:
            raise ValueError("LatticeLinearGroup needs at least one LatticeLinear")
        for i, layer in enumerate(layers):
            if not isinstance(layer, LatticeLinear):
                raise TypeError(f"layers[{i}] is a {type(layer).__name__}; LatticeLinearGroup takes LatticeLinear layers")
        d0 = layers[0].desc
        for i, layer in enumerate(layers[1:], 1):
            d = layer.desc
            if (d.k, d.bits, d.dim) != (d0.k, d0.bits, d0.dim):
                raise ValueError(
                    f"layers[{i}] has in_features={d.k}, bits={d.bits}, dim={d.dim} but layers[0] has "
                    f"in_features={d0.k}, bits={d0.bits}, dim={d0.dim}: a group shares its input and format"
                )
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> tuple:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"LatticeLinearGroup expects a torch.Tensor input, got {type(x).__name__}")
        layers = list(self.layers._modules.values())  # direct lookups: nn.Module.__getattr__ is slow at batch 1
        ys = _group_forward(layers, x)
        return ys if ys is not None else tuple(layer(x) for layer in layers)  # differentiable, one by one

    def extra_repr(self) -> str:
        return f"layers={len(self.layers)}, in_features={self.layers[0].desc.k}, out_features={[l.desc.n for l in self.layers]}"


def _group_forward(layers, x: torch.Tensor):
    """The outputs of ``layers`` (LatticeLinear of one in_features, bits and dim) on ``x`` through one
    ``lattq::linear_group`` call, or None where a gradient is needed (the caller then runs them one by one)."""
    cols = [[], [], [], [], [], []]  # codes, A, b, su, sv, bias
    for layer in layers:
        buf = layer._buffers
        for j, name in enumerate(("codes", "A", "b", "su", "sv", "bias")):
            cols[j].append(buf[name] if name in buf else getattr(layer, name))  # a Parameter is not in _buffers
    tensors = [t for col in cols for t in col]
    if torch.is_grad_enabled() and (x.requires_grad or any(t is not None and t.requires_grad for t in tensors)):
        return None
    ds = [layer.desc for layer in layers]
    static = (ds[0].bits, ds[0].dim, [d.had_in for d in ds], [d.had_out for d in ds], [d.n for d in ds], ds[0].k)
    if ops.eager_fast_path_ok(x, *tensors):
        return tuple(ops.linear_group_eager(x, *cols, *static))
    return tuple(torch.ops.lattq.linear_group(x, *cols, *static))


class _SharedInput:
    """The state of one group of ``group_projections``: layers that a model's own forward calls one by one on the same
    input tensor.  The first call of any of them on an input runs the whole group in one ``lattq::linear_group``
    call and keeps the other layers' outputs; each is handed out once, to that layer's call on the same tensor
    object, unmodified since (its version counter).  Any other call (another input, a second call of a layer, a
    gradient needed, inside ``torch.compile``) returns None and the layer computes alone.  The state is one tuple,
    replaced whole, so a thread that read it keeps a consistent (input, outputs) pair."""

    def __init__(self, layers):
        self.layers = list(layers)
        self.state = None  # (input, its version, [kept output or None per layer])

    def output(self, idx: int, x: torch.Tensor):
        if torch.compiler.is_compiling():
            return None
        st = self.state
        if st is not None and st[0] is x and st[1] == x._version and st[2][idx] is not None:
            y, st[2][idx] = st[2][idx], None
            if all(p is None for p in st[2]) and self.state is st:
                self.state = None  # every kept output handed out: release the input
            return y
        if x.dim() == 0 or x.shape[-1] != self.layers[0].desc.k:
            return None  # the layer's own checks name the problem
        ys = _group_forward(self.layers, x)
        if ys is None:
            self.state = None
            return None
        kept = list(ys)
        kept[idx] = None
        self.state = (x, x._version, kept)
        return ys[idx]


# sibling LatticeLinear modules that transformers' decoder blocks call one by one on the same input
DEFAULT_PROJECTION_GROUPS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))


def group_projections(model: nn.Module, groups=DEFAULT_PROJECTION_GROUPS) -> int:
    """Let the quantized projections that a model calls one by one on the same input run as one group.

    For every module of ``model`` and every tuple of child names in ``groups`` (default: ``q_proj``, ``k_proj``,
    ``v_proj`` and ``gate_proj``, ``up_proj``, as in the Llama / Qwen / Mistral blocks of transformers), the children
    that are ``LatticeLinear`` layers of one ``in_features``, ``bits`` and ``dim`` (at least two) form a group: the
    first of them called on an input runs all of them in one ``lattq::linear_group`` call (on CUDA at decode batch
    sizes one kernel launch instead of one each: docs/kernels.md, "Grouped layers"), and the others' calls on that
    same tensor return the outputs kept for them.  Outputs equal the layers' own up to fp32 summation order; a call
    on another input, a second call, a call that needs a gradient and calls inside ``torch.compile`` compute the
    layer alone.  The module tree and the state dict do not change.  Returns the number of groups; loading a
    lattq checkpoint through transformers applies it.  ``ungroup_projections`` undoes it.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"group_projections expects a torch.nn.Module, got {type(model).__name__}")
    groups = [tuple(g) if isinstance(g, (tuple, list)) else g for g in groups]
    for g in groups:
        if not isinstance(g, tuple) or len(g) < 2 or not all(isinstance(n, str) for n in g):
            raise ValueError(f"group_projections: each group is a tuple of at least two child names, got {g!r}")
    count = 0
    for parent in model.modules():
        kids = parent._modules
        for names in groups:
            layers = [kids[n] for n in names if isinstance(kids.get(n), LatticeLinear)]
            layers = [l for l in layers if l.__dict__.get("_lattq_shared") is None]
            if len(layers) < 2:
                continue
            d0 = layers[0].desc
            layers = [l for l in layers if (l.desc.k, l.desc.bits, l.desc.dim) == (d0.k, d0.bits, d0.dim)]
            if len(layers) < 2:
                continue
            shared = _SharedInput(layers)
            for i, layer in enumerate(layers):
                layer.__dict__["_lattq_shared"] = (shared, i)
            count += 1
    return count


def ungroup_projections(model: nn.Module) -> int:
    """Undo ``group_projections``: every LatticeLinear of ``model`` computes alone again.  Returns how many layers
    were grouped."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"ungroup_projections expects a torch.nn.Module, got {type(model).__name__}")
    count = 0
    for mod in model.modules():
        if isinstance(mod, LatticeLinear) and mod.__dict__.pop("_lattq_shared", None) is not None:
            count += 1
    return count


__all__ = [
    "DEFAULT_PROJECTION_GROUPS",
    "LatticeLinear",
    "LatticeLinearGroup",
    "group_projections",
    "pack_codes",
    "ungroup_projections",
    "unpack_codes",
]
