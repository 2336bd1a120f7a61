# device (session 7): phase traces of GEMV and GEMV_PDL at m = 1, and the warm per-kernel profile of both
set -u
B=build-trace
cmake -S . -B $B -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a -DLATTQ_CUDA=ON -DLATTQ_BUILD_TESTS=OFF \
  -DLATTQ_BUILD_CPP_TESTS=OFF -DLATTQ_CUDA_SHARED_CAPI=ON -DCMAKE_CUDA_FLAGS="-DLATTQ_GEMV_TRACE" > /tmp/tb.log 2>&1 || { tail -20 /tmp/tb.log; exit 1; }
ninja -C $B -j16 lattq_capi >> /tmp/tb.log 2>&1 || { tail -30 /tmp/tb.log; exit 1; }
for v in 6 8; do
python3 bench/kernels/probe_latency.py --trace-lib $B/cuda/liblattq_capi.so --out $OUT --trace-batch 1 --variant $v --git-rev ${GIT_REV:-unknown} 2>&1 | grep -v Warn
done
python3 bench/kernels/probe_latency.py --lib $B/cuda/liblattq_capi.so --out $OUT --batches 1 --variant 8 --git-rev ${GIT_REV:-unknown} 2>&1 | grep -E "warm-profile|null" | grep -v "Memset\|fill\|zero"
