#!/usr/bin/env bash
# Whole GPU test suite in one device call (H100/H200): pip install with CUDA (sm_90a) into the machine's
# python, the Python test suite (GPU tests run), compute-sanitizer memcheck over the Python GPU tests,
# examples/cpp_runtime with lattq::cuda, and the standalone CUDA kernel tests (+ memcheck/racecheck).
# Logs under $OUT (<= 8 files).  Usage: OUT=... bash tools/gpu_suite.sh
#   env: PYTEST_ARGS (default: all of tests/python), MEMCHECK_K (pytest -k filter for the memcheck run), MEMCHECK_TIMEOUT,
#        KERNEL_TESTS=0 to skip the standalone CUDA kernel tests and their sanitizer runs.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
OUT="${OUT:-$ROOT/gpu_out}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 CMAKE_BUILD_PARALLEL_LEVEL="${JOBS:-16}" LATTQ_CUDA=ON LATTQ_CUDA_ARCHS="${LATTQ_CUDA_ARCHS:-90a}"
PY="${PY:-python3}"
CS="$(command -v compute-sanitizer || echo "$(dirname "$(command -v nvcc)")/compute-sanitizer")"
status=0
note() { printf '\n==== %s (%ss)\n' "$*" "$SECONDS" | tee -a "$OUT/summary.log"; }

note "environment"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; nvcc --version | tail -1
  "$PY" -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda)"; } 2>&1 | tee -a "$OUT/summary.log"

note "pip install . (CUDA $LATTQ_CUDA_ARCHS)"
if ! "$PY" -m pip install --no-build-isolation --no-deps --no-index -v . >"$OUT/pip_build.log" 2>&1; then
  tail -60 "$OUT/pip_build.log"; exit 1
fi
rm -f "$OUT/pip_build.log"   # at most 8 files come back
(cd /tmp && "$PY" -c "import lattq; print(lattq.native_status())") 2>&1 | tee -a "$OUT/summary.log"

note "pytest (all Python tests, GPU included)"
(cd "$ROOT/tests" && "$PY" -m pytest -q -rs -p no:cacheprovider ${PYTEST_ARGS:-"$ROOT/tests/python"}) >"$OUT/pytest.log" 2>&1 || status=1
tail -25 "$OUT/pytest.log" | tee -a "$OUT/summary.log"

note "compute-sanitizer memcheck: Python GPU tests"
(cd "$ROOT/tests" && timeout "${MEMCHECK_TIMEOUT:-420}" "$CS" --tool memcheck --error-exitcode 3 --target-processes all \
   "$PY" -m pytest -q -x -p no:cacheprovider "$ROOT/tests/python/test_gpu.py" ${MEMCHECK_K:+-k "$MEMCHECK_K"}) >"$OUT/memcheck_py.log" 2>&1 || status=1
grep -E "ERROR SUMMARY|passed|failed" "$OUT/memcheck_py.log" | tail -5 | tee -a "$OUT/summary.log"

note "examples/cpp_runtime with lattq::cuda"
LDIR="$(cd /tmp && "$PY" -c 'import lattq; print(lattq.cmake_dir())')"
{ cmake -S examples/cpp_runtime -B /tmp/lattq-example -G Ninja -Dlattq_DIR="$LDIR" && cmake --build /tmp/lattq-example \
  && /tmp/lattq-example/lattq_cpp_runtime; } >"$OUT/example.log" 2>&1 || status=1
tail -5 "$OUT/example.log" | tee -a "$OUT/summary.log"

if [ "${KERNEL_TESTS:-1}" = 1 ]; then
note "CUDA kernel tests + sanitizers (tools/gpu_kernels.sh)"
OUT="$OUT/k" BUILD_DIR=/tmp/lattq-build-gpu bash tools/gpu_kernels.sh test >>"$OUT/summary.log" 2>&1 || status=1
OUT="$OUT/k" BUILD_DIR=/tmp/lattq-build-gpu bash tools/gpu_kernels.sh sanitize >>"$OUT/summary.log" 2>&1 || status=1
tail -12 "$OUT/summary.log"
fi
note "done, status $status"
exit $status
