# device (session 21): build (sm_90a), the AB_TESTS test groups (default: --quick wgmma_wh,wgmma_settings,gemv_splits),
# then several environment-knob A/Bs on cold whole-call times (bench_gemm.py rows), each in the order A B A B.
# AB_SPECS: "VAR:V1,V2:BATCHES:VARIANTS;..." (BATCHES and VARIANTS as bench_gemm.py takes them); AB_SHAPES (default all);
# AB_ROUNDS (default 2).  -> $OUT/ab_$REV.log
source tools/dev/s7_common.sh
build_gpu
build-gpu/tests/cuda/lattq_cuda_tests ${AB_TESTS:---quick --only wgmma_wh,wgmma_settings,gemv_splits} > "$OUT/ftests_$REV.log" 2>&1
echo "ftests rc=$?"
grep -E "FAIL|checks|passed" "$OUT/ftests_$REV.log" | cut -c1-300 | head -20
IFS=';' read -ra specs <<< "${AB_SPECS}"
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
cat "$OUT/ab_$REV.log"
