# device (session 10): build (sm_90a), then STEPS (default "ftests rows sweep"):
#   ftests   = lattq_cuda_tests --only ${FT_ONLY:-forward,wgmma_settings,errors,graph}
#   tests    = the full CUDA tests
#   rows     = bench_gemm rows at ROWS_BATCHES (default 16,64,128,512,2048), variants wgmma / wgmma_f16 (+ bf16, int4,
#              floor, AUTO), the reference check on the small cases, per-kernel times of PROFILE (NxKxMxV)
#   sweep    = wgmma_f16 CTA-shape sweep (LATTQ_WGMMA_F16_TILE) on SWEEP_SHAPES at m = 64, 128, 512, 2048
#   sanitize = memcheck and racecheck of SAN_ONLY (default wgmma_settings,errors) --quick
#   bench    = the full benchmark
source tools/dev/s7_common.sh
STEPS=${STEPS:-ftests rows sweep}
BG="python3 bench/kernels/bench_gemm.py --lib build-gpu/cuda/liblattq_capi.so --git-rev $REV"
bash tools/gpu_kernels.sh build > /tmp/b.txt 2>&1 || { tail -30 /tmp/b.txt; exit 1; }
grep -E "C751[0-9].*wh_" "$OUT/build.log" | cut -c1-200 | head -4
grep -A4 "Function properties for.*wh_main" "$OUT/build.log" | grep -E "Used|spill" | sort | uniq -c | head -4
rm -f "$OUT/build.log" "$OUT/env.log"
for s in $STEPS; do
  case $s in
    ftests) build-gpu/tests/cuda/lattq_cuda_tests --only "${FT_ONLY:-forward,wgmma_settings,errors,graph}" \
              > "$OUT/ftests.log" 2>&1; echo "ftests rc=$?"
            grep -E "FAIL|wgmma_f16|checks|passed" "$OUT/ftests.log" | cut -c1-300 | head -40 ;;
    tests) full_tests ;;
    rows) $BG --out "$OUT/rows" --batches "${ROWS_BATCHES:-16,64,128,512,2048}" --variants wgmma,wgmma_f16 \
            --ref-limit 2e9 --sweep none --profile "${PROFILE:-28672x8192x2048x9,4096x4096x2048x9,28672x8192x512x9}" \
            > "$OUT/rows_$REV.log" 2>&1; echo "rows rc=$?"
          grep -E " m=|Error|error|profile" "$OUT/rows_$REV.log" | head -80
          python3 - "$OUT/rows/bench_gemm.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
for c in d.get("checks", []):
    print("check", c["n"], c["k"], c["m"], c["impl"], "%.2e" % c["rel_diff_vs_reference"])
PY
          mv "$OUT/rows/bench_gemm.json" "$OUT/rows_$REV.json"; rm -rf "$OUT/rows" ;;
    sweep) $BG --out "$OUT/sw" --batches 16 --shapes 4096x4096 --variants wgmma_f16 --ref-limit 0 --sweep none \
             --profile none --f16-sweep "${SWEEP_SHAPES:-4096x4096,14336x4096,28672x8192,8192x28672}" \
             --f16-batches "${SWEEP_BATCHES:-64,128,512,2048}" > "$OUT/sweep_$REV.log" 2>&1; echo "sweep rc=$?"
           grep -E "sweep" "$OUT/sweep_$REV.log"; rm -rf "$OUT/sw" ;;
    sanitize)
      CS=$(command -v compute-sanitizer || echo "$(dirname "$(command -v nvcc)")/compute-sanitizer")
      timeout 240 "$CS" --tool memcheck --error-exitcode 3 build-gpu/tests/cuda/lattq_cuda_tests --quick \
        --only "${SAN_ONLY:-wgmma_settings,errors}" > "$OUT/memcheck_$REV.log" 2>&1; echo "memcheck rc=$?"
      grep -E "ERROR SUMMARY|checks|passed" "$OUT/memcheck_$REV.log" | tail -3
      timeout 240 "$CS" --tool racecheck --error-exitcode 3 build-gpu/tests/cuda/lattq_cuda_tests --quick \
        --only "${SAN_ONLY:-wgmma_settings,errors}" > "$OUT/racecheck_$REV.log" 2>&1; echo "racecheck rc=$?"
      grep -E "RACECHECK SUMMARY|ERROR SUMMARY|checks|passed" "$OUT/racecheck_$REV.log" | tail -3 ;;
    bench) $BG --out "$OUT" > "$OUT/bench_$REV.log" 2>&1; echo "bench rc=$?"; grep -E " m=(1|16|64|512|2048):" "$OUT/bench_$REV.log" ;;
  esac
done
