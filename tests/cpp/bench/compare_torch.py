"""Side-by-side timing, in one process: lattq_forward (CPU, via ctypes on the shared bench build of the
core) vs torch.nn.functional.linear in fp32 on a dense weight of the same shape.

    python tests/cpp/bench/compare_torch.py --lib build-core/tests/cpp/liblattq_core_shared_bench.so

Batch 1 by default; k=2, d=4, TILED codes, Hadamard blocks up to 128, transforms included.  Median and min of
--reps calls after warm-up, the two implementations interleaved call by call so that machine load hits
both alike.
"""

from __future__ import annotations

import argparse
import ctypes as C
import time

import numpy as np
import torch
import torch.nn.functional as F


class Desc(C.Structure):
    _fields_ = [("bits", C.c_int32), ("dim", C.c_int32), ("n", C.c_int64), ("k", C.c_int64),
                ("had_in", C.c_int32), ("had_out", C.c_int32)]


class Layer(C.Structure):
    _fields_ = [("desc", Desc), ("layout", C.c_int32), ("codes", C.c_void_p), ("A", C.c_void_p),
                ("b", C.c_void_p), ("su", C.c_void_p), ("sv", C.c_void_p), ("bias", C.c_void_p)]


def aligned(nbytes: int) -> np.ndarray:
    raw = np.zeros(nbytes + 64, dtype=np.uint8)
    off = (-raw.ctypes.data) % 64
    return raw[off:off + nbytes]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", required=True)
    ap.add_argument("--reps", type=int, default=100)
    ap.add_argument("--threads", type=int, default=0, help="lattq threads (0 = default); torch uses its default")
    ap.add_argument("--shapes", default="4096x4096x1,11008x4096x1,4096x11008x1")
    args = ap.parse_args()
    lib = C.CDLL(args.lib)
    lib.lattq_last_error.restype = C.c_char_p
    lib.lattq_cpu_kernel_name.restype = C.c_char_p
    lib.lattq_packed_bytes.restype = C.c_int64
    print(f"lattq kernel: {lib.lattq_cpu_kernel_name(lib.lattq_get_cpu_kernel()).decode()}, "
          f"lattq threads: {args.threads or lib.lattq_get_num_threads()}, torch {torch.__version__} "
          f"threads: {torch.get_num_threads()}")
    rng = np.random.default_rng(0)
    print(f"{'N x K x m':>18} {'torch F.linear fp32 (us)':>26} {'lattq (us)':>16} {'speed-up (median)':>18}")
    for spec in args.shapes.split(","):
        n, k, m = (int(v) for v in spec.split("x"))
        # Hadamard block: largest power of two dividing the dimension, at most 128 (576 -> 64)
        d = Desc(2, 4, n, k, min(k & -k, 128), min(n & -n, 128))
        codes = rng.integers(0, 256, size=n * k // 4, dtype=np.uint8)
        packed = aligned(lib.lattq_packed_bytes(C.byref(d)))
        if lib.lattq_pack(C.byref(d), codes.ctypes.data_as(C.c_void_p), packed.ctypes.data_as(C.c_void_p)) != 0:
            raise RuntimeError(lib.lattq_last_error().decode())
        A = (np.eye(4) / np.sqrt(1.25)).astype(np.float32)
        b = (-1.5 * A.sum(1)).astype(np.float32)
        su = rng.choice([-1.0, 1.0], size=k).astype(np.float32)
        sv = (rng.choice([-1.0, 1.0], size=n) * 0.02).astype(np.float32)
        layer = Layer(d, 1, packed.ctypes.data, A.ctypes.data, b.ctypes.data, su.ctypes.data, sv.ctypes.data, None)
        x = rng.standard_normal((m, k)).astype(np.float32)
        y = np.empty((m, n), dtype=np.float32)
        wsb = C.c_size_t(0)
        if lib.lattq_forward_workspace_size(C.byref(d), C.c_int64(m), C.byref(wsb)) != 0:
            raise RuntimeError(lib.lattq_last_error().decode())
        ws = aligned(wsb.value)
        w = torch.randn(n, k)
        xt = torch.from_numpy(x)

        def run_lattq() -> None:
            st = lib.lattq_forward(C.byref(layer), x.ctypes.data_as(C.c_void_p), 0, C.c_int64(m),
                                   y.ctypes.data_as(C.c_void_p), ws.ctypes.data_as(C.c_void_p), wsb,
                                   args.threads)
            if st != 0:
                raise RuntimeError(lib.lattq_last_error().decode())

        for _ in range(5):
            run_lattq()
            F.linear(xt, w)
        tl, tt = [], []
        for _ in range(args.reps):
            t0 = time.perf_counter()
            run_lattq()
            t1 = time.perf_counter()
            F.linear(xt, w)
            t2 = time.perf_counter()
            tl.append((t1 - t0) * 1e6)
            tt.append((t2 - t1) * 1e6)
        ml, mt = float(np.median(tl)), float(np.median(tt))
        print(f"{spec:>18} {mt:>12.1f} (min {min(tt):7.1f}) {ml:>8.1f} (min {min(tl):6.1f}) {mt / ml:>12.2f}x")


if __name__ == "__main__":
    main()
