#!/usr/bin/env python
"""PTQ wall time per decoder block for given shapes (random weights and tokens are fine for timing).

Builds a LLaMA model of ``--layers`` blocks with the shapes of a named preset, quantizes it with the
given settings and reports seconds per block (from model.lattq_report), writing JSON to --out.

  PYTHONPATH=python python bench/ptq/block_timing.py --preset smollm2 --device cuda --out bench/results
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "python"))

from lattq.ptq import LattqConfig, quantize  # noqa: E402

PRESETS = {
    "smollm2": dict(hidden_size=576, intermediate_size=1536, num_attention_heads=9, num_key_value_heads=3),
    "llama2-7b": dict(hidden_size=4096, intermediate_size=11008, num_attention_heads=32, num_key_value_heads=32),
}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", choices=sorted(PRESETS), default="smollm2")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--n-calib", type=int, default=128)
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--finetune-epochs", type=int, default=4)
    ap.add_argument("--no-finetune", action="store_true")
    ap.add_argument("--refit", type=int, default=None, help="LattqConfig.refit_lattice (default: its default)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = ap.parse_args(argv)
    from transformers import LlamaConfig, LlamaForCausalLM

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=1024, num_hidden_layers=args.layers, max_position_embeddings=args.seq_len, **PRESETS[args.preset])
    model = LlamaForCausalLM(cfg).eval()
    toks = torch.randint(0, 1024, (args.n_calib, args.seq_len))
    qc = LattqConfig(n_calib=args.n_calib, seq_len=args.seq_len, device=device, dtype=args.dtype,
                     finetune=not args.no_finetune, finetune_epochs=args.finetune_epochs, progress=True,
                     **({} if args.refit is None else {"refit_lattice": args.refit}))
    t0 = time.time()
    quantize(model, qc, toks)
    rep = model.lattq_report
    res = {
        "preset": args.preset, "device": torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu",
        "torch": torch.__version__, "n_calib": args.n_calib, "seq_len": args.seq_len, "finetune": not args.no_finetune,
        "finetune_epochs": args.finetune_epochs, "refit_lattice": qc.refit_lattice, "block_seconds": [b.seconds for b in rep.blocks],
        "layer_seconds": {r.name: r.seconds for r in rep.layers}, "wall_seconds": time.time() - t0,
        "bpw": rep.total_bpw,
        "peak_gpu_mem_gb": torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = f"ptq_block_timing_{args.preset}_{'ft' if not args.no_finetune else 'noft'}"
    (out / f"{tag}.json").write_text(json.dumps(res, indent=1))
    print(json.dumps({k: v for k, v in res.items() if k != "layer_seconds"}))


if __name__ == "__main__":
    main()
