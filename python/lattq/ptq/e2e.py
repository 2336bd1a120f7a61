"""End-to-end fine-tuning of the continuous parameters of a quantized model (codes frozen).

After the block-wise stage every decoder block matches the full-precision model locally; errors
still compound through the depth of the network.  This stage trains, across the whole model at once,
the same parameters as the block-wise stage (``A``, ``b``, ``SV``, ``SU`` unless stored as signs, and
the RMSNorm weights) to minimise the KL divergence from the full-precision model's next-token
distribution (the teacher) on the calibration sequences.  The integer codes never change, so the
result is still a PTQ model in the same format; embeddings and the LM head stay frozen.

While training, each ``LatticeLinear`` is stood in for by a ``TrainableLattice`` (the block-wise
stage's module: dense weight rebuilt from the frozen codes every step); scales pass through their
storage projection with a straight-through gradient, so what is trained is exactly what is stored,
and the result is written back into the ``LatticeLinear`` modules.  Held-out early stopping keeps the best state, the starting one included: the
held-out KL never ends worse than where it started.

Memory: unlike the block-wise stages this one holds the whole student and a teacher, so it is meant
for models that fit on the compute device (it is optional: ``LattqConfig.e2e_epochs``).
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..reference import unpack_fields
from .finetune import HeldoutStopper, TrainableLattice, relative_adam
from .layer import QuantizedLayer


def _quantized_layer(m) -> QuantizedLayer:
    """The plain-tensor view of a ``LatticeLinear`` (integer fields unpacked)."""
    d = m.desc
    return QuantizedLayer(
        z=unpack_fields(m.canonical_codes().cpu(), d.bits, d.k), A=m.A.detach().float().cpu(), b=m.b.detach().float().cpu(),
        su=m.su.detach().float().cpu(), sv=m.sv.detach().float().cpu(), had_in=d.had_in, had_out=d.had_out,
        bits=d.bits, dim=d.dim, su_format=m.su_format, sv_format=m.sv_format,
        bias=None if m.bias is None else m.bias.detach().float().cpu(),
    )


class _E2ELinear(TrainableLattice):
    """``TrainableLattice`` that remembers the ``LatticeLinear`` it stands in for.

    Training reconstructs the dense weight once per step (O(N·K·log) per layer) and multiplies with
    the BLAS GEMM; for SmolLM2 on the 2-core CPU a step of 4 × 512 tokens took 21.5 s this way and
    24 s through ``torch.ops.lattq.linear`` and its activation-space backward (same result).
    """

    def __init__(self, inner: nn.Module):
        super().__init__(_quantized_layer(inner), device=inner.A.device)
        self.inner = [inner]  # a list: not registered as a submodule (its buffers are not trained)

    @torch.no_grad()
    def write_back(self) -> None:
        """Store the trained values (scales projected to their formats) into the ``LatticeLinear``."""
        q, m = self.export(), self.inner[0]
        for name in ("A", "b", "su", "sv"):
            getattr(m, name).copy_(getattr(q, name).to(getattr(m, name).device))


def _swap(model: nn.Module, cls, make) -> list[tuple[nn.Module, str, nn.Module]]:
    swapped = []
    for name, mod in list(model.named_modules()):
        for cname, child in list(mod.named_children()):
            if isinstance(child, cls):
                new = make(child)
                setattr(mod, cname, new)
                swapped.append((mod, cname, new))
    return swapped


def _norm_params(model: nn.Module) -> list[nn.Parameter]:
    out = []
    for name, mod in model.named_modules():
        last = name.split(".")[-1].lower()
        if "norm" in last or "norm" in type(mod).__name__.lower():
            out += [p for p in mod.parameters(recurse=False)]
    return out


def _kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Mean over tokens of KL(teacher || student), float32."""
    s = F.log_softmax(student_logits.float().reshape(-1, student_logits.shape[-1]), dim=-1)
    t = F.log_softmax(teacher_logits.float().reshape(-1, teacher_logits.shape[-1]), dim=-1)
    return F.kl_div(s, t, log_target=True, reduction="batchmean")


