# device (session 8): build, full CUDA tests (grouped launches included), the grouped-layer benchmark, a decode
# regression check of the single-layer GEMV / GEMV_PDL rows at m = 1, 4, and the end-to-end decode benchmark with and
# without grouped projections.  env: STEPS (default "tests group decode e2e")
source tools/dev/s7_common.sh
STEPS=${STEPS:-tests group decode e2e}
build_gpu
for s in $STEPS; do
  case $s in
    tests) full_tests; grep -E "forward_group|group " "$OUT/tests.log" | head -5 ;;
    group) python3 bench/kernels/bench_group.py --lib build-gpu/cuda/liblattq_capi.so --out "$OUT" --git-rev "$REV" --no-pdl \
             > "$OUT/group.log" 2>&1; echo "group rc=$?"; grep -E "^\|" "$OUT/group.log" | head -40 ;;
    decode) decode_bench 1,4 gemv,gemv_pdl; echo "decode rc=$?"
            mv "$OUT/bench_gemm.json" "$OUT/decode_$REV.json"; rm -f "$OUT/bench_gemm.md" "$OUT/bench_gemm.png" "$OUT/bench.log" ;;
    e2e) timeout 400 python3 bench/kernels/bench_e2e.py --lib build-gpu/cuda/liblattq_capi.so --out "$OUT" --git-rev "$REV" \
           --overhead --separate > "$OUT/e2e.log" 2>&1; echo "e2e rc=$?"; grep -v Warn "$OUT/e2e.log" | tail -9 ;;
    sanitize) sanitize ;;
  esac
done
