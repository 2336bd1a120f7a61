"""lattq.nn.LatticeLinear: construction, forward, state_dict (checkpoint format), validation, bpw."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lattq
from lattq import format as F
from lattq import scales
from lattq.nn import LatticeLinear

from conftest import make_layer, np_dense_weight, np_fields, np_layer_forward, rel_err

FP32_TOL = 1e-5


def _module_from_layer(layer, su_format="f32", sv_format="f32"):
    return LatticeLinear.from_codes(
        layer["canonical"], layer["A"], layer["b"], scales.project(layer["su"], su_format),
        scales.project(layer["sv"], sv_format), layer["bias"], bits=layer["bits"], dim=layer["dim"],
        had_in=layer["had_in"], had_out=layer["had_out"], su_format=su_format, sv_format=sv_format,
    )


def _oracle_layer(mod: LatticeLinear) -> dict:
    d = mod.desc
    return dict(
        n=d.n, k=d.k, bits=d.bits, dim=d.dim, had_in=d.had_in, had_out=d.had_out, bias=mod.bias,
        codes64=mod.canonical_codes().cpu().numpy(), A64=mod.A.double().cpu().numpy(),
        b64=mod.b.double().cpu().numpy(), su64=mod.su.double().cpu().numpy(), sv64=mod.sv.double().cpu().numpy(),
        bias64=None if mod.bias is None else mod.bias.double().cpu().numpy(),
    )


# ---------------------------------------------------------------------------------------------------
# from_codes / forward / dense_weight
# ---------------------------------------------------------------------------------------------------
def test_from_codes_forward_and_dense_weight(native, gen):
    layer = make_layer(576, 1536, gen)
    mod = _module_from_layer(layer)
    assert mod.desc == layer["desc"]
    assert torch.equal(mod.canonical_codes(), layer["canonical"])
    assert rel_err(mod.dense_weight(), np_dense_weight(layer)) <= FP32_TOL
    x = torch.randn(2, 3, 1536, generator=gen)
    y = mod(x)
    assert y.shape == (2, 3, 576)
    assert rel_err(y, np_layer_forward(layer, x.reshape(-1, 1536).double().numpy()).reshape(2, 3, 576)) <= FP32_TOL
    for dt in (torch.bfloat16, torch.float16):
        assert mod(x.to(dt)).dtype == dt


def test_dtype_cast_keeps_float32_parameters(native, gen):
    layer = make_layer(64, 128, gen)
    mod = _module_from_layer(layer)
    A_before = mod.A.clone()
    mod = mod.to(torch.bfloat16).half()
    assert mod.A.dtype == torch.float32 and torch.equal(mod.A, A_before)
    assert mod.su.dtype == mod.sv.dtype == mod.bias.dtype == torch.float32
    assert mod.codes.dtype == torch.uint8
    x = torch.randn(3, 128, generator=gen).half()
    assert rel_err(mod(x), np_layer_forward(layer, x.double().numpy())) < 5e-3


def test_default_hadamard_blocks_and_repr():
    mod = LatticeLinear(1536, 576)
    assert (mod.had_in, mod.had_out) == (128, 64)
    assert "bpw=" in repr(mod) and "had_in=128" in repr(mod)
    assert mod.codes.dtype == torch.uint8 and mod.codes.numel() == mod.desc.packed_bytes
    assert mod.bias is None


def test_bpw_property():
    mod = LatticeLinear(4096, 4096, bias=True, su_format="sign", sv_format="q8")
    hand = (2 * 4096 * 4096 + 32 * 20 + (8 * 512 + 32) + (8 * 4096 + 32) + 32 * 4096) / 4096**2
    assert mod.bpw == pytest.approx(hand, abs=1e-15)
    assert LatticeLinear(4096, 4096).bpw == pytest.approx(2 + 640 / 4096**2 + 64 / 4096, abs=1e-15)


# ---------------------------------------------------------------------------------------------------
# from_float
# ---------------------------------------------------------------------------------------------------
def _rtn_error(lin, mod) -> float:
    w = lin.weight.detach().double()
    return float((mod.dense_weight().double() - w).norm() / w.norm())


@pytest.mark.parametrize("a_init", ["identity", "orthogonal"])
def test_from_float_quality(native, gen, a_init):
    lin = torch.nn.Linear(512, 256, bias=True)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(256, 512, generator=gen) * 0.02)
    mod = LatticeLinear.from_float(lin, a_init=a_init, seed=1)
    err = _rtn_error(lin, mod)
    # 4-level quantization of a Gaussian: the best uniform quantizer has relative MSE ~0.1188, so the
    # relative error is ~0.345; the rotated weights are close to Gaussian.
    assert 0.25 < err < 0.40, err
    # the chosen s is at least as good as the authors' fixed s = 1/sqrt(1.25) on the same rotation
    fixed = _fixed_scale_error(lin, mod, 1 / np.sqrt(1.25))
    assert err <= fixed + 1e-6
    # forward is the layer of the dense weight (plus bias)
    x = torch.randn(4, 512, generator=gen)
    y_ref = x.double() @ mod.dense_weight().double().T + lin.bias.detach().double()
    assert rel_err(mod(x), y_ref.numpy()) <= FP32_TOL
    assert torch.equal(mod.bias, lin.bias.detach())


def _fixed_scale_error(lin, mod, s):
    """Error of round-to-nearest with A = s Q (same Q, signs, sigma as mod) — computed in float64 here."""
    d = mod.desc
    q = mod.A.double() / float(torch.linalg.matrix_norm(mod.A.double(), 2))  # A = s_mod Q
    sigma_sv = mod.sv.double()  # = sv0 * sigma
    su0 = mod.su.double()
    w = lin.weight.detach().double()
    h_in = torch.from_numpy(_h(d.had_in, d.k))
    h_out = torch.from_numpy(_h(d.had_out, d.n))
    target = h_out @ (w * su0[None, :] / sigma_sv[:, None]) @ h_in  # = What target in the lattice domain
    g = target.reshape(-1, d.dim) @ q
    z = torch.clamp(torch.round(g / s + 1.5), 0, 3)
    w_hat = ((z - 1.5) * s) @ q.T
    w_back = sigma_sv[:, None] * (h_out @ w_hat.reshape(d.n, d.k) @ h_in) * su0[None, :]
    return float((w_back - w).norm() / w.norm())


def _h(block, size):
    from conftest import np_block_hadamard

    return np_block_hadamard(np.eye(size), block)


def test_from_float_deterministic_and_seeded(native):
    lin = torch.nn.Linear(256, 128)
    a = LatticeLinear.from_float(lin, seed=5)
    b = LatticeLinear.from_float(lin, seed=5)
    c = LatticeLinear.from_float(lin, seed=6)
    assert torch.equal(a.codes, b.codes) and torch.equal(a.su, b.su)
    assert not torch.equal(a.su, c.su)


def test_from_float_sign_formats_roundtrip(native, gen):
    lin = torch.nn.Linear(256, 128, bias=False)
    mod = LatticeLinear.from_float(lin, su_format="sign", sv_format="sign")
    sd = mod.state_dict()
    assert sd["su"].dtype == torch.uint8 and sd["su"].shape == (32,)
    assert set(sd) == {"codes", "A", "b", "su", "su_scale", "sv", "sv_scale"}
    back = LatticeLinear(256, 128, su_format="sign", sv_format="sign")
    back.load_state_dict(sd)
    assert torch.equal(back.su, mod.su) and torch.equal(back.sv, mod.sv)


def test_from_float_rejects_bad_input():
    with pytest.raises(TypeError):
        LatticeLinear.from_float(torch.nn.Conv1d(4, 4, 1))
    with pytest.raises(ValueError, match="a_init"):
        LatticeLinear.from_float(torch.nn.Linear(64, 64), a_init="random")
    lin = torch.nn.Linear(64, 64)
    with torch.no_grad():
        lin.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        LatticeLinear.from_float(lin)
    with pytest.raises(ValueError, match="dim"):
        LatticeLinear.from_float(torch.nn.Linear(66, 64))  # 66 % 4 != 0


# ---------------------------------------------------------------------------------------------------
# state_dict = checkpoint format
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("su_format,sv_format", [("f32", "f32"), ("f16", "q8"), ("sign", "f16"), ("q8", "sign")])
def test_state_dict_roundtrip_bit_exact(native, gen, su_format, sv_format):
    layer = make_layer(96, 256, gen, had_in=64, had_out=32)
    mod = _module_from_layer(layer, su_format, sv_format)
    sd = mod.state_dict()
    # checkpoint layout (docs/format.md §5)
    assert sd["codes"].dtype == torch.uint8 and sd["codes"].shape == (96, 64)
    assert torch.equal(sd["codes"], layer["canonical"])
    assert sd["A"].dtype == torch.float32 and sd["A"].shape == (4, 4)
    dt = {"f32": torch.float32, "f16": torch.float16, "q8": torch.int8, "sign": torch.uint8}
    assert sd["su"].dtype == dt[su_format] and sd["sv"].dtype == dt[sv_format]
    assert ("su_scale" in sd) == (su_format in ("q8", "sign"))
    assert ("sv_scale" in sd) == (sv_format in ("q8", "sign"))
    back = LatticeLinear(256, 96, bias=True, had_in=64, had_out=32, su_format=su_format, sv_format=sv_format)
    back.load_state_dict(sd)
    for name in ("codes", "A", "b", "su", "sv", "bias"):
        assert torch.equal(getattr(back, name), getattr(mod, name)), name
    x = torch.randn(3, 256, generator=gen)
    assert torch.equal(back(x), mod(x))


def test_state_dict_through_safetensors(native, gen, tmp_path):
    from safetensors.torch import load_file, save_file

    mod = LatticeLinear.from_float(torch.nn.Linear(128, 64, bias=True), seed=2)
    outer = torch.nn.Sequential(mod)
    save_file(outer.state_dict(), str(tmp_path / "m.safetensors"))
    sd = load_file(str(tmp_path / "m.safetensors"))
    assert set(sd) == {"0.codes", "0.A", "0.b", "0.su", "0.sv", "0.bias"}
    back = torch.nn.Sequential(LatticeLinear(128, 64, bias=True))
    back.load_state_dict(sd)
    assert torch.equal(back[0].codes, mod.codes) and torch.equal(back[0].sv, mod.sv)


def test_load_into_meta_module_with_assign(native, gen):
    mod = LatticeLinear.from_float(torch.nn.Linear(128, 64), seed=4)
    with torch.device("meta"):
        empty = LatticeLinear(128, 64, bias=True)
    empty.load_state_dict(mod.state_dict(), assign=True)
    assert not empty.codes.is_meta and torch.equal(empty.codes, mod.codes)
    x = torch.randn(2, 128, generator=gen)
    assert torch.equal(empty(x), mod(x))


def test_save_rejects_unrepresentable_scale(native, gen):
    mod = LatticeLinear(64, 64, sv_format="sign")
    with torch.no_grad():
        mod.sv.copy_(torch.linspace(0.5, 1.5, 64))  # not +-s
    with pytest.raises(ValueError, match="sv"):
        mod.state_dict()


class TestLoadValidation:
    @pytest.fixture
    def sd(self, native):
        mod = LatticeLinear.from_float(torch.nn.Linear(128, 64, bias=True), seed=0)
        return mod.state_dict()

    def _load(self, sd, **kw):
        LatticeLinear(128, 64, bias=True, **kw).load_state_dict(sd)

    def test_ok(self, sd):
        self._load(sd)

    def test_codes_wrong_shape(self, sd):
        sd["codes"] = sd["codes"][:, :-1]
        with pytest.raises(RuntimeError, match=r"codes has shape \(64, 31\); expected \[64, 32\]"):
            self._load(sd)

    def test_codes_wrong_dtype(self, sd):
        sd["codes"] = sd["codes"].to(torch.int16)
        with pytest.raises(RuntimeError, match="codes must be a uint8"):
            self._load(sd)

    def test_packed_codes_rejected(self, sd, native):
        from lattq.nn import pack_codes

        desc = F.LayerDesc(2, 4, 64, 128, 128, 64)
        sd["codes"] = pack_codes(desc, sd["codes"])  # TILED flat buffer is not the checkpoint layout
        with pytest.raises(RuntimeError, match="codes has shape"):
            self._load(sd)

    def test_A_wrong_dtype_and_shape(self, sd):
        bad = dict(sd, A=sd["A"].double())
        with pytest.raises(RuntimeError, match="A must be float32"):
            self._load(bad)
        bad = dict(sd, A=sd["A"][:3])
        with pytest.raises(RuntimeError, match=r"A has shape"):
            self._load(bad)

    def test_nan_values(self, sd):
        for key in ("A", "b", "su", "sv", "bias"):
            bad = dict(sd)
            bad[key] = sd[key].clone()
            bad[key].view(-1)[0] = float("nan")
            with pytest.raises(RuntimeError, match="NaN"):
                self._load(bad)

    def test_su_wrong_length(self, sd):
        sd["su"] = sd["su"][:-1]
        with pytest.raises(RuntimeError, match="su"):
            self._load(sd)

    def test_missing_key(self, sd):
        del sd["sv"]
        with pytest.raises(RuntimeError, match="Missing key.*sv"):
            self._load(sd)

    def test_missing_scale_for_q8(self, native):
        mod = LatticeLinear.from_float(torch.nn.Linear(128, 64, bias=True), seed=0, sv_format="q8")
        sd = mod.state_dict()
        del sd["sv_scale"]
        with pytest.raises(RuntimeError, match="sv_scale"):
            self._load(sd, sv_format="q8")

    def test_unexpected_key(self, sd):
        sd["su_scale"] = torch.ones(1)
        with pytest.raises(RuntimeError, match="Unexpected key.*su_scale"):
            self._load(sd)

    def test_wrong_format_dtype(self, sd):
        # the module expects q8 storage (int8) but the file has float32
        with pytest.raises(RuntimeError, match="int8"):
            self._load(dict(sd, sv_scale=torch.ones(1)), sv_format="q8")

    def test_bias_mismatch(self, sd):
        with pytest.raises(RuntimeError, match="bias"):
            LatticeLinear(128, 64, bias=False).load_state_dict(sd)


# ---------------------------------------------------------------------------------------------------
# from_codes validation
# ---------------------------------------------------------------------------------------------------
class TestFromCodesValidation:
    @pytest.fixture
    def parts(self, gen):
        layer = make_layer(64, 128, gen, had_in=32, had_out=16)
        return dict(codes=layer["canonical"], A=layer["A"], b=layer["b"], su=layer["su"], sv=layer["sv"],
                    bias=layer["bias"])

    def _make(self, parts, **kw):
        args = dict(bits=2, dim=4, had_in=32, had_out=16)
        args.update(kw)
        return LatticeLinear.from_codes(parts["codes"], parts["A"], parts["b"], parts["su"], parts["sv"],
                                        parts["bias"], **args)

    def test_ok(self, parts):
        mod = self._make(parts)
        assert torch.equal(mod.canonical_codes(), parts["codes"])

    def test_codes_dtype(self, parts):
        with pytest.raises(TypeError, match="uint8"):
            self._make(dict(parts, codes=parts["codes"].to(torch.int32)))

    def test_codes_row_bytes(self, parts):
        with pytest.raises(ValueError, match="bytes per row"):
            self._make(dict(parts, codes=parts["codes"][:, :-1]))

    def test_A_shape_and_dtype(self, parts):
        with pytest.raises(ValueError, match="A has shape"):
            self._make(dict(parts, A=torch.eye(3)))
        with pytest.raises(TypeError, match="A must be a floating-point"):
            self._make(dict(parts, A=torch.eye(4, dtype=torch.int32)))

    def test_nonfinite(self, parts):
        for key in ("A", "b", "su", "sv", "bias"):
            bad = dict(parts)
            bad[key] = parts[key].clone()
            bad[key].view(-1)[1] = float("inf")
            with pytest.raises(ValueError, match=f"{key} contains NaN or Inf"):
                self._make(bad)

    def test_sv_length(self, parts):
        with pytest.raises(ValueError, match="sv has shape"):
            self._make(dict(parts, sv=parts["sv"][:-1]))

    def test_scale_not_representable(self, parts):
        with pytest.raises(ValueError, match="su is not representable"):
            self._make(parts, su_format="sign")
        signs = torch.where(parts["su"] < 0, -0.75, 0.75)  # exactly +-0.75: representable as 'sign'
        mod = self._make(dict(parts, su=signs), su_format="sign")
        assert mod.su_format == "sign" and torch.equal(mod.su, signs)


@pytest.mark.parametrize("fmt", ["f16", "q8", "sign"])
def test_projected_scales_are_accepted_and_saved(native, gen, fmt):
    """scales.project(v, fmt) is representable: from_codes accepts it and state_dict saves it exactly."""
    for k in (128, 384, 1536, 4096):
        layer = make_layer(64, k, gen, had_in=32, had_out=16)
        su = scales.project(layer["su"] * torch.rand(k, generator=gen), fmt)
        sv = scales.project(layer["sv"], fmt)
        mod = LatticeLinear.from_codes(layer["canonical"], layer["A"], layer["b"], su, sv, bits=2, dim=4,
                                       had_in=32, had_out=16, su_format=fmt, sv_format=fmt)
        back = LatticeLinear(k, 64, had_in=32, had_out=16, su_format=fmt, sv_format=fmt)
        back.load_state_dict(mod.state_dict())
        assert torch.equal(back.su, su) and torch.equal(back.sv, sv)

    def test_block_does_not_divide(self, parts):
        with pytest.raises(ValueError, match="had_out"):
            self._make(parts, had_out=128)
        with pytest.raises(ValueError, match="had_in"):
            self._make(parts, had_in=48)

    def test_bad_format_name(self, parts):
        with pytest.raises(ValueError, match="su_format"):
            self._make(parts, su_format="int4")


def test_canonical_codes_match_oracle_fields(native, gen):
    layer = make_layer(48, 64, gen, bits=2, dim=4)
    mod = _module_from_layer(layer)
    assert np.array_equal(np_fields(mod.canonical_codes().numpy(), 2, 64), np_fields(layer["codes64"], 2, 64))


def test_oracle_layer_of_module(native, gen):
    """The module's forward equals the oracle built from its own buffers (no make_layer involved)."""
    mod = LatticeLinear.from_float(torch.nn.Linear(320, 96, bias=True), seed=9, a_init="orthogonal")
    x = torch.randn(5, 320, generator=gen)
    assert rel_err(mod(x), np_layer_forward(_oracle_layer(mod), x.double().numpy())) <= FP32_TOL


