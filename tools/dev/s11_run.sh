# device (session 11): build (sm_90a), then STEPS (default "ftests rows sweep"); each step is timed:
#   ftests   = lattq_cuda_tests --only ${FT_ONLY:-forward,wgmma_settings,wgmma_wh,errors,graph}
#   tests    = the full CUDA tests
#   rows     = bench_gemm rows at ROWS_BATCHES (default 64,512,2048) on ROWS_SHAPES (default all), variants ROWS_VARIANTS
#              (default wgmma,wgmma_f16; + bf16, int4, floor, AUTO), per-kernel times of PROFILE (NxKxMxV)
#   sweep    = wgmma_f16 CTA-shape sweep (LATTQ_WGMMA_F16_TILE) on SWEEP_SHAPES at SWEEP_BATCHES
#   sksweep  = wgmma_f16 stream-K sweep (planned / off, 128x2 planned / off, 128x1) on SWEEP_SHAPES at SWEEP_BATCHES
#   ncu      = Nsight Compute on the wh_ kernels of NCU_CASES (NxKxM)
#   prof     = per-kernel warm times of PROFILE under each of PROF_ENVS
#   ncuprep  = Nsight Compute on one kernel (NCU_KRE, default regex:wh_prep) of NCU_CASES: stalls, L1, SASS source page
#   sanitize = memcheck and racecheck of SAN_ONLY (default wgmma_settings,errors) --quick
#   bench    = the full benchmark
#   whtrace  = a -DLATTQ_GEMV_TRACE build (build-trace) and the WGMMA_F16 per-CTA phase trace of WH_CASES (NxKxM,...);
#              WH_VARIANT=7: the WGMMA variant (m <= 32 runs on the same frame)
source tools/dev/s7_common.sh
STEPS=${STEPS:-ftests rows sweep}
ALL7=4096x4096,11008x4096,4096x11008,14336x4096,4096x14336,28672x8192,8192x28672
BG="python3 bench/kernels/bench_gemm.py --lib build-gpu/cuda/liblattq_capi.so --git-rev $REV"
T0=$(date +%s)
# f16_sweep NAME SHAPES_FLAG BATCHES_FLAG DEFAULT_BATCHES: a wgmma_f16 knob sweep of bench_gemm.py on SWEEP_SHAPES at
# SWEEP_BATCHES -> $OUT/NAME_$REV.log
f16_sweep() {
  $BG --out "$OUT/sw_$1" --batches 16 --shapes 4096x4096 --variants wgmma_f16 --ref-limit 0 --sweep none \
    --profile none "$2" "${SWEEP_SHAPES:-$ALL7}" "$3" "${SWEEP_BATCHES:-$4}" > "$OUT/$1_$REV.log" 2>&1
  echo "$1 rc=$?"
  grep -E "sweep" "$OUT/$1_$REV.log"; rm -rf "$OUT/sw_$1"
}
stamp() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
NCU=$(command -v ncu || ls "$(dirname "$(command -v nvcc)")"/ncu 2>/dev/null | head -1)
# wf16_case NxKxM: sets N K M and ONE, the bench_gemm.py command that runs wgmma_f16 on that case 3 times (under ncu)
wf16_case() {
  IFS=x read -r N K M <<<"$1"
  ONE=($BG --out /tmp/ncu_bench --shapes "${N}x${K}" --batches "$M" --reps 3 --warmup 2 --sweep none --profile none
       --variants wgmma_f16 --ref-limit 0)
}
if [ "${SKIP_BUILD:-0}" != 1 ]; then  # SKIP_BUILD=1: only the steps that build their own (whtrace)
  bash tools/gpu_kernels.sh build > /tmp/b.txt 2>&1 || { tail -30 /tmp/b.txt; exit 1; }
  grep -A4 "Function properties for.*wh_" "$OUT/build.log" | grep -E "Used|spill" | sort | uniq -c | head -6
  rm -f "$OUT/build.log" "$OUT/env.log"
  stamp built