def finetune_e2e(
    model: nn.Module,
    teacher: nn.Module,
    tokens: torch.Tensor,
    *,
    epochs: int,
    lr: float,
    batch: int,
    heldout: float,
    norms: bool = True,
    generator: torch.Generator | None = None,
    patience: int = 2,
    progress: bool = True,
    autocast_dtype: torch.dtype | None = None,
    schedule: str = "constant",
) -> dict:
    """Minimise KL(teacher || model) on ``tokens`` [N, L] over A/b/SU/SV (+ norms); codes frozen.

    ``model`` holds ``LatticeLinear`` modules (updated in place); ``teacher`` is the full-precision
    model (frozen, same tokenizer).  Returns a summary dict (start/best held-out KL, epochs, seconds).
    ``schedule``: "constant" learning rate, or "cosine" decay from ``lr`` to 0 over all planned steps.
    """
    from ..nn import LatticeLinear

    if schedule not in ("constant", "cosine"):
        raise ValueError(f"schedule must be 'constant' or 'cosine', got {schedule!r}")
    t0 = time.time()
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    n = tokens.shape[0]
    info = {"epochs_run": 0, "start_heldout_kl": None, "best_heldout_kl": None, "best_epoch": 0, "skipped": None, "seconds": 0.0}
    if epochs <= 0 or n < 2:
        info["skipped"] = "e2e_epochs = 0" if epochs <= 0 else "fewer than 2 calibration sequences"
        return info
    dev = next(model.parameters()).device
    n_held = min(n - 1, max(1, int(round(n * heldout))))
    perm = torch.randperm(n, generator=gen)
    held, train = perm[:n_held], perm[n_held:]

    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    saved_flags = [(p, p.requires_grad) for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    swapped = _swap(model, LatticeLinear, _E2ELinear)
    if not swapped:
        info["skipped"] = "no LatticeLinear modules"
        return info
    params = [p for _, _, w in swapped for p in w.parameters(recurse=False)]
    if norms:
        params += _norm_params(model)
    for p in params:
        p.requires_grad_(True)
    was_training = model.training
    model.train()  # no dropout in LLaMA-family blocks; train() only matters for modules that care

    def logits(m, ids):
        # autocast (e.g. bfloat16) runs the matrix products in low precision; parameters, their
        # gradients, the optimiser state and the KL itself stay float32
        with torch.autocast(dev.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            out = m(input_ids=ids.to(dev), use_cache=False)
        return out.logits if hasattr(out, "logits") else out[0]

    def heldout_kl() -> float:
        tot = 0.0
        with torch.no_grad():
            for s in range(0, n_held, batch):
                ids = tokens[held[s : s + batch]]
                tot += float(_kl(logits(model, ids), logits(teacher, ids))) * ids.shape[0]
        return tot / n_held

    def snapshot():
        return [p.detach().clone() for p in params]

    start_state = snapshot()  # restored if anything below fails
    stop = None
    try:
        start = heldout_kl()
        info["start_heldout_kl"] = start
        stop = HeldoutStopper(start, snapshot, patience, info)
        opt = relative_adam(params, lr)
        steps = math.ceil(train.numel() / batch)
        base_lrs = [g["lr"] for g in opt.param_groups]
        total, done = steps * epochs, 0
        try:
            from tqdm.auto import tqdm
        except Exception:  # pragma: no cover
            tqdm = None
        for ep in range(epochs):
            order = train[torch.randperm(train.numel(), generator=gen)]
            bar = tqdm(total=steps, desc=f"  end-to-end fine-tune epoch {ep + 1}/{epochs}", leave=False, disable=not progress) if tqdm else None
            for s in range(0, order.numel(), batch):
                ids = tokens[order[s : s + batch]]
                with torch.no_grad():
                    t_logits = logits(teacher, ids)
                loss = _kl(logits(model, ids), t_logits)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if schedule == "cosine":
                    f = 0.5 * (1.0 + math.cos(math.pi * done / total))
                    for g, b0 in zip(opt.param_groups, base_lrs):
                        g["lr"] = b0 * f
                opt.step()
                done += 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(kl=f"{loss.item():.4g}", refresh=False)
            if bar is not None:
                bar.close()
            if not stop.update(heldout_kl(), ep + 1):
                break
        info["best_heldout_kl"] = stop.best
    finally:
        keep = start_state if stop is None or info["best_heldout_kl"] is None else stop.state
        with torch.no_grad():
            for p, v in zip(params, keep):
                p.copy_(v)
        for _, _, w in swapped:
            w.write_back()
        for parent, cname, w in swapped:
            setattr(parent, cname, w.inner[0])
        for p, f in saved_flags:
            p.requires_grad_(f)
        model.train(was_training)
    info["seconds"] = time.time() - t0
    return info
