# device (session 21): build (sm_90a), the AB_TESTS test groups (default: --quick wgmma_wh,wgmma_settings,gemv_splits),
# then several environment-knob A/Bs on cold whole-call times (bench_gemm.py rows), each in the order A B A B.
# AB_SPECS: "VAR:V1,V2:BATCHES:VARIANTS;..." (BATCHES and VARIANTS as bench_gemm.py takes them); AB_SHAPES (default all);
# AB_ROUNDS (default 2).  -> $OUT/ab_$REV.log
source tools/dev/s7_common.sh
build_gpu
build-gpu/tests/cuda/lattq_cuda_tests ${AB_TESTS:---quick --only wgmma_wh,wgmma_settings,gemv_splits} > "$OUT/ftests_$REV.log" 2>&1
echo "ftests rc=$?"
grep -E "FAIL|checks|passed" "$OUT/ftests_$REV.log" | cut -c1-300 | head -20
env_ab
cat "$OUT/ab_$REV.log"
