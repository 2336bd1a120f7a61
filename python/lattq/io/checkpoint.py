"""lattq checkpoints (docs/format.md §5, docs/checkpoints.md): atomic save, validate-first load.

A checkpoint is a Hugging Face model directory:

- ``config.json``: the model config plus ``quantization_config`` = ``{"quant_method": "lattq",
  "format_version": 1, "config": <LattqConfig dict or {}>, "layers": {module: {bits, dim, n, k,
  had_in, had_out, su_format, sv_format, bias}}}``;
- ``model.safetensors`` (or shards ``model-0000i-of-0000n.safetensors`` + ``model.safetensors.index.json``)
  holding, per quantized module ``P``: ``P.codes``, ``P.A``, ``P.b``, ``P.su``, ``P.sv``
  (+ ``P.su_scale`` / ``P.sv_scale`` for q8/sign formats, + ``P.bias``), and every other tensor of
  the model in full precision (embeddings, norms, LM head; tied weights stored once);
- tokenizer and generation config files when given.

``save_quantized`` writes into a temporary directory next to the target, fsyncs every file and the
directory, then renames it into place: an interrupted save never leaves a half-written checkpoint at
the target path.  ``load_quantized`` validates config, format version, layer map and every
safetensors header, and checks each expected tensor's presence, dtype and shape (and that no tensor
is unexpected) BEFORE any weight is loaded.  Only JSON and safetensors are read: no pickle, no
remote code.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path

import torch

from ..format import FORMAT_VERSION, SCALE_FORMATS, LayerDesc, layer_bits
from .safetensors_header import ST_DTYPES, TORCH_TO_ST, CheckpointError, TensorInfo, read_header

QUANT_METHOD = "lattq"
SUPPORTED_FORMAT_VERSIONS = (FORMAT_VERSION,)
LAYER_FIELDS = ("bits", "dim", "n", "k", "had_in", "had_out", "su_format", "sv_format", "bias")
WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"
MAX_CONFIG_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_SHARD_BYTES = 4 * 1024**3
_MODULE_NAME = re.compile(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$")
_SHARD_NAME = re.compile(r"^[A-Za-z0-9_.\-]+\.safetensors$")
FLOAT_ST_DTYPES = ("F32", "F16", "BF16", "F64")


# ----------------------------------------------------------------------------------------------
# quantization_config: construction and validation
# ----------------------------------------------------------------------------------------------


def _lattice_linear_cls():
    from ..nn import LatticeLinear  # lazy: io must import without the native module being built

    return LatticeLinear


def layer_entry(module) -> dict:
    """The ``layers`` map entry of one LatticeLinear module."""
    d: LayerDesc = module.desc
    return {
        "bits": int(d.bits),
        "dim": int(d.dim),
        "n": int(d.n),
        "k": int(d.k),
        "had_in": int(d.had_in),
        "had_out": int(d.had_out),
        "su_format": str(module.su_format),
        "sv_format": str(module.sv_format),
        "bias": getattr(module, "bias", None) is not None,
    }


def quantized_modules(model) -> dict:
    """{module name: LatticeLinear} of ``model``, in module order."""
    cls = _lattice_linear_cls()
    return {name: m for name, m in model.named_modules() if isinstance(m, cls)}


def _config_dict(config) -> dict:
    if config is None:
        return {}
    if isinstance(config, dict):
        return dict(config)
    if hasattr(config, "to_dict"):
        return config.to_dict()
    raise TypeError(f"config must be a LattqConfig, a dict or None, got {type(config).__name__}")


def build_quantization_config(layers: dict, config=None, extra: dict | None = None) -> dict:
    qc = {
        "quant_method": QUANT_METHOD,
        "format_version": FORMAT_VERSION,
        "config": _config_dict(config),
        "layers": {name: dict(ent) for name, ent in layers.items()},
    }
    if extra:
        for k, v in extra.items():
            if k in qc:
                raise ValueError(f"extra quantization_config key {k!r} collides with a reserved key")
            qc[k] = v
    validate_quantization_config(qc)
    return qc


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def validate_layer_entry(name: str, ent, where: str = "quantization_config") -> LayerDesc:
    if not isinstance(name, str) or not _MODULE_NAME.match(name):
        raise CheckpointError(f"{where}: invalid module name {name!r} in 'layers'")
    if not isinstance(ent, dict):
        raise CheckpointError(f"{where}: layers[{name!r}] must be an object, got {type(ent).__name__}")
    missing = [f for f in LAYER_FIELDS if f not in ent]
    extra = [f for f in ent if f not in LAYER_FIELDS]
    if missing or extra:
        raise CheckpointError(f"{where}: layers[{name!r}] missing fields {missing} / unknown fields {extra}")
    for f in ("bits", "dim", "n", "k", "had_in", "had_out"):
        if not _is_int(ent[f]):
            raise CheckpointError(f"{where}: layers[{name!r}].{f} must be an integer, got {ent[f]!r}")
    for f in ("su_format", "sv_format"):
        if ent[f] not in SCALE_FORMATS:
            raise CheckpointError(f"{where}: layers[{name!r}].{f}={ent[f]!r} is not one of {SCALE_FORMATS}")
    if not isinstance(ent["bias"], bool):
        raise CheckpointError(f"{where}: layers[{name!r}].bias must be true/false, got {ent['bias']!r}")
    desc = LayerDesc(ent["bits"], ent["dim"], ent["n"], ent["k"], ent["had_in"], ent["had_out"])
    try:
        desc.validate()
    except ValueError as e:
        raise CheckpointError(f"{where}: layers[{name!r}]: {e}") from None
    return desc


def validate_quantization_config(qc, where: str = "quantization_config") -> dict:
    """Check a quantization_config dict; returns {module name: LayerDesc}."""
    if not isinstance(qc, dict):
        raise CheckpointError(f"{where} must be an object, got {type(qc).__name__}")
    if qc.get("quant_method") != QUANT_METHOD:
        raise CheckpointError(f"{where}.quant_method is {qc.get('quant_method')!r}, expected {QUANT_METHOD!r}")
    ver = qc.get("format_version")
    if not _is_int(ver):
        raise CheckpointError(f"{where}.format_version must be an integer, got {ver!r}")
    if ver not in SUPPORTED_FORMAT_VERSIONS:
        raise CheckpointError(
            f"{where}.format_version={ver} is not supported by this lattq (supports {list(SUPPORTED_FORMAT_VERSIONS)}); "
            "upgrade lattq to read it"
        )
    layers = qc.get("layers")
    if not isinstance(layers, dict) or not layers:
        raise CheckpointError(f"{where}.layers must be a non-empty object mapping module names to layer descriptions")
    if not isinstance(qc.get("config", {}), dict):
        raise CheckpointError(f"{where}.config must be an object")
    return {name: validate_layer_entry(name, ent, where) for name, ent in layers.items()}


def _scale_tensors(prefix: str, fmt: str, length: int) -> dict:
    if fmt == "f32":
        return {prefix: ("F32", (length,))}
    if fmt == "f16":
        return {prefix: ("F16", (length,))}
    if fmt == "q8":
        return {prefix: ("I8", (length,)), prefix + "_scale": ("F32", (1,))}
    return {prefix: ("U8", ((length + 7) // 8,)), prefix + "_scale": ("F32", (1,))}


def expected_layer_tensors(name: str, ent: dict) -> dict[str, tuple[str, tuple[int, ...]]]:
    """{tensor name: (safetensors dtype, shape)} that module ``name`` must have in the checkpoint."""
    n, k, bits, d = ent["n"], ent["k"], ent["bits"], ent["dim"]
    out = {
        f"{name}.codes": ("U8", (n, k * bits // 8)),
        f"{name}.A": ("F32", (d, d)),
        f"{name}.b": ("F32", (d,)),
    }
    for key, val in _scale_tensors(f"{name}.su", ent["su_format"], k).items():
        out[key] = val
    for key, val in _scale_tensors(f"{name}.sv", ent["sv_format"], n).items():
        out[key] = val
    if ent["bias"]:
        out[f"{name}.bias"] = ("F32", (n,))
    return out


def check_layer_tensors(layers: dict, tensors: dict[str, TensorInfo] | dict[str, tuple[str, tuple]]) -> None:
    """Every expected quantized tensor present with the right dtype and shape; nothing else under a
    quantized module's prefix.  ``tensors`` maps names to TensorInfo or (dtype, shape)."""

    def sig(v):
        return (v.dtype, tuple(v.shape)) if isinstance(v, TensorInfo) else (v[0], tuple(v[1]))

    def where(key):
        v = tensors[key]
        return f" (in {Path(v.file).name})" if isinstance(v, TensorInfo) else ""

    for name, ent in layers.items():
        exp = expected_layer_tensors(name, ent)
        for key, (dt, shape) in exp.items():
            if key not in tensors:
                raise CheckpointError(f"missing tensor {key!r} for quantized layer {name!r}")
            got_dt, got_shape = sig(tensors[key])
            if got_dt != dt:
                raise CheckpointError(f"tensor {key!r}{where(key)} has dtype {got_dt}, expected {dt}")
            if got_shape != shape:
                raise CheckpointError(f"tensor {key!r}{where(key)} has shape {list(got_shape)}, expected {list(shape)}")
        pref = name + "."
        for key in tensors:
            if key.startswith(pref) and key not in exp and "." not in key[len(pref) :]:
                raise CheckpointError(f"unexpected tensor {key!r}{where(key)} for quantized layer {name!r}")