def test_top_level_api():
    # (that `import lattq` leaves CUDA uninitialised is checked in a fresh interpreter in test_errors.py)
    assert lattq.LatticeLinear is LatticeLinear
    assert isinstance(lattq.native_status(), str)
    assert isinstance(lattq.__version__, str)
    assert isinstance(lattq.native_available(), bool) and isinstance(lattq.cuda_kernels_available(), bool)


def test_parameters_for_fine_tuning(native, gen):
    """A, b, su, sv (and bias) may be turned into nn.Parameters and trained: forward and grads work."""
    mod = LatticeLinear.from_float(torch.nn.Linear(128, 64, bias=True), seed=0)
    x = torch.randn(4, 128, generator=gen)
    y0 = mod(x)
    for name in ("A", "b", "su", "sv", "bias"):
        setattr(mod, name, torch.nn.Parameter(getattr(mod, name).clone()))
    assert {n for n, _ in mod.named_parameters()} == {"A", "b", "su", "sv", "bias"}
    y = mod(x)
    assert torch.equal(y, y0)
    y.square().sum().backward()
    for p in mod.parameters():
        assert p.grad is not None and bool(torch.isfinite(p.grad).all())
    # state_dict keeps the checkpoint format with parameters too
    sd = mod.state_dict()
    assert sd["codes"].shape == (64, 32)
    back = LatticeLinear(128, 64, bias=True)
    back.load_state_dict(sd)
    assert torch.equal(back(x), y0)


