# device (session 7): Python GPU tests under compute-sanitizer memcheck (tools/gpu_suite.sh with PYTEST_ARGS=test_gpu.py;
# the whole Python suite on the GPU takes ~8 min: run it alone with `KERNEL_TESTS=0 bash tools/gpu_suite.sh`), then
# memcheck + racecheck of the kernel tests' quick subset on build-gpu
set -u
PYTEST_ARGS=$PWD/tests/python/test_gpu.py KERNEL_TESTS=0 bash tools/gpu_suite.sh 2>&1 | grep -E "====|passed|failed|ERROR SUMMARY|OK|native" | head -30
[ -f build-gpu/tests/cuda/lattq_cuda_tests ] || { bash tools/gpu_kernels.sh build > /tmp/b.txt 2>&1 || { tail -30 /tmp/b.txt; exit 1; }; }
bash tools/gpu_kernels.sh sanitize 2>&1 | tail -8
rm -f $OUT/env.log $OUT/build.log $OUT/pytest.log
