# device (session 7): GEMV_PDL trigger point experiment: traces (prologue kernel + main kernel phases) at m = 1 for
# LATTQ_GEMV_PDL_TRIGGER = 0, 1, 2, and bench rows of gemv / gemv_pdl at m = 1, 4 under each
set -u
B=build-trace
cmake -S . -B $B -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a -DLATTQ_CUDA=ON -DLATTQ_BUILD_TESTS=OFF \
  -DLATTQ_BUILD_CPP_TESTS=OFF -DLATTQ_CUDA_SHARED_CAPI=ON -DCMAKE_CUDA_FLAGS="-DLATTQ_GEMV_TRACE" > /tmp/tb.log 2>&1 || { tail -20 /tmp/tb.log; exit 1; }
ninja -C $B -j16 lattq_capi >> /tmp/tb.log 2>&1 || { tail -30 /tmp/tb.log; exit 1; }
bash tools/gpu_kernels.sh build > /tmp/b.txt 2>&1 || { tail -30 /tmp/b.txt; exit 1; }
rm -f $OUT/build.log $OUT/env.log
for t in 0 1 2; do
  echo "== LATTQ_GEMV_PDL_TRIGGER=$t"
  LATTQ_GEMV_PDL_TRIGGER=$t TRACE_TAG=_trig$t python3 bench/kernels/probe_latency.py --trace-lib $B/cuda/liblattq_capi.so --out $OUT --trace-batch 1 --variant 8 --git-rev ${GIT_REV:-unknown} 2>&1 | grep -v Warn | grep -E "variant|prologue kernel|setup|main loop"
  mkdir -p $OUT/t$t
  LATTQ_GEMV_PDL_TRIGGER=$t python3 bench/kernels/bench_gemm.py --lib build-gpu/cuda/liblattq_capi.so --out $OUT/t$t --git-rev ${GIT_REV:-unknown} --batches 1,4 --variants gemv,gemv_pdl --ref-limit 0 --sweep none --profile none 2>&1 | grep -E " m=" 
  mv $OUT/t$t/bench_gemm.json $OUT/trigger_bench_t$t.json; rm -rf $OUT/t$t
done
