#!/usr/bin/env python3
"""Merge the SmolLM2 ablation run and the quality run into one results file (JSON ``rows`` + Markdown).

Inputs, all produced by commands recorded in the output's ``meta``:
- ``--ablation``: JSON of ``bench/ptq/ablation.py`` (stage modes and peers, one evaluation subset);
- ``--quality-log``: stdout of the ``+e2e`` quality run of the same harness (its ``[+block_ft]`` line:
  the model evaluated just before the end-to-end stage);
- ``--quality-report``: ``quantization_report.md`` saved in that run's checkpoint (bpw, wall time,
  peak RSS, block fine-tuning and end-to-end held-out objectives);
- ``--gpu-eval``: ``checkpoint_on_gpu.json`` (that checkpoint evaluated on the GPU: full protocol and
  its first windows).

Rows keep the issue's columns (model, method, bpw, ppl, ctx, eval_tokens, quantize_seconds) plus the
calibration objective of the stage that the row adds.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

MODEL = "SmolLM2-135M-Instruct"
ORDER = ["fp", "lattice_rtn", "+hadamard", "+ldlq", "+learned_A", "+orthogonal_A", "+block_ft", "+e2e (lattq quality)",
         "lattq quality (full protocol)", "rtn_g64", "rtn_g128", "gptq_g64", "gptq_g128", "hqq_g64"]
CTX = 2048


def _md_number(md: str, pattern: str) -> float:
    m = re.search(pattern, md)
    if not m:
        raise SystemExit(f"pattern {pattern!r} not found in the quality report")
    return float(m.group(1).replace(",", ""))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ablation", required=True, nargs="+", help="one or more ablation.py JSON files (same evaluation subset)")
    ap.add_argument("--quality-log", required=True)
    ap.add_argument("--quality-report", required=True)
    ap.add_argument("--gpu-eval", required=True)
    ap.add_argument("--quality-command", required=True, help="the command of the quality run (recorded)")
    ap.add_argument("--e2e-n-calib", type=int, default=None, help="sequences of the quality run's end-to-end stage (when not its n_calib)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--tag", default="ptq_smollm2_ablation")
    a = ap.parse_args(argv)

    abls = [json.loads(Path(p).read_text()) for p in a.ablation]
    md = Path(a.quality_report).read_text()
    gpu = json.loads(Path(a.gpu_eval).read_text())
    log = Path(a.quality_log).read_text(errors="replace")
    m = re.search(r"\[\+block_ft\] ppl=([0-9.]+) on (\d+) windows, ([0-9.]+)s into the run", log)
    if not m:
        raise SystemExit("no [+block_ft] line in the quality log")
    bft_ppl, bft_win, bft_s = float(m.group(1)), int(m.group(2)), float(m.group(3))

    bpw = _md_number(md, r"total bpw[^*]*\*\*([0-9.]+)\*\*")
    wall = _md_number(md, r"wall time: ([0-9.]+) s")
    rss = _md_number(md, r"peak RSS ([0-9.]+) MB")
    kl = re.search(r"held-out KL ([0-9.eE+-]+) → ([0-9.eE+-]+) \((\d+) epochs, ([0-9.]+) s\)", md)
    if not kl:
        raise SystemExit("no end-to-end summary in the quality report")
    blocks = re.findall(r"^\| (\d+) \| [0-9.]+ \| ([0-9.eE+-]+) → ([0-9.eE+-]+) \(", md, flags=re.M)
    improved = sum(float(b) <= float(s) for _, s, b in blocks)

    subs = {x["meta"].get("max_windows") for x in abls}
    if subs != {bft_win}:
        raise SystemExit(f"the ablation runs used {sorted(subs)} windows, the +block_ft row {bft_win}: not comparable")
    sub = bft_win
    key = f"ppl_first_{sub}_windows"
    rows = []
    for x in abls:
        for r in x["rows"]:
            if "ppl" not in r:  # a mode skipped for the time budget
                continue
            r = dict(r, n_calib=x["meta"]["n_calib"], seq_len=x["meta"]["seq_len"])
            r.pop("config", None)
            r.pop("block_out_rel_err", None)
            if "mean_rel_err" in r and "calibration_objective" not in r:
                r["calibration_objective"] = f"mean layer proxy error {r['mean_rel_err']:.4f}"
            rows.append(r)
    tokens = sub * (CTX - 1)
    rows.append({"model": MODEL, "method": "+block_ft", "n_calib": 128, "seq_len": 512, "bpw": bpw, "ppl": bft_ppl, "ctx": CTX, "eval_tokens": tokens,
                 "eval_windows": sub, "quantize_seconds": bft_s, "full_protocol": False,
                 "calibration_objective": f"block held-out MSE lower than at the start in {improved}/{len(blocks)} blocks, never higher",
                 "source": "quality run, evaluated before its end-to-end stage"})
    e2e = {"start_heldout_kl": float(kl.group(1)), "best_heldout_kl": float(kl.group(2)), "epochs": int(kl.group(3)), "seconds": float(kl.group(4))}
    rows.append({"model": MODEL, "method": "+e2e (lattq quality)", "n_calib": 128, "seq_len": 512, "e2e_n_calib": a.e2e_n_calib, "bpw": bpw, "ppl": gpu[key], "ctx": CTX, "eval_tokens": tokens,
                 "eval_windows": sub, "quantize_seconds": wall, "full_protocol": False,
                 "calibration_objective": f"held-out KL {e2e['start_heldout_kl']:.4f} -> {e2e['best_heldout_kl']:.4f}",
                 "source": "quality run's checkpoint, first windows of the GPU evaluation"})
    rows.append({"model": MODEL, "method": "lattq quality (full protocol)", "n_calib": 128, "seq_len": 512, "e2e_n_calib": a.e2e_n_calib, "bpw": bpw, "ppl": gpu["ppl"], "ctx": CTX,
                 "eval_tokens": gpu["tokens"], "eval_windows": gpu["windows"], "quantize_seconds": wall,
                 "full_protocol": gpu["full_protocol"], "peak_rss_mb": rss, "e2e": e2e,
                 "source": f"quality run's checkpoint evaluated on {gpu['device']} through the lattq CUDA kernels"})
    rows.sort(key=lambda r: ORDER.index(r["method"]) if r["method"] in ORDER else len(ORDER))
    meta = {"ablation": [x["meta"] for x in abls], "quality_command": a.quality_command,
            "gpu_eval": {k: gpu[k] for k in ("device", "torch", "native", "eval_seconds", "text_sha256")}}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{a.tag}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = ["| model | method | calibration | bpw | ppl | ctx | eval tokens | quantize s | calibration objective of the stage |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        cal = f"{r['n_calib']}×{r['seq_len']}" if r["method"] != "fp" else "–"
        if r.get("e2e_n_calib"):
            cal += f" (end-to-end: {r['e2e_n_calib']}×{r['seq_len']})"
        lines.append(f"| {r['model']} | {r['method']} | {cal} | {r['bpw']:.4f} | {r['ppl']:,.2f} | {r['ctx']} | {r['eval_tokens']:,} | "
                     f"{r['quantize_seconds']:.0f} | {r.get('calibration_objective', '')} |")
    (out / f"{a.tag}.md").write_text(f"# {a.tag}\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
