#!/usr/bin/env python
"""Sweep the end-to-end stage's settings from one block-stage result (fast on a GPU).

Runs the block stages once (``--preset``, end-to-end stage off), then for each setting of the
end-to-end stage (``lr:batch:epochs:schedule[:n_seq[:seq_len]]``) starts from a copy of that model, trains, and
evaluates perplexity on the first ``--windows`` protocol windows and on the full protocol
(DESIGN.md §6).  Results are written after every setting (JSON ``rows`` + Markdown), so a run cut
short still reports what it finished.  Used to choose the CPU ``quality`` preset's settings; the
GPU's numbers guide, the committed quality result is always the CPU run's.

  PYTHONPATH=python python bench/ptq/e2e_sweep.py --model-dir DIR --gguf-file F.gguf \
      --calib valid.txt --eval-text wiki.test.raw --settings 1e-3:4:4:constant,2e-3:4:4:cosine --out OUT
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "python"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ablation import densify, git_rev, load_model, perplexity  # noqa: E402
from lattq.data import calibration_tokens  # noqa: E402
from lattq.ptq import LattqConfig, quantize  # noqa: E402
from lattq.ptq.e2e import finetune_e2e  # noqa: E402

CTX = 2048


def parse_setting(s: str) -> dict:
    parts = s.split(":")
    if len(parts) not in (4, 5, 6):
        raise SystemExit(f"setting {s!r}: expected lr:batch:epochs:schedule[:n_seq[:seq_len]]")
    out = dict(lr=float(parts[0]), batch=int(parts[1]), epochs=int(parts[2]), schedule=parts[3])
    out["n_seq"] = int(parts[4]) if len(parts) >= 5 else None
    out["seq_len"] = int(parts[5]) if len(parts) == 6 else None
    return out


def evaluate(model, tok, args, device) -> dict:
    """Perplexity on the first ``--windows`` windows and (unless --no-full) the full protocol; the
    first windows are a prefix of the full run, so one pass gives both."""
    dense = densify(copy.deepcopy(model)).to(device)
    out = {}
    t = time.time()
    ppl, ntok, _, per_window = perplexity(dense, tok, args.eval_text, CTX, None if not args.no_full else args.windows, device)
    if not args.no_full:
        out["ppl_full"], out["tokens_full"] = ppl, ntok
        first = per_window[: args.windows]  # summed NLL of each window, CTX - 1 scored tokens each
        ppl, ntok = math.exp(math.fsum(first) / (len(first) * (CTX - 1))), len(first) * (CTX - 1)
    out["ppl_windows"], out["tokens_windows"] = ppl, ntok
    out["eval_seconds"] = time.time() - t
    del dense
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--gguf-file", default=None)
    ap.add_argument("--calib", required=True)
    ap.add_argument("--eval-text", required=True)
    ap.add_argument("--preset", default="quality")
    ap.add_argument("--n-calib", type=int, default=128)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--windows", type=int, default=16)
    ap.add_argument("--no-full", action="store_true", help="skip the full-protocol evaluation")
    ap.add_argument("--settings", required=True, help="comma-separated lr:batch:epochs:schedule[:n_seq[:seq_len]]")
    ap.add_argument("--device", default=None)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    settings = [parse_setting(s) for s in args.settings.split(",") if s.strip()]
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from lattq.cli import PRESETS

    teacher, tok = load_model(args)
    n_max = max([args.n_calib] + [s["n_seq"] or 0 for s in settings if not s["seq_len"]])
    all_tokens = calibration_tokens(args.calib, tok, n_max, args.seq_len, seed=0)
    tokens = all_tokens[: args.n_calib]
    meta = {"device": torch.cuda.get_device_name() if device == "cuda" else device, "torch": torch.__version__,
            "git_rev": git_rev(), "preset": args.preset, "n_calib": args.n_calib, "seq_len": args.seq_len,
            "windows": args.windows, "command": " ".join(["bench/ptq/e2e_sweep.py"] + (argv or sys.argv[1:]))}
    rows = []

    def write():
        (out / "e2e_sweep.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
        lines = ["| setting | held-out KL start -> best | epochs run | e2e s | ppl (first windows) | ppl (full) |",
                 "| --- | --- | --- | --- | --- | --- |"]
        for r in rows:
            kl = f"{r['start_heldout_kl']:.4f} -> {r['best_heldout_kl']:.4f}" if r.get("best_heldout_kl") is not None else "–"
            full = f"{r['ppl_full']:.2f}" if r.get("ppl_full") is not None else "–"
            lines.append(f"| {r['setting']} | {kl} | {r.get('epochs_run', '–')} | {r.get('seconds', 0):.0f} | {r['ppl_windows']:.2f} | {full} |")
        (out / "e2e_sweep.md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines), flush=True)

    teacher.to(device)
    rows.append({"setting": "fp", **evaluate(teacher, tok, args, device)})
    write()
    model = copy.deepcopy(teacher)
    cfg = LattqConfig(**{**PRESETS[args.preset], "e2e_epochs": 0, "n_calib": args.n_calib, "seq_len": args.seq_len, "device": device})
    t = time.time()
    quantize(model, cfg, tokens)
    model.to(device)
    meta["block_stage_seconds"] = time.time() - t
    meta["bpw"] = model.lattq_report.total_bpw
    rows.append({"setting": "block stages only", **evaluate(model, tok, args, device)})
    write()
    for s in settings:
        m = copy.deepcopy(model)
        if s["seq_len"]:  # other sequence length: its own calibration draw
            data = calibration_tokens(args.calib, tok, s["n_seq"] or args.n_calib, s["seq_len"], seed=0)
        else:
            data = all_tokens[: s["n_seq"]] if s["n_seq"] else tokens
        info = finetune_e2e(m, teacher, data, epochs=s["epochs"], lr=s["lr"], batch=s["batch"], heldout=cfg.finetune_heldout,
                            norms=cfg.finetune_norms, generator=torch.Generator().manual_seed(0), progress=False,
                            autocast_dtype=torch.bfloat16, schedule=s["schedule"])
        name = f"lr {s['lr']:g}, batch {s['batch']}, {s['epochs']} epochs, {s['schedule']}, {data.shape[0]}x{data.shape[1]}"
        rows.append({"setting": name, **s, "n_seq": data.shape[0], **info, **evaluate(m, tok, args, device)})
        write()
        del m
        if device == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
