#!/usr/bin/env bash
# One-call GPU run for the lattq CUDA kernels (device machine): configure + build (sm_90a), CUDA tests,
# compute-sanitizer memcheck (+ racecheck) on the quick test subset, GEMM benchmark.  Logs go to $OUT
# (at most 8 files).  Usage: tools/gpu_kernels.sh [all|build|test|bench|sanitize|e2e|ncu] [extra bench args...]
#   env: GIT_REV (recorded in the benchmark JSON), BUILD_DIR (default build-gpu), JOBS (default 16),
#        FRESH=1 (rebuild from scratch), sanitize: MEMCHECK=0 / RACECHECK=0 (skip one), RACECHECK_ONLY=names
#        (lattq_cuda_tests --only), RACECHECK_TIMEOUT (seconds, default 180)
set -uo pipefail
MODE=${1:-all}
shift || true
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/gpu_out}
BUILD=${BUILD_DIR:-$ROOT/build-gpu}
JOBS=${JOBS:-16}
mkdir -p "$OUT"
cd "$ROOT"
export PYTHONUNBUFFERED=1
{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  nvcc --version | tail -2
} 2>&1 | tee "$OUT/env.log"

# ---- build ------------------------------------------------------------------------------------
build() {
  local t0=$SECONDS
  # the device copy of the tree may carry older mtimes than a kept build dir: FRESH=1 rebuilds from scratch
  if [ "${FRESH:-0}" = 1 ]; then rm -rf "$BUILD"; fi
  if cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a -DLATTQ_CUDA=ON \
       -DLATTQ_BUILD_TESTS=ON -DLATTQ_BUILD_CPP_TESTS=OFF -DLATTQ_CUDA_SHARED_CAPI=ON -DCMAKE_CUDA_FLAGS="-Xptxas=-v" >"$OUT/build.log" 2>&1; then
    TESTS_VIA_CMAKE=1
  else
    echo "configure with LATTQ_BUILD_TESTS=ON failed (GoogleTest missing?): building the CUDA test by hand" | tee -a "$OUT/build.log"
    rm -rf "$BUILD"
    cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a -DLATTQ_CUDA=ON \
      -DLATTQ_BUILD_TESTS=OFF -DLATTQ_CUDA_SHARED_CAPI=ON -DCMAKE_CUDA_FLAGS="-Xptxas=-v" >>"$OUT/build.log" 2>&1 || return 1
    TESTS_VIA_CMAKE=0
  fi
  ninja -C "$BUILD" -j"$JOBS" lattq_cuda lattq_core lattq_capi >>"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; return 1; }
  if [ "$TESTS_VIA_CMAKE" = 1 ]; then
    ninja -C "$BUILD" -j"$JOBS" lattq_cuda_tests >>"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; return 1; }
  else
    mkdir -p "$BUILD/tests/cuda"
    CUDA_HOME=${CUDA_HOME:-$(dirname "$(dirname "$(command -v nvcc)")")}
    g++ -O2 -std=c++17 tests/cuda/test_cuda.cpp -Icpp/include -Icuda/include -I"$CUDA_HOME/include" \
      "$BUILD/cuda/liblattq_cuda.a" "$BUILD/cpp/liblattq_core.a" -L"$CUDA_HOME/lib64" -lcudart_static -lpthread -ldl -lrt \
      -o "$BUILD/tests/cuda/lattq_cuda_tests" >>"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; return 1; }
  fi
  echo "build done in $((SECONDS - t0)) s"
  # SASS instruction mix of the fast main kernel (bf16, 8-token column) for docs/kernels.md
  local CO
  CO=$(command -v cuobjdump || echo "$(dirname "$(command -v nvcc)")/cuobjdump")
  "$CO" -sass "$BUILD/cuda/CMakeFiles/lattq_cuda.dir/src/fast_imma.cu.o" 2>/dev/null |
    awk '/Function : .*imma_main_kernelI13__nv_bfloat16Li2ELi1E/{f=1;next} f&&/Function :/{f=0} f' |
    grep -oE "\b(IMMA|LOP3|LDS|LDG|LDGSTS|BAR|STS|SHF|I2FP|I2F|FFMA|FMUL|IADD3|ISETP|IMAD|BRA|MOV)[.A-Z0-9_]*" |
    sort | uniq -c | sort -rn | head -25 >>"$OUT/build.log"
  echo "SASS mix (imma_main bf16 NT=1):"; tail -25 "$OUT/build.log" | head -25
  grep -A1 "Function properties for .*imma_main" "$OUT/build.log" | grep -E "spill" | sort | uniq -c
  # the load / mma order of the GEMV and GEMV_PDL main loops (a ptxas schedule that changed cost 1.5-3 us per call)
  bash tools/dev/sass_ring.sh "$BUILD/cuda/CMakeFiles/lattq_cuda.dir/src/decode_gemv.cu.o" "$CO" | tee -a "$OUT/build.log"
  return 0
}

