# device (session 22): bisects a per-call time difference between versions of cuda/src/decode_gemv.cu.  Builds the
# tree (build-gpu: version "cur"), then for each file in VARS (untracked files sent with the tree, not committed)
# swaps it in, rebuilds only liblattq_capi.so and keeps a copy; then bench_gemm.py rows (AB_BATCHES, AB_SHAPES,
# AB_VARIANTS) for every version in turn (AB_REVERSE=1: the variants first), AB_ROUNDS times.  Run with FRESH=1 on a kept
# machine: build-gpu holds the last variant's object afterwards.  -> $OUT/var_$REV.log
source tools/dev/s7_common.sh
build_gpu
cp build-gpu/cuda/liblattq_capi.so /tmp/lib_cur.so
cp cuda/src/decode_gemv.cu /tmp/cur_decode_gemv.cu
names="cur"
for f in $VARS; do
  nm=$(basename "$f" .cu)
  cp "$f" cuda/src/decode_gemv.cu
  ninja -C build-gpu -j16 lattq_capi > /tmp/nb.txt 2>&1 || { tail -20 /tmp/nb.txt; exit 1; }
  cp build-gpu/cuda/liblattq_capi.so "/tmp/lib_$nm.so"
  names="$names $nm"
done
cp /tmp/cur_decode_gemv.cu cuda/src/decode_gemv.cu
touch build-gpu/stale_decode_gemv  # build-gpu's decode_gemv.cu.o is the last variant's: rebuild with FRESH=1 next time
[ "${AB_REVERSE:-0}" = 1 ] && names=$(echo $names | tr ' ' '\n' | tac | tr '\n' ' ')
for r in $(seq "${AB_ROUNDS:-2}"); do
  for nm in $names; do
    echo "== $nm ($r)" >> "$OUT/var_$REV.log"
    python3 bench/kernels/bench_gemm.py --lib "/tmp/lib_$nm.so" --out /tmp/ab --git-rev "$REV" \
      --batches "${AB_BATCHES:-1,4}" --shapes "${AB_SHAPES:-all}" --variants "${AB_VARIANTS:-gemv_pdl}" \
      --ref-limit 0 --sweep none --profile none 2>&1 | grep -E " m=" >> "$OUT/var_$REV.log"
  done
done
cat "$OUT/var_$REV.log"
