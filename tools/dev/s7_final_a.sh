# device (session 7): build, full CUDA tests, compute-sanitizer memcheck + racecheck on the quick subset
set -u
bash tools/gpu_kernels.sh build > /tmp/b.txt 2>&1 || { tail -30 /tmp/b.txt; exit 1; }
rm -f $OUT/build.log $OUT/env.log
build-gpu/tests/cuda/lattq_cuda_tests > $OUT/tests.log 2>&1; echo "tests rc=$?" >> $OUT/tests.log
grep -E "FAIL|checks|lattq_cuda_tests on|chains" $OUT/tests.log | head -20; tail -1 $OUT/tests.log
bash tools/gpu_kernels.sh sanitize 2>&1 | tail -12
rm -f $OUT/env.log
