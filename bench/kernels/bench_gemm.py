#!/usr/bin/env python3
"""Side-by-side GPU benchmark of one linear layer (issue 3's acceptance instrument).

In one process, for each shape (N x K) and batch m: cuBLAS bf16 (torch.nn.functional.linear), torch's int4
weight-only kernel (torch.ops.aten._weight_int4pack_mm, group 128), every lattq CUDA variant and the
dispatcher's pick (LATTQ_VARIANT_AUTO), and the memory floor (2-bit code bytes / measured read bandwidth).
Cold L2 before every repetition (a buffer larger than L2 is overwritten), CUDA events around the call
only, median of --reps (>= 100) repetitions after warm-up.  All lattq times include the input transform
(SU, Hadamard, A^T fold) and the output transform (Hadamard, SV, bias): it is the full layer.

lattq is called through its C API (liblattq_capi.so, built with -DLATTQ_CUDA_SHARED_CAPI=ON) via ctypes.

Output (into --out): bench_gemm.json (device, driver, CUDA/torch versions, git revision, rows),
bench_gemm.md (table), bench_gemm.png (speed-up over bf16 vs batch, one panel per shape).
"""
from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

SHAPES = [(4096, 4096), (11008, 4096), (4096, 11008), (14336, 4096), (4096, 14336), (28672, 8192), (8192, 28672)]
BATCHES = [1, 2, 4, 8, 16, 32, 64, 128, 512, 2048]
# fused_gemv (4) and gemv (6) are decode kernels, timed only for m <= --fused-max-m / --gemv-max-m; tiled_gemm (5)
# only for m >= --gemm-min-m.  A failure of one of these is reported and does not abort the run.
VARIANTS = {"reference": 1, "imma": 2, "imma_wide": 3, "fused_gemv": 4, "tiled_gemm": 5, "gemv": 6, "wgmma": 7, "gemv_pdl": 8,
            "wgmma_f16": 9}
EXPERIMENTAL = ("fused_gemv", "tiled_gemm", "gemv", "wgmma", "gemv_pdl", "wgmma_f16")
LATTQ_BF16 = 2


class LayerDesc(ctypes.Structure):
    _fields_ = [("bits", ctypes.c_int32), ("dim", ctypes.c_int32), ("n", ctypes.c_int64), ("k", ctypes.c_int64),
                ("had_in", ctypes.c_int32), ("had_out", ctypes.c_int32)]


class Layer(ctypes.Structure):
    _fields_ = [("desc", LayerDesc), ("layout", ctypes.c_int32), ("codes", ctypes.c_void_p), ("A", ctypes.c_void_p),
                ("b", ctypes.c_void_p), ("su", ctypes.c_void_p), ("sv", ctypes.c_void_p), ("bias", ctypes.c_void_p)]


def load_lib(path: str):
    lib = ctypes.CDLL(path)
    lib.lattq_last_error.restype = ctypes.c_char_p
    lib.lattq_cuda_forward_workspace_size.argtypes = [ctypes.POINTER(LayerDesc), ctypes.c_int64, ctypes.c_int32,
                                                      ctypes.POINTER(ctypes.c_size_t)]
    lib.lattq_cuda_forward.argtypes = [ctypes.POINTER(Layer), ctypes.c_void_p, ctypes.c_int32, ctypes.c_int64,
                                       ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int32,
                                       ctypes.c_void_p]
    lib.lattq_cuda_forward_group_workspace_size.argtypes = [ctypes.POINTER(LayerDesc), ctypes.c_int32, ctypes.c_int64,
                                                            ctypes.c_int32, ctypes.POINTER(ctypes.c_size_t)]
    lib.lattq_cuda_forward_group.argtypes = [ctypes.POINTER(Layer), ctypes.c_int32, ctypes.c_void_p, ctypes.c_int32,
                                             ctypes.c_int64, ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p,
                                             ctypes.c_size_t, ctypes.c_int32, ctypes.c_void_p]
    return lib


