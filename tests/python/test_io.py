"""Checkpoints: bit-exact round trip, file content against an independent NumPy decoder of
docs/format.md §5, atomic writes, and rejection of truncated / forged / inconsistent checkpoints.

Tolerances: round trips are bit-exact (torch.equal); the file-content check compares the dense weight
decoded from the raw file bytes in float64 with the module's float32 dense weight (numeric, 1e-5 relative).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("safetensors")

from conftest import np_block_hadamard, np_fields  # noqa: E402
from test_io_tiny import quantize_rtn, tiny_llama, tiny_tokenizer  # noqa: E402

import lattq  # noqa: E402
from lattq.io import CheckpointError, load_quantized, save_quantized, validate_checkpoint  # noqa: E402
from lattq.nn import LatticeLinear  # noqa: E402


# ------------------------------------------------------------------------------------------------
# fixtures and independent helpers
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def _base(tmp_path_factory):
    """One quantized tiny model and its checkpoint per module (building them dominates the run time)."""
    from conftest import SEED

    m = quantize_rtn(tiny_llama(seed=SEED % 1000), seed=SEED % 1000)
    path = save_quantized(m, tmp_path_factory.mktemp("base") / "ck")
    return m, path


@pytest.fixture
def qmodel(_base):
    return copy.deepcopy(_base[0])


@pytest.fixture
def ckpt(tmp_path, _base):
    return Path(shutil.copytree(_base[1], tmp_path / "ck"))


def _tokens(seed, n=24):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, 300, (2, n), generator=g)


def raw_read(path: Path) -> tuple[dict, bytes]:
    """Independent safetensors reader: (header dict, data bytes)."""
    b = path.read_bytes()
    (n,) = struct.unpack("<Q", b[:8])
    return json.loads(b[8 : 8 + n]), b[8 + n :]


def raw_write(path: Path, header: dict, data: bytes, pad: bool = True) -> None:
    h = json.dumps(header).encode()
    if pad:
        h += b" " * ((-len(h)) % 8)
    path.write_bytes(struct.pack("<Q", len(h)) + h + data)


def raw_tensor(header: dict, data: bytes, name: str) -> np.ndarray:
    ent = header[name]
    dt = {"U8": np.uint8, "I8": np.int8, "F16": np.float16, "F32": np.float32}[ent["dtype"]]
    b0, b1 = ent["data_offsets"]
    return np.frombuffer(data[b0:b1], dtype=dt).reshape(ent["shape"])


def np_scale(header, data, key, fmt, length) -> np.ndarray:
    """docs/format.md §5 storage formats, decoded with NumPy (independent of lattq.scales)."""
    v = raw_tensor(header, data, key)
    if fmt in ("f32", "f16"):
        return v.astype(np.float64)
    s = float(raw_tensor(header, data, key + "_scale")[0])
    if fmt == "q8":
        return v.astype(np.float64) * s
    bits = np.unpackbits(v, bitorder="little")[:length]
    return np.where(bits == 1, -s, s).astype(np.float64)


def rewrite_tensor(path: Path, name: str, new: np.ndarray | None, dtype_str: str | None = None) -> None:
    """Re-serialise a safetensors file with tensor ``name`` replaced (None: removed), offsets recomputed."""
    header, data = raw_read(path)
    meta = header.pop("__metadata__", None)
    items = []
    for k, ent in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        b0, b1 = ent["data_offsets"]
        items.append((k, ent["dtype"], ent["shape"], data[b0:b1]))
    if new is None:
        items = [it for it in items if it[0] != name]
    else:
        dt = dtype_str or {np.dtype(np.uint8): "U8", np.dtype(np.int8): "I8", np.dtype(np.float32): "F32", np.dtype(np.float16): "F16"}[new.dtype]
        items = [it for it in items if it[0] != name] + [(name, dt, list(new.shape), new.tobytes())]
    out_h, blob, pos = {}, b"", 0
    if meta is not None:
        out_h["__metadata__"] = meta
    for k, dt, shape, raw in items:
        out_h[k] = {"dtype": dt, "shape": shape, "data_offsets": [pos, pos + len(raw)]}
        blob += raw
        pos += len(raw)
    raw_write(path, out_h, blob)


def first_layer(ck: Path) -> tuple[str, dict]:
    qc = json.loads((ck / "config.json").read_text())["quantization_config"]
    name = next(iter(qc["layers"]))
    return name, qc["layers"][name]


# ------------------------------------------------------------------------------------------------
# round trip
# ------------------------------------------------------------------------------------------------


def test_roundtrip_bit_exact(tmp_path, qmodel, seed):
    x = _tokens(seed)
    with torch.no_grad():
        ref = qmodel(x).logits
    path = save_quantized(qmodel, tmp_path / "ck")
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "generation_config.json", "model.safetensors"]
    loaded = load_quantized(path)
    qa = {n: m for n, m in qmodel.named_modules() if isinstance(m, LatticeLinear)}
    qb = {n: m for n, m in loaded.named_modules() if isinstance(m, LatticeLinear)}
    assert list(qa) == list(qb) and len(qa) == 14
    for name, a in qa.items():
        b = qb[name]
        assert (a.desc, a.su_format, a.sv_format) == (b.desc, b.su_format, b.sv_format), name
        assert torch.equal(a.codes, b.codes), name  # packed kernel layout, bit-exact
        for t in ("A", "b", "su", "sv"):
            assert torch.equal(getattr(a, t), getattr(b, t)), f"{name}.{t}"
    sa, sb = qmodel.state_dict(), loaded.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]), k
    with torch.no_grad():
        out = loaded(x).logits
    assert torch.equal(out, ref)


def test_roundtrip_with_bias_and_untied_head(tmp_path, seed):
    m = quantize_rtn(tiny_llama(seed=seed % 997, bias=True, tie=False), seed=3)
    assert all(mod.bias is not None for mod in m.modules() if isinstance(mod, LatticeLinear))
    x = _tokens(seed)
    with torch.no_grad():
        ref = m(x).logits
    loaded = load_quantized(save_quantized(m, tmp_path / "ck"))
    with torch.no_grad():
        assert torch.equal(loaded(x).logits, ref)
    layers = json.loads((tmp_path / "ck" / "config.json").read_text())["quantization_config"]["layers"]
    assert all(ent["bias"] is True for ent in layers.values())


def test_quantization_config_contents(ckpt, qmodel):
    cfg = json.loads((ckpt / "config.json").read_text())
    qc = cfg["quantization_config"]
    assert qc["quant_method"] == "lattq" and qc["format_version"] == 1
    assert isinstance(qc["config"], dict)
    mods = {n: m for n, m in qmodel.named_modules() if isinstance(m, LatticeLinear)}
    assert list(qc["layers"]) == list(mods)  # model order
    for name, m in mods.items():
        ent = qc["layers"][name]
        assert ent == {
            "bits": m.desc.bits, "dim": m.desc.dim, "n": m.desc.n, "k": m.desc.k, "had_in": m.desc.had_in,
            "had_out": m.desc.had_out, "su_format": m.su_format, "sv_format": m.sv_format, "bias": False,
        }
    # every storage format is exercised by the fixture
    assert {e["su_format"] for e in qc["layers"].values()} == {"f32", "f16", "q8", "sign"}


def test_file_content_matches_format_spec(ckpt, qmodel):
    """Decode the raw file bytes with NumPy per docs/format.md §3/§5 and compare with the module's weight."""
    header, data = raw_read(ckpt / "model.safetensors")
    layers = json.loads((ckpt / "config.json").read_text())["quantization_config"]["layers"]
    mods = dict(qmodel.named_modules())
    for name, ent in layers.items():
        codes = raw_tensor(header, data, f"{name}.codes")
        assert header[f"{name}.codes"]["dtype"] == "U8"
        A = raw_tensor(header, data, f"{name}.A").astype(np.float64)
        b = raw_tensor(header, data, f"{name}.b").astype(np.float64)
        su = np_scale(header, data, f"{name}.su", ent["su_format"], ent["k"])
        sv = np_scale(header, data, f"{name}.sv", ent["sv_format"], ent["n"])
        z = np_fields(codes, ent["bits"], ent["k"])
        w_hat = (z.reshape(ent["n"], -1, ent["dim"]).astype(np.float64) @ A.T + b).reshape(ent["n"], ent["k"])
        w = np_block_hadamard(w_hat, ent["had_in"])
        w = np_block_hadamard(w.T, ent["had_out"]).T
        w = sv[:, None] * w * su[None, :]
        got = mods[name].dense_weight().double().numpy()
        err = np.linalg.norm(got - w) / np.linalg.norm(w)
        assert err < 1e-5, (name, err)


