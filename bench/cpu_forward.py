"""CPU forward benchmark: lattq quantized layer vs dense fp32 torch.nn.functional.linear, one process.

For each shape (N x K) and batch m: the lattq CPU forward (through torch.ops.lattq.linear, so the
Python/op overhead and the input/output transforms are included) and F.linear in float32 on the
layer's dense weight, interleaved in rounds, median of many repetitions after warm-up.  Writes
``cpu_forward.json`` (device, versions, git revision, rows with n, k, m, impl, median_us) and
``cpu_forward.md`` under --out (default: bench/results/ next to this script).

Usage:  python bench/cpu_forward.py [--out DIR] [--reps 200] [--batches 1,4,16] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

import torch

import lattq
from lattq import _native
from lattq.format import LayerDesc, default_hadamard_block
from lattq.nn import LatticeLinear, pack_codes

SHAPES = [(4096, 4096), (11008, 4096)]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_revision(repo: Path) -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def random_layer(n: int, k: int, gen: torch.Generator) -> LatticeLinear:
    desc = LayerDesc(2, 4, n, k, default_hadamard_block(k), default_hadamard_block(n)).validate()
    canonical = torch.randint(0, 256, (n, desc.row_bytes), generator=gen, dtype=torch.int64).to(torch.uint8)
    q, _ = torch.linalg.qr(torch.randn(4, 4, generator=gen, dtype=torch.float64))
    s = 1.0
    A = (s * q).float()
    b = (-1.5 * s * q.sum(1)).float()
    su = torch.where(torch.rand(k, generator=gen) < 0.5, -1.0, 1.0)
    sv = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0) * 0.02
    mod = LatticeLinear.from_codes(canonical, A, b, su, sv, bits=2, dim=4)
    assert mod.codes.numel() == desc.packed_bytes and torch.equal(mod.codes, pack_codes(desc, canonical))
    return mod


def time_us(fn, reps: int) -> list:
    out = []
    for _ in range(reps):
        t0 = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - t0) / 1e3)
    return out


def main() -> None:
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=here / "results")
    ap.add_argument("--reps", type=int, default=200, help="timed repetitions per (shape, batch, impl)")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--batches", default="1,2,4,16")
    ap.add_argument("--threads", type=int, default=0, help="threads for both lattq and torch (0: library defaults)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tag", default="", help="suffix of the output file names (cpu_forward<tag>.json / .md)")
    args = ap.parse_args()

    if not lattq.native_available():
        raise SystemExit(f"lattq native kernels are required: {lattq.native_status()}")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
        _native.set_num_threads(args.threads)
    batches = [int(b) for b in args.batches.split(",")]
    gen = torch.Generator().manual_seed(args.seed)
    rows = []
    torch.set_grad_enabled(False)
    for n, k in SHAPES:
        mod = random_layer(n, k, gen)
        w = mod.dense_weight().contiguous()  # the same layer as a dense fp32 matrix
        for m in batches:
            x = torch.randn(m, k, generator=gen)
            # correctness guard: both compute the same layer
            y_l, y_d = mod(x), torch.nn.functional.linear(x, w)
            err = float((y_l.double() - y_d.double()).norm() / y_d.double().norm())
            if err > 1e-4:
                raise SystemExit(f"lattq and dense disagree on {n}x{k} m={m}: rel. error {err:.3g}")
            impls = {"lattq": lambda: mod(x), "torch_f32": lambda: torch.nn.functional.linear(x, w)}
            for fn in impls.values():
                time_us(fn, args.warmup)
            samples = {name: [] for name in impls}
            rounds = 10
            for _ in range(rounds):  # interleave so that drift affects both alike
                for name, fn in impls.items():
                    samples[name] += time_us(fn, max(1, args.reps // rounds))
            for name, s in samples.items():
                rows.append(dict(n=n, k=k, m=m, impl=name, median_us=round(statistics.median(s), 2),
                                 min_us=round(min(s), 2), reps=len(s)))
                print(f"{n:>6} x {k:<6} m={m:<3} {name:<10} median {statistics.median(s):10.1f} us", flush=True)

    meta = dict(
        benchmark="cpu_forward",
        device=f"cpu: {cpu_name()}",
        cpu_count=os.cpu_count(),
        threads=dict(torch=torch.get_num_threads(), lattq=_native.get_num_threads()),
        lattq_cpu_kernel=_native.cpu_kernel(),
        versions=dict(lattq=lattq.__version__, torch=torch.__version__, python=platform.python_version()),
        git_revision=git_revision(here.parent),
        timestamp_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        command="python bench/cpu_forward.py " + " ".join(
            f"--{a} {v}" for a, v in (("reps", args.reps), ("warmup", args.warmup), ("batches", args.batches),
                                      ("threads", args.threads), ("seed", args.seed), ("tag", args.tag)) if v != ""),
        method="wall clock per call (time.perf_counter_ns), lattq via torch.ops.lattq.linear incl. transforms "
               "and op overhead; dense = torch.nn.functional.linear fp32 on the layer's dense weight; "
               "interleaved rounds, median after warm-up",
        rows=rows,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        meta["load_average_1_5_15"] = list(os.getloadavg())
    except OSError:
        pass
    (args.out / f"cpu_forward{args.tag}.json").write_text(json.dumps(meta, indent=2) + "\n")
    lines = [
        f"# CPU forward: lattq 2-bit vs dense fp32 ({meta['device']})",
        "",
        f"threads: torch {meta['threads']['torch']}, lattq {meta['threads']['lattq']} (kernel {meta['lattq_cpu_kernel']}); "
        f"torch {torch.__version__}; git {meta['git_revision']}; {meta['timestamp_utc']}; "
        f"load average at the end {meta.get('load_average_1_5_15')}",
        "",
        "| N x K | m | dense fp32 median (us) | lattq median (us) | speed-up |",
        "| --- | --- | --- | --- | --- |",
    ]
    by = {(r["n"], r["k"], r["m"], r["impl"]): r["median_us"] for r in rows}
    for n, k in SHAPES:
        for m in batches:
            d, q = by[(n, k, m, "torch_f32")], by[(n, k, m, "lattq")]
            lines.append(f"| {n} x {k} | {m} | {d:.1f} | {q:.1f} | {d / q:.2f}x |")
    lines += ["", f"Command: `{meta['command']}`", ""]
    (args.out / f"cpu_forward{args.tag}.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
