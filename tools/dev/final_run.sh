# device: build, full CUDA tests, full GEMM benchmark, end-to-end decode benchmark
set -u
REV=${GIT_REV:-wip}
bash tools/gpu_kernels.sh build > /tmp/b.txt 2>&1 || { tail -30 /tmp/b.txt; exit 1; }
rm -f $OUT/build.log $OUT/env.log
build-gpu/tests/cuda/lattq_cuda_tests > $OUT/tests.log 2>&1; echo "tests rc=$?" >> $OUT/tests.log
grep -E "FAIL|checks|lattq_cuda_tests on" $OUT/tests.log | head -20; tail -1 $OUT/tests.log
python3 bench/kernels/bench_gemm.py --lib build-gpu/cuda/liblattq_capi.so --out $OUT --git-rev $REV --fused-max-m 8 --gemv-max-m 16 --gemm-min-m 64 --wgmma-min-m 8 --ref-limit 0 --sweep none > $OUT/bench.log 2>&1
grep -E "^\| [0-9]" $OUT/bench.log | awk -F'|' '$3+0<=16' | head -40
timeout 200 python3 bench/kernels/bench_e2e.py --lib build-gpu/cuda/liblattq_capi.so --out $OUT --git-rev $REV > $OUT/e2e.log 2>&1; echo "e2e rc=$?"; tail -12 $OUT/e2e.log
