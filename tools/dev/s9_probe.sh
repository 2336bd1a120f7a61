# device (session 9): the streaming probe (tools/dev/stream_probe.cu: GEMV main-loop access pattern, flat reads, the
# empty kernel, under a write and a read cold-L2 flush), then bench_gemm.py rows at m = 1 and 16 under both flushes.
source tools/dev/s7_common.sh
nvcc -O3 -arch=sm_90a -std=c++17 tools/dev/stream_probe.cu -o /tmp/stream_probe && /tmp/stream_probe > "$OUT/probe.log" 2>&1
cat "$OUT/probe.log"
build_gpu
for f in write read; do
  python3 bench/kernels/bench_gemm.py --lib build-gpu/cuda/liblattq_capi.so --out "$OUT/$f" --git-rev "$REV" --batches ${BATCHES:-1,16} \
    --variants gemv,gemv_pdl,wgmma --ref-limit 0 --sweep none --profile none --flush $f > "$OUT/bench_$f.log" 2>&1
  echo "== $f rc=$?"; grep -E " m=" "$OUT/bench_$f.log"
  rm -f "$OUT/$f/bench_gemm.png" "$OUT/$f/bench_gemm.md"
done
