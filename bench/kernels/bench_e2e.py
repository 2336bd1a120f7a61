#!/usr/bin/env python3
"""End-to-end decode benchmark (issue 3): a Llama-2-7B-shaped model with random weights, batch 1,
a 128-token prompt then 256 generated tokens (greedy), static KV cache, the WHOLE decode step (all
layers, attention, final norm, LM head, argmax) captured in one CUDA graph - for bf16 (cuBLAS through
torch.nn.functional.linear) and for lattq 2-bit (every decoder linear through lattq_cuda_forward, bf16
activations; embeddings and LM head stay bf16 in both).  Reports decode tokens/s and peak GPU memory of
each model, built and measured one after the other in the same process.  The step's small ops (add + RMSNorm,
rotary, SiLU * mul) are torch.compile'd for both models (session 7; --no-compile: eager), and --overhead also
times the step with free linears, i.e. the harness alone.  Q/K/V and gate/up are grouped in both models (session 8:
bf16 multiplies by the concatenated weights, lattq calls lattq_cuda_forward_group); --separate also runs both with
one call per projection.

First run: session 4 (bench/results/bench_e2e*.json).

lattq is called through its C API (liblattq_capi.so, -DLATTQ_CUDA_SHARED_CAPI=ON) via ctypes, like
bench_gemm.py.  Usage:
    python3 bench/kernels/bench_e2e.py --lib build-gpu/cuda/liblattq_capi.so --out OUTDIR
"""
from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_gemm import LayerDesc, Layer, load_lib, tiled_pack  # noqa: E402

LATTQ_BF16 = 2


class Cfg:
    hidden = 4096
    inter = 11008
    heads = 32
    head_dim = 128
    vocab = 32000
    eps = 1e-5


class Bf16Linear:
    def __init__(self, n, k, gen):
        self.w = (torch.randn(n, k, device="cuda", generator=gen) * 0.02).to(torch.bfloat16)

    def __call__(self, x):
        return F.linear(x, self.w)

    @staticmethod
    def group(ns, k, gen):
        return Bf16Group(ns, k, gen)


class Bf16Group:
    """Layers on one input with their weights concatenated (one cuBLAS call, outputs split), as inference engines
    fuse Q/K/V and gate/up."""

    def __init__(self, ns, k, gen):
        self.ns = list(ns)
        self.w = torch.cat([Bf16Linear(n, k, gen).w for n in ns])

    def __call__(self, x):
        return F.linear(x, self.w).split(self.ns, dim=-1)


