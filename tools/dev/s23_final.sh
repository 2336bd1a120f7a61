# device (session 23): the final record of the kernels at one revision, in steps that each fit one device call.
#   STEP=A: build (sm_90a; FRESH=1 from scratch), the full lattq_cuda_tests, then compute-sanitizer memcheck and
#           racecheck of `--quick --only $SAN_ONLY` -> $OUT/tests_$REV.log, sass_$REV.log, memcheck_$REV.log,
#           racecheck_$REV.log
#   STEP=B: build (kept build dir unless FRESH=1), the full GEMM benchmark (bench_gemm.py defaults), the grouped-layer
#           and end-to-end benchmarks -> $OUT/bench_gemm.{json,md,png}, bench_group.{json,md}, bench_e2e.json,
#           bench_$REV.log and group_e2e_$REV.log (at most 8 files come back)
#   STEP=C: tools/gpu_suite.sh without the kernel tests: pip install with CUDA, every Python test with the GPU,
#           memcheck of the Python GPU tests (MEMCHECK_K), examples/cpp_runtime
source tools/dev/s7_common.sh
T0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
SAN_ONLY=${SAN_ONLY:-errors,gemv_splits,chain,group,graph,wgmma_wh}
case "${STEP:-A}" in
  A)
    build_gpu; stamp built
    bash tools/dev/sass_ring.sh build-gpu/cuda/CMakeFiles/lattq_cuda.dir/src/decode_gemv.cu.o > "$OUT/sass_$REV.log" 2>&1
    t=$(date +%s)
    build-gpu/tests/cuda/lattq_cuda_tests > "$OUT/tests_$REV.log" 2>&1
    echo "tests rc=$? in $(( $(date +%s) - t )) s" >> "$OUT/tests_$REV.log"
    grep -E "FAIL|checks|lattq_cuda_tests on" "$OUT/tests_$REV.log" | cut -c1-300 | head -20; tail -1 "$OUT/tests_$REV.log"
    stamp tests
    CS=$(command -v compute-sanitizer || echo "$(dirname "$(command -v nvcc)")/compute-sanitizer")
    for tool in memcheck racecheck; do
      extra=(); [ $tool = memcheck ] && extra=(--leak-check full)
      timeout "${SAN_TIMEOUT:-170}" "$CS" --tool $tool "${extra[@]}" --error-exitcode 3 build-gpu/tests/cuda/lattq_cuda_tests \
        --quick --only "$SAN_ONLY" > "$OUT/${tool}_$REV.log" 2>&1
      echo "$tool rc=$? (--quick --only $SAN_ONLY)" | tee -a "$OUT/${tool}_$REV.log"
      grep -E "SUMMARY|checks passed|FAIL" "$OUT/${tool}_$REV.log" | tail -4
      stamp $tool
    done ;;
  B)
    build_gpu; stamp built
    python3 bench/kernels/bench_gemm.py --lib build-gpu/cuda/liblattq_capi.so --out "$OUT" --git-rev "$REV" \
      > "$OUT/bench_$REV.log" 2>&1
    echo "bench rc=$?"; grep -E "^unsteady| m=(1|16|64|512|2048):" "$OUT/bench_$REV.log" | cut -c1-240
    stamp bench
    python3 bench/kernels/bench_group.py --lib build-gpu/cuda/liblattq_capi.so --out "$OUT" --git-rev "$REV" \
      > "$OUT/group_e2e_$REV.log" 2>&1
    echo "group rc=$?"; grep -E " m=  1 " "$OUT/group_e2e_$REV.log" | head -20
    stamp group
    timeout 240 python3 bench/kernels/bench_e2e.py --lib build-gpu/cuda/liblattq_capi.so --out "$OUT" --git-rev "$REV" \
      > /tmp/e2e.log 2>&1
    echo "e2e rc=$?"; tail -4 /tmp/e2e.log; { echo "== bench_e2e.py"; cat /tmp/e2e.log; } >> "$OUT/group_e2e_$REV.log"
    stamp e2e ;;
  C)
    KERNEL_TESTS=0 MEMCHECK_K="${MEMCHECK_K:-group_projections or cuda_graph}" MEMCHECK_TIMEOUT="${MEMCHECK_TIMEOUT:-200}" \
      bash tools/gpu_suite.sh
    echo "gpu_suite rc=$?"
    stamp suite ;;
  *) echo "unknown STEP ${STEP}"; exit 2 ;;
esac