fi
for s in $STEPS; do
  case $s in
    ftests) build-gpu/tests/cuda/lattq_cuda_tests --only "${FT_ONLY:-forward,wgmma_settings,wgmma_wh,errors,graph}" \
              > "$OUT/ftests_$REV.log" 2>&1; echo "ftests rc=$?"
            grep -E "FAIL|checks|passed" "$OUT/ftests_$REV.log" | cut -c1-300 | head -20 ;;
    tests) full_tests ;;
    rows) $BG --out "$OUT/rows" --batches "${ROWS_BATCHES:-64,512,2048}" --shapes "${ROWS_SHAPES:-all}" \
            --variants "${ROWS_VARIANTS:-wgmma,wgmma_f16}" --ref-limit 2e9 --sweep none \
            --profile "${PROFILE:-4096x4096x512x9,4096x4096x2048x9,4096x14336x2048x9,8192x28672x2048x9,28672x8192x512x9}" \
            > "$OUT/rows_$REV.log" 2>&1; echo "rows rc=$?"
          grep -E " m=|Error|error|profile" "$OUT/rows_$REV.log" | head -80
          mv "$OUT/rows/bench_gemm.json" "$OUT/rows_$REV.json"; rm -rf "$OUT/rows" ;;
    sweep) f16_sweep sweep --f16-sweep --f16-batches 64,512,2048 ;;
    sksweep) f16_sweep sksweep --sk-sweep --sk-batches 128,512,2048 ;;
    ncu)
      for c in ${NCU_CASES:-28672x8192x64 4096x14336x2048}; do
        wf16_case "$c"
        echo "== ncu $c" >> "$OUT/ncu_$REV.log"
        timeout 200 "$NCU" -k "regex:wh_" --launch-skip 4 --launch-count 2 --section SpeedOfLight \
          --section MemoryWorkloadAnalysis --section WarpStateStats --section Occupancy --section SchedulerStats \
          --section ComputeWorkloadAnalysis "${ONE[@]}" 2>&1 | grep -vE "^\||^[0-9]+x[0-9]+ m=" | tail -300 \
          >> "$OUT/ncu_$REV.log"
      done
      grep -E "== ncu|wh_|Duration|Memory Throughput|DRAM Throughput|Compute \(SM\)|Achieved Occupancy|Issued Warp|No Eligible" \
        "$OUT/ncu_$REV.log" | cut -c1-160 | head -60 ;;
    prof)  # per-kernel warm times (PROFILE cases) under each of PROF_ENVS (space-separated; ':' joins variables)
      for e in ${PROF_ENVS:-LATTQ_WGMMA_F16_PREP_FAST=0 LATTQ_WGMMA_F16_PREP_FAST=1}; do
        echo "== env ${e//:/ }" | tee -a "$OUT/prof_$REV.log"
        env ${e//:/ } $BG --out /tmp/pf --batches 1 --shapes 4096x4096 --variants wgmma_f16 --ref-limit 0 --sweep none \
          --profile "${PROFILE:-4096x4096x2048x9,4096x14336x2048x9,8192x28672x2048x9,28672x8192x512x9,8192x28672x64x9}" \
          2>&1 | grep -E "^profile|rror" | tee -a "$OUT/prof_$REV.log"
      done ;;
    ncuprep)
      # the WGMMA_F16 prologue kernel alone: stall reasons, L1 wavefronts, instruction counts, the per-SASS source page
      for c in ${NCU_CASES:-4096x14336x2048 8192x28672x64}; do
        wf16_case "$c"
        echo "== ncuprep $c" >> "$OUT/ncuprep_$REV.log"
        timeout 200 "$NCU" -k "${NCU_KRE:-regex:wh_prep}" --launch-skip 2 --launch-count 1 --section SpeedOfLight \
          --section WarpStateStats --section Occupancy --section SourceCounters --section InstructionStats \
          --section MemoryWorkloadAnalysis_Tables --metrics "smsp__inst_executed.sum,l1tex__data_pipe_lsu_wavefronts_mem_shared.sum,l1tex__data_bank_conflicts_pipe_lsu_mem_shared.sum,l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum,l1tex__t_requests_pipe_lsu_mem_global_op_ld.sum,l1tex__t_sectors_pipe_lsu_mem_global_op_st.sum,l1tex__t_requests_pipe_lsu_mem_global_op_st.sum,l1tex__throughput.avg.pct_of_peak_sustained_active,dram__bytes_read.sum,dram__bytes_write.sum" \
          -o "/tmp/prep_$c" -f "${ONE[@]}" > /tmp/ncuprep_run.txt 2>&1 || grep -E "ERR|rror" /tmp/ncuprep_run.txt | head -5
        "$NCU" -i "/tmp/prep_$c.ncu-rep" --print-details all >> "$OUT/ncuprep_$REV.log" 2>&1
        "$NCU" -i "/tmp/prep_$c.ncu-rep" --page raw --csv > "$OUT/ncuprep_raw_${c}_$REV.csv" 2>&1
        "$NCU" -i "/tmp/prep_$c.ncu-rep" --page source --csv --print-source sass > "$OUT/ncuprep_sass_${c}_$REV.csv" 2>&1 ||
          "$NCU" -i "/tmp/prep_$c.ncu-rep" --page source --csv > "$OUT/ncuprep_sass_${c}_$REV.csv" 2>&1
        wc -c "$OUT"/ncuprep_*"$c"*.csv
      done
      grep -E "== ncuprep|Duration|Issued Warp|stalled_.*pct|inst_executed|wavefronts|bank_conflicts|sectors|requests|throughput" \
        "$OUT/ncuprep_$REV.log" | cut -c1-160 | head -90 ;;
    sanitize)
      CS=$(command -v compute-sanitizer || echo "$(dirname "$(command -v nvcc)")/compute-sanitizer")
      timeout "${SAN_TIMEOUT:-240}" "$CS" --tool memcheck --error-exitcode 3 build-gpu/tests/cuda/lattq_cuda_tests --quick \
        --only "${SAN_ONLY:-wgmma_settings,errors}" > "$OUT/memcheck_$REV.log" 2>&1; echo "memcheck rc=$?"
      grep -E "ERROR SUMMARY|checks|passed" "$OUT/memcheck_$REV.log" | tail -3
      timeout "${SAN_TIMEOUT:-240}" "$CS" --tool racecheck --error-exitcode 3 build-gpu/tests/cuda/lattq_cuda_tests --quick \
        --only "${SAN_ONLY:-wgmma_settings,errors}" > "$OUT/racecheck_$REV.log" 2>&1; echo "racecheck rc=$?"
      grep -E "RACECHECK SUMMARY|ERROR SUMMARY|checks|passed" "$OUT/racecheck_$REV.log" | tail -3 ;;
    whtrace)
      cmake -S . -B build-trace -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a -DLATTQ_CUDA=ON \
        -DLATTQ_BUILD_TESTS=OFF -DLATTQ_BUILD_CPP_TESTS=OFF -DLATTQ_CUDA_SHARED_CAPI=ON \
        -DCMAKE_CUDA_FLAGS="-DLATTQ_GEMV_TRACE" > /tmp/tb.log 2>&1 && ninja -C build-trace -j16 lattq_capi >> /tmp/tb.log 2>&1 ||
        { tail -30 /tmp/tb.log; exit 1; }
      python3 bench/kernels/probe_latency.py --trace-lib build-trace/cuda/liblattq_capi.so --out "$OUT" --git-rev "$REV" \
        --variant "${WH_VARIANT:-9}" \
        --wh-cases "${WH_CASES:-4096x4096x2048,4096x14336x2048,28672x8192x512,8192x28672x512,28672x8192x64,8192x28672x64}" \
        2>&1 | grep -v Warn | tee "$OUT/whtrace_$REV.log" ;;
    bench) $BG --out "$OUT" > "$OUT/bench_$REV.log" 2>&1; echo "bench rc=$?"; grep -E " m=(1|16|64|512|2048):" "$OUT/bench_$REV.log" ;;
  esac
  stamp "$s done"
done
# SASS of one kernel (SASS_FN: a substring of the mangled name) -> $OUT/sass_$REV.txt, with an opcode histogram
if [ -n "${SASS_FN:-}" ]; then
  CUOBJ=$(command -v cuobjdump || echo "$(dirname "$(command -v nvcc)")/cuobjdump")
  "$CUOBJ" -sass build-gpu/cuda/liblattq_capi.so 2>/dev/null | awk -v f="$SASS_FN" '
    /Function :/ { on = index($0, f) > 0 && !done; if (!on && seen) done = 1; if (on) seen = 1 } on { print }' > "$OUT/sass_$REV.txt"
  wc -l "$OUT/sass_$REV.txt"
  grep -oE '^\s+/\*[0-9a-f]{4}\*/\s+[A-Z0-9_.]+' "$OUT/sass_$REV.txt" | awk '{print $2}' | sed 's/\..*//' | sort | uniq -c | sort -rn | head -25
fi
