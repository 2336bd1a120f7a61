"""lattq: 2-bit affine-lattice quantization of LLMs (UniSVQ / LC-QAT / pQuant) with CPU and CUDA kernels.

``import lattq`` is light and never initialises CUDA.  ``native_available()`` /
``cuda_kernels_available()`` / ``native_status()`` report what the compiled extension provides;
without it lattq still works through the pure-torch reference (slowly).
"""

from __future__ import annotations

import os as _os

__version__ = "0.1.0"

from . import format  # noqa: E402  (light: no torch)
from . import _native  # noqa: E402  (imports torch and, if built, lattq._C; no CUDA initialisation)
from . import ops  # noqa: E402,F401  (registers torch.ops.lattq.*)
from .nn import LatticeLinear, LatticeLinearGroup, group_projections, ungroup_projections  # noqa: E402


def native_available() -> bool:
    """True when the compiled native CPU kernels can be used."""
    return _native.available()


def cuda_kernels_available() -> bool:
    """True when lattq was compiled with its CUDA kernels (does not initialise CUDA or look for a GPU)."""
    return _native.cuda_compiled()


def native_status() -> str:
    """One line: what native code is available, or why it is not."""
    return _native.status()


def cmake_dir() -> str:
    """Directory of the installed ``lattqConfig.cmake`` (for ``find_package(lattq)``: pass it as lattq_DIR
    or append its parent to CMAKE_PREFIX_PATH).  Raises FileNotFoundError when lattq is not installed
    from a built package (e.g. imported from a source checkout)."""
    here = _os.path.dirname(_os.path.abspath(__file__))
    for libdir in ("lib", "lib64"):
        cand = _os.path.join(here, libdir, "cmake", "lattq")
        if _os.path.isfile(_os.path.join(cand, "lattqConfig.cmake")):
            return cand
    raise FileNotFoundError(
        f"no lib/cmake/lattq/lattqConfig.cmake under {here}: lattq's C++ package files are installed by "
        "`pip install .` (scikit-build-core); this lattq was not installed that way"
    )


# ---------------------------------------------------------------------------------------------------
# Quantization pipeline exports (owned by the PTQ pipeline, python/lattq/ptq/).
# `quantize(model, config, calibration)` and `LattqConfig` come lazily from the PTQ subpackage lattq.ptq so
# that `import lattq` stays light (no transformers, no CUDA initialisation).
# ---- BEGIN pipeline exports ----
_LAZY = {"quantize": ("lattq.ptq", "quantize"), "LattqConfig": ("lattq.ptq", "LattqConfig")}

from .io import install_hf_registration as _install_hf_registration  # noqa: E402

# quant_method "lattq" for transformers: registered when transformers' quantizer registry loads, so
# `import lattq` neither imports transformers nor initialises CUDA.
_install_hf_registration()
# ---- END pipeline exports ----


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        mod_name, attr = _LAZY[name]
        try:
            module = importlib.import_module(mod_name)
            value = getattr(module, attr)
        except (ImportError, AttributeError) as exc:
            raise AttributeError(f"lattq.{name} is not available: {mod_name}.{attr} could not be loaded ({exc})") from exc
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lattq' has no attribute {name!r}")


__all__ = [
    "__version__",
    "LatticeLinear",
    "LatticeLinearGroup",
    "group_projections",
    "ungroup_projections",
    "native_available",
    "cuda_kernels_available",
    "native_status",
    "cmake_dir",
    "format",
    "ops",
    "quantize",
    "LattqConfig",
]