class LattqLinear:
    """2-bit lattq layer with random codes (speed only); shares one workspace across all layers."""

    lib = None
    ws = None
    variant = 0  # lattq_cuda_variant used by every layer (0 = AUTO, the dispatcher)

    def __init__(self, n, k, gen, had=128):
        self.n, self.k = n, k
        canon = torch.randint(0, 256, (n, k // 4), dtype=torch.uint8, device="cuda", generator=gen)
        self.codes = tiled_pack(canon)
        del canon
        s = 1 / math.sqrt(1.25)
        self.A = (torch.eye(4, device="cuda") * s).contiguous()
        self.b = torch.full((4,), -1.5 * s, device="cuda")
        self.su = (torch.randint(0, 2, (k,), device="cuda", generator=gen).float() * 2 - 1).contiguous()
        self.sv = ((torch.randint(0, 2, (n,), device="cuda", generator=gen).float() * 2 - 1) * 0.02).contiguous()
        self.layer = Layer(LayerDesc(2, 4, n, k, min(had, k), min(had, n)), 1, self.codes.data_ptr(),
                           self.A.data_ptr(), self.b.data_ptr(), self.su.data_ptr(), self.sv.data_ptr(), None)
        nb = ctypes.c_size_t(0)
        st = self.lib.lattq_cuda_forward_workspace_size(ctypes.byref(self.layer.desc), 1, 0, ctypes.byref(nb))
        if st != 0:
            raise RuntimeError(self.lib.lattq_last_error().decode())
        if LattqLinear.ws is None or LattqLinear.ws.numel() < nb.value:
            LattqLinear.ws = torch.empty(max(nb.value, 256), dtype=torch.uint8, device="cuda")

    def __call__(self, x):
        x = x.contiguous()
        y = torch.empty(x.shape[0], self.n, device="cuda", dtype=torch.bfloat16)
        st = self.lib.lattq_cuda_forward(ctypes.byref(self.layer), x.data_ptr(), LATTQ_BF16, x.shape[0], y.data_ptr(),
                                         LattqLinear.ws.data_ptr(), LattqLinear.ws.numel(), LattqLinear.variant,
                                         torch.cuda.current_stream().cuda_stream)
        if st != 0:
            raise RuntimeError(self.lib.lattq_last_error().decode())
        return y

    @staticmethod
    def group(ns, k, gen):
        return LattqGroup(ns, k, gen)


class LattqGroup:
    """Layers on one input through lattq_cuda_forward_group (one launch for all of them where the variant allows)."""

    def __init__(self, ns, k, gen):
        self.ns = list(ns)
        self.layers = [LattqLinear(n, k, gen) for n in ns]
        self.arr = (Layer * len(ns))(*[l.layer for l in self.layers])
        self.descs = (LayerDesc * len(ns))(*[l.layer.desc for l in self.layers])
        self.ptrs = (ctypes.c_void_p * len(ns))()
        nb = ctypes.c_size_t(0)
        lib = LattqLinear.lib
        if lib.lattq_cuda_forward_group_workspace_size(self.descs, len(ns), 1, LattqLinear.variant, ctypes.byref(nb)):
            raise RuntimeError(lib.lattq_last_error().decode())
        if LattqLinear.ws is None or LattqLinear.ws.numel() < nb.value:
            LattqLinear.ws = torch.empty(max(nb.value, 256), dtype=torch.uint8, device="cuda")

    def __call__(self, x):
        x = x.contiguous()
        ys = [torch.empty(x.shape[0], n, device="cuda", dtype=torch.bfloat16) for n in self.ns]
        for i, y in enumerate(ys):
            self.ptrs[i] = y.data_ptr()
        lib = LattqLinear.lib
        st = lib.lattq_cuda_forward_group(self.arr, len(ys), x.data_ptr(), LATTQ_BF16, x.shape[0], self.ptrs,
                                          LattqLinear.ws.data_ptr(), LattqLinear.ws.numel(), LattqLinear.variant,
                                          torch.cuda.current_stream().cuda_stream)
        if st != 0:
            raise RuntimeError(lib.lattq_last_error().decode())
        return ys


class NullLinear:
    """Diagnostic only (--overhead): a linear that costs nothing (an uninitialised output of the right shape), so the
    same harness then measures everything in the decode step except the decoder linears."""

    def __init__(self, n, k, gen):
        self.n = n

    def __call__(self, x):
        return torch.empty(x.shape[0], self.n, device="cuda", dtype=torch.bfloat16)

    @staticmethod
    def group(ns, k, gen):
        return lambda x: [torch.empty(x.shape[0], n, device="cuda", dtype=torch.bfloat16) for n in ns]


def rmsnorm(x, w, eps):
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype) * w


# The decode step's small ops, identical for both models.  Eager, they cost about 45 tiny kernels per layer (3.4 ms
# per token on the H100 in session 7, measured with --overhead: more than lattq's linears).  With --compile
# (default) torch.compile fuses each group below into one or two kernels; the KV-cache writes and the attention
# stay eager (index_copy_ on the cache, scaled_dot_product_attention).
def add_norm(x, d, w, eps):
    """residual add and the next RMSNorm: (x + d, rmsnorm(x + d))"""
    x = x + d
    return x, rmsnorm(x, w, eps)


def rope2(q, k, cos, sin):
    """rotary embedding of q and k, (1, heads, 1, head_dim) each, interleaved pairs; cos / sin (1, 1, 1, hd / 2)"""
    def one(x):
        x1, x2 = x[..., 0::2].float(), x[..., 1::2].float()
        return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2).to(x.dtype)
    return one(q), one(k)


def silu_mul(g, u):
    return F.silu(g) * u


