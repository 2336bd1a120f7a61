# device (session 21): tools/gpu_suite.sh without the kernel tests (pip install with CUDA sm_90a, the Python tests of PYTEST_ARGS
# (default: the grouped-projection, compile, transformers and module ones) with the GPU, memcheck of the test_gpu.py tests selected by MEMCHECK_K, examples/cpp_runtime), then
# bench/kernels/bench_hf_group.py (transformers Llama, q/k/v and gate/up grouped against one by one) -> $OUT
T=$PWD/tests/python
KERNEL_TESTS=0 MEMCHECK_K="${MEMCHECK_K:-group_projections}" MEMCHECK_TIMEOUT="${MEMCHECK_TIMEOUT:-200}" \
  PYTEST_ARGS="${PYTEST_ARGS:-$T/test_gpu.py::test_group_projections_cuda $T/test_gpu.py::test_group_cuda_graph_and_compile $T/test_gpu.py::test_cuda_graph_capture $T/test_hf.py $T/test_compile.py $T/test_nn.py}" \
  bash tools/gpu_suite.sh
echo "gpu_suite rc=$?"
(cd /tmp && python3 "$OLDPWD/bench/kernels/bench_hf_group.py" --out "$OUT" --git-rev "${GIT_REV:-wip}") > "$OUT/hf_group.log" 2>&1
echo "bench_hf_group rc=$?"; cat "$OUT/hf_group.log" | tail -8
