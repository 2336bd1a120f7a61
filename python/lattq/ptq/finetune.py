"""Block-wise fine-tuning with frozen codes (DESIGN.md §2.3).

``TrainableLattice`` is a differentiable stand-in for ``LatticeLinear`` used while a decoder block is
fine-tuned: the dense weight is reconstructed with ``lattq.reference`` (decode + dense_weight) from the
frozen integer codes and the trainable ``A``, ``b``, ``SV`` (and ``SU`` unless it is stored as signs).
Scales pass through their storage projection (``lattq.scales.project``) with a straight-through
gradient, so what is trained is exactly what is stored.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import scales as _scales
from ..reference import decode
from .incoherence import dense_weight
from .layer import QuantizedLayer


def _ste_project(v: torch.Tensor, fmt: str) -> torch.Tensor:
    if fmt == "f32":
        return v
    return v + (_scales.project(v.detach(), fmt) - v.detach())


class TrainableLattice(nn.Module):
    def __init__(self, q: QuantizedLayer, device=None):
        super().__init__()
        self.bits, self.dim = q.bits, q.dim
        self.had_in, self.had_out = q.had_in, q.had_out
        self.su_format, self.sv_format = q.su_format, q.sv_format
        self.out_features, self.in_features = q.z.shape
        self.register_buffer("z", q.z.to(device=device, dtype=torch.uint8))
        self.A = nn.Parameter(q.A.to(device=device, dtype=torch.float32).clone())
        self.b = nn.Parameter(q.b.to(device=device, dtype=torch.float32).clone())
        self.sv = nn.Parameter(q.sv.to(device=device, dtype=torch.float32).clone())
        su = q.su.to(device=device, dtype=torch.float32).clone()
        if q.su_format == "sign":
            self.register_buffer("su", su)
        else:
            self.su = nn.Parameter(su)
        self.register_buffer("bias", None if q.bias is None else q.bias.to(device=device, dtype=torch.float32))

    def scales(self) -> tuple[torch.Tensor, torch.Tensor]:
        su = self.su if self.su_format == "sign" else _ste_project(self.su, self.su_format)
        return su, _ste_project(self.sv, self.sv_format)

    def weight_dense(self) -> torch.Tensor:
        su, sv = self.scales()
        return dense_weight(decode(self.z, self.A, self.b), su, sv, self.had_in, self.had_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight_dense().to(x.dtype)
        return F.linear(x, w, None if self.bias is None else self.bias.to(x.dtype))

    def export(self) -> QuantizedLayer:
        """Plain tensors with the scales projected to their storage formats."""
        with torch.no_grad():
            su, sv = self.scales()
            return QuantizedLayer(
                z=self.z.to(torch.int64).cpu(),
                A=self.A.detach().float().cpu().clone(),
                b=self.b.detach().float().cpu().clone(),
                su=_scales.project(su.detach().float().cpu(), self.su_format),
                sv=_scales.project(sv.detach().float().cpu(), self.sv_format),
                had_in=self.had_in,
                had_out=self.had_out,
                bits=self.bits,
                dim=self.dim,
                su_format=self.su_format,
                sv_format=self.sv_format,
                bias=None if self.bias is None else self.bias.float().cpu(),
            )


def _trainable_params(block: nn.Module, norms: bool) -> list[nn.Parameter]:
    params = []
    for mod in block.modules():
        if isinstance(mod, TrainableLattice):
            params += [p for p in mod.parameters(recurse=False)]
    if norms:
        for name, mod in block.named_modules():
            if "norm" in name.lower().split(".")[-1] or "norm" in type(mod).__name__.lower():
                params += [p for p in mod.parameters(recurse=False)]
    seen, out = set(), []
    for p in params:
        if id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


def relative_adam(params: list[nn.Parameter], lr: float) -> torch.optim.Adam:
    """Adam with each parameter's learning rate ``lr`` times its own RMS.

    Adam steps are absolute; the parameters live on very different scales (SV ~ weight row norms,
    A ~ 1, norms ~ 1): one absolute rate either does nothing to A or wrecks SV.
    """
    groups = [{"params": [p], "lr": lr * float(p.detach().float().pow(2).mean().sqrt().clamp_min(1e-8))} for p in params]
    return torch.optim.Adam(groups, lr=lr)


class HeldoutStopper:
    """Held-out early stopping that keeps the best state seen, the starting one included."""

    def __init__(self, start_loss: float, snapshot, patience: int, info: dict):
        self.best, self.bad, self.patience = start_loss, 0, patience
        self.snapshot, self.state, self.info = snapshot, snapshot(), info

    def update(self, loss: float, epoch: int) -> bool:
        """Record the held-out loss after ``epoch``; False when training should stop."""
        self.info["epochs_run"] = epoch
        if not math.isfinite(loss):
            return False
        if loss < self.best:
            self.best, self.bad = loss, 0
            self.state = self.snapshot()
            self.info["best_epoch"] = epoch
            return True
        self.bad += 1
        return self.bad < self.patience


def finetune_block(
    block: nn.Module,
    run_block,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    epochs: int,
    lr: float,
    batch: int,
    heldout: float,
    norms: bool,
    generator: torch.Generator,
    patience: int = 2,
    progress=None,
) -> dict:
    """Minimise MSE(run_block(block, x), target) over SU/SV/A/b (+ norms), codes frozen.

    Held-out early stopping: the state with the lowest held-out loss is kept, the starting state
    included, so the held-out objective never ends worse than where it started.
    """
    n = inputs.shape[0]
    info = {"epochs_run": 0, "start_heldout": None, "best_heldout": None, "best_epoch": 0, "skipped": None}
    if n < 2 or epochs == 0:
        info["skipped"] = "fewer than 2 calibration sequences" if n < 2 else "finetune_epochs = 0"
        return info
    n_held = min(n - 1, max(1, int(round(n * heldout))))
    perm = torch.randperm(n, generator=generator)
    held, train = perm[:n_held], perm[n_held:]
    params = _trainable_params(block, norms)
    if not params:
        info["skipped"] = "no trainable parameters"
        return info
    saved_flags = [p.requires_grad for p in block.parameters()]
    for p in block.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)

    def heldout_loss() -> float:
        tot, cnt = 0.0, 0
        with torch.no_grad():
            for s in range(0, n_held, batch):
                idx = held[s : s + batch]
                y = run_block(block, inputs[idx])
                tot += float(F.mse_loss(y.float(), targets[idx].float(), reduction="sum"))
                cnt += targets[idx].numel()
        return tot / cnt

    start = heldout_loss()
    info["start_heldout"] = start
    stop = HeldoutStopper(start, lambda: copy.deepcopy(block.state_dict()), patience, info)
    opt = relative_adam(params, lr)
    try:
        for ep in range(epochs):
            order = train[torch.randperm(train.numel(), generator=generator)]
            for s in range(0, order.numel(), batch):
                idx = order[s : s + batch]
                y = run_block(block, inputs[idx])
                loss = F.mse_loss(y.float(), targets[idx].float())
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if progress is not None:
                    progress.set_postfix(loss=f"{loss.item():.3g}", refresh=False)
            if not stop.update(heldout_loss(), ep + 1):
                break
    finally:
        block.load_state_dict(stop.state)
        for p, f in zip(block.parameters(), saved_flags):
            p.requires_grad_(f)
    best = stop.best
    info["best_heldout"] = best
    return info