class Model:
    fused = dict(add_norm=add_norm, rope2=rope2, silu_mul=silu_mul, rmsnorm=rmsnorm)

    def __init__(self, make_linear, n_layers, max_len, gen, group=True):
        c = Cfg
        self.group = group
        self.emb = (torch.randn(c.vocab, c.hidden, device="cuda", generator=gen) * 0.02).to(torch.bfloat16)
        self.head = (torch.randn(c.vocab, c.hidden, device="cuda", generator=gen) * 0.02).to(torch.bfloat16)
        self.norm = torch.ones(c.hidden, device="cuda", dtype=torch.bfloat16)
        self.layers = []
        for _ in range(n_layers):
            if group:  # Q/K/V and gate/up: one call each
                lin = dict(qkv=make_linear.group([c.hidden] * 3, c.hidden, gen),
                           gu=make_linear.group([c.inter] * 2, c.hidden, gen))
            else:
                lin = dict(q=make_linear(c.hidden, c.hidden, gen), k=make_linear(c.hidden, c.hidden, gen),
                           v=make_linear(c.hidden, c.hidden, gen), gate=make_linear(c.inter, c.hidden, gen),
                           up=make_linear(c.inter, c.hidden, gen))
            self.layers.append(dict(
                **lin, o=make_linear(c.hidden, c.hidden, gen), down=make_linear(c.hidden, c.inter, gen),
                n1=torch.ones(c.hidden, device="cuda", dtype=torch.bfloat16),
                n2=torch.ones(c.hidden, device="cuda", dtype=torch.bfloat16),
                kc=torch.zeros(1, c.heads, max_len, c.head_dim, device="cuda", dtype=torch.bfloat16),
                vc=torch.zeros(1, c.heads, max_len, c.head_dim, device="cuda", dtype=torch.bfloat16)))
        self.max_len = max_len
        inv = 1.0 / (10000 ** (torch.arange(0, c.head_dim, 2, device="cuda").float() / c.head_dim))
        ang = torch.arange(max_len, device="cuda").float()[:, None] * inv[None, :]
        self.cos, self.sin = ang.cos(), ang.sin()
        self.zero = torch.zeros(1, c.hidden, device="cuda", dtype=torch.bfloat16)
        # static inputs of the captured step
        self.tok = torch.zeros(1, dtype=torch.long, device="cuda")
        self.pos = torch.zeros(1, dtype=torch.long, device="cuda")

    def step(self):
        c, f = Cfg, self.fused
        x = self.emb.index_select(0, self.tok)  # (1, hidden)
        mask = (torch.arange(self.max_len, device="cuda") <= self.pos)[None, None, None, :]
        cos = self.cos.index_select(0, self.pos)[None, None]  # (1, 1, 1, hd / 2), once per step
        sin = self.sin.index_select(0, self.pos)[None, None]
        d = self.zero
        for L in self.layers:
            x, h = f["add_norm"](x, d, L["n1"], c.eps)
            q, k, v = L["qkv"](h) if self.group else (L["q"](h), L["k"](h), L["v"](h))
            q = q.reshape(1, 1, c.heads, c.head_dim).transpose(1, 2)
            k = k.reshape(1, 1, c.heads, c.head_dim).transpose(1, 2)
            v = v.reshape(1, 1, c.heads, c.head_dim).transpose(1, 2)
            q, k = f["rope2"](q, k, cos, sin)
            L["kc"].index_copy_(2, self.pos, k)
            L["vc"].index_copy_(2, self.pos, v)
            a = F.scaled_dot_product_attention(q, L["kc"], L["vc"], attn_mask=mask)
            x, h = f["add_norm"](x, L["o"](a.transpose(1, 2).reshape(1, c.hidden)), L["n2"], c.eps)
            g, u = L["gu"](h) if self.group else (L["gate"](h), L["up"](h))
            d = L["down"](f["silu_mul"](g, u))
        x = x + d
        logits = F.linear(f["rmsnorm"](x, self.norm, c.eps), self.head)
        self.tok.copy_(logits.argmax(-1))
        self.pos.add_(1)


