# device: build a GEMV-trace copy of the C API library and print the per-phase times at m = 1 and 4
set -u
B=build-trace
cmake -S . -B $B -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a -DLATTQ_CUDA=ON -DLATTQ_BUILD_TESTS=OFF \
  -DLATTQ_BUILD_CPP_TESTS=OFF -DLATTQ_CUDA_SHARED_CAPI=ON -DCMAKE_CUDA_FLAGS="-DLATTQ_GEMV_TRACE" > /tmp/tb.log 2>&1 || { tail -20 /tmp/tb.log; exit 1; }
ninja -C $B -j16 lattq_capi >> /tmp/tb.log 2>&1 || { tail -30 /tmp/tb.log; exit 1; }
for m in ${TRACE_BATCHES:-1 4}; do
python3 bench/kernels/probe_latency.py --trace-lib $B/cuda/liblattq_capi.so --out $OUT --trace-batch $m --git-rev ${GIT_REV:-unknown} 2>&1 | grep -v Warn
done
