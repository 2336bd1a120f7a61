# device: build, the latency probe (null kernel, write vs read cold-L2 flush) and Nsight Compute on the GEMV kernel at m = 1
set -u
bash tools/gpu_kernels.sh build > $OUT/b.txt 2>&1; tail -3 $OUT/b.txt; rm -f $OUT/build.log $OUT/b.txt $OUT/env.log
python3 bench/kernels/probe_latency.py --lib build-gpu/cuda/liblattq_capi.so --out $OUT --batches 1,16 --git-rev ${GIT_REV:-unknown} > $OUT/probe.log 2>&1; cat $OUT/probe.log | grep -v "^warm" ; grep "^warm" $OUT/probe.log | head -40
NCU=$(command -v ncu || ls /usr/local/cuda*/bin/ncu | head -1)
for c in 4096x4096 11008x4096 28672x8192; do timeout 150 $NCU -k regex:gemv_kernel --launch-skip 2 --launch-count 1 --section SpeedOfLight --section WarpStateStats --section MemoryWorkloadAnalysis --section LaunchStats --section Occupancy --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum python3 bench/kernels/bench_gemm.py --lib build-gpu/cuda/liblattq_capi.so --out /tmp/nb --shapes $c --batches 1 --reps 3 --warmup 2 --sweep none --profile none --variants gemv --gemm-min-m 100000 --wgmma-min-m 100000 2>&1 | grep -vE "^\||^[0-9]+x[0-9]+ m=" ; done > $OUT/ncu.log 2>&1
grep -E "gemv_kernel|Duration|gpu__time|dram__bytes|DRAM Throughput|Memory Throughput|Registers|Achieved Occupancy|Warp Cycles Per Issued|Grid Size|Cluster|Waves|Stall|stall" $OUT/ncu.log | head -90