def test_eager_fast_path_equals_op(native, gen):
    """LatticeLinear's direct eager call and the dispatcher path give identical results, and the op is
    still what tracing, dispatch modes and autograd see."""
    from torch.utils._python_dispatch import TorchDispatchMode

    mod = LatticeLinear.from_float(torch.nn.Linear(256, 128, bias=True), seed=0)
    x = torch.randn(3, 256, generator=gen)
    with torch.no_grad():
        assert lattq.ops.eager_fast_path_ok(x, mod.codes, mod.A)
        y_fast = mod(x)
    y_op = torch.ops.lattq.linear(x, mod.codes, mod.A, mod.b, mod.su, mod.sv, mod.bias, *mod._op_args())
    assert torch.equal(y_fast, y_op)

    class Record(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.append(str(func))
            return func(*args, **(kwargs or {}))

    with torch.no_grad(), Record() as rec:
        mod(x)
    assert any("lattq.linear" in o for o in rec.ops), rec.ops
    xg = x.clone().requires_grad_(True)
    assert not lattq.ops.eager_fast_path_ok(xg)
    mod(xg).sum().backward()
    assert xg.grad is not None and xg.grad.shape == x.shape


# ---------------------------------------------------------------------------------------------------
# LatticeLinearGroup (several layers on one input)
# ---------------------------------------------------------------------------------------------------
def _group_layers(gen, k=256, ns=(96, 40, 200), bias=(True, False, True)):
    layers = [make_layer(n, k, gen, bias=b, had_out=8 if n % 16 else None) for n, b in zip(ns, bias)]
    return layers, [_module_from_layer(l) for l in layers]


def test_group_matches_layers_and_oracle(native, gen):
    layers, mods = _group_layers(gen)
    group = lattq.LatticeLinearGroup(mods)
    x = torch.randn(2, 3, 256, generator=gen)
    ys = group(x)
    assert isinstance(ys, tuple) and len(ys) == 3
    for y, mod, layer in zip(ys, mods, layers):
        assert y.shape == (2, 3, layer["n"])
        assert torch.equal(y, mod(x))
        ref = np_layer_forward(layer, x.reshape(-1, 256).double().numpy()).reshape(2, 3, layer["n"])
        assert rel_err(y, ref) <= FP32_TOL
    # the op itself, and its registration (schema, fake, dispatch)
    cols = [[getattr(m, a) for m in mods] for a in ("codes", "A", "b", "su", "sv", "bias")]
    static = (2, 4, [m.desc.had_in for m in mods], [m.desc.had_out for m in mods], [m.desc.n for m in mods], 256)
    ys2 = torch.ops.lattq.linear_group(x, *cols, *static)
    assert all(torch.equal(a, b) for a, b in zip(ys, ys2))
    torch.library.opcheck(torch.ops.lattq.linear_group.default, (x, *cols, *static),
                          test_utils=("test_schema", "test_faketensor"))


def test_group_gradient_runs_layers(native, gen):
    _, mods = _group_layers(gen, ns=(32, 48), bias=(True, True))
    group = lattq.LatticeLinearGroup(mods)
    x = torch.randn(4, 256, generator=gen, requires_grad=True)
    ys = group(x)
    (ys[0].sum() + 2 * ys[1].sum()).backward()
    x2 = x.detach().clone().requires_grad_(True)
    (mods[0](x2).sum() + 2 * mods[1](x2).sum()).backward()
    assert torch.allclose(x.grad, x2.grad, rtol=1e-5, atol=1e-6)


def test_group_rejects_bad_layers(native, gen):
    _, mods = _group_layers(gen)
    with pytest.raises(ValueError, match="at least one"):
        lattq.LatticeLinearGroup([])
    with pytest.raises(TypeError, match=r"layers\[1\] is a Linear"):
        lattq.LatticeLinearGroup([mods[0], torch.nn.Linear(256, 8)])
    other = _module_from_layer(make_layer(64, 512, gen))
    with pytest.raises(ValueError, match=r"layers\[1\] has in_features=512"):
        lattq.LatticeLinearGroup([mods[0], other])
    group = lattq.LatticeLinearGroup(mods)
    with pytest.raises(ValueError, match="expected \\[..., 256\\]"):
        group(torch.randn(2, 128))
    with pytest.raises(TypeError, match="torch.Tensor"):
        group([1.0])
    # the op names the offending layer
    cols = [[getattr(m, a) for m in mods] for a in ("codes", "A", "b", "su", "sv", "bias")]
    cols[3][2] = cols[3][2][:-1]  # su of layer 2 too short
    static = (2, 4, [m.desc.had_in for m in mods], [m.desc.had_out for m in mods], [m.desc.n for m in mods], 256)
    with pytest.raises(ValueError, match=r"layers\[2\].*'su'"):
        torch.ops.lattq.linear_group(torch.randn(1, 256), *cols, *static)
    with pytest.raises(ValueError, match="'A' has 2 entries"):
        torch.ops.lattq.linear_group(torch.randn(1, 256), cols[0], cols[1][:2], *cols[2:], *static)


def test_group_state_dict_keys(native, gen):
    _, mods = _group_layers(gen, ns=(32, 16), bias=(False, True))
    group = lattq.LatticeLinearGroup(mods)
    keys = set(group.state_dict())
    assert {"layers.0.codes", "layers.1.codes", "layers.1.bias"} <= keys
    assert "layers.0.bias" not in keys


# ---------------------------------------------------------------------------------------------------
# group_projections (q/k/v and gate/up called one by one by a model's own forward)
# ---------------------------------------------------------------------------------------------------
class _Block(torch.nn.Module):
    """Calls q/k/v and gate/up one by one on the same input, as transformers' decoder blocks do."""

    def __init__(self, mods):
        super().__init__()
        self.q_proj, self.k_proj, self.v_proj, self.gate_proj, self.up_proj = mods

    def forward(self, x):
        return (self.q_proj(x), self.k_proj(x), self.v_proj(x), self.gate_proj(x), self.up_proj(x))


def _counting_group_forward(monkeypatch):
    calls = []
    real = lattq.nn._group_forward

    def counted(layers, x):
        calls.append(len(layers))
        return real(layers, x)

    monkeypatch.setattr(lattq.nn, "_group_forward", counted)
    return calls


def test_group_projections_one_group_call(native, gen, monkeypatch):
    _, mods = _group_layers(gen, ns=(96, 40, 200, 64, 48), bias=(True, False, True, False, True))
    block = _Block(mods)
    x = torch.randn(2, 3, 256, generator=gen)
    with torch.no_grad():
        ref = block(x)
    keys = list(block.state_dict())
    assert lattq.group_projections(block) == 2
    assert lattq.group_projections(block) == 0  # already grouped
    calls = _counting_group_forward(monkeypatch)
    with torch.no_grad():
        ys = block(x)
    assert calls == [3, 2]  # one call per group, the other layers take the kept outputs
    assert all(torch.equal(a, b) for a, b in zip(ys, ref))  # CPU: the group runs the same kernels one by one
    assert list(block.state_dict()) == keys
    assert mods[0].__dict__["_lattq_shared"][0].state is None  # all kept outputs handed out: the input is released
    assert lattq.ungroup_projections(block) == 5
    calls.clear()
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(block(x), ref))
    assert calls == []