run_tests() {
  echo "== lattq_cuda_tests (full)"
  "$BUILD/tests/cuda/lattq_cuda_tests" >"$OUT/tests.log" 2>&1
  local rc=$?
  grep -E "FAIL|checks|lattq_cuda_tests on|n=" "$OUT/tests.log" | head -120
  echo "lattq_cuda_tests rc=$rc"
  return $rc
}

# env: MEMCHECK=0 skips memcheck; RACECHECK=0 skips racecheck; RACECHECK_ONLY=names runs racecheck on those tests only
# (lattq_cuda_tests --only), RACECHECK_TIMEOUT (default 180 s)
run_sanitize() {
  local CS
  CS=$(command -v compute-sanitizer || echo "$(dirname "$(command -v nvcc)")/compute-sanitizer")
  : >"$OUT/sanitizer.log"
  if [ "${MEMCHECK:-1}" = 1 ]; then
    echo "== compute-sanitizer memcheck (quick subset)"
    timeout 420 "$CS" --tool memcheck --leak-check full --error-exitcode 3 "$BUILD/tests/cuda/lattq_cuda_tests" --quick \
      >"$OUT/sanitizer.log" 2>&1
    echo "memcheck rc=$?" | tee -a "$OUT/sanitizer.log"
    grep -E "ERROR SUMMARY|checks passed" "$OUT/sanitizer.log" | tail -3
  fi
  if [ "${RACECHECK:-1}" = 1 ]; then
    local only=()
    [ -n "${RACECHECK_ONLY:-}" ] && only=(--only "$RACECHECK_ONLY")
    echo "== compute-sanitizer racecheck (quick subset${RACECHECK_ONLY:+: $RACECHECK_ONLY})" | tee -a "$OUT/sanitizer.log"
    timeout "${RACECHECK_TIMEOUT:-180}" "$CS" --tool racecheck --error-exitcode 3 "$BUILD/tests/cuda/lattq_cuda_tests" --quick \
      ${only[@]+"${only[@]}"} >"$OUT/racecheck.log" 2>&1
    echo "racecheck rc=$?" | tee -a "$OUT/racecheck.log"
    grep -E "RACECHECK SUMMARY|ERROR SUMMARY|checks passed" "$OUT/racecheck.log" | tail -3
    tail -5 "$OUT/racecheck.log" >>"$OUT/sanitizer.log"
    rm -f "$OUT/racecheck.log"
  fi
}

run_bench() {
  echo "== bench_gemm"
  python3 bench/kernels/bench_gemm.py --lib "$BUILD/cuda/liblattq_capi.so" --out "$OUT" --git-rev "${GIT_REV:-unknown}" "$@" \
    2>&1 | tee "$OUT/bench.log" | grep -vE "^\|" | tail -80
}

run_e2e() {
  echo "== bench_e2e"
  python3 bench/kernels/bench_e2e.py --lib "$BUILD/cuda/liblattq_capi.so" --out "$OUT" --git-rev "${GIT_REV:-unknown}" "$@" \
    2>&1 | tee "$OUT/e2e.log" | tail -20
}

# Nsight Compute on the main kernels of the given N x K x m cases (SOL, memory, warp stalls, occupancy)
run_ncu() {
  local NCU
  NCU=$(command -v ncu || ls "$(dirname "$(command -v nvcc)")"/ncu 2>/dev/null || ls /usr/local/cuda*/bin/ncu 2>/dev/null | head -1)
  [ -n "$NCU" ] || { echo "ncu not found"; return 0; }
  local KRE=${NCU_KERNELS:-"imma_main|fused_gemv|gemv3"}
  for case in "${@:-28672x8192x1}"; do
    IFS=x read -r n k m <<<"$case"
    echo "== ncu $n x $k m=$m ($KRE)"
    timeout 240 "$NCU" -k "regex:$KRE" --launch-skip 2 --launch-count 1 --section SpeedOfLight \
      --section MemoryWorkloadAnalysis --section WarpStateStats --section Occupancy --section LaunchStats \
      --section SchedulerStats --section SourceCounters --print-details all \
      --metrics "gpu__time_duration.sum,regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio" python3 bench/kernels/bench_gemm.py --lib "$BUILD/cuda/liblattq_capi.so" \
      --out /tmp/ncu_bench --shapes "${n}x${k}" --batches "$m" --reps 3 --warmup 2 --sweep none --profile none \
      --fused-max-m "${NCU_FUSED_MAX_M:-0}" --gemm-min-m 100000 2>&1 | grep -vE "^\||^[0-9]+x[0-9]+ m=" | tail -400 >>"$OUT/ncu.log"
  done
  grep -E "==PROF==|gpu__time_duration|Duration|Memory Throughput|DRAM Throughput|Registers|Achieved Occupancy|Stall|Warp Cycles|Issued Warp|No Eligible|Block Limit" "$OUT/ncu.log" | head -80
}

build || exit 1
case "$MODE" in
  build) ;;
  test) run_tests ;;
  sanitize) run_sanitize ;;
  bench) run_bench "$@" ;;
  e2e) run_e2e "$@" ;;
  ncu) run_ncu "$@" ;;
  all) run_tests; run_sanitize; run_bench "$@" ;;
  *) echo "unknown mode $MODE"; exit 2 ;;
esac
