"""Versioned configuration of the lattq PTQ pipeline (UniSVQ, DESIGN.md §2.1-2.3)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..format import ALLOWED_BITS, ALLOWED_DIMS, SCALE_FORMATS

CONFIG_VERSION = 1

# method names accepted by the pipeline.  "lattq" is the full method; the others are the ablation
# modes and peers run by bench/ptq/ablation.py through the same harness.
LATTICE_METHODS = ("lattq",)
PEER_METHODS = ("rtn_g64", "rtn_g128", "gptq_g64", "gptq_g128", "hqq_g64")
METHODS = LATTICE_METHODS + PEER_METHODS


@dataclass
class LattqConfig:
    """Settings of ``lattq.quantize``.

    The lattice family is ``bits``/``dim`` (UniSVQ: 2 bits, 4-dimensional codewords).  Each stage of
    the method can be switched off for ablations: ``incoherence`` (random signs + block Hadamard on
    both sides), ``ldlq`` (BlockLDLQ error feedback; off = nearest codeword), ``refit_lattice``
    (number of alternating least-squares refits of A, b and the row scales), ``finetune`` (block-wise
    fine-tuning of SU/SV/A/b/norms with frozen codes), ``e2e_epochs`` (end-to-end fine-tuning of the
    same parameters against the full-precision model's logits; 0 = off).
    """

    config_version: int = CONFIG_VERSION
    method: str = "lattq"
    bits: int = 2
    dim: int = 4
    had_block: int = 128  # cap; per dimension the block is the largest power of two dividing it
    a_init: str = "identity"  # "identity" | "orthogonal"
    refit_lattice: int = 2
    ldlq: bool = True
    incoherence: bool = True
    damp: float = 0.01  # relative Hessian dampening for BlockLDLQ (times mean diagonal)
    finetune: bool = True
    finetune_epochs: int = 4
    finetune_lr: float = 2e-3  # relative: each parameter gets lr * its RMS (see finetune.py)
    finetune_batch: int = 4  # sequences per optimiser step
    finetune_heldout: float = 0.125  # fraction of calibration sequences held out for early stopping
    finetune_target: str = "fp_stream"  # "fp_stream" (output of the FP model) | "block" (FP block on the same input)
    finetune_norms: bool = True
    # end-to-end stage after the blocks (lattq.ptq.e2e): KL to the full-precision model over the whole
    # network, same parameters as the block-wise stage, codes frozen.  Holds a full-precision copy of
    # the model (teacher) next to the quantized one, so it is for models that fit on the device.
    e2e_epochs: int = 0
    e2e_lr: float = 1e-3  # relative, like finetune_lr
    e2e_batch: int = 4
    e2e_autocast: str | None = "bfloat16"  # matrix products of the e2e stage; None = compute dtype
    # calibration sequences (of seq_len) for the end-to-end stage; None = the block stages' n_calib.
    # The stage is data-limited: more distinct sequences for one epoch beat more epochs over fewer
    # (docs/ptq.md, session 3).  The block stages use the first n_calib of them.
    e2e_n_calib: int | None = None
    n_calib: int = 128
    seq_len: int = 2048
    propagate_quantized: bool = True
    su_format: str = "sign"
    sv_format: str = "q8"
    # SU format of the layers with no norm in front of them (o_proj, down_proj); None = su_format.
    su_format_unnormed: str | None = "q8"
    device: str | None = None  # None: "cuda" when available, else "cpu"
    dtype: str = "float32"  # compute dtype of the block being quantized
    seed: int = 0
    progress: bool = True
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> "LattqConfig":
        if self.config_version != CONFIG_VERSION:
            raise ValueError(f"LattqConfig config_version {self.config_version} is not supported (this lattq reads {CONFIG_VERSION})")
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.bits not in ALLOWED_BITS:
            raise ValueError(f"bits must be one of {ALLOWED_BITS}, got {self.bits}")
        if self.dim not in ALLOWED_DIMS:
            raise ValueError(f"dim must be one of {ALLOWED_DIMS}, got {self.dim}")
        if self.bits * self.dim > 8:
            raise ValueError(f"bits*dim = {self.bits * self.dim}: the exhaustive code search supports at most 8 bits per codeword")
        if self.had_block < 1 or self.had_block & (self.had_block - 1):
            raise ValueError(f"had_block must be a power of two, got {self.had_block}")
        if self.a_init not in ("identity", "orthogonal"):
            raise ValueError(f"a_init must be 'identity' or 'orthogonal', got {self.a_init!r}")
        if self.refit_lattice < 0:
            raise ValueError(f"refit_lattice must be >= 0, got {self.refit_lattice}")
        if not (self.damp >= 0):
            raise ValueError(f"damp must be >= 0, got {self.damp}")
        if self.finetune_epochs < 0 or self.finetune_lr < 0 or self.finetune_batch < 1:
            raise ValueError("finetune_epochs and finetune_lr must be >= 0 and finetune_batch >= 1")
        if not (0.0 < self.finetune_heldout < 1.0):
            raise ValueError(f"finetune_heldout must be in (0, 1), got {self.finetune_heldout}")
        if self.finetune_target not in ("fp_stream", "block"):
            raise ValueError(f"finetune_target must be 'fp_stream' or 'block', got {self.finetune_target!r}")
        if self.e2e_epochs < 0 or self.e2e_lr < 0 or self.e2e_batch < 1:
            raise ValueError("e2e_epochs and e2e_lr must be >= 0 and e2e_batch >= 1")
        if self.e2e_n_calib is not None and (not isinstance(self.e2e_n_calib, int) or self.e2e_n_calib < 2):
            raise ValueError(f"e2e_n_calib must be None or an integer >= 2, got {self.e2e_n_calib!r}")
        if self.e2e_autocast not in (None, "bfloat16", "float16"):
            raise ValueError(f"e2e_autocast must be None, 'bfloat16' or 'float16', got {self.e2e_autocast!r}")
        if self.n_calib < 1 or self.seq_len < 2:
            raise ValueError(f"n_calib must be >= 1 and seq_len >= 2, got {self.n_calib}, {self.seq_len}")
        for name in ("su_format", "sv_format"):
            if getattr(self, name) not in SCALE_FORMATS:
                raise ValueError(f"{name} must be one of {SCALE_FORMATS}, got {getattr(self, name)!r}")
        if self.su_format_unnormed is not None and self.su_format_unnormed not in SCALE_FORMATS:
            raise ValueError(f"su_format_unnormed must be None or one of {SCALE_FORMATS}, got {self.su_format_unnormed!r}")
        if self.dtype not in ("float32", "float64", "bfloat16", "float16"):
            raise ValueError(f"dtype must be float32/float64/bfloat16/float16, got {self.dtype!r}")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "LattqConfig":
        if not isinstance(d, dict):
            raise TypeError(f"LattqConfig.from_dict expects a dict, got {type(d).__name__}")
        version = d.get("config_version", None)
        if version is None:
            raise ValueError("LattqConfig dict has no config_version")
        if version != CONFIG_VERSION:
            raise ValueError(f"LattqConfig config_version {version} is not supported (this lattq reads {CONFIG_VERSION})")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown LattqConfig keys: {unknown}")
        return cls(**d)
