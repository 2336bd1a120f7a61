# device (session 9): build, then STEPS (default "tests tok bench"): tests = full CUDA tests; tok = AUTO / GEMV_PDL rows at
# m = 5 and 12 with the column-width sweep; bench = the full benchmark; sanitize; e2e; trig = the trigger-point sweep
source tools/dev/s7_common.sh
STEPS=${STEPS:-tests tok bench}
build_gpu
for s in $STEPS; do
  case $s in
    tests) full_tests ;;
    tok) python3 bench/kernels/bench_gemm.py --lib build-gpu/cuda/liblattq_capi.so --out "$OUT" --git-rev "$REV" \
           --batches ${TOK_BATCHES:-5,12} --variants gemv_pdl,imma,wgmma --ref-limit 0 --sweep none --profile none \
           --tok-sweep all7 > "$OUT/tok.log" 2>&1; echo "tok rc=$?"; grep -E " m=" "$OUT/tok.log"
         rm -f "$OUT/bench_gemm.png" "$OUT/bench_gemm.md"; mv "$OUT/bench_gemm.json" "$OUT/tok_$REV.json" ;;
    bench) python3 bench/kernels/bench_gemm.py --lib build-gpu/cuda/liblattq_capi.so --out "$OUT" --git-rev "$REV" \
             > "$OUT/bench_$REV.log" 2>&1; echo "bench rc=$?"; grep -E " m=(1|16|64|2048):" "$OUT/bench_$REV.log" ;;
    sanitize) sanitize ;;
    e2e) timeout 400 python3 bench/kernels/bench_e2e.py --lib build-gpu/cuda/liblattq_capi.so --out "$OUT" --git-rev "$REV" \
           --overhead --separate > "$OUT/e2e.log" 2>&1; echo "e2e rc=$?"; grep -v Warn "$OUT/e2e.log" | tail -9 ;;
  esac
done
# trig: GEMV_PDL trigger-point sweep (0, 3, 4) at TRIG_BATCHES (default m = 1, 2, 4, 8, 16) on the 7 shapes, rows at
# TRIG_ROWS (default m = 1)
if [[ " $STEPS " == *" trig "* ]]; then
  python3 bench/kernels/bench_gemm.py --lib build-gpu/cuda/liblattq_capi.so --out "$OUT/trig" --git-rev "$REV" \
    --batches ${TRIG_ROWS:-1} --variants gemv_pdl,imma,wgmma --ref-limit 0 --sweep none --profile none --trig-sweep all7 \
    --trig-batches ${TRIG_BATCHES:-1,2,4,8,16} > "$OUT/trig_$REV.log" 2>&1
  echo "trig rc=$?"; grep -E "sweep| m=" "$OUT/trig_$REV.log"; rm -f "$OUT"/trig/bench_gemm.{md,png}
fi
