#!/usr/bin/env python3
"""Load a saved lattq checkpoint with transformers on a GPU, generate and measure perplexity.

Issue 4's "the saved 2-bit SmolLM2 checkpoint loads on the H100 and generates through the CUDA
kernels": ``AutoModelForCausalLM.from_pretrained`` (after ``import lattq``) builds LatticeLinear
modules, the model moves to the GPU, every LatticeLinear is checked to live there and to run the
compiled CUDA path, then greedy chat generations and the fixed-protocol perplexity on the first
``--windows`` windows (default: all) are written to ``--out``/checkpoint_on_gpu.json.

  python bench/ptq/checkpoint_on_gpu.py CKPT_DIR --text wiki.test.raw --windows 16 --out OUT
"""

from __future__ import annotations

import argparse
import math
import json
import time
from pathlib import Path

import torch

import lattq
from lattq.eval import generate, perplexity
from lattq.nn import LatticeLinear

PROMPTS = ["What is the capital of France?", "Write a haiku about the sea.", "List three primary colors."]
PLAIN = ["The history of the Roman Empire", "The capital of France is"]  # plain continuation, no chat template


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--text", required=True)
    ap.add_argument("--windows", type=int, default=None, help="first W windows only (default: all 147, the fixed protocol)")
    ap.add_argument("--subset", type=int, default=16, help="also report the perplexity of the first this-many windows")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cuda", help="cuda (the point of this script); cpu to dry-run it")
    a = ap.parse_args(argv)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.time()
    model = AutoModelForCausalLM.from_pretrained(a.checkpoint).to(a.device).eval()
    tok = AutoTokenizer.from_pretrained(a.checkpoint)
    load_s = time.time() - t0
    lat = [m for m in model.modules() if isinstance(m, LatticeLinear)]
    assert lat, "no LatticeLinear modules were built"
    assert all(m.codes.device.type == torch.device(a.device).type for m in lat), f"a LatticeLinear is not on {a.device}"
    x = torch.randn(1, lat[0].desc.k, device=a.device)
    # the compiled CUDA path against the module's own dense weight (float64 on the side)
    y = lat[0](x)
    ref = (x.double() @ lat[0].dense_weight(torch.float64).T + (0 if lat[0].bias is None else lat[0].bias.double()))
    rel = float((y.double() - ref).norm() / ref.norm())
    gens = generate(model, tok, PROMPTS, max_new_tokens=a.max_new_tokens, chat=True, progress=False)
    gens += generate(model, tok, PLAIN, max_new_tokens=a.max_new_tokens, chat=False, progress=False)
    r = perplexity(model, tok, a.text, max_windows=a.windows, progress=False)
    res = {
        "device": torch.cuda.get_device_name(0) if a.device.startswith("cuda") else "cpu", "torch": torch.__version__, "native": lattq.native_status(),
        "lattice_linear_modules": len(lat), "load_seconds": load_s, "layer0_rel_err_vs_float64": rel,
        "ppl": r.ppl, "windows": r.windows, "tokens": r.tokens, "eval_seconds": r.seconds, "full_protocol": not r.subset,
        f"ppl_first_{a.subset}_windows": math.exp(math.fsum(r.per_window_nll[: a.subset]) / (min(a.subset, r.windows) * (r.ctx - 1))),
        "text_sha256": r.text_sha256, "per_window_nll": r.per_window_nll,
        "generations": gens, "peak_gpu_mem_gb": torch.cuda.max_memory_allocated() / 2**30 if a.device.startswith("cuda") else None,
    }
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "checkpoint_on_gpu.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
