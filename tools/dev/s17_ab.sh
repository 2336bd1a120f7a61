# device (session 17): build (sm_90a), the forward / wgmma_settings / errors / graph tests, then an A/B of one
# environment knob on cold whole-call times: bench_gemm.py rows of AB_VARIANT (default wgmma_f16) at AB_BATCHES
# (default 16,64,512) on AB_SHAPES (default all 7), for each value in AB_VALUES of AB_VAR, AB_ROUNDS times (default 2) in the order A B A B
# -> $OUT/ab_$REV.log; AB_TESTS: the test groups run first (default forward,wgmma_settings,wgmma_wh,errors,graph)
source tools/dev/s7_common.sh
build_gpu
build-gpu/tests/cuda/lattq_cuda_tests --only "${AB_TESTS:-forward,wgmma_settings,wgmma_wh,errors,graph}" > "$OUT/ftests_$REV.log" 2>&1
echo "ftests rc=$?"
grep -E "FAIL|checks|passed" "$OUT/ftests_$REV.log" | cut -c1-300 | head -20
for r in $(seq "${AB_ROUNDS:-2}"); do
  for e in ${AB_VALUES:-0 1}; do
    echo "== ${AB_VAR}=$e ($r)" >> "$OUT/ab_$REV.log"
    env "${AB_VAR}=$e" python3 bench/kernels/bench_gemm.py --lib build-gpu/cuda/liblattq_capi.so --out /tmp/ab \
      --git-rev "$REV" --batches "${AB_BATCHES:-16,64,512}" --shapes "${AB_SHAPES:-all}" --variants "${AB_VARIANT:-wgmma_f16}" \
      --ref-limit 0 --sweep none --profile none 2>&1 | grep -E " m=" >> "$OUT/ab_$REV.log"
  done
done
cat "$OUT/ab_$REV.log"
