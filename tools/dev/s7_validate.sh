# device (session 7): Python suite on the GPU (pip install, pytest, memcheck over the Python GPU tests, the C++
# example) and compute-sanitizer memcheck + racecheck of the kernel tests' quick subset on the current build-gpu
set -u
KERNEL_TESTS=0 bash tools/gpu_suite.sh 2>&1 | grep -E "====|passed|failed|ERROR SUMMARY|OK|native" | head -30
[ -f build-gpu/tests/cuda/lattq_cuda_tests ] || { bash tools/gpu_kernels.sh build > /tmp/b.txt 2>&1 || { tail -30 /tmp/b.txt; exit 1; }; }
bash tools/gpu_kernels.sh sanitize 2>&1 | tail -8
rm -f $OUT/env.log $OUT/build.log
