# device (session 7, after the review fixes): build, full CUDA tests, decode-batch benchmark (m = 1, 4; gemv and
# gemv_pdl), then (SANITIZE=0 skips it) compute-sanitizer memcheck + racecheck on the quick subset
. tools/dev/s7_common.sh
build_gpu; full_tests
decode_bench 1,4 gemv,gemv_pdl; rm -f "$OUT/bench_gemm.md" "$OUT/bench_gemm.png"
if [ "${SANITIZE:-1}" = 1 ]; then sanitize; fi
