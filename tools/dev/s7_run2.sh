# device (session 7): build, full CUDA tests, decode-batch benchmark of gemv / gemv_pdl / imma (BATCHES, default
# 1,2,4,8,16), e2e (compiled small ops) with the variants E2E_VARIANTS (default 0,6,8) and a harness-overhead row
. tools/dev/s7_common.sh
build_gpu; full_tests
decode_bench "${BATCHES:-1,2,4,8,16}" gemv,gemv_pdl,imma
timeout 300 python3 bench/kernels/bench_e2e.py --lib build-gpu/cuda/liblattq_capi.so --out "$OUT" --git-rev "$REV" \
  --variants "${E2E_VARIANTS:-0,6,8}" --overhead > "$OUT/e2e.log" 2>&1; echo "e2e rc=$?"; grep -v Warn "$OUT/e2e.log" | tail -12