def test_tied_embedding_stored_once(ckpt):
    header, _ = raw_read(ckpt / "model.safetensors")
    assert "model.embed_tokens.weight" in header
    assert "lm_head.weight" not in header


def test_sharded_roundtrip_and_index(tmp_path, qmodel, seed):
    x = _tokens(seed)
    with torch.no_grad():
        ref = qmodel(x).logits
    path = save_quantized(qmodel, tmp_path / "ck", max_shard_bytes=20_000)
    shards = sorted(p.name for p in path.glob("*.safetensors"))
    assert len(shards) > 2 and (path / "model.safetensors.index.json").is_file()
    with torch.no_grad():
        assert torch.equal(load_quantized(path)(x).logits, ref)
    # an index that lies about where a tensor is
    idx = json.loads((path / "model.safetensors.index.json").read_text())
    key = next(k for k in idx["weight_map"] if k.endswith(".codes"))
    other = next(s for s in shards if s != idx["weight_map"][key])
    idx["weight_map"][key] = other
    (path / "model.safetensors.index.json").write_text(json.dumps(idx))
    with pytest.raises(CheckpointError, match="index"):
        load_quantized(path)


def test_save_refuses_existing_and_overwrites_on_request(tmp_path, qmodel):
    path = save_quantized(qmodel, tmp_path / "ck")
    with pytest.raises(FileExistsError, match="already exists"):
        save_quantized(qmodel, path)
    (path / "stale.txt").write_text("old")
    save_quantized(qmodel, path, overwrite=True)
    assert not (path / "stale.txt").exists()
    validate_checkpoint(path)
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]


