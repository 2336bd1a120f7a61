# sourced by the session-7 device scripts: build (sm_90a) into build-gpu, the full CUDA tests, a decode-batch
# benchmark, the sanitizers.  Logs go to $OUT (at most 8 files come back).
set -u
REV=${GIT_REV:-wip}
build_gpu() {
  bash tools/gpu_kernels.sh build > /tmp/b.txt 2>&1 || { tail -30 /tmp/b.txt; exit 1; }
  rm -f "$OUT/build.log" "$OUT/env.log"
}
full_tests() {
  build-gpu/tests/cuda/lattq_cuda_tests > "$OUT/tests.log" 2>&1; echo "tests rc=$?" >> "$OUT/tests.log"
  grep -E "FAIL|checks|lattq_cuda_tests on|chains" "$OUT/tests.log" | head -20; tail -1 "$OUT/tests.log"
}
# decode_bench BATCHES VARIANTS: bench_gemm.py rows for those batches and lattq variants (plus bf16, int4, floor, AUTO)
decode_bench() {
  python3 bench/kernels/bench_gemm.py --lib build-gpu/cuda/liblattq_capi.so --out "$OUT" --git-rev "$REV" --batches "$1" \
    --variants "$2" --ref-limit 0 --sweep none --profile none > "$OUT/bench.log" 2>&1
  grep -E " m=" "$OUT/bench.log"
}
sanitize() {
  bash tools/gpu_kernels.sh sanitize 2>&1 | tail -8
  rm -f "$OUT/env.log"
}
# env_ab: environment-knob A/Bs on cold whole-call times (bench_gemm.py rows) -> $OUT/ab_$REV.log.  AB_SPECS:
# "VAR:V1,V2:BATCHES:VARIANTS;..." (BATCHES and VARIANTS as bench_gemm.py takes them); AB_SHAPES (default all);
# AB_ROUNDS (default 2); each spec runs V1 V2 ... in turn, AB_ROUNDS times
env_ab() {
  local specs spec var vals batches variants r e
  IFS=';' read -ra specs <<< "${AB_SPECS:-}"
  for spec in "${specs[@]}"; do
    IFS=':' read -r var vals batches variants <<< "$spec"
    for r in $(seq "${AB_ROUNDS:-2}"); do
      for e in ${vals//,/ }; do
        echo "== ${var}=$e ($r)" >> "$OUT/ab_$REV.log"
        env "${var}=$e" python3 bench/kernels/bench_gemm.py --lib build-gpu/cuda/liblattq_capi.so --out /tmp/ab \
          --git-rev "$REV" --batches "$batches" --shapes "${AB_SHAPES:-all}" --variants "$variants" \
          --ref-limit 0 --sweep none --profile none 2>&1 | grep -E " m=" >> "$OUT/ab_$REV.log"
      done
    done
  done
}
