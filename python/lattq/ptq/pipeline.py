"""Layer-streaming PTQ over the decoder blocks of a LLaMA-family model (DESIGN.md §2.3, issue 4).

For each decoder block in turn: move it to the compute device/dtype, capture the input second moments
of its linear layers with hooks (shared by q/k/v and by gate/up) on the calibration stream, quantize
its seven linears, fine-tune it (codes frozen) towards the full-precision output, replace the linears
with ``lattq.nn.LatticeLinear``, propagate the calibration stream through it and move it back.  Only
one block is on the compute device (in the compute dtype) at a time.
"""

from __future__ import annotations

import copy
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..format import LayerDesc, layer_bits
from .config import PEER_METHODS, LattqConfig
from .finetune import TrainableLattice, finetune_block
from .hessian import HessianAccumulator, NonFiniteError
from .layer import QuantizedLayer, quantize_weight
from .report import BlockRow, LayerRow, QuantReport

SUPPORTED = "LLaMA-family decoders (model.model.layers[i] with self_attn.{q,k,v,o}_proj and mlp.{gate,up,down}_proj: llama, mistral, qwen2, qwen3)"
ATTN = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")
# linear -> name of the shared input group (one Hessian each)
GROUP = {"q_proj": "attn_in", "k_proj": "attn_in", "v_proj": "attn_in", "o_proj": "o_in",
         "gate_proj": "mlp_in", "up_proj": "mlp_in", "down_proj": "down_in"}
HOOKED = {"attn_in": "q_proj", "o_in": "o_proj", "mlp_in": "gate_proj", "down_in": "down_proj"}


class UnsupportedModelError(ValueError):
    pass


def _tqdm(it=None, **kw):
    try:
        from tqdm.auto import tqdm
    except Exception:  # pragma: no cover
        return it
    return tqdm(it, **kw)


def _write(msg: str) -> None:
    try:
        from tqdm.auto import tqdm

        tqdm.write(msg)
    except Exception:  # pragma: no cover
        print(msg)


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder blocks of a supported model, or an error naming what is supported."""
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
        raise UnsupportedModelError(f"unsupported architecture {type(model).__name__}: lattq supports {SUPPORTED}")
    for i, blk in enumerate(layers):
        attn, mlp = getattr(blk, "self_attn", None), getattr(blk, "mlp", None)
        missing = [n for n in ATTN if not isinstance(getattr(attn, n, None), nn.Linear)]
        missing += [n for n in MLP if not isinstance(getattr(mlp, n, None), nn.Linear)]
        if missing:
            raise UnsupportedModelError(
                f"unsupported architecture {type(model).__name__}: block {i} has no nn.Linear {missing}; lattq supports {SUPPORTED}"
            )
    if not hasattr(inner, "embed_tokens") or not hasattr(inner, "rotary_emb"):
        raise UnsupportedModelError(f"unsupported architecture {type(model).__name__}: no embed_tokens/rotary_emb; lattq supports {SUPPORTED}")
    return layers


def _linears(block: nn.Module) -> dict[str, nn.Module]:
    out = {n: getattr(block.self_attn, n) for n in ATTN}
    out.update({n: getattr(block.mlp, n) for n in MLP})
    return out


def _set_linear(block: nn.Module, name: str, mod: nn.Module) -> None:
    parent = block.self_attn if name in ATTN else block.mlp
    setattr(parent, name, mod)


def _resolve_calibration(calibration, tokenizer, config: LattqConfig) -> torch.Tensor:
    if isinstance(calibration, torch.Tensor):
        if calibration.dim() != 2 or calibration.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"calibration must be a LongTensor [N, L] of token ids, got {calibration.dtype} of shape {tuple(calibration.shape)}")
        if calibration.shape[1] < 2:
            raise ValueError("calibration sequences must have at least 2 tokens")
        return calibration.long()
    if calibration is None:
        raise ValueError("calibration is required: a LongTensor [N, L] of token ids or a text source (file, JSONL, dataset name)")
    if tokenizer is None:
        raise ValueError("a text calibration source needs the tokenizer: quantize(model, config, source, tokenizer=tok)")
    from ..data import calibration_tokens

    return calibration_tokens(calibration, tokenizer, calibration_sequences(config), config.seq_len, seed=config.seed)


def _own_e2e_calibration(config: LattqConfig) -> bool:
    return config.e2e_epochs > 0 and config.e2e_n_calib is not None and config.method not in PEER_METHODS


def calibration_sequences(config: LattqConfig) -> int:
    """Calibration sequences the pipeline uses: the block stages' and, with ``e2e_n_calib``, the
    end-to-end stage's (a text source is drawn to this many; harnesses slice a token tensor to it)."""
    return max(config.n_calib, config.e2e_n_calib) if _own_e2e_calibration(config) else config.n_calib


