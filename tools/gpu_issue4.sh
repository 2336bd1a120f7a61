#!/usr/bin/env bash
# One device call for issue 4's H100 items: PTQ seconds per decoder block (SmolLM2 shapes and a
# Llama-2-7B-shaped block, random weights, bench/ptq/block_timing.py; run from the source tree while
# lattq builds) and the saved 2-bit SmolLM2 checkpoint loading there and generating through the CUDA
# kernels (bench/ptq/checkpoint_on_gpu.py).  The checkpoint travels in pieces (tools/ckpt_transport.py)
# under CARRY (default .lqcarry): CARRY/pieces and CARRY/wiki.test.raw.  Logs and JSON go to $OUT.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT="${OUT:-$PWD/gpu_out}"; CARRY="${CARRY:-.lqcarry}"; PY="${PY:-python3}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 CMAKE_BUILD_PARALLEL_LEVEL="${JOBS:-16}" LATTQ_CUDA=ON LATTQ_CUDA_ARCHS=90a
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/run.log"
( PYTHONPATH=python timeout "${BT_TIMEOUT:-240}" "$PY" bench/ptq/block_timing.py --preset smollm2 --layers 2 --device cuda --out "$OUT"
  PYTHONPATH=python timeout "${BT_TIMEOUT:-240}" "$PY" bench/ptq/block_timing.py --preset llama2-7b --layers 1 \
      --finetune-epochs "${LLAMA_FT_EPOCHS:-1}" --device cuda --out "$OUT" ) >"$OUT/block_timing.log" 2>&1 &
BT=$!
echo "== pip install (CUDA 90a) at ${SECONDS}s" | tee -a "$OUT/run.log"
"$PY" -m pip install --no-build-isolation --no-deps --no-index . >"$OUT/pip.log" 2>&1 || { tail -40 "$OUT/pip.log"; }
echo "== built at ${SECONDS}s" | tee -a "$OUT/run.log"
"$PY" tools/ckpt_transport.py join "$CARRY/pieces" /tmp/lq_ckpt 2>&1 | tee -a "$OUT/run.log"
echo "== waiting for block timing at ${SECONDS}s" | tee -a "$OUT/run.log"
wait $BT
echo "== checkpoint on GPU at ${SECONDS}s" | tee -a "$OUT/run.log"
(cd /tmp && "$PY" "$OLDPWD/bench/ptq/checkpoint_on_gpu.py" /tmp/lq_ckpt --text "$OLDPWD/$CARRY/wiki.test.raw" --windows 16 --out "$OUT") >>"$OUT/run.log" 2>&1
echo "== done at ${SECONDS}s" | tee -a "$OUT/run.log"
tail -5 "$OUT/block_timing.log"; tail -30 "$OUT/run.log"
