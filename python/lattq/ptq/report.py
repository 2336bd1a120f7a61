"""Per-layer report of a quantization run (``model.lattq_report``)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field


@dataclass
class LayerRow:
    name: str
    shape: tuple  # (N, K) = (out, in)
    rel_err: float  # tr(E H E^T) / tr(W H W^T) after code choice and refits (before fine-tuning)
    bpw: float
    seconds: float
    bits: int = 0  # stored bits of the layer (docs/format.md §6)
    stages: list = field(default_factory=list)  # (stage, layer objective)


@dataclass
class BlockRow:
    index: int
    seconds: float
    finetune: dict = field(default_factory=dict)
    out_rel_err: float | None = None  # ||block_q(x) - target||^2 / ||target||^2 on the calibration stream


@dataclass
class QuantReport:
    method: str
    config: dict
    layers: list = field(default_factory=list)
    blocks: list = field(default_factory=list)
    skipped: list = field(default_factory=list)  # (name, reason)
    wall_seconds: float = 0.0
    peak_rss_mb: float | None = None
    e2e: dict | None = None  # summary of the end-to-end stage (lattq.ptq.e2e.finetune_e2e), if it ran

    @property
    def total_bits(self) -> int:
        return sum(r.bits for r in self.layers)

    @property
    def total_weights(self) -> int:
        return sum(r.shape[0] * r.shape[1] for r in self.layers)

    @property
    def total_bpw(self) -> float:
        w = self.total_weights
        return self.total_bits / w if w else float("nan")

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "config": self.config,
            "total_bpw": self.total_bpw,
            "total_bits": self.total_bits,
            "total_weights": self.total_weights,
            "wall_seconds": self.wall_seconds,
            "peak_rss_mb": self.peak_rss_mb,
            "layers": [asdict(r) for r in self.layers],
            "blocks": [asdict(b) for b in self.blocks],
            "skipped": [{"name": n, "reason": r} for n, r in self.skipped],
            "e2e": self.e2e,
        }

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), **kw)

    def to_markdown(self) -> str:
        lines = [
            f"# lattq quantization report ({self.method})",
            "",
            f"- total bpw (every stored parameter, docs/format.md §6): **{self.total_bpw:.4f}** over {self.total_weights:,} weights",
            f"- wall time: {self.wall_seconds:.1f} s" + (f"; peak RSS {self.peak_rss_mb:.0f} MB" if self.peak_rss_mb else ""),
            f"- quantized layers: {len(self.layers)}; skipped: {len(self.skipped)}",
            "",
            "| layer | shape (N×K) | rel. error | bpw | seconds |",
            "| --- | --- | --- | --- | --- |",
        ]
        for r in self.layers:
            lines.append(f"| {r.name} | {r.shape[0]}×{r.shape[1]} | {r.rel_err:.4f} | {r.bpw:.4f} | {r.seconds:.2f} |")
        if self.blocks:
            lines += ["", "| block | seconds | fine-tune held-out MSE start → best (epochs) |", "| --- | --- | --- |"]
            for b in self.blocks:
                ft = b.finetune or {}
                if ft.get("start_heldout") is not None and ft.get("best_heldout") is not None:
                    s = f"{ft['start_heldout']:.4g} → {ft['best_heldout']:.4g} ({ft.get('epochs_run', 0)})"
                else:
                    s = ft.get("skipped") or "-"
                lines.append(f"| {b.index} | {b.seconds:.1f} | {s} |")
        if self.e2e:
            e = self.e2e
            if e.get("start_heldout_kl") is not None and e.get("best_heldout_kl") is not None:
                lines += ["", f"End-to-end fine-tuning: held-out KL {e['start_heldout_kl']:.4g} → {e['best_heldout_kl']:.4g} "
                          f"({e.get('epochs_run', 0)} epochs, {e.get('seconds', 0.0):.0f} s)"]
            else:
                lines += ["", f"End-to-end fine-tuning: skipped ({e.get('skipped')})"]
        if self.skipped:
            lines += ["", "Skipped (left in full precision):", ""]
            lines += [f"- {n}: {r}" for n, r in self.skipped]
        return "\n".join(lines) + "\n"
