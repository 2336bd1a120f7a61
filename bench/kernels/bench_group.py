#!/usr/bin/env python3
"""Grouped layers on one input (Q/K/V, gate/up), side by side on the GPU (session 8).

For each group of real-model projections and batch m, in one process, cold L2, median of --reps:
  bf16:separate   one cuBLAS call per projection (torch.nn.functional.linear)
  bf16:concat     one cuBLAS call on the concatenated weights (what inference engines do)
  lattq:separate  one lattq_cuda_forward (AUTO) per projection (--no-pdl: also launched without PDL)
  lattq:group     one lattq_cuda_forward_group (AUTO), and its forced GEMV / GEMV_PDL rows
  floor           2-bit code bytes of the group / measured read bandwidth
Each lattq:group output is checked against lattq:separate (relative error; both are the same layers).

Output (into --out): bench_group.json (meta, rows with group, ns, k, m, impl, median_us) and bench_group.md.
Usage: python3 bench/kernels/bench_group.py --lib build-gpu/cuda/liblattq_capi.so --out OUTDIR
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_gemm import LATTQ_BF16, Layer, LattqLayer, LayerDesc, Timer, load_lib, measure_read_bw  # noqa: E402

GROUPS = [
    ("llama2-7b qkv", [4096, 4096, 4096], 4096),
    ("llama2-7b gate/up", [11008, 11008], 4096),
    ("llama3-8b qkv", [4096, 1024, 1024], 4096),
    ("llama3-8b gate/up", [14336, 14336], 4096),
    ("llama3-70b qkv", [8192, 1024, 1024], 8192),
    ("llama3-70b gate/up", [28672, 28672], 8192),
]
IMPLS = ["bf16:separate", "bf16:concat", "floor", "lattq:separate", "lattq:separate:nopdl", "lattq:group",
         "lattq:group:gemv", "lattq:group:gemv_pdl"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lib", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--reps", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--batches", default="1,2,4,8,16")
    ap.add_argument("--no-pdl", action="store_true",
                    help="also time lattq:separate launched without programmatic dependent launch")
    ap.add_argument("--git-rev", default=os.environ.get("GIT_REV", "unknown"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    lib = load_lib(args.lib)
    gen = torch.Generator(device="cuda").manual_seed(8)
    bw = measure_read_bw()
    timer = Timer(args.reps, args.warmup)
    batches = [int(b) for b in args.batches.split(",")]
    rows, checks = [], []
    stream = lambda: torch.cuda.current_stream().cuda_stream  # noqa: E731
    for name, ns, k in GROUPS:
        ws_ = [(torch.randn(n, k, device="cuda", generator=gen) * 0.02).to(torch.bfloat16) for n in ns]
        wcat = torch.cat(ws_)
        Ls = [LattqLayer(lib, n, k, gen) for n in ns]
        arr = (Layer * len(ns))(*[L.layer for L in Ls])
        descs = (LayerDesc * len(ns))(*[L.layer.desc for L in Ls])
        code_bytes = sum(ns) * k // 4
        for m in batches:
            x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16, generator=gen)

            def add(impl, us, **extra):
                if impl != "floor":  # spread of the repetitions: min and 90th percentile
                    sm = timer.samples
                    extra.update(min_us=round(sm[0], 3), p90_us=round(sm[int(0.9 * (len(sm) - 1))], 3))
                rows.append(dict(group=name, ns=ns, k=k, m=m, impl=impl, median_us=round(us, 3), **extra))
                print(f"{name:20s} m={m:3d} {impl:24s} {us:8.2f} us  {extra.get('min_us', '')} {extra.get('p90_us', '')}",
                      flush=True)

            add("bf16:separate", timer(lambda: [F.linear(x, w) for w in ws_]))
            add("bf16:concat", timer(lambda: F.linear(x, wcat).split(ns, dim=-1)))
            add("floor", code_bytes / bw * 1e6, bytes=code_bytes, read_bw_Bps=bw)
            ys = [torch.empty(m, n, device="cuda", dtype=torch.bfloat16) for n in ns]
            for L in Ls:
                L.workspace(m, 0)
            add("lattq:separate", timer(lambda: [L(x, y, 0) for L, y in zip(Ls, ys)]))
            ref = [y.float().clone() for y in ys]
            if args.no_pdl:  # the same calls launched without programmatic dependent launch (LATTQ_GEMV_PDL_ATTR=0)
                os.environ["LATTQ_GEMV_PDL_ATTR"] = "0"
                add("lattq:separate:nopdl", timer(lambda: [L(x, y, 0) for L, y in zip(Ls, ys)]))
                del os.environ["LATTQ_GEMV_PDL_ATTR"]
            ptrs = (ctypes.c_void_p * len(ns))(*[y.data_ptr() for y in ys])
            for impl, vid in (("lattq:group", 0), ("lattq:group:gemv", 6), ("lattq:group:gemv_pdl", 8)):
                nb = ctypes.c_size_t(0)
                if lib.lattq_cuda_forward_group_workspace_size(descs, len(ns), m, vid, ctypes.byref(nb)):
                    raise RuntimeError(lib.lattq_last_error().decode())
                wsb = torch.empty(max(nb.value, 256), dtype=torch.uint8, device="cuda")

                def call():
                    if lib.lattq_cuda_forward_group(arr, len(ns), x.data_ptr(), LATTQ_BF16, m, ptrs, wsb.data_ptr(),
                                                    wsb.numel(), vid, stream()):
                        raise RuntimeError(lib.lattq_last_error().decode())

                for y in ys:
                    y.fill_(float("nan"))
                call()
                torch.cuda.synchronize()
                err = max(float((y.float() - r).norm() / r.norm()) for y, r in zip(ys, ref))
                checks.append(dict(group=name, m=m, impl=impl, rel_err_vs_separate=err))
                if not err <= 1e-2:
                    raise RuntimeError(f"{name} m={m} {impl}: rel err {err:.3g} vs the separate calls")
                add(impl, timer(call))
        del Ls, ws_, wcat
        torch.cuda.empty_cache()
    props = torch.cuda.get_device_properties(0)
    meta = dict(device=props.name, cuda=torch.version.cuda, torch=torch.__version__, git_rev=args.git_rev,
                read_bw_Bps=bw, reps=args.reps, warmup=args.warmup, cold_l2=True, act_dtype="bf16",
                lattq_layer="bits=2 dim=4 had_in=had_out=128, bias none; times include input/output transforms",
                time_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), command=" ".join(sys.argv))
    with open(os.path.join(args.out, "bench_group.json"), "w") as f:
        json.dump(dict(meta=meta, rows=rows, checks=checks), f, indent=1)
    md = [f"# lattq grouped layers ({props.name}, torch {torch.__version__}, rev {args.git_rev})", "",
          f"Median of {args.reps} cold-L2 repetitions, microseconds; read bandwidth {bw / 1e12:.3f} TB/s. "
          "`x bf16` = bf16:concat / lattq:group; `x sep` = lattq:separate / lattq:group.", "",
          "| group | m | " + " | ".join(IMPLS) + " | x bf16 | x sep |", "|" + "---|" * (len(IMPLS) + 4)]
    for name, ns, k in GROUPS:
        for m in batches:
            r = {x["impl"]: x["median_us"] for x in rows if x["group"] == name and x["m"] == m}
            cells = [f"{r[i]:.1f}" if i in r else "-" for i in IMPLS]
            md.append(f"| {name} | {m} | " + " | ".join(cells) +
                      f" | {r['bf16:concat'] / r['lattq:group']:.2f} | {r['lattq:separate'] / r['lattq:group']:.2f} |")
    with open(os.path.join(args.out, "bench_group.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
