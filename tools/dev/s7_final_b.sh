# device (session 7): full GEMM benchmark (every variant, every batch) and the end-to-end decode benchmark
set -u
REV=${GIT_REV:-wip}
[ -f build-gpu/cuda/liblattq_capi.so ] || { bash tools/gpu_kernels.sh build > /tmp/b.txt 2>&1 || { tail -30 /tmp/b.txt; exit 1; }; }
rm -f $OUT/build.log $OUT/env.log
python3 bench/kernels/bench_gemm.py --lib build-gpu/cuda/liblattq_capi.so --out $OUT --git-rev $REV --fused-max-m 8 --gemv-max-m 16 --gemm-min-m 64 --wgmma-min-m 8 --ref-limit 0 --sweep none > $OUT/bench.log 2>&1
echo "bench rc=$?"; grep -E "^\| [0-9]" $OUT/bench.log | head -3; grep -E " m=(1|16|64|512|2048):" $OUT/bench.log | head -40
timeout 300 python3 bench/kernels/bench_e2e.py --lib build-gpu/cuda/liblattq_capi.so --out $OUT --git-rev $REV --overhead > $OUT/e2e.log 2>&1; echo "e2e rc=$?"; grep -v Warn $OUT/e2e.log | tail -6
