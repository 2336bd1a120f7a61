#!/usr/bin/env bash
# The order of code loads and mmas in the 4-token main loops of GEMV, GEMV_PDL and its split-K-through-the-workspace
# instance (bf16), from the sm_90a SASS of a
# built object or cubin: e.g. "LDG16 IMMA8 LDG2 IMMA8 LDG2 IMMA8 LDG2 IMMA8 LDG2 IMMA32 LDG8" = the ring's 16 loads, then
# the first half's refills issued among the mma work.  Session 22 found that ptxas may instead put them after all of
# the half's mma work ("LDG16 IMMA32 LDG8 IMMA32 LDG8"), which made GEMV_PDL 1.5-3 us slower per call on the H100; a
# change to the kernel should leave this pattern as it was.  Usage: tools/dev/sass_ring.sh FILE [cuobjdump]
set -euo pipefail
F=$1
CO=${2:-$(command -v cuobjdump || echo "$(dirname "$(command -v nvcc)")/cuobjdump")}
for inst in "Lb0ELb0ELi4ELi0ELb0E:GEMV" "Lb1ELb0ELi4ELi0ELb0E:GEMV_PDL" "Lb1ELb0ELi4ELi0ELb1E:GEMV_PDL_gred"; do
  "$CO" -sass "$F" | awk -v pat="gemv_kernelI13__nv_bfloat16${inst%%:*}" '$0 ~ "Function : .*" pat {f=1; next} f && /Function :/ {f=0} f' |
    grep -oE "(IMMA|LDG\.E\.NA)" | uniq -c | awk -v n="${inst##*:}" '{s = s sprintf("%s%d ", ($2 == "IMMA" ? "IMMA" : "LDG"), $1)} END {print n ": " s}'
done
