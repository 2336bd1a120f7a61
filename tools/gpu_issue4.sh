#!/usr/bin/env bash
# One device call for issue 4's H100 items: PTQ seconds per decoder block (SmolLM2 shapes and a
# Llama-2-7B-shaped block, random weights, bench/ptq/block_timing.py; run from the source tree while
# lattq builds) and the saved 2-bit SmolLM2 checkpoint loading there and generating through the CUDA
# kernels (bench/ptq/checkpoint_on_gpu.py).  The checkpoint travels in pieces (tools/ckpt_transport.py)
# under CARRY (default .lqcarry): CARRY/pieces and CARRY/wiki.test.raw.  With KERNELS=1, and if the
# clock allows (KERNEL_DEADLINE seconds, default 270), the standalone CUDA kernel tests run last
# (tools/gpu_kernels.sh test, built in the background meanwhile).  Logs and JSON go to $OUT.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"; OUT="${OUT:-$ROOT/gpu_out}"; CARRY="${CARRY:-.lqcarry}"; PY="${PY:-python3}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
log() { echo "== $* at ${SECONDS}s" | tee -a "$OUT/run.log"; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/run.log"
( export PYTHONPATH="$ROOT/python"
  # the settings of the CLI's `quality` preset: 128 x 512 calibration tokens, 1 refit, 1 fine-tuning epoch
  BT_ARGS=(--n-calib 128 --seq-len 512 --refit 1 --finetune-epochs 1 --device cuda --out "$OUT")
  timeout "${BT_TIMEOUT:-150}" "$PY" bench/ptq/block_timing.py --preset smollm2 --layers 2 "${BT_ARGS[@]}"
  timeout "${BT_TIMEOUT:-150}" "$PY" bench/ptq/block_timing.py --preset llama2-7b --layers 1 "${BT_ARGS[@]}" ) >"$OUT/block_timing.log" 2>&1 &
BT=$!
if [ "${KERNELS:-0}" = 1 ]; then
  (OUT="$OUT/k" JOBS=8 bash tools/gpu_kernels.sh build >/dev/null 2>&1) &
  KB=$!
fi
log "pip install (CUDA 90a)"
CMAKE_BUILD_PARALLEL_LEVEL="${JOBS:-16}" LATTQ_CUDA=ON LATTQ_CUDA_ARCHS=90a \
  "$PY" -m pip install --no-build-isolation --no-deps --no-index . >"$OUT/pip.log" 2>&1 && rm -f "$OUT/pip.log" || tail -40 "$OUT/pip.log"
log "built"
"$PY" tools/ckpt_transport.py join "$CARRY/pieces" /tmp/lq_ckpt 2>&1 | tee -a "$OUT/run.log"
log "waiting for block timing"
wait $BT
log "checkpoint on GPU"
(cd /tmp && "$PY" "$ROOT/bench/ptq/checkpoint_on_gpu.py" /tmp/lq_ckpt --text "$ROOT/$CARRY/wiki.test.raw" --out "$OUT") >>"$OUT/run.log" 2>&1
log "checkpoint done"
if [ "${KERNELS:-0}" = 1 ]; then
  left=$(( ${KERNEL_DEADLINE:-270} - SECONDS ))
  if [ "$left" -gt 20 ]; then
    log "kernel tests (${left}s left)"
    wait $KB
    OUT="$OUT/k" timeout "$left" bash tools/gpu_kernels.sh test 2>&1 | tail -40 >>"$OUT/run.log"
    rm -f "$OUT/k/env.log"
  else
    log "kernel tests skipped (deadline)"
  fi
fi
log "done"
tail -4 "$OUT/block_timing.log"; tail -40 "$OUT/run.log"
