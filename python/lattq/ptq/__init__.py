"""UniSVQ post-training quantization (DESIGN.md §2.1-2.3): ``quantize(model, config, calibration)``."""

from .config import CONFIG_VERSION, LattqConfig
from .hessian import NonFiniteError
from .layer import QuantizedLayer, quantize_weight
from .pipeline import UnsupportedModelError, decoder_layers, quantize
from .report import QuantReport

__all__ = [
    "CONFIG_VERSION", "LattqConfig", "NonFiniteError", "QuantizedLayer", "QuantReport",
    "UnsupportedModelError", "decoder_layers", "quantize", "quantize_weight",
]
