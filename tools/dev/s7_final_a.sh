# device (session 7): build, full CUDA tests, compute-sanitizer memcheck + racecheck on the quick subset
. tools/dev/s7_common.sh
build_gpu; full_tests; sanitize