# ----------------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------------


def read_config(path: str | os.PathLike) -> dict:
    """config.json of a checkpoint directory, parsed (size-limited, JSON only)."""
    p = Path(path)
    if not p.is_dir():
        raise CheckpointError(f"checkpoint directory {str(p)!r} does not exist")
    cfg_path = p / "config.json"
    if not cfg_path.is_file():
        raise CheckpointError(f"{str(p)!r} has no config.json (not a checkpoint directory)")
    if cfg_path.stat().st_size > MAX_CONFIG_BYTES:
        raise CheckpointError(f"config.json is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f"config.json is not valid JSON: {e}") from None
    if not isinstance(cfg, dict):
        raise CheckpointError("config.json must hold a JSON object")
    if "quantization_config" not in cfg:
        raise CheckpointError(f"config.json in {str(p)!r} has no quantization_config (not a lattq checkpoint)")
    return cfg


def weight_files(path: str | os.PathLike) -> list[Path]:
    """The safetensors files of a checkpoint directory (single file or index + shards)."""
    p = Path(path)
    idx = p / INDEX_NAME
    single = p / WEIGHTS_NAME
    if idx.is_file():
        try:
            index = json.loads(idx.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise CheckpointError(f"{INDEX_NAME} is not valid JSON: {e}") from None
        wm = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(wm, dict) or not wm:
            raise CheckpointError(f"{INDEX_NAME} has no weight_map")
        files = []
        for key, fn in wm.items():
            if not isinstance(fn, str) or not _SHARD_NAME.match(fn):
                raise CheckpointError(f"{INDEX_NAME}: tensor {key!r} maps to an invalid shard name {fn!r}")
            if fn not in files:
                files.append(fn)
        out = []
        for fn in files:
            f = p / fn
            if not f.is_file():
                raise CheckpointError(f"{INDEX_NAME} names shard {fn!r}, which does not exist")
            out.append(f)
        return out
    if single.is_file():
        return [single]
    raise CheckpointError(f"{str(p)!r} has neither {WEIGHTS_NAME} nor {INDEX_NAME}")


def read_all_headers(path: str | os.PathLike) -> dict[str, TensorInfo]:
    """Validated headers of every weight file, merged; a tensor in two files is an error."""
    p = Path(path)
    files = weight_files(p)
    merged: dict[str, TensorInfo] = {}
    for f in files:
        tensors, _meta = read_header(f)
        for name, info in tensors.items():
            if name in merged:
                raise CheckpointError(f"tensor {name!r} appears in both {Path(merged[name].file).name} and {f.name}")
            merged[name] = info
    idx = p / INDEX_NAME
    if idx.is_file():
        wm = json.loads(idx.read_text(encoding="utf-8"))["weight_map"]
        for name, fn in wm.items():
            if name not in merged or Path(merged[name].file).name != fn:
                raise CheckpointError(f"{INDEX_NAME} says tensor {name!r} is in {fn!r}, but it is not there")
        for name, info in merged.items():
            if name not in wm:
                raise CheckpointError(f"tensor {name!r} in {Path(info.file).name} is not listed in {INDEX_NAME}")
    return merged


def validate_checkpoint(path: str | os.PathLike) -> tuple[dict, dict[str, TensorInfo]]:
    """Validate everything that can be checked without building the model.

    Returns ``(config dict, tensors)``.  Raises CheckpointError with a message naming the problem.
    """
    cfg = read_config(path)
    qc = cfg["quantization_config"]
    validate_quantization_config(qc)
    tensors = read_all_headers(path)
    check_layer_tensors(qc["layers"], tensors)
    return cfg, tensors


def check_against_model(model, layers: dict, tensors: dict[str, TensorInfo]) -> None:
    """Compare the checkpoint with a (meta-device) skeleton of the architecture: every quantized
    module must be a Linear of the right shape, and every other tensor must be exactly the
    skeleton's non-quantized tensors (tied output embeddings may be absent), floating point, right
    shape."""
    modules = dict(model.named_modules())
    for name, ent in layers.items():
        m = modules.get(name)
        if m is None:
            raise CheckpointError(f"quantized layer {name!r} is not a module of the {type(model).__name__} architecture")
        if isinstance(m, torch.nn.Linear):
            shape_ok = m.in_features == ent["k"] and m.out_features == ent["n"]
            if shape_ok and (m.bias is not None) != ent["bias"]:
                raise CheckpointError(
                    f"quantized layer {name!r}: checkpoint has bias={ent['bias']}, the architecture's Linear has bias={m.bias is not None}"
                )
            if not shape_ok:
                raise CheckpointError(
                    f"quantized layer {name!r}: checkpoint says n={ent['n']}, k={ent['k']}, but the architecture has "
                    f"out_features={m.out_features}, in_features={m.in_features}"
                )
        elif not isinstance(m, _lattice_linear_cls()):
            raise CheckpointError(f"quantized layer {name!r} is a {type(m).__name__} in the architecture, not a Linear")
    expected = {}
    for key, t in model.state_dict(keep_vars=True).items():
        if key.rpartition(".")[0] in layers:
            continue
        expected[key] = tuple(t.shape)
    optional = set()
    try:
        out_emb, in_emb = model.get_output_embeddings(), model.get_input_embeddings()
        if out_emb is not None and in_emb is not None and out_emb.weight is in_emb.weight:
            for mname, mod in model.named_modules():
                if mod is out_emb:
                    optional.add(f"{mname}.weight")
    except (AttributeError, NotImplementedError):
        pass
    quant_keys = set()
    for name, ent in layers.items():
        quant_keys |= set(expected_layer_tensors(name, ent))
    for key, shape in expected.items():
        if key not in tensors:
            if key in optional:
                continue
            raise CheckpointError(f"missing tensor {key!r} (needed by the {type(model).__name__} architecture)")
        info = tensors[key]
        if info.dtype not in FLOAT_ST_DTYPES:
            raise CheckpointError(f"tensor {key!r} in {Path(info.file).name} has dtype {info.dtype}, expected a float type")
        if info.shape != shape:
            raise CheckpointError(f"tensor {key!r} in {Path(info.file).name} has shape {list(info.shape)}, expected {list(shape)}")
    for key, info in tensors.items():
        if key not in expected and key not in quant_keys:
            raise CheckpointError(f"unexpected tensor {key!r} in {Path(info.file).name}")


def read_layer_state(tensors: dict[str, TensorInfo], name: str, ent: dict, device="cpu") -> dict[str, torch.Tensor]:
    """Read the (already validated) tensors of quantized module ``name`` -> local state dict."""
    from safetensors import safe_open

    out = {}
    by_file: dict[str, list[str]] = {}
    for key in expected_layer_tensors(name, ent):
        by_file.setdefault(tensors[key].file, []).append(key)
    for fn, keys in by_file.items():
        with safe_open(fn, framework="pt", device=str(device)) as f:
            for key in keys:
                out[key[len(name) + 1 :]] = f.get_tensor(key)
    return out


# ----------------------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------------------


def _fsync_path(p: Path, directory: bool = False) -> None:
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    try:
        fd = os.open(p, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    cur = os.umask(0o022)
    os.umask(cur)
    return cur


def _dedupe_tied(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop later keys that are the very same tensor view as an earlier key (tied weights)."""
    seen = {}
    out = {}
    for key, t in sd.items():
        if t.device.type == "meta":
            raise ValueError(f"tensor {key!r} is on the meta device (not materialised); cannot save")
        ident = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)
        if t.numel() > 0 and ident in seen:
            continue
        seen[ident] = key
        out[key] = t
    return out


def _shards(sd: dict[str, torch.Tensor], max_bytes: int) -> list[dict[str, torch.Tensor]]:
    shards, cur, size = [], {}, 0
    for key, t in sd.items():
        nb = t.numel() * t.element_size()
        if cur and size + nb > max_bytes:
            shards.append(cur)
            cur, size = {}, 0
        cur[key] = t
        size += nb
    if cur or not shards:
        shards.append(cur)
    return shards


def model_state_for_save(model) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors to write, layers map) for a model containing LatticeLinear modules."""
    qmods = quantized_modules(model)
    if not qmods:
        raise ValueError("model has no LatticeLinear modules: quantize it first (lattq.quantize) before save_quantized")
    layers = {name: layer_entry(m) for name, m in qmods.items()}
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    sd = _dedupe_tied(sd)
    sd = {k: v.to("cpu").contiguous() for k, v in sd.items()}
    sigs = {}
    for k, v in sd.items():
        if v.dtype not in TORCH_TO_ST:
            raise ValueError(f"tensor {k!r} has dtype {v.dtype}, which safetensors cannot store")
        sigs[k] = (TORCH_TO_ST[v.dtype], tuple(v.shape))
    try:
        check_layer_tensors(layers, sigs)
    except CheckpointError as e:  # the module's state_dict does not follow docs/format.md §5
        raise ValueError(f"LatticeLinear state_dict does not match the checkpoint format: {e}") from None
    for name in layers:
        for key in expected_layer_tensors(name, layers[name]):
            t = sd[key]
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise ValueError(f"tensor {key!r} of quantized layer {name!r} contains NaN or Inf; refusing to save")
    return sd, layers


def model_config_dict(model) -> dict:
    cfg = model.config.to_dict() if hasattr(model, "config") and hasattr(model.config, "to_dict") else {}
    cfg.pop("quantization_config", None)
    if "architectures" not in cfg or not cfg["architectures"]:
        cfg["architectures"] = [type(model).__name__]
    return cfg


def _existing_lattq_config(model) -> dict | None:
    qc = getattr(getattr(model, "config", None), "quantization_config", None)
    if qc is None:
        return None
    if hasattr(qc, "to_dict"):
        qc = qc.to_dict()
    if isinstance(qc, dict) and qc.get("quant_method") == QUANT_METHOD:
        return qc
    return None


def save_quantized(
    model,
    path: str | os.PathLike,
    tokenizer=None,
    config=None,
    *,
    overwrite: bool = False,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
    extra_files: dict[str, str | bytes] | None = None,
    _write_hook=None,
) -> Path:
    """Write ``model`` (with LatticeLinear modules) as a lattq checkpoint directory at ``path``, atomically.

    ``config``: the LattqConfig (or dict) used to quantize; defaults to ``model.lattq_config`` or the
    config of a loaded checkpoint.  ``extra_files``: {file name: content} written into the directory
    too (e.g. a report).  Raises FileExistsError if ``path`` exists and ``overwrite`` is False.
    """
    from safetensors.torch import save_file

    target = Path(path).expanduser().resolve()
    if target.exists() and not overwrite:
        raise FileExistsError(f"{str(target)!r} already exists (pass overwrite=True / --overwrite to replace it)")
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"{str(target)!r} exists and is not a directory")
    if max_shard_bytes <= 0:
        raise ValueError(f"max_shard_bytes must be positive, got {max_shard_bytes}")

    sd, layers = model_state_for_save(model)
    prev = _existing_lattq_config(model)
    if config is None:
        config = getattr(model, "lattq_config", None)
        if config is None and prev is not None:
            config = prev.get("config", {})
    qc = build_quantization_config(layers, config)
    cfg = model_config_dict(model)
    cfg["quantization_config"] = qc

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        shards = _shards(sd, max_shard_bytes)
        written = []
        if len(shards) == 1:
            names = [WEIGHTS_NAME]
        else:
            names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
        weight_map = {}
        for fname, shard in zip(names, shards):
            save_file(shard, str(tmp / fname), metadata={"format": "pt", "lattq_format_version": str(FORMAT_VERSION)})
            written.append(fname)
            for key in shard:
                weight_map[key] = fname
            if _write_hook is not None:  # test hook: simulate a failure mid-write
                _write_hook(tmp, fname)
        if len(shards) > 1:
            total = sum(t.numel() * t.element_size() for t in sd.values())
            (tmp / INDEX_NAME).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2, default=str) + "\n")  # layers in model order
        gen = getattr(model, "generation_config", None)
        if gen is not None and hasattr(gen, "to_json_file"):
            try:
                gen.to_json_file(str(tmp / "generation_config.json"))
            except Exception:  # noqa: BLE001 - an odd generation config must not block saving weights
                pass
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
        for fname, content in (extra_files or {}).items():
            if "/" in fname or fname.startswith("."):
                raise ValueError(f"extra file name {fname!r} must be a plain file name")
            mode = "wb" if isinstance(content, bytes) else "w"
            with open(tmp / fname, mode) as f:
                f.write(content)
        mask = _umask()
        os.chmod(tmp, 0o777 & ~mask)  # mkdtemp creates 0700: give the checkpoint normal permissions
        for f in tmp.rglob("*"):
            if f.is_file():
                os.chmod(f, 0o666 & ~mask)
                _fsync_path(f)
        _fsync_path(tmp, directory=True)
        # re-validate what we wrote before publishing it
        validate_checkpoint(tmp)
        if target.exists():
            old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(target, old)
            try:
                os.rename(tmp, target)
            except BaseException:
                os.rename(old, target)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, target)
        _fsync_path(target.parent, directory=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


# ----------------------------------------------------------------------------------------------
# loading
# ----------------------------------------------------------------------------------------------


def load_quantized(path: str | os.PathLike, device: str | torch.device = "cpu", dtype: torch.dtype | None = None):
    """Validate the checkpoint at ``path`` completely, then build the model with LatticeLinear modules.

    ``dtype``: dtype of the non-quantized tensors (default: as stored).  Raises CheckpointError with
    a clear message on any invalid, truncated or forged input.
    """
    from .hf import register

    register()
    cfg, tensors = validate_checkpoint(path)
    layers = cfg["quantization_config"]["layers"]

    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    mt = cfg.get("model_type")
    if mt not in CONFIG_MAPPING:
        raise CheckpointError(f"config.json model_type={mt!r} is not an architecture transformers knows")
    from ..models import check_architecture

    hf_cfg = AutoConfig.from_pretrained(str(path), trust_remote_code=False)
    check_architecture(hf_cfg)
    # meta-device skeleton: compare every tensor name/shape before reading any weight
    skel_cfg = AutoConfig.from_pretrained(str(path), trust_remote_code=False)
    if hasattr(skel_cfg, "quantization_config"):
        del skel_cfg.quantization_config
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(skel_cfg, trust_remote_code=False)
    check_against_model(skeleton, layers, tensors)
    del skeleton

    kw = {"trust_remote_code": False, "use_safetensors": True}
    if dtype is not None:
        kw["dtype"] = dtype
    else:
        quant_keys = set()
        for name, ent in layers.items():
            quant_keys |= set(expected_layer_tensors(name, ent))
        other = [t for k, t in tensors.items() if k not in quant_keys and t.dtype in FLOAT_ST_DTYPES]
        # the dtype of the largest full-precision tensor (the embedding, usually)
        kw["dtype"] = max(other, key=lambda t: t.end - t.begin).torch_dtype if other else torch.float32
    model, info = AutoModelForCausalLM.from_pretrained(str(path), output_loading_info=True, **kw)
    problems = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs")}
    if problems:
        raise CheckpointError(f"transformers reported loading problems for {str(path)!r}: {problems}")
    qmods = quantized_modules(model)
    if set(qmods) != set(layers):
        raise CheckpointError(
            f"after loading, LatticeLinear modules {sorted(set(qmods) ^ set(layers))[:5]} do not match the checkpoint's layers map"
        )
    return model.to(device).eval()


def natural_key(name: str) -> list:
    """Sort key: the numbers in a module name (layers.2 before layers.10); a stable sort keeps the
    stored order of the layers of one block."""
    return [int(t) for t in re.findall(r"\d+", name)]


def checkpoint_summary(path: str | os.PathLike) -> dict:
    """Format, bpw and per-layer table of a checkpoint, from its config and headers only."""
    cfg, tensors = validate_checkpoint(path)
    qc = cfg["quantization_config"]
    rows = []
    total_bits = 0
    total_w = 0
    for name, ent in qc["layers"].items():
        desc = LayerDesc(ent["bits"], ent["dim"], ent["n"], ent["k"], ent["had_in"], ent["had_out"])
        bits = layer_bits(desc, ent["su_format"], ent["sv_format"], ent["bias"])
        total_bits += bits
        total_w += ent["n"] * ent["k"]
        rows.append({"name": name, **ent, "bpw": bits / (ent["n"] * ent["k"]), "bytes": math.ceil(bits / 8)})
    rows.sort(key=lambda r: natural_key(r["name"]))
    quant_keys = set()
    for name, ent in qc["layers"].items():
        quant_keys |= set(expected_layer_tensors(name, ent))
    other = {k: v for k, v in tensors.items() if k not in quant_keys}
    other_bytes = sum(v.end - v.begin for v in other.values())
    files = weight_files(path)
    return {
        "path": str(Path(path)),
        "quant_method": qc["quant_method"],
        "format_version": qc["format_version"],
        "model_type": cfg.get("model_type"),
        "architectures": cfg.get("architectures"),
        "config": qc.get("config", {}),
        "n_quantized_layers": len(rows),
        "quantized_weights": total_w,
        "quantized_bits": total_bits,
        "bpw": total_bits / total_w if total_w else float("nan"),
        "full_precision_tensors": len(other),
        "full_precision_params": sum(math.prod(v.shape) for v in other.values()),
        "full_precision_bytes": other_bytes,
        "files": [{"name": f.name, "bytes": f.stat().st_size} for f in files],
        "total_file_bytes": sum(f.stat().st_size for f in files),
        "layers": rows,
    }