def run_model(name, make_linear, args, gen, group=True):
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    model = Model(make_linear, args.layers, args.prompt + args.gen + 1, gen, group)
    weights_bytes = torch.cuda.memory_allocated()
    # warm-up on a side stream, then capture one decode step
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(2):
            model.step()
    torch.cuda.current_stream().wait_stream(s)
    model.pos.zero_()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        model.step()
    results = []
    for rep in range(args.reps):
        for L in model.layers:
            L["kc"].zero_()
            L["vc"].zero_()
        model.pos.zero_()
        model.tok.fill_(1)
        for _ in range(args.prompt):  # prompt, token by token through the same graph (not timed)
            graph.replay()
        torch.cuda.synchronize()
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(args.gen):
            graph.replay()
        b.record()
        b.synchronize()
        results.append(args.gen / (a.elapsed_time(b) / 1e3))
    peak = torch.cuda.max_memory_allocated()
    out = dict(model=name, grouped=group, tokens_per_s=sorted(results)[len(results) // 2], tokens_per_s_all=results,
               peak_gpu_bytes=peak, weights_and_cache_bytes=weights_bytes)
    print(f"{name}: {out['tokens_per_s']:.1f} tokens/s (median of {args.reps}), peak {peak / 2**30:.2f} GiB", flush=True)
    del graph, model
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lib", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--gen", type=int, default=256)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--variants", default="0", help="lattq variants to run (comma list; 0 = AUTO, 2 = IMMA, 6 = GEMV, 8 = GEMV_PDL)")
    ap.add_argument("--no-compile", action="store_true",
                    help="run the small ops of the step eagerly (about 45 kernels per layer) instead of torch.compile'd")
    ap.add_argument("--overhead", action="store_true",
                    help="also run the step with free linears (NullLinear): the harness cost outside the linears")
    ap.add_argument("--separate", action="store_true",
                    help="also run both models with separate Q/K/V and gate/up calls (session 7's step; the default "
                         "step groups them: concatenated weights for bf16, lattq_cuda_forward_group for lattq)")
    ap.add_argument("--git-rev", default=os.environ.get("GIT_REV", "unknown"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    LattqLinear.lib = load_lib(args.lib)
    if not args.no_compile:
        Model.fused = {name: torch.compile(fn, fullgraph=True, dynamic=False) for name, fn in Model.fused.items()}
    gen = torch.Generator(device="cuda").manual_seed(0)
    rows = []
    for group in (True, False) if args.separate else (True,):
        tag = "" if group else ":separate"
        rows.append(run_model("bf16" + tag, Bf16Linear, args, gen, group))
        for v in [int(t) for t in args.variants.split(",") if t]:
            LattqLinear.variant = v
            rows.append(run_model(("lattq-2bit" if v == 0 else f"lattq-2bit:variant{v}") + tag, LattqLinear, args,
                                  gen, group))
    if args.overhead:
        rows.append(run_model("no-linears (harness only)", NullLinear, args, gen))
    meta = dict(device=torch.cuda.get_device_name(0), torch=torch.__version__, cuda=torch.version.cuda,
                git_rev=args.git_rev, layers=args.layers, prompt=args.prompt, gen=args.gen, batch=1,
                cuda_graph="whole decode step",
                projections="Q/K/V and gate/up grouped (bf16: concatenated weights; lattq: lattq_cuda_forward_group); "
                            "rows marked :separate call them one by one",
                small_ops="eager" if args.no_compile else "torch.compile (add+rmsnorm, rope, silu*mul fused)", time_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    with open(os.path.join(args.out, "bench_e2e.json"), "w") as f:
        json.dump(dict(meta=meta, rows=rows), f, indent=1)
    for r in rows:
        if r["model"].startswith(("no-linears", "bf16")):
            continue
        base = next(b for b in rows if b["model"].startswith("bf16") and b["grouped"] == r["grouped"])
        sp = r["tokens_per_s"] / base["tokens_per_s"]
        print(f"{r['model']} / {base['model']} decode speed: {sp:.2f}x; "
              f"peak memory {r['peak_gpu_bytes'] / base['peak_gpu_bytes']:.2f}x")


if __name__ == "__main__":
    main()
