# device (session 7): build, full CUDA tests, decode-batch benchmark of gemv / gemv_pdl / imma, e2e (compiled small
# ops) with GEMV and GEMV_PDL forced and a harness-overhead row
set -u
REV=${GIT_REV:-wip}
bash tools/gpu_kernels.sh build > /tmp/b.txt 2>&1 || { tail -30 /tmp/b.txt; exit 1; }
rm -f $OUT/build.log $OUT/env.log
build-gpu/tests/cuda/lattq_cuda_tests > $OUT/tests.log 2>&1; echo "tests rc=$?" >> $OUT/tests.log
grep -E "FAIL|checks|lattq_cuda_tests on|chains" $OUT/tests.log | head -20; tail -1 $OUT/tests.log
python3 bench/kernels/bench_gemm.py --lib build-gpu/cuda/liblattq_capi.so --out $OUT --git-rev $REV --batches ${BATCHES:-1,2,4,8,16} --variants gemv,gemv_pdl,imma --ref-limit 0 --sweep none --profile none > $OUT/bench.log 2>&1
grep -E " m=" $OUT/bench.log | head -40
timeout 300 python3 bench/kernels/bench_e2e.py --lib build-gpu/cuda/liblattq_capi.so --out $OUT --git-rev $REV --variants ${E2E_VARIANTS:-0,6,8} --overhead > $OUT/e2e.log 2>&1; echo "e2e rc=$?"; grep -v Warn $OUT/e2e.log | tail -12
