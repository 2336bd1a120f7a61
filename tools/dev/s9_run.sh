# device (session 9): build, full CUDA tests, and the m = 5..16 rows with GEMV_PDL's column-width sweep
# (LATTQ_GEMV_TOK = 4, 16) on the 7 shapes.  env: STEPS (default "tests tok")
source tools/dev/s7_common.sh
STEPS=${STEPS:-tests tok}
build_gpu
grep -B1 -A2 "gemv_kernel.*Li16E" /tmp/b.txt 2>/dev/null | grep -E "registers|spill" | head -4
for s in $STEPS; do
  case $s in
    tests) full_tests ;;
    tok) python3 bench/kernels/bench_gemm.py --lib build-gpu/cuda/liblattq_capi.so --out "$OUT" --git-rev "$REV" \
           --batches ${TOK_BATCHES:-5,8,12,16} --variants gemv_pdl,imma,wgmma --ref-limit 0 --sweep none --profile none \
           --tok-sweep all7 > "$OUT/tok.log" 2>&1; echo "tok rc=$?"; grep -E " m=|sweep" "$OUT/tok.log"
         rm -f "$OUT/bench_gemm.png" "$OUT/bench_gemm.md"; mv "$OUT/bench_gemm.json" "$OUT/tok_$REV.json" ;;
    sanitize) sanitize ;;
  esac
done
