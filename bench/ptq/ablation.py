#!/usr/bin/env python
"""Ablations of the lattq PTQ pipeline and peer methods, side by side in one harness.

Each mode is a LattqConfig of the same pipeline (lattq.ptq.quantize); peers (group-wise 2-bit
RTN and GPTQ) run through the same layer-streaming harness.  For each mode: load the model fresh,
quantize with the same calibration tokens, measure perplexity under the fixed protocol (DESIGN.md §6;
``--max-windows`` for a quick subset), write JSON (``rows``: model, method, bpw, ppl, ctx,
eval_tokens, quantize_seconds, ...) and a Markdown table into ``--out``, and print the table.

Example (CPU, quick):
  PYTHONPATH=python python bench/ptq/ablation.py --model-dir DIR --gguf-file F.gguf \
      --calib ../shared/data/wikitext-2/valid.txt --eval-text ../shared/data/wikitext-2-raw/wiki.test.raw \
      --n-calib 32 --seq-len 512 --max-windows 4 --out bench/results
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "python"))

from lattq.ptq import LattqConfig, quantize  # noqa: E402
from lattq.ptq.pipeline import calibration_sequences  # noqa: E402
from lattq.data import calibration_tokens  # noqa: E402

# name -> LattqConfig overrides (cumulative stages, then the full method, then peers)
MODES = {
    "lattice_rtn": dict(incoherence=False, ldlq=False, refit_lattice=0, finetune=False, e2e_epochs=0),
    "+hadamard": dict(incoherence=True, ldlq=False, refit_lattice=0, finetune=False, e2e_epochs=0),
    "+ldlq": dict(incoherence=True, ldlq=True, refit_lattice=0, finetune=False, e2e_epochs=0),
    "+learned_A": dict(incoherence=True, ldlq=True, refit_lattice=2, finetune=False, e2e_epochs=0),
    "+orthogonal_A": dict(incoherence=True, ldlq=True, refit_lattice=2, a_init="orthogonal", finetune=False, e2e_epochs=0),
    "lattq": dict(incoherence=True, ldlq=True, finetune=True, e2e_epochs=0),
    # the full method with the end-to-end stage; with --stage-windows the same run also yields the
    # "+block_ft" row (the model evaluated just before the end-to-end stage starts)
    "+e2e": dict(incoherence=True, ldlq=True, finetune=True),
    "rtn_g64": dict(method="rtn_g64", finetune=False),
    "rtn_g128": dict(method="rtn_g128", finetune=False),
    "gptq_g64": dict(method="gptq_g64", finetune=False),
    "gptq_g128": dict(method="gptq_g128", finetune=False),
    "hqq_g64": dict(method="hqq_g64", finetune=False),  # needs the optional `hqq` package
}


def load_model(args):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kw = {"gguf_file": args.gguf_file} if args.gguf_file else {}
    tok = AutoTokenizer.from_pretrained(args.model_dir, **kw)
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=torch.float32, **kw)
    model.eval()
    return model, tok


def densify(model):
    """Swap LatticeLinear modules for nn.Linear with the identical dense weight (faster evaluation on CPU)."""
    from lattq.nn import LatticeLinear

    for name, mod in list(model.named_modules()):
        for cname, child in list(mod.named_children()):
            if isinstance(child, LatticeLinear):
                w = child.dense_weight(torch.float32)
                lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=child.bias is not None, device=w.device)
                with torch.no_grad():
                    lin.weight.copy_(w)
                    if child.bias is not None:
                        lin.bias.copy_(child.bias)
                setattr(mod, cname, lin)
    return model


def prepare_eval_text(raw: str) -> str:
    lines = raw.replace("\r\n", "\n").split("\n")
    return "\n\n".join(l for l in lines if l.strip())


def private_perplexity(model, tok, path, ctx, max_windows, device):
    """DESIGN.md §6: non-overlapping windows of ctx, each scoring its last ctx-1 tokens."""
    text = prepare_eval_text(Path(path).read_text(encoding="utf-8"))
    ids = torch.tensor(tok(text, add_special_tokens=False)["input_ids"], dtype=torch.int64)
    nw = ids.numel() // ctx
    if max_windows:
        nw = min(nw, max_windows)
    nll, cnt = 0.0, 0
    with torch.no_grad():
        for w in range(nw):
            x = ids[w * ctx : (w + 1) * ctx][None].to(device)
            logits = model(x).logits.float()
            lp = torch.log_softmax(logits[0, :-1], -1)
            nll += float(-lp.gather(1, x[0, 1:, None]).sum())
            cnt += ctx - 1
    return math.exp(nll / cnt), cnt, nw, None


def perplexity(model, tok, path, ctx, max_windows, device):
    try:
        from lattq.eval import perplexity as lp

        r = lp(model, tok, path, ctx=ctx, max_windows=max_windows, device=device, progress=False)
        return float(r.ppl), int(r.tokens), int(r.windows), list(r.per_window_nll)
    except ImportError:
        return private_perplexity(model, tok, path, ctx, max_windows, device)


def _hqq_version():
    try:
        from importlib.metadata import version

        return version("hqq")
    except Exception:
        return "not installed (hqq_g64 rows fail without it)"


def git_rev():
    try:
        return subprocess.check_output(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], text=True).strip()
    except Exception:
        return None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--gguf-file", default=None)
    ap.add_argument("--model-name", default="SmolLM2-135M-Instruct")
    ap.add_argument("--calib", required=True, help="calibration text (never the test split)")
    ap.add_argument("--eval-text", required=True)
    ap.add_argument("--modes", default="fp," + ",".join(MODES))
    ap.add_argument("--n-calib", type=int, default=128)
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--ctx", type=int, default=2048)
    ap.add_argument("--max-windows", type=int, default=None, help="evaluate only the first windows (quick; not the full protocol)")
    ap.add_argument("--preset", default=None, help="start every lattice mode from this `lattq quantize` preset (lattq.cli.PRESETS)")
    ap.add_argument("--stage-windows", type=int, default=None,
                    help="+e2e mode: also evaluate the model before the end-to-end stage on this many windows (row +block_ft)")
    ap.add_argument("--save", default=None, help="save the last lattice model (checkpoint directory) here")
    ap.add_argument("--e2e-epochs", type=int, default=None)
    ap.add_argument("--finetune-epochs", type=int, default=None)
    ap.add_argument("--finetune-lr", type=float, default=None)
    ap.add_argument("--refit", type=int, default=None)
    ap.add_argument("--su-format-unnormed", default=None)
    ap.add_argument("--device", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--time-budget", type=float, default=None, help="seconds; modes that would start after it are skipped")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--tag", default="ptq_ablation")
    args = ap.parse_args(argv)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.time()
    model, tok = load_model(args)
    # the end-to-end stage of a preset may use more sequences (e2e_n_calib) than the block stages
    n_e2e = 0
    if args.preset and "+e2e" in args.modes:
        from lattq.cli import PRESETS

        n_e2e = PRESETS[args.preset].get("e2e_n_calib") or 0
    tokens = calibration_tokens(args.calib, tok, max(args.n_calib, n_e2e), args.seq_len, seed=args.seed)
    del model
    rows = []
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for m in modes:
        if m != "fp" and m not in MODES:
            raise SystemExit(f"unknown mode {m!r}; known: fp, {', '.join(MODES)}")
    for mode in modes:
        if args.time_budget and time.time() - t_all > args.time_budget:
            print(f"[skip] {mode}: time budget of {args.time_budget:.0f} s spent", flush=True)
            rows.append({"model": args.model_name, "method": mode, "skipped": "time budget"})
            continue
        model, _ = load_model(args)
        model.to(device)
        row = {"model": args.model_name, "method": mode}
        if mode == "fp":
            row.update(bpw=16.0, quantize_seconds=0.0)
        else:
            kw = {}
            if args.preset and not MODES[mode].get("method"):
                from lattq.cli import PRESETS

                kw.update(PRESETS[args.preset])
            kw.update(MODES[mode])
            kw.update(n_calib=args.n_calib, seq_len=args.seq_len, device=device, seed=args.seed)
            if mode == "+e2e" and args.e2e_epochs is not None:
                kw["e2e_epochs"] = args.e2e_epochs
            if args.finetune_epochs is not None:
                kw["finetune_epochs"] = args.finetune_epochs
            if args.refit is not None and kw.get("refit_lattice", 0):
                kw["refit_lattice"] = args.refit
            if args.finetune_lr is not None:
                kw["finetune_lr"] = args.finetune_lr
            if args.su_format_unnormed:
                kw["su_format_unnormed"] = args.su_format_unnormed
            cfg = LattqConfig(**kw)
            stage_rows, paused = [], [0.0]

            def callback(event, index, m, _mode=mode):
                if event != "e2e_start" or not args.stage_windows:
                    return
                t_p = time.time()
                snap = densify(copy.deepcopy(m))
                ppl_s, ntok_s, nwin_s, _ = perplexity(snap, tok, args.eval_text, args.ctx, args.stage_windows, device)
                del snap
                rep_s = m.lattq_report if hasattr(m, "lattq_report") else None
                stage_rows.append({"model": args.model_name, "method": "+block_ft", "ppl": ppl_s, "ctx": args.ctx,
                                   "eval_tokens": ntok_s, "eval_windows": nwin_s, "quantize_seconds": t_p - t0,
                                   "full_protocol": False, "note": f"the {_mode} run evaluated before its end-to-end stage"})
                print(f"[+block_ft] ppl={ppl_s:.3f} on {nwin_s} windows, {t_p - t0:.1f}s into the run", flush=True)
                paused[0] += time.time() - t_p

            t0 = time.time()
            quantize(model, cfg, tokens[: calibration_sequences(cfg)], callback=callback)
            rep = model.lattq_report
            for r in stage_rows:
                r["bpw"] = rep.total_bpw
            rows.extend(stage_rows)
            row.update(bpw=rep.total_bpw, quantize_seconds=time.time() - t0 - paused[0], config=cfg.to_dict(),
                       e2e=rep.e2e,
                       mean_rel_err=sum(r.rel_err for r in rep.layers) / max(1, len(rep.layers)),
                       peak_rss_mb=rep.peak_rss_mb,
                       block_out_rel_err=[b.out_rel_err for b in rep.blocks])
            stem = f"{args.tag}_{mode.replace('+', 'plus_')}_report"
            (out / f"{stem}.md").write_text(rep.to_markdown())
            (out / f"{stem}.json").write_text(rep.to_json(indent=1))
            if cfg.method == "lattq":
                if args.save:
                    from lattq.io import save_quantized

                    save_quantized(model, args.save, tok, cfg, overwrite=True,
                                   extra_files={"quantization_report.md": rep.to_markdown()})
                    print(f"[{mode}] checkpoint saved to {args.save}", flush=True)
                densify(model)
        t0 = time.time()
        ppl, ntok, nwin, per_window = perplexity(model, tok, args.eval_text, args.ctx, args.max_windows, device)
        row.update(ppl=ppl, ctx=args.ctx, eval_tokens=ntok, eval_windows=nwin, eval_seconds=time.time() - t0,
                   full_protocol=args.max_windows is None)
        if args.stage_windows and per_window and len(per_window) > args.stage_windows:
            # the same windows as the +block_ft row, from this evaluation's per-window NLL
            k = args.stage_windows
            row[f"ppl_first_{k}_windows"] = math.exp(math.fsum(per_window[:k]) / (k * (args.ctx - 1)))
        rows.append(row)
        print(f"[{mode}] bpw={row['bpw']:.4f} ppl={ppl:.3f} quantize={row['quantize_seconds']:.1f}s eval={row['eval_seconds']:.1f}s", flush=True)
        del model
        _write(out, args, rows, device, t_all)
    table = _write(out, args, rows, device, t_all)
    print(table)


def _write(out, args, rows, device, t_all):
    meta = {
        "device": torch.cuda.get_device_name(0) if device.startswith("cuda") else platform.processor() or platform.machine(),
        "torch": torch.__version__, "git_rev": git_rev(), "n_calib": args.n_calib, "seq_len": args.seq_len,
        "max_windows": args.max_windows, "wall_seconds": time.time() - t_all,
        "command": " ".join(sys.argv),
        "hqq": _hqq_version(),
    }
    (out / f"{args.tag}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = [f"| model | method | bpw | ppl | ctx | eval tokens | quantize s |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        if "ppl" not in r:
            lines.append(f"| {r['model']} | {r['method']} | - | skipped ({r.get('skipped')}) | | | |")
            continue
        lines.append(f"| {r['model']} | {r['method']} | {r['bpw']:.4f} | {r['ppl']:.2f} | {r['ctx']} | {r['eval_tokens']} | {r['quantize_seconds']:.1f} |")
    table = "\n".join(lines) + "\n"
    (out / f"{args.tag}.md").write_text(f"# {args.tag}\n\n{json.dumps(meta)}\n\n" + table)
    return table


if __name__ == "__main__":
    main()
