# device (session 17): an A/B of two source trees on cold whole-call times.  B = this tree (build-gpu), A = a copy of
# it with the files under AB_ALT (an untracked directory mirroring repository paths) put in place (/tmp/alt).  Then
# the kernel tests of B (FT_ONLY, default wgmma_settings,forward) and bench_gemm.py rows of AB_VARIANT (default
# wgmma_f16) at AB_BATCHES on AB_SHAPES, in the order A B A B -> $OUT/ab2_$REV.log
source tools/dev/s7_common.sh
build_gpu
rm -rf /tmp/alt && mkdir -p /tmp/alt && tar --exclude=./build-gpu --exclude=./build-trace -cf - . | tar -xf - -C /tmp/alt
cp -r "${AB_ALT:?}"/. /tmp/alt/
(cd /tmp/alt && OUT=/tmp/altout bash tools/gpu_kernels.sh build > /tmp/balt.txt 2>&1) || { tail -20 /tmp/balt.txt; exit 1; }
echo "built A and B"
build-gpu/tests/cuda/lattq_cuda_tests --only "${FT_ONLY:-wgmma_settings,forward}" > "$OUT/ftests_$REV.log" 2>&1
echo "ftests rc=$?"; grep -E "FAIL|checks|passed" "$OUT/ftests_$REV.log" | cut -c1-300 | head -20
for r in 1 2; do
  for ab in A B; do
    lib=build-gpu/cuda/liblattq_capi.so; [ $ab = A ] && lib=/tmp/alt/build-gpu/cuda/liblattq_capi.so
    echo "== $ab ($r)" >> "$OUT/ab2_$REV.log"
    python3 bench/kernels/bench_gemm.py --lib "$lib" --out /tmp/ab --git-rev "$REV" --batches "${AB_BATCHES:-16,64,512}" \
      --shapes "${AB_SHAPES:-all}" --variants "${AB_VARIANT:-wgmma_f16}" --ref-limit 0 --sweep none --profile none 2>&1 |
      grep -E " m=" >> "$OUT/ab2_$REV.log"
  done
done
cat "$OUT/ab2_$REV.log"