def test_save_requires_quantized_model(tmp_path):
    with pytest.raises(ValueError, match="no LatticeLinear"):
        save_quantized(tiny_llama(), tmp_path / "ck")
    assert not (tmp_path / "ck").exists()


def test_save_rejects_nan_parameters(tmp_path, qmodel):
    mod = qmodel.model.layers[0].mlp.up_proj
    with torch.no_grad():
        mod.A[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        save_quantized(qmodel, tmp_path / "ck")
    assert list(tmp_path.iterdir()) == []


def test_save_with_tokenizer_and_extra_files(tmp_path, qmodel):
    tok = tiny_tokenizer()
    path = save_quantized(qmodel, tmp_path / "ck", tokenizer=tok, extra_files={"report.json": "{}\n"})
    names = {p.name for p in path.iterdir()}
    assert {"tokenizer.json", "report.json", "config.json", "model.safetensors"} <= names
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(str(path))("the river")["input_ids"] == tok("the river")["input_ids"]
    mode = path.stat().st_mode & 0o777
    assert mode & 0o500 == 0o500  # not the 0700-only default of a temp dir... owner can read/enter
    assert (path / "model.safetensors").stat().st_mode & 0o400


# ------------------------------------------------------------------------------------------------
# atomicity
# ------------------------------------------------------------------------------------------------


def test_interrupted_save_leaves_nothing(tmp_path, qmodel):
    calls = []

    def hook(tmp, fname):
        calls.append(fname)
        assert (tmp / fname).is_file()  # the shard is really half-way through the checkpoint
        raise KeyboardInterrupt("simulated interruption")

    with pytest.raises(KeyboardInterrupt):
        save_quantized(qmodel, tmp_path / "ck", max_shard_bytes=20_000, _write_hook=hook)
    assert calls, "hook was not called"
    assert list(tmp_path.iterdir()) == []  # neither the target nor a temporary directory


def test_interrupted_overwrite_keeps_old_checkpoint(tmp_path, qmodel, seed):
    path = save_quantized(qmodel, tmp_path / "ck")
    before = (path / "model.safetensors").read_bytes()

    def hook(tmp, fname):
        raise OSError("disk full (simulated)")

    with torch.no_grad():
        qmodel.model.layers[0].mlp.up_proj.A.mul_(2.0)
    with pytest.raises(OSError, match="disk full"):
        save_quantized(qmodel, path, overwrite=True, _write_hook=hook)
    assert (path / "model.safetensors").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]
    validate_checkpoint(path)


