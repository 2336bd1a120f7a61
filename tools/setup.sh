#!/usr/bin/env bash
# Shared set-up for tools/test.sh and tools/main.sh (sourced, not run): Debian packages when missing,
# the virtual environment with torch==2.13.0 and the Python dependencies, and `pip install .`
# (CUDA kernels when nvcc is found, for the archs in LATTQ_CUDA_ARCHS).  Defines ROOT, VENV, PY, JOBS, step.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
VENV="${LATTQ_VENV:-$ROOT/.venv}"
JOBS="${JOBS:-$(nproc)}"
export LATTQ_CUDA="${LATTQ_CUDA:-AUTO}"
export LATTQ_CUDA_ARCHS="${LATTQ_CUDA_ARCHS:-90a}"
export CMAKE_BUILD_PARALLEL_LEVEL="$JOBS"
step() { printf '\n==== %s (%ss)\n' "$*" "$SECONDS"; }

step "system packages"
need=()
[ -f /usr/include/gtest/gtest.h ] || need+=(libgtest-dev)
command -v ninja >/dev/null || need+=(ninja-build)
command -v cmake >/dev/null || need+=(cmake)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi

step "python environment ($VENV)"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PY="$VENV/bin/python"
"$PY" -m pip install -q --upgrade pip
"$PY" -m pip install -q "torch==2.13.0"
"$PY" -m pip install -q -r tools/requirements-test.txt

step "pip install . (LATTQ_CUDA=$LATTQ_CUDA, archs $LATTQ_CUDA_ARCHS)"
"$PY" -m pip install -q --no-build-isolation --no-deps .
"$PY" -c "import lattq; print(lattq.native_status())"