def test_group_projections_other_calls_compute_alone(native, gen):
    _, mods = _group_layers(gen, ns=(32, 48, 16), bias=(True, False, True))
    q, k, v = mods
    x, x2 = torch.randn(4, 256, generator=gen), torch.randn(4, 256, generator=gen)
    with torch.no_grad():
        want = {(i, j): m(t) for i, m in enumerate(mods) for j, t in enumerate((x, x2, x + 1))}
    block = torch.nn.Module()
    block.q_proj, block.k_proj, block.v_proj = q, k, v
    assert lattq.group_projections(block) == 1
    with torch.no_grad():
        assert torch.equal(q(x), want[0, 0])
        assert torch.equal(k(x2), want[1, 1])  # another input: its own result (the group runs again on x2)
        assert torch.equal(v(x), want[2, 0])
        assert torch.equal(v(x), want[2, 0])  # a second call on the same input
        assert torch.equal(q(x), want[0, 0])
        x.add_(1)  # changed in place after the group ran on it: not the kept output
        assert torch.equal(k(x), want[1, 2])
        with pytest.raises(ValueError, match="expected \\[..., 256\\]"):
            k(torch.randn(2, 128))
    # a gradient: every layer alone through the differentiable op
    xg = torch.randn(3, 256, generator=gen, requires_grad=True)
    (q(xg).sum() + 2 * k(xg).sum()).backward()
    lattq.ungroup_projections(block)
    xr = xg.detach().clone().requires_grad_(True)
    (q(xr).sum() + 2 * k(xr).sum()).backward()
    assert torch.equal(xg.grad, xr.grad)


