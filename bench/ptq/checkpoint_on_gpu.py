#!/usr/bin/env python3
"""Load a saved lattq checkpoint with transformers on a GPU, generate and measure perplexity.

Issue 4's "the saved 2-bit SmolLM2 checkpoint loads on the H100 and generates through the CUDA
kernels": ``AutoModelForCausalLM.from_pretrained`` (after ``import lattq``) builds LatticeLinear
modules, the model moves to the GPU, every LatticeLinear is checked to live there and to run the
compiled CUDA path, then greedy chat generations and the fixed-protocol perplexity on the first
``--windows`` windows are written to ``--out``/checkpoint_on_gpu.json.

  python bench/ptq/checkpoint_on_gpu.py CKPT_DIR --text wiki.test.raw --windows 16 --out OUT
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import lattq
from lattq.eval import generate, perplexity
from lattq.nn import LatticeLinear

PROMPTS = ["What is the capital of France?", "Write a haiku about the sea.", "List three primary colors."]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--text", required=True)
    ap.add_argument("--windows", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.time()
    model = AutoModelForCausalLM.from_pretrained(a.checkpoint).to("cuda").eval()
    tok = AutoTokenizer.from_pretrained(a.checkpoint)
    load_s = time.time() - t0
    lat = [m for m in model.modules() if isinstance(m, LatticeLinear)]
    assert lat, "no LatticeLinear modules were built"
    assert all(m.codes.is_cuda for m in lat), "a LatticeLinear is not on the GPU"
    x = torch.randn(1, lat[0].desc.k, device="cuda")
    # the compiled CUDA path against the module's own dense weight (float64 on the side)
    y = lat[0](x)
    ref = (x.double() @ lat[0].dense_weight(torch.float64).T + (0 if lat[0].bias is None else lat[0].bias.double()))
    rel = float((y.double() - ref).norm() / ref.norm())
    gens = generate(model, tok, PROMPTS, max_new_tokens=a.max_new_tokens, chat=True, progress=False)
    r = perplexity(model, tok, a.text, max_windows=a.windows, progress=False)
    res = {
        "device": torch.cuda.get_device_name(0), "torch": torch.__version__, "native": lattq.native_status(),
        "lattice_linear_modules": len(lat), "load_seconds": load_s, "layer0_rel_err_vs_float64": rel,
        "ppl": r.ppl, "windows": r.windows, "tokens": r.tokens, "eval_seconds": r.seconds,
        "generations": gens, "peak_gpu_mem_gb": torch.cuda.max_memory_allocated() / 2**30,
    }
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "checkpoint_on_gpu.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
