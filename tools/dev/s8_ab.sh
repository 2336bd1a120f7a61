# device (session 8): A/B of the one-layer decode kernels on one machine in one run: the tree of an older revision
# (tools/dev/ab_old.tar, not committed; made with `git archive <rev> cpp cuda bindings cmake CMakeLists.txt tests
# bench/kernels tools/gpu_kernels.sh python pyproject.toml -o tools/dev/ab_old.tar`) against the working tree, bench_gemm rows
# at m = 1, 4 (gemv, gemv_pdl, AUTO) for both, alternating old / new / old / new.  env: OLD_REV, GIT_REV
set -u
REV=${GIT_REV:-wip}
OLD=${OLD_REV:-old}
mkdir -p /tmp/abold && tar -xf tools/dev/ab_old.tar -C /tmp/abold
( cd /tmp/abold && OUT=/tmp/abold_out bash tools/gpu_kernels.sh build > /tmp/abold_build.txt 2>&1 ) || { tail -20 /tmp/abold_build.txt; exit 1; }
bash tools/gpu_kernels.sh build > /tmp/b.txt 2>&1 || { tail -30 /tmp/b.txt; exit 1; }
rm -f "$OUT/build.log" "$OUT/env.log"
for round in 1 2; do
  for side in old new; do
    if [ $side = old ]; then D=/tmp/abold; R=$OLD; else D=.; R=$REV; fi
    python3 $D/bench/kernels/bench_gemm.py --lib $D/build-gpu/cuda/liblattq_capi.so --out /tmp/ab_$side$round --git-rev $R --batches 1,4 --variants gemv,gemv_pdl \
      --ref-limit 0 --sweep none --profile none > /tmp/ab_$side$round.log 2>&1 || { tail -5 /tmp/ab_$side$round.log; exit 1; }
    cp /tmp/ab_$side$round/bench_gemm.json "$OUT/ab_${side}${round}_$R.json"
    echo "== $side round $round ($R)"; grep -E " m=" /tmp/ab_$side$round.log
  done
done
