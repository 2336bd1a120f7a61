# device (session 22): an A/B of two builds in one call.  Builds the tree (build-gpu) and a copy of it whose
# cuda/src/decode_gemv.cu is replaced by $OLD_SRC (an untracked file sent with the tree; not committed), runs the
# CUDA test groups S22_TESTS on the first, then bench_gemm.py rows (AB_BATCHES, AB_SHAPES, AB_VARIANTS) alternating
# new / old, AB_ROUNDS times.  -> $OUT/abb_$REV.log, $OUT/tests_$REV.log
source tools/dev/s7_common.sh
build_gpu
bash tools/dev/sass_ring.sh build-gpu/cuda/CMakeFiles/lattq_cuda.dir/src/decode_gemv.cu.o | sed 's/^/new /'
rm -rf /tmp/oldtree && mkdir -p /tmp/oldtree && tar --exclude=./build-gpu -cf - . | tar -xf - -C /tmp/oldtree
cp "$OLD_SRC" /tmp/oldtree/cuda/src/decode_gemv.cu
(cd /tmp/oldtree && OUT=/tmp/oldout BUILD_DIR=/tmp/oldtree/build-old bash tools/gpu_kernels.sh build > /tmp/ob.txt 2>&1) ||
  { tail -30 /tmp/ob.txt; exit 1; }
bash tools/dev/sass_ring.sh /tmp/oldtree/build-old/cuda/CMakeFiles/lattq_cuda.dir/src/decode_gemv.cu.o | sed 's/^/old /'
if [ -n "${S22_TESTS:-}" ]; then
  timeout 300 build-gpu/tests/cuda/lattq_cuda_tests --only "$S22_TESTS" > "$OUT/tests_$REV.log" 2>&1
  echo "tests rc=$?" | tee -a "$OUT/tests_$REV.log"
  grep -E "FAIL|checks|passed" "$OUT/tests_$REV.log" | cut -c1-300 | head -20
fi
for r in $(seq "${AB_ROUNDS:-2}"); do
  for which in new old; do
    lib=build-gpu/cuda/liblattq_capi.so
    [ $which = old ] && lib=/tmp/oldtree/build-old/cuda/liblattq_capi.so
    echo "== $which ($r) ${AB_ENV:-}" >> "$OUT/abb_$REV.log"
    env ${AB_ENV:-} python3 bench/kernels/bench_gemm.py --lib "$lib" --out /tmp/ab --git-rev "$REV" \
      --batches "${AB_BATCHES:-1,2,4}" --shapes "${AB_SHAPES:-all}" --variants "${AB_VARIANTS:-gemv_pdl}" \
      --ref-limit 0 --sweep none --profile none 2>&1 | grep -E " m=" >> "$OUT/abb_$REV.log"
  done
done
cat "$OUT/abb_$REV.log"
