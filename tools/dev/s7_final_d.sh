# device (session 7): build, full CUDA tests, decode-batch benchmark (m = 1, 4; gemv and gemv_pdl)
set -u
REV=${GIT_REV:-wip}
bash tools/gpu_kernels.sh build > /tmp/b.txt 2>&1 || { tail -30 /tmp/b.txt; exit 1; }
rm -f $OUT/build.log $OUT/env.log
build-gpu/tests/cuda/lattq_cuda_tests > $OUT/tests.log 2>&1; echo "tests rc=$?" >> $OUT/tests.log
grep -E "FAIL|checks|lattq_cuda_tests on|chains" $OUT/tests.log | head -20; tail -1 $OUT/tests.log
python3 bench/kernels/bench_gemm.py --lib build-gpu/cuda/liblattq_capi.so --out $OUT --git-rev $REV --batches 1,4 --variants gemv,gemv_pdl --ref-limit 0 --sweep none --profile none > $OUT/bench.log 2>&1
grep -E " m=" $OUT/bench.log; rm -f $OUT/bench_gemm.md $OUT/bench_gemm.png
