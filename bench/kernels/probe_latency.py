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


WH_MAIN = ["PDL wait (prologue)", "first stage landed", "main loop", "stream-K fixup", "epilogue"]
# slot 6 (had_out = 128 epilogue): the tile is in shared memory; the rest of the epilogue is the pass and the stores


def wh_trace(args):
    """Per-CTA phase times of the WGMMA_F16 kernels (trace build, %globaltimer) for each --wh-cases N x K x m (--variant 7:
    the WGMMA variant, whose m <= 32 calls run the same kernel frame; else WGMMA_F16), the
    call with the median span of 7 cold-L2 calls (write flush): the prologue kernel's CTAs, then the main kernel's by
    phase, and per SM the gap between one main CTA's end and the next one's start."""
    import ctypes

    lib = load_lib(args.trace_lib)
    lib.lattq_debug_wh_trace.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
    if os.environ.get("WH_NOSTORE"):  # the epilogue's y stores off (results wrong by design)
        lib.lattq_debug_wh_nostore(1)
    flush = (lambda: buf.zero_()) if args.flush == "write" else (lambda: torch.sum(buf.view(torch.int32), dtype=torch.int64))
    gen = torch.Generator(device="cuda").manual_seed(7)
    buf = torch.empty(max(8 * torch.cuda.get_device_properties(0).L2_cache_size, 256 * 2**20), dtype=torch.uint8,
                      device="cuda")
    R = 4096
    mrec, prec = (ctypes.c_ulonglong * (R * 8))(), (ctypes.c_ulonglong * (R * 4))()
    med = lambda v: v[len(v) // 2]  # noqa: E731
    out = []
    wv = 7 if args.variant == 7 else 9
    for case in args.wh_cases.split(","):
        n, k, m = (int(v) for v in case.split("x"))
        L = LattqLayer(lib, n, k, gen)
        x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16, generator=gen)
        y = torch.empty(m, n, device="cuda", dtype=torch.bfloat16)
        L.workspace(m, wv)
        runs = []
        for _ in range(8):
            flush()
            L(x, y, wv)
            torch.cuda.synchronize()
            if lib.lattq_debug_wh_trace(ctypes.addressof(mrec), ctypes.addressof(prec), R) != 0:
                raise RuntimeError("lattq_debug_wh_trace failed")
            mc = [list(mrec[i * 8:(i + 1) * 8]) for i in range(R) if mrec[i * 8] != 0]
            pc = [list(prec[i * 4:(i + 1) * 4]) for i in range(R) if prec[i * 4] != 0]
            t0 = min(c[0] for c in pc) if pc else min(c[0] for c in mc)
            span = max(c[5] for c in mc) - t0
            runs.append((span, t0, mc, pc))
        span, t0, mc, pc = sorted(runs[1:], key=lambda r: r[0])[3]  # the first call is warm-up
        us = lambda v: v / 1e3  # noqa: E731
        print(f"wh_trace variant {wv} {n}x{k} m={m} ({args.flush} flush{', no y stores' if os.environ.get('WH_NOSTORE') else ''}): span {us(span):.2f} us (prologue start -> last main CTA end)")
        rec = dict(variant=wv, n=n, k=k, m=m, span_ns=span)
        if pc:
            ps = sorted(c[0] - t0 for c in pc)
            pw = sorted(c[1] - t0 for c in pc)
            pe = sorted(c[2] - t0 for c in pc)
            print(f"    prologue: {len(pc)} CTAs; start max {us(ps[-1]):.2f}, PDL wait med/max {us(med(pw)):.2f}/"
                  f"{us(pw[-1]):.2f}, end min/med/max {us(pe[0]):.2f}/{us(med(pe)):.2f}/{us(pe[-1]):.2f} us")
            rec["prologue"] = dict(ctas=len(pc), end_min=pe[0], end_med=med(pe), end_max=pe[-1], wait_med=med(pw))
        st = sorted(c[0] - t0 for c in mc)
        en = sorted(c[5] - t0 for c in mc)
        print(f"    main: {len(mc)} CTAs; start min/med/max {us(st[0]):.2f}/{us(med(st)):.2f}/{us(st[-1]):.2f}, end "
              f"min/med/max {us(en[0]):.2f}/{us(med(en)):.2f}/{us(en[-1]):.2f} us")
        ph = {}
        for i, name in enumerate(WH_MAIN):
            v = sorted(c[i + 1] - c[i] for c in mc if c[i + 1] and c[i])
            if v:
                ph[name] = dict(min=v[0], med=med(v), max=v[-1], n=len(v))
                print(f"    {name:22s} min {us(v[0]):8.2f}  med {us(med(v)):8.2f}  max {us(v[-1]):8.2f} us  ({len(v)} CTAs)")
        v = sorted(c[6] - c[4] for c in mc if c[6] and c[4])
        if v:
            print(f"    {'  tile to smem + sync':22s} min {us(v[0]):8.2f}  med {us(med(v)):8.2f}  max {us(v[-1]):8.2f} us  ({len(v)} CTAs)")
        # CTAs that started after the first wave: the gap on their SM since the previous CTA there ended
        by_sm = {}
        for c in mc:
            by_sm.setdefault(c[7], []).append(c)
        gaps = []
        for cs in by_sm.values():
            cs.sort(key=lambda c: c[0])
            gaps += [b[0] - a[5] for a, b in zip(cs, cs[1:])]
        if gaps:
            gaps.sort()
            print(f"    same-SM gap (end -> next start): {len(gaps)} CTAs, min/med/max {us(gaps[0]):.2f}/"
                  f"{us(med(gaps)):.2f}/{us(gaps[-1]):.2f} us; SMs used {len(by_sm)}")
            rec["sm_gap"] = dict(min=gaps[0], med=med(gaps), max=gaps[-1], n=len(gaps))
        rec.update(main_ctas=len(mc), start_max=st[-1], end_min=en[0], end_med=med(en), end_max=en[-1], phases=ph)
        out.append(rec)
        del L
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"wh_trace{os.environ.get('TRACE_TAG', '')}.json"), "w") as f:
        json.dump(dict(git_rev=args.git_rev, device=torch.cuda.get_device_name(0), cases=out), f, indent=1)


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
    ap.add_argument("--flush", default="write", choices=["write", "read"], help="--wh-cases: cold-L2 method")
    ap.add_argument("--wh-cases", default="",
                    help="with --trace-lib: N x K x m cases (comma-separated) whose WGMMA_F16 kernels are traced instead")
    args = ap.parse_args()
    if args.trace_lib and args.wh_cases:
        return wh_trace(args)
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
