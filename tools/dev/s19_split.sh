# device (session 19): build (sm_90a), then bench_gemm.py rows of the WGMMA variant at m = SPLIT_BATCHES (default 16)
# on all 7 shapes for each "TILE:SK" in SPLIT_CFGS (LATTQ_WGMMA_F16_TILE and LATTQ_WGMMA_F16_SK; an empty TILE leaves
# the plan's CTA shape), SPLIT_ROUNDS times -> $OUT/split_$REV.log
source tools/dev/s7_common.sh
build_gpu
for r in $(seq "${SPLIT_ROUNDS:-1}"); do
  for c in ${SPLIT_CFGS:-16x2:128}; do
    t=${c%%:*}; g=${c##*:}
    echo "== TILE=$t SK=$g ($r)" >> "$OUT/split_$REV.log"
    env ${t:+LATTQ_WGMMA_F16_TILE=$t} LATTQ_WGMMA_F16_SK="$g" python3 bench/kernels/bench_gemm.py \
      --lib build-gpu/cuda/liblattq_capi.so --out /tmp/ab --git-rev "$REV" --batches "${SPLIT_BATCHES:-16}" \
      --shapes all --variants wgmma --ref-limit 0 --sweep none --profile none 2>&1 | grep -E " m=" >> "$OUT/split_$REV.log"
  done
done
cat "$OUT/split_$REV.log"
