"""transformers integration: quantization config + HfQuantizer for ``quant_method: "lattq"``.

After ``register()`` (called by ``import lattq``):

- ``AutoModelForCausalLM.from_pretrained(lattq_checkpoint)`` builds the architecture on the meta
  device, replaces every module named in ``quantization_config.layers`` by a ``LatticeLinear`` of
  the recorded shape/family, lets transformers load all tensors, and then loads every quantized
  module again through ``LatticeLinear.load_state_dict`` from the validated safetensors files, so
  that storage-format conversions (canonical codes, q8/sign/f16 scales) are always done by lattq
  itself, whatever the transformers version does with custom modules;
- ``model.save_pretrained(dir)`` of such a model (or of one produced by ``lattq.quantize`` after
  ``attach_hf_quantizer(model)``) writes a lattq checkpoint: the LatticeLinear state dicts are
  exactly the checkpoint tensors, and the config's ``quantization_config`` carries the layers map.

Tested against transformers 5.17 (GPU machine) and 5.23 (CPU machine); both have
``register_quantizer`` / ``register_quantization_config`` and pass ``checkpoint_files`` to the
quantizer's ``preprocess_model``.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from transformers.quantizers.auto import (
    AUTO_QUANTIZATION_CONFIG_MAPPING,
    AUTO_QUANTIZER_MAPPING,
)
from transformers.quantizers.base import HfQuantizer
from transformers.utils.quantization_config import QuantizationConfigMixin

from ..format import FORMAT_VERSION
from .safetensors_header import ST_DTYPES
from .checkpoint import (
    QUANT_METHOD,
    CheckpointError,
    build_quantization_config,
    check_layer_tensors,
    expected_layer_tensors,
    layer_entry,
    quantized_modules,
    read_header,
    read_layer_state,
    validate_quantization_config,
)


class LattqHfConfig(QuantizationConfigMixin):
    """``quantization_config`` of a lattq checkpoint (docs/format.md §5)."""

    def __init__(self, format_version: int = FORMAT_VERSION, layers: dict | None = None, config: dict | None = None, **kwargs):
        self.quant_method = QUANT_METHOD
        self.format_version = format_version
        self.layers = copy.deepcopy(layers) if layers is not None else {}
        self.config = copy.deepcopy(config) if config is not None else {}
        kwargs.pop("quant_method", None)
        for k, v in kwargs.items():  # forward-compatible extra information
            setattr(self, k, v)
        self.post_init()

    def post_init(self):
        validate_quantization_config(self.to_dict())

    def to_dict(self) -> dict:
        d = copy.deepcopy({k: v for k, v in self.__dict__.items() if not k.startswith("_")})
        d["quant_method"] = QUANT_METHOD
        return d

    def to_diff_dict(self) -> dict:  # always serialise everything: the layers map is the format
        return self.to_dict()

    def __repr__(self):
        return f"LattqHfConfig(format_version={self.format_version}, layers={len(self.layers)})"


def _set_module(model, name: str, new) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


class LattqSlot(torch.nn.Module):
    """Loading placeholder for one quantized module: buffers with exactly the checkpoint tensors'
    names, dtypes and shapes (docs/format.md §5), so that any transformers loader can fill it
    without conversions.  Replaced by a real ``LatticeLinear`` right after loading."""

    def __init__(self, name: str, ent: dict, device=None):
        super().__init__()
        self.lattq_entry = dict(ent)
        for key, (dt, shape) in expected_layer_tensors(name, ent).items():
            self.register_buffer(key[len(name) + 1 :], torch.empty(shape, dtype=ST_DTYPES[dt][0], device=device))

    def forward(self, *args, **kwargs):  # pragma: no cover - never called
        raise RuntimeError("LattqSlot is a loading placeholder; the lattq quantizer replaces it after loading")


def replace_linears(model, layers: dict) -> None:
    """Replace each module named in ``layers`` by a ``LattqSlot`` (checked against the architecture)."""
    for name, ent in layers.items():
        try:
            old = model.get_submodule(name)
        except AttributeError:
            raise CheckpointError(f"quantized layer {name!r} is not a module of {type(model).__name__}") from None
        if not isinstance(old, torch.nn.Linear):
            raise CheckpointError(f"quantized layer {name!r} is a {type(old).__name__}, not a Linear")
        if (old.in_features, old.out_features) != (ent["k"], ent["n"]):
            raise CheckpointError(
                f"quantized layer {name!r}: checkpoint has n={ent['n']}, k={ent['k']}, architecture has "
                f"out_features={old.out_features}, in_features={old.in_features}"
            )
        if (old.bias is not None) != ent["bias"]:
            raise CheckpointError(
                f"quantized layer {name!r}: checkpoint has bias={ent['bias']}, the architecture's Linear has bias={old.bias is not None}"
            )
        _set_module(model, name, LattqSlot(name, ent, device=old.weight.device))


def build_lattice_linear(ent: dict, state: dict, device):
    """A LatticeLinear of layer description ``ent`` loaded (with conversion and validation) from ``state``."""
    from ..nn import LatticeLinear

    mod = LatticeLinear(
        ent["k"], ent["n"], bias=ent["bias"], bits=ent["bits"], dim=ent["dim"], had_in=ent["had_in"],
        had_out=ent["had_out"], su_format=ent["su_format"], sv_format=ent["sv_format"], device="cpu",
    )
    try:
        mod.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(" ".join(str(e).split())) from None
    return mod.to(device)


class LattqHfQuantizer(HfQuantizer):
    """Loads (and saves) lattq checkpoints; quantizing is ``lattq.quantize`` (it needs calibration data)."""

    requires_calibration = True
    requires_parameters_quantization = False

    def __init__(self, quantization_config, **kwargs):
        super().__init__(quantization_config, **kwargs)
        self._checkpoint_files: list[str] | None = None

    def validate_environment(self, *args, **kwargs):
        if not self.pre_quantized:
            raise ValueError(
                "lattq cannot quantize inside from_pretrained (it needs calibration data): use lattq.quantize(model, config, "
                "calibration) or `lattq quantize`, then load the saved checkpoint"
            )

    def update_dtype(self, dtype):
        return dtype

    def _process_model_before_weight_loading(self, model, checkpoint_files=None, **kwargs):
        self._checkpoint_files = list(checkpoint_files) if checkpoint_files else None
        layers = self.quantization_config.layers
        if self._checkpoint_files:
            # validate every header and every quantized tensor before transformers reads any weight
            self._read_headers(layers)
        replace_linears(model, layers)
        return model

    def _read_headers(self, layers: dict) -> dict:
        tensors = {}
        for f in self._checkpoint_files:
            if not str(f).endswith(".safetensors"):
                raise CheckpointError(f"lattq checkpoints are safetensors only; got weight file {Path(f).name!r}")
            t, _ = read_header(f)
            for name in t:
                if name in tensors:
                    raise CheckpointError(f"tensor {name!r} appears in two weight files")
            tensors.update(t)
        check_layer_tensors(layers, tensors)
        return tensors

    def _process_model_after_weight_loading(self, model, **kwargs):
        layers = self.quantization_config.layers
        if not self._checkpoint_files:
            raise CheckpointError("transformers did not pass the checkpoint files to the lattq quantizer")
        tensors = self._read_headers(layers)
        for name, ent in layers.items():
            slot = model.get_submodule(name)
            dev = slot.codes.device if isinstance(slot, LattqSlot) else torch.device("cpu")
            if dev.type == "meta":
                dev = torch.device("cpu")
            state = read_layer_state(tensors, name, ent)
            for key, t in state.items():
                if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                    raise CheckpointError(f"tensor '{name}.{key}' contains NaN or Inf")
            try:
                new = build_lattice_linear(ent, state, dev)
            except CheckpointError as e:
                raise CheckpointError(f"quantized layer {name!r}: {e}") from None
            _set_module(model, name, new)
        for n, p in list(model.named_parameters()) + list(model.named_buffers()):
            if p.device.type == "meta":
                raise CheckpointError(f"tensor {n!r} was not loaded (still on the meta device)")
        from ..nn import group_projections

        group_projections(model)  # q/k/v and gate/up: one grouped call each (lattq.ungroup_projections undoes it)
        return model

    def is_serializable(self, *args, **kwargs):
        return True

    @property
    def is_trainable(self):
        return False

    @property
    def is_qat_trainable(self):
        return False

    @property
    def is_compileable(self):
        return True


_REGISTERED = False


def register() -> None:
    """Register the lattq config and quantizer with transformers (idempotent)."""
    global _REGISTERED
    if _REGISTERED:
        return
    cur_cfg = AUTO_QUANTIZATION_CONFIG_MAPPING.get(QUANT_METHOD)
    cur_q = AUTO_QUANTIZER_MAPPING.get(QUANT_METHOD)
    if cur_cfg not in (None, LattqHfConfig) or cur_q not in (None, LattqHfQuantizer):
        # a different class already claims "lattq" (e.g. this module re-imported under another name)
        if getattr(cur_cfg, "__name__", "") != "LattqHfConfig" or getattr(cur_q, "__name__", "") != "LattqHfQuantizer":
            raise RuntimeError(f"quant_method {QUANT_METHOD!r} is already registered with transformers by {cur_q!r}")
    AUTO_QUANTIZATION_CONFIG_MAPPING[QUANT_METHOD] = LattqHfConfig
    AUTO_QUANTIZER_MAPPING[QUANT_METHOD] = LattqHfQuantizer
    _REGISTERED = True


def attach_hf_quantizer(model, config=None):
    """Make ``model.save_pretrained`` write a lattq checkpoint for a model quantized in this process.

    Sets ``model.config.quantization_config`` (layers map from its LatticeLinear modules) and
    ``model.hf_quantizer``.  ``config``: the LattqConfig / dict used to quantize.
    """
    register()
    qmods = quantized_modules(model)
    if not qmods:
        raise ValueError("model has no LatticeLinear modules")
    if config is None:
        config = getattr(model, "lattq_config", None)
    qc = build_quantization_config({n: layer_entry(m) for n, m in qmods.items()}, config)
    hf_cfg = LattqHfConfig(**{k: v for k, v in qc.items() if k != "quant_method"})
    model.config.quantization_config = hf_cfg
    model.hf_quantizer = LattqHfQuantizer(hf_cfg, pre_quantized=True)
    return model


# Importing this module can be what first loads transformers' quantizer registry; lattq.io's import
# hook cannot register then (this module is still incomplete) and leaves it to this line.
from . import _register_quietly  # noqa: E402

_register_quietly()
