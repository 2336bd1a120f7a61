#!/usr/bin/env python3
"""Latency probe for the decode path (not the acceptance benchmark; that is bench_gemm.py).

Times, in one process and with the same event/median harness as bench_gemm.py, at small batches:
  * `null`: a 1-element fill kernel - the fixed cost of the timed region (launch, events, cold TLB);
  * cuBLAS bf16 and the lattq dispatcher;
under two cold-L2 methods: `write` (bench_gemm.py's: the flush buffer is overwritten, so L2 is left full of
dirty lines that the timed kernel's reads must write back) and `read` (the flush buffer is read, L2 is left
clean).  Also the per-kernel device time of the lattq launches (torch.profiler, warm L2).  Prints a table and
writes probe_latency.json into --out.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_gemm import SHAPES, LattqLayer, load_lib  # noqa: E402


def timed(fn, flush, reps=100, warmup=10):
    for _ in range(warmup):
        fn()
    st = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    en = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    for i in range(reps):
        flush()
        st[i].record()
        fn()
        en[i].record()
    torch.cuda.synchronize()
    return statistics.median(a.elapsed_time(b) * 1e3 for a, b in zip(st, en))


PHASES = ["pdl_wait+setup", "prologue (x, Hadamard, fold)", "scale+digits", "main loop (warp 0)",
          "flush+cluster sync", "epilogue"]
# GEMV_PDL (variant 8): the prologue runs in its own kernel, so the main kernel's phases read differently
PHASES_PDL = ["setup+pdl_wait (prologue kernel)", "stage first chunks", "wait for the digits", "main loop (warp 0)",
              "flush+cluster sync", "epilogue"]


def trace(args):
    """Per-CTA phase times of the GEMV kernel (%globaltimer, ns) for each shape at --trace-batch, median of 7
    cold-L2 calls (chosen by the span first CTA start -> last CTA end)."""
    import ctypes

    lib = load_lib(args.trace_lib)
    variant = args.variant or 6
    phases = PHASES_PDL if variant == 8 else PHASES
    lib.lattq_debug_gemv_trace.argtypes = [ctypes.c_void_p, ctypes.c_int]
    gen = torch.Generator(device="cuda").manual_seed(7)
    buf = torch.empty(max(8 * torch.cuda.get_device_properties(0).L2_cache_size, 256 * 2**20), dtype=torch.uint8,
                      device="cuda")
    rec = (ctypes.c_ulonglong * (4096 * 16))()
    prep = (ctypes.c_ulonglong * 16)()
    if variant == 8:
        lib.lattq_debug_prep_trace.argtypes = [ctypes.c_void_p]
    out = []
    for n, k in SHAPES:
        L = LattqLayer(lib, n, k, gen)
        m = args.trace_batch
        x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16, generator=gen)
        y = torch.empty(m, n, device="cuda", dtype=torch.bfloat16)
        L.workspace(m, variant)
        runs = []
        for _ in range(8):
            buf.zero_()
            L(x, y, variant)
            torch.cuda.synchronize()
            if lib.lattq_debug_gemv_trace(ctypes.addressof(rec), 4096) != 0:
                raise RuntimeError("lattq_debug_gemv_trace failed")
            ctas = [list(rec[i * 16:(i + 1) * 16]) for i in range(4096) if rec[i * 16] != 0]
            pst = []
            if variant == 8:
                if lib.lattq_debug_prep_trace(ctypes.addressof(prep)) != 0:
                    raise RuntimeError("lattq_debug_prep_trace failed")
                pst = list(prep[:5])
            t0 = min(c[0] for c in ctas)
            span = max(c[6] for c in ctas) - t0
            runs.append((span, t0, ctas, pst))
        runs = sorted(runs[1:])  # the first call is warm-up
        span, t0, ctas, pst = runs[len(runs) // 2]
        start = sorted(c[0] - t0 for c in ctas)
        ph = [sorted(c[i + 1] - c[i] for c in ctas) for i in range(6)]
        ends = sorted(c[6] - t0 for c in ctas)
        med = lambda v: v[len(v) // 2]  # noqa: E731
        print(f"variant {variant} {n}x{k} m={m}: {len(ctas)} CTAs, span {span / 1e3:.2f} us; CTA start offsets med/max "
              f"{med(start) / 1e3:.2f}/{start[-1] / 1e3:.2f} us, end med/max {med(ends) / 1e3:.2f}/{ends[-1] / 1e3:.2f} us")
        prep_rel = None
        if pst and all(pst):  # prologue kernel CTA 0, relative to the first main-kernel CTA's start
            prep_rel = [(s - t0) / 1e3 for s in pst]
            print("    prologue kernel CTA 0 (us from the first main CTA start): start {:.2f}, after PDL wait {:.2f}, "
                  "x and SU landed (barrier 1) {:.2f}, Hadamard + fold + maxima done (barrier 2) {:.2f}, end {:.2f}"
                  .format(*prep_rel))
        for name, v in zip(phases, ph):
            print(f"    {name:32s} min {v[0] / 1e3:6.2f}  med {med(v) / 1e3:6.2f}  max {v[-1] / 1e3:6.2f} us")
        out.append(dict(variant=variant, prep_us=prep_rel, n=n, k=k, m=m, ctas=len(ctas), span_ns=span, start_med_ns=med(start), start_max_ns=start[-1],
                        phases={nm: dict(min=v[0], med=med(v), max=v[-1]) for nm, v in zip(phases, ph)}))
        del L
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"gemv_trace_v{variant}_m{args.trace_batch}{os.environ.get('TRACE_TAG', '')}.json"), "w") as f:
        json.dump(dict(git_rev=args.git_rev, device=torch.cuda.get_device_name(0), shapes=out), f, indent=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lib", help="liblattq_capi.so (required unless --trace-lib)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--variant", type=int, default=0, help="lattq variant id (0 = dispatcher; with --trace-lib: 6 = GEMV (default) or 8 = GEMV_PDL)")
    ap.add_argument("--git-rev", default="unknown")
    ap.add_argument("--trace-lib", default="",
                    help="liblattq_capi.so built with -DLATTQ_GEMV_TRACE: print the GEMV kernel's per-CTA phase times "
                         "(cold L2, write flush) instead of the timing table")
    ap.add_argument("--trace-batch", type=int, default=1)
    args = ap.parse_args()
    if args.trace_lib:
        return trace(args)
    if not args.lib:
        ap.error("--lib is required (or --trace-lib)")
    lib = load_lib(args.lib)
    gen = torch.Generator(device="cuda").manual_seed(7)
    l2 = torch.cuda.get_device_properties(0).L2_cache_size
    buf = torch.empty(max(8 * l2, 256 * 2**20), dtype=torch.uint8, device="cuda")
    flushes = {"write": lambda: buf.zero_(), "read": lambda: torch.sum(buf.view(torch.int32), dtype=torch.int64)}
    tiny = torch.empty(1, device="cuda")
    rows = []
    for name, fl in flushes.items():
        rows.append(dict(flush=name, impl="null", us=timed(lambda: tiny.fill_(1.0), fl)))
    for n, k in SHAPES:
        w = (torch.randn(n, k, device="cuda", generator=gen) * 0.02).to(torch.bfloat16)
        L = LattqLayer(lib, n, k, gen)
        for m in [int(b) for b in args.batches.split(",")]:
            x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16, generator=gen)
            y = torch.empty(m, n, device="cuda", dtype=torch.bfloat16)
            L.workspace(m, args.variant)
            for name, fl in flushes.items():
                rows.append(dict(flush=name, n=n, k=k, m=m, impl="bf16", us=timed(lambda: F.linear(x, w), fl)))
                rows.append(dict(flush=name, n=n, k=k, m=m, impl="lattq", us=timed(lambda: L(x, y, args.variant), fl)))
            from torch.profiler import ProfilerActivity, profile

            for _ in range(5):
                L(x, y, args.variant)
            torch.cuda.synchronize()
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                for _ in range(20):
                    L(x, y, args.variant)
                torch.cuda.synchronize()
            for ev in prof.key_averages():
                dt = getattr(ev, "device_time", None) or getattr(ev, "cuda_time", 0)
                if dt:
                    rows.append(dict(flush="warm-profile", n=n, k=k, m=m, impl=ev.key[:60], us=dt))
        del w, L
        torch.cuda.empty_cache()
    for r in rows:
        print(f"{r['flush']:12s} {r.get('n', '-')!s:>6}x{r.get('k', '-')!s:<6} m={r.get('m', '-')!s:<4} "
              f"{r['impl'][:60]:60s} {r['us']:8.2f} us")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "probe_latency.json"), "w") as f:
        json.dump(dict(git_rev=args.git_rev, device=torch.cuda.get_device_name(0), rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