def tiled_pack(canonical: torch.Tensor) -> torch.Tensor:
    """Canonical [N, R] uint8 -> TILED (docs/format.md §4): chunk c of row n at ((n/16)*C + c)*256 + (n%16)*16."""
    n, r = canonical.shape
    chunks, tiles = -(-r // 16), -(-n // 16)
    padded = torch.zeros(tiles * 16, chunks * 16, dtype=torch.uint8, device=canonical.device)
    padded[:n, :r] = canonical
    return padded.reshape(tiles, 16, chunks, 16).permute(0, 2, 1, 3).contiguous().reshape(-1)


class LattqLayer:
    def __init__(self, lib, n: int, k: int, gen: torch.Generator, had: int = 128):
        dev = "cuda"
        self.lib, self.n, self.k = lib, n, k
        canon = torch.randint(0, 256, (n, k // 4), dtype=torch.uint8, device=dev, generator=gen)
        self.canon = canon
        self.codes = tiled_pack(canon)
        s = 1 / math.sqrt(1.25)
        self.A = (torch.eye(4, device=dev) * s).float().contiguous()
        self.b = torch.full((4,), -1.5 * s, device=dev)
        self.su = (torch.randint(0, 2, (k,), device=dev, generator=gen).float() * 2 - 1).contiguous()
        self.sv = ((torch.randint(0, 2, (n,), device=dev, generator=gen).float() * 2 - 1) * 0.02).contiguous()
        self.layer = Layer(LayerDesc(2, 4, n, k, min(had, k), min(had, n)), 1, self.codes.data_ptr(), self.A.data_ptr(),
                           self.b.data_ptr(), self.su.data_ptr(), self.sv.data_ptr(), None)
        self.ws = None

    def workspace(self, m: int, variant: int) -> int:
        nb = ctypes.c_size_t(0)
        st = self.lib.lattq_cuda_forward_workspace_size(ctypes.byref(self.layer.desc), m, variant, ctypes.byref(nb))
        if st != 0:
            raise RuntimeError(self.lib.lattq_last_error().decode())
        if self.ws is None or self.ws.numel() < nb.value:
            self.ws = torch.empty(max(nb.value, 256), dtype=torch.uint8, device="cuda")
        return nb.value

    def __call__(self, x: torch.Tensor, y: torch.Tensor, variant: int):
        st = self.lib.lattq_cuda_forward(ctypes.byref(self.layer), x.data_ptr(), LATTQ_BF16, x.shape[0], y.data_ptr(),
                                         self.ws.data_ptr(), self.ws.numel(), variant,
                                         torch.cuda.current_stream().cuda_stream)
        if st != 0:
            raise RuntimeError(self.lib.lattq_last_error().decode())


def measure_read_bw(gib: float = 4.0) -> float:
    x = torch.empty(int(gib * 2**30) // 4, dtype=torch.float32, device="cuda").uniform_()
    for _ in range(3):
        x.sum()
    ts = []
    for _ in range(10):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        x.sum()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b) / 1e3)
    del x
    torch.cuda.empty_cache()
    return gib * 2**30 / statistics.median(ts)


class Timer:
    """Median of `reps` calls after `warmup`, cold L2: before each call a buffer of 8x L2 is overwritten (flush
    "write", zero_()) or read (flush "read": the L2 then holds clean lines of the buffer, none of the timed call's
    data; a write flush leaves it full of dirty lines that the timed call's own reads must first write back).

    The host enqueues all repetitions behind a GPU sleep kernel (`ahead`, the default) long enough to cover that
    enqueueing, so the GPU runs flush, event, call, event back to back and no host-side stall lands between a start
    event and its call.  Without it (session 23, `bench/results/gpu/h100_session23/`), rows of every kind (bf16, int4,
    lattq variants) now and then held samples of 0.2-0.7 ms, and a row's median could read 5x its p10: the flush
    (~130 us of GPU time) does not cover a host-side pause that long.  `behind` counts the timer calls whose sleep
    ended before the host had enqueued its last repetition (the protection may then have lapsed; the benchmark prints
    a warning)."""

    def __init__(self, reps: int, warmup: int, flush: str = "write", ahead: bool = True):
        if flush not in ("write", "read"):
            raise ValueError(f"flush must be 'write' or 'read', not {flush!r}")
        self.reps, self.warmup, self.mode = reps, warmup, flush
        l2 = torch.cuda.get_device_properties(0).L2_cache_size
        # 8x L2 (400 MB on H100): ~130 us of GPU time, longer than the usual host-side call overhead
        self.flush = torch.zeros(max(8 * l2, 256 * 2**20), dtype=torch.uint8, device="cuda")
        self._flush_words = self.flush.view(torch.int32)
        self._sink = torch.empty((), dtype=torch.int64, device="cuda")
        self.ahead = ahead and hasattr(torch.cuda, "_sleep")
        self.behind = 0
        self.cycles_per_us = 0.0
        if self.ahead:  # calibrate the sleep kernel: GPU clock cycles per microsecond
            torch.cuda._sleep(1_000_000)
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            torch.cuda._sleep(10_000_000)
            b.record()
            b.synchronize()
            self.cycles_per_us = 10_000_000 / (a.elapsed_time(b) * 1e3)

    def _flush_l2(self):
        if self.mode == "write":
            self.flush.zero_()
        else:
            torch.sum(self._flush_words, dim=0, out=self._sink)

    def __call__(self, fn) -> float:
        host = []
        for _ in range(self.warmup):
            t0 = time.perf_counter()
            self._flush_l2()
            fn()
            host.append(time.perf_counter() - t0)
        # the enqueue cost of one repetition (median: a first call's lazy set-up does not count)
        host_per_rep = statistics.median(host) if host else 1e-4
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(self.reps)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(self.reps)]
        slept = None
        torch.cuda.synchronize()
        if self.ahead:
            # three times the measured enqueue time of all repetitions, at least 2 ms
            torch.cuda._sleep(int(self.cycles_per_us * max(2000.0, 3e6 * host_per_rep * self.reps)))
            slept = torch.cuda.Event()
            slept.record()
        for i in range(self.reps):
            self._flush_l2()  # cold L2
            starts[i].record()
            fn()
            ends[i].record()
        if slept is not None and slept.query():
            self.behind += 1
        torch.cuda.synchronize()
        self.samples = sorted(s.elapsed_time(e) * 1e3 for s, e in zip(starts, ends))  # microseconds
        return statistics.median(self.samples)


def int4_setup(w: torch.Tensor, group: int = 128):
    """torch int4 weight-only: returns a closure (x -> y) or raises."""
    n, k = w.shape
    wf = w.float().reshape(n, k // group, group)
    mn, mx = wf.amin(-1, keepdim=True), wf.amax(-1, keepdim=True)
    scale = ((mx - mn) / 15).clamp(min=1e-6)
    q = ((wf - mn) / scale).round().clamp(0, 15).to(torch.int32).reshape(n, k)
    zero = mn + 8 * scale  # torch's convention: w = (q - 8) * scale + zero
    sz = torch.stack([scale.squeeze(-1), zero.squeeze(-1)], dim=-1).transpose(0, 1).contiguous().to(torch.bfloat16)
    qu8 = (q[:, ::2] << 4 | q[:, 1::2]).to(torch.uint8)
    packed = torch.ops.aten._convert_weight_to_int4pack(qu8, 8)
    return lambda x: torch.ops.aten._weight_int4pack_mm(x, packed, group, sz)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lib", required=True, help="path to liblattq_capi.so")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--reps", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--shapes", default="all", help="'all' or a list like 4096x4096,28672x8192")
    ap.add_argument("--batches", default=",".join(map(str, BATCHES)))
    ap.add_argument("--ref-limit", type=float, default=2e10, help="skip the reference variant above m*N*K")
    ap.add_argument("--fused-max-m", type=int, default=64,
                    help="time the (decode-path) fused_gemv variant only up to this batch")
    ap.add_argument("--gemm-min-m", type=int, default=16, help="time the tiled_gemm variant only from this batch on")
    ap.add_argument("--gemv-max-m", type=int, default=64, help="time the gemv and gemv_pdl variants only up to this batch")
    ap.add_argument("--wgmma-min-m", type=int, default=8,
                    help="time the wgmma and wgmma_f16 variants only from this batch on")
    ap.add_argument("--variants", default="all", help="'all' or a comma list of variant names to time (auto always)")
    ap.add_argument("--flush", choices=("write", "read"), default="write",
                    help="cold-L2 method before each repetition: overwrite (default) or read a buffer of 8x L2")
    ap.add_argument("--no-ahead", action="store_true",
                    help="enqueue each repetition as the GPU runs (the timer before session 23) instead of all of them "
                         "behind a GPU sleep kernel")
    ap.add_argument("--git-rev", default=os.environ.get("GIT_REV", "unknown"))
    ap.add_argument("--sweep", default="4096x4096,11008x4096,28672x8192,8192x28672",
                    help="shapes for a split-K sweep of the gemv variant (LATTQ_GEMV_MAX_SPLITS = 1,2,4,8) at m = 1 and 4; '' or none = no sweep")
    ap.add_argument("--tok-sweep", default="none",
                    help="shapes (or all7) for a column-width sweep of the gemv_pdl variant (LATTQ_GEMV_TOK = 4, 16) at m = 5, 8, 12, 16")
    ap.add_argument("--trig-sweep", default="none",
                    help="shapes (or all7) for a trigger-point sweep of the gemv_pdl variant (LATTQ_GEMV_PDL_TRIGGER = 0, 3, 4) at m = 1, 2, 4, 8, 16")
    ap.add_argument("--trig-batches", default="1,2,4,8,16", help="batches of --trig-sweep")
    ap.add_argument("--wgmma-sweep", default="none",
                    help="shapes for a cluster-size / token-tile sweep of the wgmma variant at m = 16, 64, 512, 2048")
    ap.add_argument("--f16-sweep", default="none",
                    help="shapes (or all7) for a CTA-shape sweep of the wgmma_f16 variant (LATTQ_WGMMA_F16_TILE) at --f16-batches")
    ap.add_argument("--f16-batches", default="64,128,512,2048", help="batches of --f16-sweep")
    ap.add_argument("--sk-sweep", default="none",
                    help="shapes (or all7) for a stream-K sweep of the wgmma_f16 variant at --sk-batches: the planned "
                         "CTA shape and 128x2, each with stream-K as planned and off (LATTQ_WGMMA_F16_SK=0), and 128x1")
    ap.add_argument("--sk-batches", default="128,512,2048", help="batches of --sk-sweep")
    ap.add_argument("--profile", default="4096x4096x1,28672x8192x1,28672x8192x16",
                    help="N x K x m[ x variant] cases whose per-kernel device times are printed (torch.profiler/CUPTI; "
                         "the dispatcher's pick unless a variant id is given); '' or none = no profile")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    shapes = SHAPES if args.shapes == "all" else [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    batches = [int(b) for b in args.batches.split(",")]

    lib = load_lib(args.lib)
    torch.manual_seed(0)
    gen = torch.Generator(device="cuda").manual_seed(1234)
    props = torch.cuda.get_device_properties(0)
    bw = measure_read_bw()
    print(f"device {props.name}, {props.multi_processor_count} SMs, L2 {props.L2_cache_size >> 20} MiB, "
          f"measured read bandwidth {bw / 1e12:.3f} TB/s", flush=True)
    timer = Timer(args.reps, args.warmup, args.flush, ahead=not args.no_ahead)
    rows = []
    checks = []

    def add(n, k, m, impl, us, **extra):
        rows.append(dict(n=n, k=k, m=m, impl=impl, median_us=round(us, 3), **extra))

    def add_timed(n, k, m, impl, fn):
        """Times fn and adds its row with the 10th and 90th percentiles of the samples beside the median: a median
        far above p10 marks a row whose repetitions were not steady (session 22 saw medians of 56-78 us in one
        reading of rows that read 12-18 us in another)."""
        us = timer(fn)
        q = timer.samples
        p10, p90 = q[len(q) // 10], q[(9 * len(q)) // 10]
        add(n, k, m, impl, us, p10_us=round(p10, 3), p90_us=round(p90, 3))
        if us > 1.5 * p10:
            print(f"unsteady: {n}x{k} m={m} {impl}: median {us:.1f} us, p10 {p10:.1f}, p90 {p90:.1f}, "
                  f"min {q[0]:.1f}, max {q[-1]:.1f}", flush=True)

    for (n, k) in shapes:
        w = (torch.randn(n, k, device="cuda", generator=gen) * 0.02).to(torch.bfloat16)
        try:
            int4 = int4_setup(w)
        except Exception as e:  # noqa: BLE001
            print(f"int4 setup failed for {n}x{k}: {e}", flush=True)
            int4 = None
        L = LattqLayer(lib, n, k, gen)
        code_bytes = n * k // 4
        for m in batches:
            x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16, generator=gen)
            add_timed(n, k, m, "bf16", lambda: F.linear(x, w))
            if int4 is not None:
                try:
                    add_timed(n, k, m, "int4", lambda: int4(x))
                except Exception as e:  # noqa: BLE001
                    print(f"int4 failed {n}x{k} m={m}: {e}", flush=True)
            add(n, k, m, "floor", code_bytes / bw * 1e6, bytes=code_bytes, read_bw_Bps=bw)
            y = torch.empty(m, n, device="cuda", dtype=torch.bfloat16)
            outs = {}
            for name, vid in [("auto", 0)] + list(VARIANTS.items()):
                if name == "reference" and m * n * k > args.ref_limit:
                    continue
                if name == "fused_gemv" and m > args.fused_max_m:
                    continue
                if name == "tiled_gemm" and m < args.gemm_min_m:
                    continue
                if name in ("gemv", "gemv_pdl") and m > args.gemv_max_m:
                    continue
                if name in ("wgmma", "wgmma_f16") and m < args.wgmma_min_m:
                    continue
                if name != "auto" and args.variants != "all" and name not in args.variants.split(","):
                    continue
                L.workspace(m, vid)
                try:
                    add_timed(n, k, m, "lattq" if name == "auto" else f"lattq:{name}", lambda: L(x, y, vid))
                except RuntimeError as e:  # an experimental variant must not abort the whole benchmark
                    if name not in EXPERIMENTAL:
                        raise
                    print(f"{name} failed {n}x{k} m={m}: {e}", flush=True)
                    continue
                outs[name] = y.float().clone()
            if "reference" in outs:
                ref = outs["reference"]
                for name, o in outs.items():
                    if name != "reference":
                        e = ((o - ref).norm() / ref.norm()).item()
                        checks.append(dict(n=n, k=k, m=m, impl=name, rel_diff_vs_reference=e))
            line = " ".join(f"{r['impl']}={r['median_us']:.1f}" for r in rows if r["n"] == n and r["k"] == k and r["m"] == m)
            print(f"{n}x{k} m={m}: {line}", flush=True)
        del w, int4, L
        torch.cuda.empty_cache()

    # Knob sweeps: one variant under several environment settings (GEMV split cap at m = 1 and 4; WGMMA cluster
    # size and token tile at m = 16 .. 2048)
    sweep_rows = []
    sweeps = [("gemv", 6, args.sweep, (1, 4), [{"LATTQ_GEMV_MAX_SPLITS": str(c)} for c in (1, 2, 4, 8)]),
              ("wgmma", 7, args.wgmma_sweep, (16, 64, 512, 2048),
               [{"LATTQ_WGMMA_CLUSTER": c, "LATTQ_WGMMA_NTOK": t} for c in ("1", "2") for t in ("32", "64")]),
              ("gemv_pdl", 8, args.tok_sweep, (5, 8, 12, 16), [{"LATTQ_GEMV_TOK": t} for t in ("4", "16")]),
              ("wgmma_f16", 9, args.f16_sweep, tuple(int(v) for v in args.f16_batches.split(",")),
               [{"LATTQ_WGMMA_F16_TILE": t} for t in ("32x1", "32x2", "64x1", "64x2", "128x1", "128x2")]),
              ("wgmma_f16", 9, args.sk_sweep, tuple(int(v) for v in args.sk_batches.split(",")),
               [{}, {"LATTQ_WGMMA_F16_SK": "0"}, {"LATTQ_WGMMA_F16_TILE": "128x2"},
                {"LATTQ_WGMMA_F16_TILE": "128x2", "LATTQ_WGMMA_F16_SK": "0"}, {"LATTQ_WGMMA_F16_TILE": "128x1"}]),
              ("gemv_pdl", 8, args.trig_sweep, tuple(int(v) for v in args.trig_batches.split(",")), [{"LATTQ_GEMV_PDL_TRIGGER": t} for t in ("0", "3", "4")])]
    for variant, vid, shapes_arg, ms, settings in sweeps:
        cases = [f"{n}x{k}" for n, k in SHAPES] if shapes_arg == "all7" else shapes_arg.split(",")
        for case in [c for c in cases if c and c != "none"]:
            n, k = (int(v) for v in case.split("x"))
            L = LattqLayer(lib, n, k, gen)
            for m in ms:
                x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16, generator=gen)
                y = torch.empty(m, n, device="cuda", dtype=torch.bfloat16)
                for env in settings:
                    os.environ.update(env)
                    L.workspace(m, vid)
                    t = timer(lambda: L(x, y, vid))
                    knobs = {kk.lower().replace("lattq_", ""): vv for kk, vv in env.items()}
                    sweep_rows.append(dict(n=n, k=k, m=m, variant=variant, **knobs, median_us=round(t, 3)))
                    print(f"sweep {variant} {n}x{k} m={m} {env}: {t:.1f} us", flush=True)
                    for kk in env:
                        os.environ.pop(kk, None)
            del L

    # Per-kernel breakdown (CUPTI through torch.profiler) of the dispatcher's launches, warm L2.
    prof_rows = []
    for case in [c for c in args.profile.split(",") if c and c != "none"]:
        n, k, m, *vsel = (int(v) for v in case.split("x"))
        vid = vsel[0] if vsel else 0  # NxKxM: the dispatcher's pick; NxKxMxV: variant V
        L = LattqLayer(lib, n, k, gen)
        x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16, generator=gen)
        y = torch.empty(m, n, device="cuda", dtype=torch.bfloat16)
        L.workspace(m, vid)
        for _ in range(5):
            L(x, y, vid)
        torch.cuda.synchronize()
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(20):
                L(x, y, vid)
            torch.cuda.synchronize()
        for ev in prof.key_averages():
            if ev.device_type.name == "CUDA" or getattr(ev, "device_time_total", 0) > 0:
                dt = getattr(ev, "device_time", None) or getattr(ev, "cuda_time", 0)
                prof_rows.append(dict(n=n, k=k, m=m, kernel=ev.key[:90], count=ev.count, avg_us=round(dt, 2)))
                print(f"profile {n}x{k} m={m}: {ev.key[:70]:70s} x{ev.count} avg {dt:.2f} us", flush=True)
        del L

    try:
        driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True).stdout.strip()
    except Exception:  # noqa: BLE001
        driver = "unknown"
    meta = dict(device=props.name, sm_count=props.multi_processor_count, l2_bytes=props.L2_cache_size, driver=driver,
                cuda=torch.version.cuda, torch=torch.__version__, python=platform.python_version(), git_rev=args.git_rev,
                read_bw_Bps=bw, reps=args.reps, warmup=args.warmup, cold_l2=True, flush=args.flush, act_dtype="bf16",
                enqueue_ahead=timer.ahead, timer_calls_behind=timer.behind,
                lattq_layer="bits=2 dim=4 had_in=had_out=128, bias none; times include input/output transforms",
                time_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), command=" ".join(sys.argv))
    with open(os.path.join(args.out, "bench_gemm.json"), "w") as f:
        json.dump(dict(meta=meta, rows=rows, checks=checks, kernel_profile=prof_rows, split_sweep=sweep_rows), f, indent=1)

    # Markdown table: one line per (shape, m): times and speed-ups over bf16
    impls = ["bf16", "int4", "floor", "lattq"] + [f"lattq:{v}" for v in VARIANTS]
    md = [f"# lattq GEMM benchmark ({props.name}, torch {torch.__version__}, CUDA {torch.version.cuda}, rev {args.git_rev})",
          "", f"Median of {args.reps} cold-L2 repetitions ({args.flush} flush"
          f"{', enqueued ahead behind a GPU sleep' if timer.ahead else ''}), microseconds; measured read bandwidth {bw / 1e12:.3f} TB/s. "
          "`x bf16` = speed-up of the dispatcher (lattq) over cuBLAS bf16; `vs int4` likewise over torch int4; "
          "`floor %` = floor time / lattq time.", "",
          "| N x K | m | " + " | ".join(impls) + " | x bf16 | vs int4 | floor % |",
          "|" + "---|" * (len(impls) + 5)]
    for (n, k) in shapes:
        for m in batches:
            r = {x["impl"]: x["median_us"] for x in rows if x["n"] == n and x["k"] == k and x["m"] == m}
            cells = [f"{r[i]:.1f}" if i in r else "-" for i in impls]
            lq = r.get("lattq")
            sp = f"{r['bf16'] / lq:.2f}" if lq else "-"
            si = f"{r['int4'] / lq:.2f}" if lq and "int4" in r else "-"
            fl = f"{100 * r['floor'] / lq:.0f}" if lq else "-"
            md.append(f"| {n}x{k} | {m} | " + " | ".join(cells) + f" | {sp} | {si} | {fl} |")
    if checks:
        md += ["", "Consistency (relative Frobenius difference of each fast variant vs the reference variant, bf16 output):",
               "", "| N x K | m | impl | rel diff |", "|---|---|---|---|"]
        md += [f"| {c['n']}x{c['k']} | {c['m']} | {c['impl']} | {c['rel_diff_vs_reference']:.2e} |" for c in checks]
    with open(os.path.join(args.out, "bench_gemm.md"), "w") as f:
        f.write("\n".join(md) + "\n")

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        cols = min(4, len(shapes))
        rws = -(-len(shapes) // cols)
        fig, axes = plt.subplots(rws, cols, figsize=(4.2 * cols, 3.4 * rws), squeeze=False)
        for ax, (n, k) in zip(axes.flat, shapes):
            for impl in ["int4", "floor", "lattq"] + [f"lattq:{v}" for v in VARIANTS]:
                xs, ys = [], []
                for m in batches:
                    r = {x["impl"]: x["median_us"] for x in rows if x["n"] == n and x["k"] == k and x["m"] == m}
                    if impl in r and "bf16" in r:
                        xs.append(m)
                        ys.append(r["bf16"] / r[impl])
                if xs:
                    ax.plot(xs, ys, marker="o", ms=3, label=impl, ls="--" if impl == "floor" else "-")
            ax.axhline(1.0, color="gray", lw=0.8)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log", base=2)
            ax.set_title(f"{n}x{k}")
            ax.set_xlabel("batch m")
            ax.set_ylabel("speed-up over cuBLAS bf16")
        for ax in list(axes.flat)[len(shapes):]:
            ax.axis("off")
        axes.flat[0].legend(fontsize=7)
        fig.suptitle(f"lattq 2-bit vs bf16 / int4 on {props.name}")
        fig.tight_layout()
        fig.savefig(os.path.join(args.out, "bench_gemm.png"), dpi=110)
    except Exception as e:  # noqa: BLE001
        print(f"plot failed: {e}")
    print("\n".join(md))
    if timer.behind:
        print(f"warning: in {timer.behind} timer calls the GPU's sleep ended before the host had enqueued every "
              "repetition; host-side stalls may have reached those rows", flush=True)


if __name__ == "__main__":
    main()
