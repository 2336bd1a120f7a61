# device (session 22): build (sm_90a); the CUDA test groups S22_TESTS (default: gemv_splits,chain, full size); memcheck
# and racecheck of their quick subsets; then tools/dev/s21_ab.sh's A/Bs (AB_SPECS, AB_SHAPES, AB_ROUNDS) without a
# second build.  -> $OUT/tests_$REV.log, $OUT/sanitize_$REV.log, $OUT/ab_$REV.log
source tools/dev/s7_common.sh
build_gpu
bash tools/dev/sass_ring.sh build-gpu/cuda/CMakeFiles/lattq_cuda.dir/src/decode_gemv.cu.o | tee "$OUT/sass_$REV.log"
T=${S22_TESTS:-gemv_splits,chain}
timeout 300 build-gpu/tests/cuda/lattq_cuda_tests --only "$T" > "$OUT/tests_$REV.log" 2>&1
echo "tests rc=$?" | tee -a "$OUT/tests_$REV.log"
grep -E "FAIL|checks|passed" "$OUT/tests_$REV.log" | cut -c1-300 | head -20
if [ "${S22_SANITIZE:-1}" = 1 ]; then
  CS=$(command -v compute-sanitizer || echo "$(dirname "$(command -v nvcc)")/compute-sanitizer")
  for tool in memcheck racecheck; do
    timeout ${S22_SAN_TIMEOUT:-200} "$CS" --tool $tool --error-exitcode 3 build-gpu/tests/cuda/lattq_cuda_tests --quick --only "$T" \
      > /tmp/san.txt 2>&1
    echo "$tool rc=$?" >> "$OUT/sanitize_$REV.log"
    grep -E "SUMMARY|checks passed|FAIL" /tmp/san.txt | tail -4 >> "$OUT/sanitize_$REV.log"
  done
  cat "$OUT/sanitize_$REV.log"
fi
env_ab
[ -f "$OUT/ab_$REV.log" ] && cat "$OUT/ab_$REV.log"