def test_tokenizer_failure_during_save_leaves_nothing(tmp_path, qmodel):
    class BadTok:
        def save_pretrained(self, d):
            Path(d, "tokenizer.json").write_text("{")
            raise RuntimeError("tokenizer exploded")

    with pytest.raises(RuntimeError, match="exploded"):
        save_quantized(qmodel, tmp_path / "ck", tokenizer=BadTok())
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------------
# truncated / forged / inconsistent files: clear errors, never a crash
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("keep", [0, 5, 8, 100, -1])
def test_truncated_safetensors(ckpt, keep):
    f = ckpt / "model.safetensors"
    b = f.read_bytes()
    f.write_bytes(b[:keep] if keep >= 0 else b[:-7])
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*(truncated|too short)"):
        load_quantized(ckpt)


def test_header_length_forged(ckpt):
    f = ckpt / "model.safetensors"
    b = bytearray(f.read_bytes())
    b[:8] = struct.pack("<Q", 2**62)
    f.write_bytes(bytes(b))
    with pytest.raises(CheckpointError, match="header length"):
        load_quantized(ckpt)


def test_header_not_json(ckpt):
    f = ckpt / "model.safetensors"
    header, data = raw_read(f)
    h = b"{not json" + b" " * 7
    f.write_bytes(struct.pack("<Q", len(h)) + h + data)
    with pytest.raises(CheckpointError, match="not valid UTF-8 JSON"):
        load_quantized(ckpt)


def test_huge_offsets(ckpt):
    f = ckpt / "model.safetensors"
    header, data = raw_read(f)
    name, _ = first_layer(ckpt)
    ent = header[f"{name}.codes"]
    size = ent["data_offsets"][1] - ent["data_offsets"][0]
    ent["data_offsets"] = [2**60, 2**60 + size]
    raw_write(f, header, data)
    with pytest.raises(CheckpointError, match=rf"{name}\.codes.*(past|data ends|overlaps|gap)"):
        load_quantized(ckpt)


def test_offsets_inconsistent_with_shape(ckpt):
    f = ckpt / "model.safetensors"
    header, data = raw_read(f)
    name, _ = first_layer(ckpt)
    header[f"{name}.A"]["shape"] = [4, 5]
    raw_write(f, header, data)
    with pytest.raises(CheckpointError, match=rf"{name}\.A.*needs"):
        load_quantized(ckpt)


def test_overlapping_tensors(ckpt):
    f = ckpt / "model.safetensors"
    header, data = raw_read(f)
    name, _ = first_layer(ckpt)
    a, bb = header[f"{name}.A"], header[f"{name}.b"]
    bb["data_offsets"] = [a["data_offsets"][0], a["data_offsets"][0] + 16]
    raw_write(f, header, data)
    with pytest.raises(CheckpointError, match="overlaps|gap"):
        load_quantized(ckpt)


def test_wrong_dtype(ckpt):
    f = ckpt / "model.safetensors"
    header, data = raw_read(f)
    name, _ = first_layer(ckpt)
    header[f"{name}.codes"]["dtype"] = "I8"
    raw_write(f, header, data)
    with pytest.raises(CheckpointError, match=rf"{name}\.codes.*dtype I8, expected U8"):
        load_quantized(ckpt)


def test_unknown_dtype(ckpt):
    f = ckpt / "model.safetensors"
    header, data = raw_read(f)
    name, _ = first_layer(ckpt)
    header[f"{name}.codes"]["dtype"] = "PICKLE"
    raw_write(f, header, data)
    with pytest.raises(CheckpointError, match="unknown dtype 'PICKLE'"):
        load_quantized(ckpt)


