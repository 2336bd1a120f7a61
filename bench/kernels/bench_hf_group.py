#!/usr/bin/env python3
"""A transformers Llama model with lattq layers at batch 1: one decode-sized forward with q/k/v and gate/up grouped by
``lattq.group_projections`` (what loading a lattq checkpoint through transformers applies) against the layers called
one by one (``lattq.ungroup_projections``).

The model is transformers' own ``LlamaForCausalLM`` with Llama-2-7B layer shapes (hidden 4096, intermediate 11008,
32 heads), ``--layers`` decoder layers (default 4) and random weights; every decoder linear is a ``LatticeLinear`` with
random 2-bit codes (speed only).  Timed: ``model(input_ids[1, 1], use_cache=False)``, bf16, (a) captured in a CUDA
graph and replayed (GPU time of the step) and (b) eager (wall time per step, the Python harness included).  Median of
``--reps`` after warm-up, in one process.  Usage:

    python3 bench/kernels/bench_hf_group.py --out OUTDIR [--layers 4] [--reps 200]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch


def build(layers: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    from lattq.nn import LatticeLinear

    cfg = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_attention_heads=32, num_key_value_heads=32,
                      num_hidden_layers=layers, vocab_size=32000, max_position_embeddings=256)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg).to(torch.bfloat16).eval()
    gen = torch.Generator().manual_seed(1)
    for blk in model.model.layers:
        for parent in (blk.self_attn, blk.mlp):
            for name, lin in list(parent.named_children()):
                if not isinstance(lin, torch.nn.Linear):
                    continue
                n, k = lin.out_features, lin.in_features
                q, _ = torch.linalg.qr(torch.randn(4, 4, generator=gen))
                mod = LatticeLinear.from_codes(
                    torch.randint(0, 256, (n, k // 4), dtype=torch.uint8, generator=gen), q * 0.5,
                    torch.full((4,), -0.75), torch.where(torch.rand(k, generator=gen) < 0.5, -1.0, 1.0),
                    torch.rand(n, generator=gen) * 0.02 + 0.01, None, bits=2, dim=4)
                setattr(parent, name, mod.to("cuda"))
    return model


def time_graph(model, ids, reps: int) -> float:
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s), torch.no_grad():
        for _ in range(3):
            model(ids, use_cache=False)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g), torch.no_grad():
        model(ids, use_cache=False)
    for _ in range(10):
        g.replay()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        g.replay()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) * 1000.0)
    return statistics.median(times)


def time_eager(model, ids, reps: int) -> float:
    with torch.no_grad():
        for _ in range(10):
            model(ids, use_cache=False)
        torch.cuda.synchronize()
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            model(ids, use_cache=False)
            torch.cuda.synchronize()
            times.append((time.perf_counter() - t0) * 1e6)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--git-rev", default=os.environ.get("GIT_REV", "unknown"))
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_hf_group.py needs a CUDA device")
    import transformers

    import lattq

    model = build(args.layers)
    ids = torch.tensor([[17]], device="cuda")
    rows = []
    for rnd in range(2):  # A B A B
        for mode in ("grouped", "separate"):
            if mode == "grouped":
                groups = lattq.group_projections(model)
                assert groups in (0, 2 * args.layers), groups
            else:
                lattq.ungroup_projections(model)
            with torch.no_grad():
                y = model(ids, use_cache=False).logits.float()
            row = {"mode": mode, "round": rnd, "graph_us": time_graph(model, ids, args.reps),
                   "eager_us": time_eager(model, ids, args.reps)}
            rows.append((row, y))
            print(f"{mode} ({rnd}): graph {row['graph_us']:.1f} us, eager {row['eager_us']:.1f} us per forward", flush=True)
    ref = rows[1][1]
    dev = max(float((y - ref).abs().max() / ref.abs().max()) for _, y in rows)
    out = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "git_rev": args.git_rev,
        "layers": args.layers,
        "reps": args.reps,
        "max_rel_logit_diff_vs_separate": dev,
        "rows": [r for r, _ in rows],
    }
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "bench_hf_group.json"), "w") as f:
        json.dump(out, f, indent=1)
    print(f"max |logits - separate| / max |separate| = {dev:.2e}")


if __name__ == "__main__":
    main()
