"""Checkpoints (safetensors + config.json, docs/format.md §5) and the transformers integration.

``save_quantized`` / ``load_quantized`` need only torch + safetensors (+ transformers to build the
architecture when loading).  ``register_hf()`` registers ``quant_method: "lattq"`` with transformers;
``import lattq`` calls ``install_hf_registration()``, which does it as soon as transformers' quantizer
registry is imported (without importing transformers itself).  See docs/checkpoints.md.
"""

from __future__ import annotations

from .checkpoint import (
    QUANT_METHOD,
    SUPPORTED_FORMAT_VERSIONS,
    build_quantization_config,
    checkpoint_summary,
    expected_layer_tensors,
    load_quantized,
    read_config,
    save_quantized,
    validate_checkpoint,
    validate_quantization_config,
)
from .safetensors_header import CheckpointError, read_header

__all__ = [
    "CheckpointError",
    "QUANT_METHOD",
    "SUPPORTED_FORMAT_VERSIONS",
    "attach_hf_quantizer",
    "install_hf_registration",
    "build_quantization_config",
    "checkpoint_summary",
    "expected_layer_tensors",
    "load_quantized",
    "read_config",
    "read_header",
    "register_hf",
    "save_quantized",
    "validate_checkpoint",
    "validate_quantization_config",
]


def register_hf() -> bool:
    """Register lattq's quantization config and HfQuantizer with transformers.

    Returns False (and does nothing) when transformers is not installed.
    """
    try:
        import transformers  # noqa: F401
    except ImportError:
        return False
    from .hf import register

    register()
    return True


class _RegisterWhenTransformersLoads:
    """Meta-path hook: when ``transformers.quantizers.auto`` is first imported (transformers does that
    before any ``from_pretrained``), run ``register()`` right after it.  Keeps ``import lattq`` from
    importing transformers (seconds) while making ``from_pretrained`` understand lattq checkpoints."""

    TARGET = "transformers.quantizers.auto"

    def find_spec(self, fullname, path, target=None):
        if fullname != self.TARGET:
            return None
        import sys

        spec = None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        hook, original = self, spec.loader.exec_module

        def exec_module(module):
            original(module)
            hook.remove()
            hf = sys.modules.get(__name__ + ".hf")
            if hf is not None and not hasattr(hf, "register"):
                return  # lattq.io.hf itself is importing the registry: it registers at its own end
            _register_quietly()

        spec.loader.exec_module = exec_module
        return spec

    def remove(self) -> None:
        import sys

        while self in sys.meta_path:
            sys.meta_path.remove(self)


def _register_quietly() -> None:
    try:
        register_hf()
    except Exception as exc:  # noqa: BLE001 - never break the user's transformers import
        import warnings

        warnings.warn(f"lattq could not register its transformers quantizer: {exc}", RuntimeWarning, stacklevel=2)


def install_hf_registration() -> None:
    """What ``import lattq`` calls: register now if transformers' quantizer registry is already
    imported, otherwise as soon as it is (without importing transformers here)."""
    import sys

    if "transformers.quantizers.auto" in sys.modules:
        _register_quietly()
        return
    if not any(isinstance(f, _RegisterWhenTransformersLoads) for f in sys.meta_path):
        sys.meta_path.insert(0, _RegisterWhenTransformersLoads())


def attach_hf_quantizer(model, config=None):
    """See ``lattq.io.hf.attach_hf_quantizer``."""
    from .hf import attach_hf_quantizer as _attach

    return _attach(model, config)