def test_group_projections_partial_and_mismatched(native, gen):
    _, mods = _group_layers(gen, ns=(32, 48), bias=(False, False))
    other = _module_from_layer(make_layer(64, 512, gen))
    block = torch.nn.Module()
    block.q_proj, block.k_proj, block.v_proj = mods[0], other, torch.nn.Linear(256, 8)
    block.gate_proj, block.up_proj = mods[1], torch.nn.Linear(256, 8)
    assert lattq.group_projections(block) == 0  # q alone with in_features 256; gate alone
    block.v_proj = _module_from_layer(make_layer(24, 256, gen))
    assert lattq.group_projections(block) == 1  # q and v (k reads another width)
    assert "_lattq_shared" not in other.__dict__
    with pytest.raises(TypeError, match="torch.nn.Module"):
        lattq.group_projections([mods[0]])
    with pytest.raises(TypeError, match="torch.nn.Module"):
        lattq.ungroup_projections(None)
    with pytest.raises(ValueError, match="at least two child names"):
        lattq.group_projections(block, groups=("q_proj", "k_proj"))  # a tuple of names, not a tuple of groups
    assert lattq.group_projections(block, groups=[["gate_proj", "v_proj"]]) == 0  # v is grouped already
    lattq.ungroup_projections(block)
    assert lattq.group_projections(block, groups=[["gate_proj", "v_proj"]]) == 1
