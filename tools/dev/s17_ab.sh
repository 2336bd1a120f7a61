# device (session 17): build (sm_90a), the forward / wgmma_settings / errors / graph tests, then an A/B of one
# environment knob on cold whole-call times: bench_gemm.py rows of AB_VARIANT (default wgmma_f16) at AB_BATCHES
# (default 16,64,512) on AB_SHAPES (default all 7), for each value in AB_VALUES of AB_VAR, AB_ROUNDS times (default 2) in the order A B A B
# -> $OUT/ab_$REV.log; AB_TESTS: the test groups run first (default forward,wgmma_settings,wgmma_wh,errors,graph).
# Since session 21 a front end of tools/dev/s21_ab.sh (one spec).
vals=${AB_VALUES:-0 1}
AB_TESTS="--only ${AB_TESTS:-forward,wgmma_settings,wgmma_wh,errors,graph}" \
  AB_SPECS="${AB_VAR}:${vals// /,}:${AB_BATCHES:-16,64,512}:${AB_VARIANT:-wgmma_f16}" exec bash tools/dev/s21_ab.sh
