# device: build, full CUDA tests, sanitizers (quick subset), GEMV trace at m = 1, full GEMM benchmark
set -u
REV=${GIT_REV:-wip}
bash tools/gpu_kernels.sh build > /tmp/b.txt 2>&1 || { tail -30 /tmp/b.txt; exit 1; }
rm -f $OUT/build.log $OUT/env.log
grep -E "gemv_kernel" -A2 /tmp/b.txt | grep -E "registers|spill" | head -2
build-gpu/tests/cuda/lattq_cuda_tests > $OUT/tests.log 2>&1; echo "tests rc=$?" >> $OUT/tests.log
grep -E "FAIL|checks|lattq_cuda_tests on" $OUT/tests.log | head -20; tail -1 $OUT/tests.log
bash tools/gpu_kernels.sh sanitize > /tmp/s.txt 2>&1; grep -vE "^==|^\(" /tmp/s.txt | tail -8; rm -f $OUT/build.log $OUT/env.log
TRACE_BATCHES="1" bash tools/dev/trace.sh
python3 bench/kernels/bench_gemm.py --lib build-gpu/cuda/liblattq_capi.so --out $OUT --git-rev $REV --fused-max-m 8 --gemv-max-m 16 --gemm-min-m 64 --wgmma-min-m 8 --ref-limit 0 --sweep none > $OUT/bench.log 2>&1
grep -E "^\| [0-9]|profile" $OUT/bench.log | head -80