def test_wrong_shape(ckpt):
    f = ckpt / "model.safetensors"
    name, ent = first_layer(ckpt)
    header, data = raw_read(f)
    codes = raw_tensor(header, data, f"{name}.codes")
    rewrite_tensor(f, f"{name}.codes", np.ascontiguousarray(codes.reshape(-1, codes.shape[1] // 2)))
    with pytest.raises(CheckpointError, match=rf"{name}\.codes.*shape"):
        load_quantized(ckpt)


def test_missing_tensor(ckpt):
    name, _ = first_layer(ckpt)
    rewrite_tensor(ckpt / "model.safetensors", f"{name}.A", None)
    with pytest.raises(CheckpointError, match=rf"missing tensor '{name}\.A'"):
        load_quantized(ckpt)


def test_missing_full_precision_tensor(ckpt):
    rewrite_tensor(ckpt / "model.safetensors", "model.norm.weight", None)
    with pytest.raises(CheckpointError, match="missing tensor 'model.norm.weight'"):
        load_quantized(ckpt)


@pytest.mark.parametrize("extra", ["{layer}.weight", "{layer}.su_scale_extra", "model.layers.0.secret"])
def test_unexpected_tensor(ckpt, extra):
    name, ent = first_layer(ckpt)
    key = extra.format(layer=name)
    rewrite_tensor(ckpt / "model.safetensors", key, np.zeros((4,), np.float32))
    with pytest.raises(CheckpointError, match=f"unexpected tensor '{key}'"):
        load_quantized(ckpt)


def test_scale_tensor_of_wrong_format(ckpt):
    """A q8 scale stored without its _scale tensor (format says q8)."""
    layers = json.loads((ckpt / "config.json").read_text())["quantization_config"]["layers"]
    name = next(n for n, e in layers.items() if e["su_format"] == "q8")
    rewrite_tensor(ckpt / "model.safetensors", f"{name}.su_scale", None)
    with pytest.raises(CheckpointError, match=rf"missing tensor '{name}\.su_scale'"):
        load_quantized(ckpt)


def test_nan_in_stored_parameter(ckpt):
    name, ent = first_layer(ckpt)
    f = ckpt / "model.safetensors"
    header, data = raw_read(f)
    A = raw_tensor(header, data, f"{name}.A").copy()
    A[1, 2] = np.nan
    rewrite_tensor(f, f"{name}.A", A)
    with pytest.raises(CheckpointError, match=rf"'{name}\.A' contains NaN"):
        load_quantized(ckpt)


def _edit_config(ck: Path, fn) -> None:
    cfg = json.loads((ck / "config.json").read_text())
    fn(cfg)
    (ck / "config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda c: c["quantization_config"].update(format_version=2), "format_version=2 is not supported"),
        (lambda c: c["quantization_config"].update(format_version="1"), "format_version must be an integer"),
        (lambda c: c["quantization_config"].update(format_version=True), "format_version must be an integer"),
        (lambda c: c["quantization_config"].update(quant_method="gptq"), "quant_method is 'gptq'"),
        (lambda c: c["quantization_config"].pop("layers"), "layers must be a non-empty object"),
        (lambda c: c.pop("quantization_config"), "no quantization_config"),
        (lambda c: next(iter(c["quantization_config"]["layers"].values())).update(su_format="int4"), "su_format='int4'"),
        (lambda c: next(iter(c["quantization_config"]["layers"].values())).update(bits=2.0), "bits must be an integer"),
        (lambda c: next(iter(c["quantization_config"]["layers"].values())).update(had_in=3), "not a power of two"),
        (lambda c: next(iter(c["quantization_config"]["layers"].values())).pop("bias"), "missing fields \\['bias'\\]"),
        (lambda c: next(iter(c["quantization_config"]["layers"].values())).update(color="red"), "unknown fields \\['color'\\]"),
        (lambda c: c["quantization_config"]["layers"].update({"../evil": {}}), "invalid module name"),
    ],
)
def test_bad_quantization_config(ckpt, edit, match):
    _edit_config(ckpt, edit)
    with pytest.raises(CheckpointError, match=match):
        load_quantized(ckpt)


def test_layer_not_in_architecture(ckpt):
    """A consistent checkpoint (layers map + tensors) naming a module the architecture does not have."""
    name, ent = first_layer(ckpt)
    new = name.replace("layers.0", "layers.7")
    f = ckpt / "model.safetensors"
    header, data = raw_read(f)
    for k in list(header):
        if k.startswith(name + "."):
            header[new + k[len(name) :]] = header.pop(k)
    raw_write(f, header, data)
    _edit_config(ckpt, lambda c: c["quantization_config"]["layers"].update({new: c["quantization_config"]["layers"].pop(name)}))
    validate_checkpoint(ckpt)  # self-consistent ...
    with pytest.raises(CheckpointError, match=f"'{new}' is not a module"):
        load_quantized(ckpt)  # ... but not this architecture


def test_layer_shape_disagrees_with_architecture(ckpt):
    """n/k in the layers map and tensors agree with each other but not with config.json's architecture."""
    _edit_config(ckpt, lambda c: c.update(intermediate_size=c["intermediate_size"] * 2))
    with pytest.raises(CheckpointError, match="n=|shape"):
        load_quantized(ckpt)


def test_pickle_weights_are_never_read(ckpt):
    (ckpt / "model.safetensors").rename(ckpt / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="neither model.safetensors"):
        load_quantized(ckpt)


def test_not_a_directory(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_quantized(tmp_path / "nope")
    (tmp_path / "d").mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        load_quantized(tmp_path / "d")


def test_config_json_garbage(ckpt):
    (ckpt / "config.json").write_text("{\"a\": ")
    with pytest.raises(CheckpointError, match="config.json is not valid JSON"):
        load_quantized(ckpt)


def test_remote_code_is_never_used(ckpt, tmp_path):
    """auto_map pointing at code in the checkpoint directory is ignored, the code never runs."""
    marker = tmp_path / "ran"
    (ckpt / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    _edit_config(ckpt, lambda c: c.update(auto_map={"AutoModelForCausalLM": "evil.Evil", "AutoConfig": "evil.EvilConfig"}))
    try:
        load_quantized(ckpt)
    except Exception:  # noqa: BLE001 - refusing is fine too; running the code is not
        pass
    assert not marker.exists()


def test_header_reader_rejects_metadata_garbage(tmp_path):
    from lattq.io import read_header

    f = tmp_path / "x.safetensors"
    raw_write(f, {"__metadata__": {"a": 1}, "t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4)
    with pytest.raises(CheckpointError, match="__metadata__"):
        read_header(f)
    raw_write(f, {"t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 12)
    with pytest.raises(CheckpointError, match="trailing bytes"):
        read_header(f)
    raw_write(f, {"t": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\0" * 4)
    with pytest.raises(CheckpointError, match="non-negative"):
        read_header(f)
    raw_write(f, {"t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4], "x": 1}}, b"\0" * 4)
    with pytest.raises(CheckpointError, match="exactly dtype, shape, data_offsets"):
        read_header(f)
    raw_write(f, {"t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4)
    tensors, meta = read_header(f)
    assert tensors["t"].shape == (1,) and meta == {}


def test_checkpoint_summary_bpw(ckpt, qmodel):
    """bpw from the file alone equals the formula of docs/format.md §6 evaluated independently."""
    from lattq.io import checkpoint_summary

    s = checkpoint_summary(ckpt)
    bits = 0
    weights = 0
    for m in qmodel.modules():
        if isinstance(m, LatticeLinear):
            d = m.desc
            sb = {"f32": lambda L: 32 * L, "f16": lambda L: 16 * L, "q8": lambda L: 8 * L + 32, "sign": lambda L: 8 * -(-L // 8) + 32}
            bits += d.n * d.k * d.bits + 32 * (d.dim**2 + d.dim) + sb[m.su_format](d.k) + sb[m.sv_format](d.n)
            weights += d.n * d.k
    assert s["quantized_bits"] == bits and s["quantized_weights"] == weights
    assert s["bpw"] == pytest.approx(bits / weights, rel=1e-12)
    assert [r["name"] for r in s["layers"]][:2] == ["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj"]
