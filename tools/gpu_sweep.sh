#!/usr/bin/env bash
# Device calls for the end-to-end stage sweep (bench/ptq/e2e_sweep.py) on the H100.
# The SmolLM2 GGUF (98 MB) is over the 64 MiB a call may carry, so it travels in two calls to a
# warm machine:
#   bash tools/gpu_sweep.sh prepare GGUF  # here: fill CARRY (halves of the GGUF, sha256, data, packages)
#   bash tools/gpu_sweep.sh stage   # carries CARRY/gguf/a, keeps it in $STAGE (/tmp, kept while warm)
#   bash tools/gpu_sweep.sh sweep   # carries CARRY/gguf/b, joins (sha256-checked) and runs the sweep
# CARRY (default .lqcarry) also holds valid.txt, wiki.test.raw and the pure-Python `gguf` package
# (pylib_gguf; `accelerate` in pylib_acc, used only if the machine lacks it).  With KERNELS=1 the
# stage call also builds the standalone CUDA kernel tests and runs them and compute-sanitizer
# (tools/gpu_kernels.sh build, test, sanitize).
# SETTINGS (e2e_sweep.py --settings), SWEEP_ARGS and SWEEP_TIMEOUT (seconds) tune the sweep;
# SETTINGS2/SWEEP_ARGS2 run a second one in what is left of TOTAL_TIMEOUT.  Output in $OUT.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"; OUT="${OUT:-$ROOT/gpu_out}"; CARRY="${CARRY:-.lqcarry}"; PY="${PY:-python3}"
STAGE="${STAGE:-/tmp/lqstage}"  # outside the tree: the tree is replaced on every call
[ "${1:-}" = prepare ] || mkdir -p "$OUT" "$STAGE"
export PYTHONUNBUFFERED=1
[ "${1:-}" = prepare ] || nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/run.log"
case "${1:-}" in
  prepare)  # runs on the development machine, which has the model, the data and the packages
    gguf=${2:?usage: tools/gpu_sweep.sh prepare MODEL.gguf}
    mkdir -p "$CARRY/gguf" "$CARRY/pylib_gguf" "$CARRY/pylib_acc"
    half=$(( ($(stat -c %s "$gguf") + 1) / 2 ))
    head -c "$half" "$gguf" >"$CARRY/gguf/a" && tail -c +"$(( half + 1 ))" "$gguf" >"$CARRY/gguf/b"
    sha256sum "$gguf" | cut -d' ' -f1 >"$CARRY/gguf/sha256"
    site=$("$PY" -c "import gguf, os; print(os.path.dirname(os.path.dirname(gguf.__file__)))")
    cp -r "$site"/gguf "$site"/gguf-*.dist-info "$CARRY/pylib_gguf/"  # dist-info: transformers checks the version
    cp -r "$site"/accelerate "$site"/accelerate-*.dist-info "$CARRY/pylib_acc/"
    find "$CARRY" -name __pycache__ -prune -exec rm -rf {} +
    cp ../shared/data/wikitext-2/valid.txt ../shared/data/wikitext-2-raw/wiki.test.raw "$CARRY/"
    exit 0 ;;
  stage)
    cp "$CARRY/gguf/a" "$STAGE"/a && echo "staged $(stat -c %s "$STAGE"/a) bytes" | tee -a "$OUT/run.log"
    if [ "${KERNELS:-0}" = 1 ]; then
      OUT="$OUT/k" JOBS=16 bash tools/gpu_kernels.sh build >"$OUT/kbuild.log" 2>&1 || tail -30 "$OUT/kbuild.log"
      OUT="$OUT/k" timeout "${KERNEL_TIMEOUT:-300}" bash tools/gpu_kernels.sh test 2>&1 | tail -60 >>"$OUT/run.log"
      OUT="$OUT/k" timeout "${SANITIZE_TIMEOUT:-240}" bash tools/gpu_kernels.sh sanitize 2>&1 | tail -20 >>"$OUT/run.log"
      rm -f "$OUT/k/env.log"
    fi
    ;;
  sweep)
    [ -f "$STAGE"/a ] || { echo "piece a is missing: the machine was released between the calls; run 'stage' again" | tee -a "$OUT/run.log"; exit 3; }
    mkdir -p /tmp/lq_model
    cat "$STAGE"/a "$CARRY/gguf/b" >/tmp/lq_model/SmolLM2-135M-Instruct.Q4_1.gguf
    got=$(sha256sum /tmp/lq_model/SmolLM2-135M-Instruct.Q4_1.gguf | cut -d' ' -f1)
    [ "$got" = "$(cat "$CARRY/gguf/sha256")" ] || { echo "GGUF sha256 mismatch: $got" | tee -a "$OUT/run.log"; exit 4; }
    echo "GGUF joined, sha256 $got" | tee -a "$OUT/run.log"
    PP="$ROOT/python:$ROOT/$CARRY/pylib_gguf"
    "$PY" -c "import accelerate" 2>/dev/null || PP="$PP:$ROOT/$CARRY/pylib_acc"
    sweep() {  # $1 = output dir, $2 = settings, $3 = timeout, rest = extra e2e_sweep.py arguments
      local dir=$1 settings=$2 limit=$3; shift 3
      PYTHONPATH="$PP" timeout "$limit" "$PY" bench/ptq/e2e_sweep.py --model-dir /tmp/lq_model \
        --gguf-file SmolLM2-135M-Instruct.Q4_1.gguf --calib "$CARRY/valid.txt" --eval-text "$CARRY/wiki.test.raw" \
        --device cuda --settings "$settings" --out "$OUT/$dir" "$@" 2>&1 | grep -v "it/s\]" | tail -40 | tee -a "$OUT/run.log"
    }
    # shellcheck disable=SC2086
    sweep sweep "${SETTINGS:?set SETTINGS}" "${SWEEP_TIMEOUT:-540}" ${SWEEP_ARGS:-}
    # an optional second sweep from another block-stage setting (e.g. SWEEP_ARGS2="--n-calib 64")
    # shellcheck disable=SC2086
    if [ -n "${SETTINGS2:-}" ]; then sweep sweep2 "$SETTINGS2" "$(( ${TOTAL_TIMEOUT:-560} - SECONDS ))" ${SWEEP_ARGS2:-}; fi
    ;;
  *) echo "usage: tools/gpu_sweep.sh prepare GGUF|stage|sweep"; exit 2 ;;
esac
echo "== done at ${SECONDS}s" | tee -a "$OUT/run.log"