def _split_calibration(tokens: torch.Tensor, config: LattqConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(block-stage tokens, end-to-end tokens).  Without ``e2e_n_calib`` both are all of ``tokens``
    (a tensor passed by the caller is used whole, as before); with it the block stages take the first
    ``n_calib`` sequences and the end-to-end stage the first ``e2e_n_calib``."""
    if not _own_e2e_calibration(config):
        return tokens, tokens
    n = tokens.shape[0]
    if n < config.e2e_n_calib:
        from ..data import CalibrationDataError

        raise CalibrationDataError(
            f"the end-to-end stage needs e2e_n_calib={config.e2e_n_calib} calibration sequences, the calibration has {n} "
            f"(pass more, or lower e2e_n_calib)")
    return tokens[: min(n, config.n_calib)], tokens[: config.e2e_n_calib]


def _peak_rss_mb() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024.0 if sys.platform != "darwin" else r / 2**20


def _to_lattice_module(q: QuantizedLayer, device):
    from ..reference import pack_fields

    try:
        from ..nn import LatticeLinear
    except Exception as exc:  # pragma: no cover - nn.py is part of the package
        raise RuntimeError(f"lattq.nn.LatticeLinear is not importable: {exc}") from exc
    codes = pack_fields(q.z, q.bits).to(device)
    return LatticeLinear.from_codes(
        codes, q.A, q.b, q.su, q.sv, q.bias,
        bits=q.bits, dim=q.dim, had_in=q.had_in, had_out=q.had_out,
        su_format=q.su_format, sv_format=q.sv_format,
    )


def _vocab_size(model: nn.Module) -> int:
    emb = getattr(getattr(model, "model", None), "embed_tokens", None)
    return int(emb.weight.shape[0]) if emb is not None and hasattr(emb, "weight") else 0


def available_memory_bytes(device: torch.device) -> int | None:
    """Free memory on ``device`` (CUDA: the driver's free memory; CPU: MemAvailable), None if unknown."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _e2e_memory_problem(model: nn.Module, device: torch.device, config: LattqConfig, n_vocab: int, seq_len: int) -> str | None:
    """Why the end-to-end stage cannot run here, or None.

    It holds a float32 teacher, the student with every decoder weight rebuilt dense for the backward
    pass, the Adam state, two batches of logits (plus their softmaxes) and the activations saved for
    the backward pass; the block stages need only one block.  (SmolLM2-135M, 4 x 512 tokens: estimate
    6.5 GiB, measured peak RSS of the whole run 8.7 GB.)
    """
    n_params = sum(p.numel() for p in model.parameters())
    tokens = config.e2e_batch * seq_len
    logits = 4 * 4 * tokens * max(n_vocab, 1)
    cfg = getattr(model, "config", None)
    hidden = int(getattr(cfg, "hidden_size", 0) or 0)
    inter = int(getattr(cfg, "intermediate_size", 0) or 0)
    layers = len(decoder_layers(model))
    activations = 4 * tokens * layers * (16 * hidden + 4 * inter)  # saved for the backward pass
    need = 3 * 4 * n_params + logits + activations
    free = available_memory_bytes(device)
    if free is not None and need > free:
        return (f"it needs about {need / 2**30:.1f} GiB on {device} (teacher, dense student, logits) and "
                f"{free / 2**30:.1f} GiB are free; set e2e_epochs=0 or use a larger device")
    return None


def _fits(lin: nn.Linear, config: LattqConfig) -> str | None:
    n, k = lin.out_features, lin.in_features
    if k % config.dim:
        return f"in_features={k} is not divisible by dim={config.dim}"
    if (k * config.bits) % 8:
        return f"in_features*bits={k * config.bits} is not a multiple of 8"
    return None


def quantize(model: nn.Module, config: LattqConfig | None = None, calibration=None, *, tokenizer=None, callback=None) -> nn.Module:
    """Quantize every decoder linear of ``model`` in place; returns the model with ``model.lattq_report``.

    ``calibration``: LongTensor [N, L] of token ids, or a text source (plain text file, JSONL with a
    "text" field, or a Hugging Face dataset name) resolved with ``lattq.data.calibration_tokens`` and
    ``tokenizer`` using ``config.n_calib`` x ``config.seq_len``.
    ``callback(event, index, model)`` is called with ("block_start"|"block_end", block index) and, before
the end-to-end stage, ("e2e_start", number of blocks) (used by tests and the ablation harness).
    """
    config = LattqConfig() if config is None else config
    if not isinstance(config, LattqConfig):
        raise TypeError(f"config must be a LattqConfig, got {type(config).__name__}")
    config.validate()
    t_start = time.time()
    layers = decoder_layers(model)
    tokens, e2e_tokens = _split_calibration(_resolve_calibration(calibration, tokenizer, config), config)
    device = torch.device(config.device) if config.device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cdtype = getattr(torch, config.dtype)
    gen = torch.Generator().manual_seed(config.seed)
    peer = config.method in PEER_METHODS
    report = QuantReport(method=config.method, config=config.to_dict())
    inner = model.model
    n_seq, seq_len = tokens.shape
    run_e2e = config.e2e_epochs > 0 and not peer
    e2e_skip = _e2e_memory_problem(model, device, config, n_vocab=_vocab_size(model), seq_len=seq_len) if run_e2e else None
    if e2e_skip:  # decided up front: never after hours of block stages
        run_e2e = False
        report.e2e = {"skipped": e2e_skip}
        _write(f"lattq: end-to-end stage skipped: {e2e_skip}")
    # the end-to-end stage needs the full-precision model as its teacher: copied before any block changes
    teacher = copy.deepcopy(model) if run_e2e else None

    # --- calibration stream entering block 0 -------------------------------------------------------
    emb = inner.embed_tokens
    with torch.no_grad():
        emb_dev = next(emb.parameters()).device
        X = torch.cat([emb(tokens[i : i + 8].to(emb_dev)).to(device=device, dtype=cdtype) for i in range(0, n_seq, 8)])
        scale = getattr(inner, "embed_scale", None)  # none for LLaMA; guard for look-alikes
        if scale is not None:
            X = X * scale
    if not bool(torch.isfinite(X).all()):
        raise NonFiniteError("calibration activations of the embedding contain NaN or Inf")
    pos = torch.arange(seq_len, device=device)[None]
    rot = inner.rotary_emb
    rot_dev = next(iter(list(rot.buffers()) + [torch.empty(0)])).device
    rot.to(device)
    with torch.no_grad():
        cos, sin = rot(X[:1], pos)
    rot.to(rot_dev)
    pe = (cos.to(cdtype), sin.to(cdtype))

    def run_block(block, x):
        out = block(x, attention_mask=None, position_ids=pos, position_embeddings=pe, use_cache=False)
        return out[0] if isinstance(out, tuple) else out

    def run_all(block, xs, bs=4):
        with torch.no_grad():
            return torch.cat([run_block(block, xs[i : i + bs]) for i in range(0, xs.shape[0], bs)])

    two_streams = config.propagate_quantized and not peer and config.finetune and config.finetune_target == "fp_stream"
    need_fp = two_streams
    X_fp = X.clone() if need_fp else None
    X_q = X

    blocks_bar = _tqdm(range(len(layers)), desc=f"lattq {config.method}", disable=not config.progress)
    for bi in blocks_bar:
        t_blk = time.time()
        block = layers[bi]
        p0 = next(block.parameters())
        orig_dev, orig_dtype = p0.device, p0.dtype
        block.to(device=device, dtype=cdtype)
        if callback is not None:
            callback("block_start", bi, model)
        # --- Hessians of the four distinct linear inputs, on the stream being quantized ----------
        lins = _linears(block)
        for lname, lin in lins.items():  # weights first: a bad weight is named before it poisons activations
            if not bool(torch.isfinite(lin.weight).all()):
                raise NonFiniteError(f"weight of model.layers.{bi}.{'self_attn' if lname in ATTN else 'mlp'}.{lname} contains NaN or Inf")
        accs, hooks = {}, []
        for grp, lname in HOOKED.items():
            lin = lins[lname]
            accs[grp] = HessianAccumulator(lin.in_features, f"block {bi} {lname} input ({grp})", device=device)

            def hook(mod, args, _acc=accs[grp]):
                _acc.add(args[0])

            hooks.append(lin.register_forward_pre_hook(hook))
        try:
            Y_q_fp = run_all(block, X_q)  # FP block on the stream being quantized
        finally:
            for h in hooks:
                h.remove()
        if not bool(torch.isfinite(Y_q_fp).all()):
            raise NonFiniteError(f"calibration activations at the output of block {bi} contain NaN or Inf")
        Y_fp = run_all(block, X_fp) if need_fp else None
        Hs = {g: a.value() for g, a in accs.items()}

        # --- per-layer quantization -----------------------------------------------------------------
        qlayers: dict[str, QuantizedLayer] = {}
        for lname, lin in lins.items():
            full = f"model.layers.{bi}.{'self_attn' if lname in ATTN else 'mlp'}.{lname}"
            why = _fits(lin, config)
            if why is not None:
                report.skipped.append((full, why))
                continue
            W = lin.weight.detach().to(device=device, dtype=torch.float64)
            if not bool(torch.isfinite(W).all()):
                raise NonFiniteError(f"weight of {full} contains NaN or Inf")
            H = Hs[GROUP[lname]]
            bias = None if lin.bias is None else lin.bias.detach()
            if peer:
                from .peers import quantize_peer_weight

                t0 = time.time()
                Wq, bits_used = quantize_peer_weight(W, H, config.method, bits=config.bits, damp=config.damp)
                E = W - Wq
                rel = float(((E @ H) * E).sum() / ((W @ H) * W).sum().clamp_min(1e-300))
                with torch.no_grad():
                    lin.weight.copy_(Wq.to(lin.weight.dtype))
                nbits = bits_used + (32 * lin.out_features if bias is not None else 0)
                report.layers.append(LayerRow(full, (lin.out_features, lin.in_features), rel, nbits / W.numel(), time.time() - t0, nbits, []))
                continue
            su_fmt = config.su_format
            if lname in ("o_proj", "down_proj") and config.su_format_unnormed is not None:
                su_fmt = config.su_format_unnormed
            ql = quantize_weight(
                W, H, name=full, bits=config.bits, dim=config.dim, had_block=config.had_block,
                incoherence=config.incoherence, ldlq=config.ldlq, a_init=config.a_init,
                refit=config.refit_lattice, damp=config.damp, su_format=su_fmt,
                sv_format=config.sv_format, generator=gen, bias=bias,
            )
            qlayers[lname] = ql
            desc = LayerDesc(ql.bits, ql.dim, lin.out_features, lin.in_features, ql.had_in, ql.had_out).validate()
            nbits = layer_bits(desc, ql.su_format, ql.sv_format, bias is not None)
            report.layers.append(LayerRow(full, (desc.n, desc.k), ql.rel_err, nbits / (desc.n * desc.k), ql.seconds, nbits, ql.stages))

        brow = BlockRow(index=bi, seconds=0.0)
        if not peer:
            for lname, ql in qlayers.items():
                _set_linear(block, lname, TrainableLattice(ql, device=device))
            target = Y_fp if two_streams else Y_q_fp
            if config.finetune and qlayers:
                bar = _tqdm(total=None, desc=f"  fine-tune block {bi}", leave=False, disable=not config.progress)
                brow.finetune = finetune_block(
                    block, run_block, X_q, target, epochs=config.finetune_epochs, lr=config.finetune_lr,
                    batch=config.finetune_batch, heldout=config.finetune_heldout, norms=config.finetune_norms,
                    generator=gen, progress=bar,
                )
                if bar is not None:
                    bar.close()
        # --- propagate ----------------------------------------------------------------------------
        if config.propagate_quantized:
            X_next = run_all(block, X_q)
        else:
            X_next = Y_q_fp
        tgt = Y_fp if two_streams else Y_q_fp
        if config.propagate_quantized or not peer:
            Yq = X_next if config.propagate_quantized else run_all(block, X_q)
            brow.out_rel_err = float((Yq - tgt).pow(2).sum() / tgt.pow(2).sum().clamp_min(1e-300))
        X_q = X_next
        # the stream went through the TrainableLattice modules (same math as the stored layers: scales
        # already projected); now swap in the final LatticeLinear modules
        for lname in qlayers:
            tl = getattr(block.self_attn if lname in ATTN else block.mlp, lname)
            _set_linear(block, lname, _to_lattice_module(tl.export(), device))
        if need_fp:
            X_fp = Y_fp
        del Y_q_fp, Hs, accs
        block.to(device=orig_dev)
        from ..nn import LatticeLinear

        for mod in block.modules():  # norms (and any other float params) back to the load dtype
            if not isinstance(mod, LatticeLinear):
                for p in mod.parameters(recurse=False):
                    p.data = p.data.to(orig_dtype)
        if callback is not None:
            callback("block_end", bi, model)
        brow.seconds = time.time() - t_blk
        report.blocks.append(brow)
        if config.progress:
            ft = brow.finetune or {}
            msg = f"block {bi}: {brow.seconds:.1f}s"
            if brow.out_rel_err is not None:
                msg += f", output rel. error {brow.out_rel_err:.4g}"
            if ft.get("start_heldout") is not None:
                msg += f", fine-tune held-out {ft['start_heldout']:.4g} -> {ft['best_heldout']:.4g} ({ft['epochs_run']} epochs)"
            _write(msg)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if run_e2e:
        from .e2e import finetune_e2e

        if callback is not None:
            callback("e2e_start", len(layers), model)

        home = next(model.parameters()).device
        model.to(device)
        teacher.to(device)
        report.e2e = finetune_e2e(
            model, teacher, e2e_tokens, epochs=config.e2e_epochs, lr=config.e2e_lr, batch=config.e2e_batch,
            heldout=config.finetune_heldout, norms=config.finetune_norms, generator=gen, progress=config.progress,
            autocast_dtype=None if config.e2e_autocast is None else getattr(torch, config.e2e_autocast),
        )
        report.e2e["n_sequences"], report.e2e["block_sequences"] = e2e_tokens.shape[0], tokens.shape[0]
        del teacher
        model.to(home)
        if config.progress:
            e = report.e2e
            if e.get("best_heldout_kl") is not None:
                _write(f"end-to-end: held-out KL {e['start_heldout_kl']:.4g} -> {e['best_heldout_kl']:.4g} ({e['epochs_run']} epochs, {e['seconds']:.0f}s)")
    report.wall_seconds = time.time() - t_start
    report.peak_rss_mb = _peak_rss_mb()
    model.lattq_report = report
    return model
