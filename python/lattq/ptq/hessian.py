"""Second-moment (Hessian proxy) accumulation H = E[x x^T] over calibration activations."""

from __future__ import annotations

import torch


class NonFiniteError(ValueError):
    """NaN or Inf in weights or calibration activations."""


class HessianAccumulator:
    """Running E[x x^T] in float64 (or ``dtype``) for one linear input; ``name`` is used in errors."""

    def __init__(self, dim: int, name: str, device=None, dtype=torch.float64):
        self.name = name
        self.H = torch.zeros(dim, dim, dtype=dtype, device=device)
        self.count = 0

    def add(self, x: torch.Tensor) -> None:
        x = x.detach().reshape(-1, x.shape[-1])
        if not bool(torch.isfinite(x).all()):
            raise NonFiniteError(f"calibration activations entering {self.name} contain NaN or Inf")
        x = x.to(self.H.dtype)
        self.H.addmm_(x.T, x)
        self.count += x.shape[0]

    def value(self) -> torch.Tensor:
        if self.count == 0:
            raise RuntimeError(f"no calibration activations reached {self.name}")
        return self.H / self.count
