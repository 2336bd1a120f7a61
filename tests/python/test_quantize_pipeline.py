"""Pipeline tests of lattq.ptq.quantize on tiny random LLaMA models (and, when present, SmolLM2 shapes).

Quality tolerances are orderings (a stage never worse than where it started); structural checks are
exact (module types, bpw from the format spec, one block resident at a time).
"""

from __future__ import annotations

import math

import pytest
import torch

transformers = pytest.importorskip("transformers")

from lattq.format import LayerDesc, default_hadamard_block, layer_bits  # noqa: E402
from lattq.nn import LatticeLinear  # noqa: E402
from lattq.ptq import LattqConfig, NonFiniteError, UnsupportedModelError, quantize  # noqa: E402


def tiny_llama(seed=0, hidden=64, inter=128, layers=2, vocab=96):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    m = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # non-trivial norms so that fine-tuning them matters
        for blk in m.model.layers:
            blk.input_layernorm.weight.uniform_(0.5, 1.5)
            blk.post_attention_layernorm.weight.uniform_(0.5, 1.5)
    return m


def calib(n=8, L=32, vocab=96, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (n, L), generator=g)


FAST = dict(n_calib=8, seq_len=32, device="cpu", progress=False, finetune_epochs=2, finetune_batch=2)


def test_quantize_replaces_every_decoder_linear_and_reports():
    m = tiny_llama()
    toks = calib()
    with torch.no_grad():
        ref = m(toks[:2]).logits
    quantize(m, LattqConfig(**FAST), toks)
    rep = m.lattq_report
    for blk in m.model.layers:
        for mod in (blk.self_attn.q_proj, blk.self_attn.k_proj, blk.self_attn.v_proj, blk.self_attn.o_proj,
                    blk.mlp.gate_proj, blk.mlp.up_proj, blk.mlp.down_proj):
            assert isinstance(mod, LatticeLinear)
    assert len(rep.layers) == 14 and not rep.skipped
    # bpw straight from the format spec (docs/format.md §6), independent of the report's arithmetic
    bits = weights = 0
    for r in rep.layers:
        n, k = r.shape
        d = LayerDesc(2, 4, n, k, default_hadamard_block(k), default_hadamard_block(n))
        # defaults: SU as signs behind a norm (q/k/v, gate/up), q8 for o_proj/down_proj; SV q8
        su = "q8" if r.name.endswith(("o_proj", "down_proj")) else "sign"
        bits += layer_bits(d, su, "q8", False)
        weights += n * k
    assert math.isclose(rep.total_bpw, bits / weights, rel_tol=1e-12)
    d = rep.to_dict()
    assert d["total_bpw"] == rep.total_bpw and len(d["layers"]) == 14
    md = rep.to_markdown()
    assert "model.layers.1.mlp.down_proj" in md
    with torch.no_grad():
        out = m(toks[:2]).logits
    assert torch.isfinite(out).all()
    assert out.shape == ref.shape


def test_finetune_never_worse_on_heldout_and_each_layer_stage_monotone():
    m = tiny_llama(seed=3)
    quantize(m, LattqConfig(**{**FAST, "finetune_epochs": 3, "finetune_lr": 1e-2}), calib(seed=4))
    rep = m.lattq_report
    for b in rep.blocks:
        ft = b.finetune
        assert ft["best_heldout"] <= ft["start_heldout"]
    for r in rep.layers:
        objs = [o for s, o in r.stages if s != "stored"]
        assert all(b <= a * (1 + 1e-12) for a, b in zip(objs, objs[1:])), r.stages


def test_finetune_reduces_block_output_error():
    # enough sequences for the held-out part to generalise (a random model on random tokens)
    toks = calib(n=64, seed=5)
    m0 = tiny_llama(seed=6)
    quantize(m0, LattqConfig(**{**FAST, "n_calib": 64, "finetune": False}), toks)
    m1 = tiny_llama(seed=6)
    quantize(m1, LattqConfig(**{**FAST, "n_calib": 64, "finetune_epochs": 4, "finetune_lr": 1e-3, "finetune_batch": 8}), toks)
    e0 = m0.lattq_report.blocks[0].out_rel_err
    e1 = m1.lattq_report.blocks[0].out_rel_err
    assert e1 < e0, (e0, e1)


def test_only_one_block_materialised_in_compute_dtype_at_a_time():
    # the model is loaded in float32; the compute dtype is float64: a block is "resident" while its
    # parameters are float64.  The callback runs inside each block's processing.
    m = tiny_llama(layers=3)
    seen = []

    def resident(model):
        return [i for i, blk in enumerate(model.model.layers)
                if any(p.dtype == torch.float64 for p in blk.parameters())]

    def cb(event, idx, model):
        r = resident(model)
        seen.append((event, idx, r))
        if event == "block_start":
            assert r == [idx], f"block {idx} starts with resident blocks {r}"
        else:
            assert r in ([], [idx]), r

    quantize(m, LattqConfig(**{**FAST, "dtype": "float64"}), calib(), callback=cb)
    assert [s[:2] for s in seen] == [("block_start", 0), ("block_end", 0), ("block_start", 1), ("block_end", 1),
                                     ("block_start", 2), ("block_end", 2)]
    assert resident(m) == []
    assert all(p.dtype == torch.float32 for p in m.parameters())


def test_layers_that_do_not_fit_are_skipped_and_listed():
    m = tiny_llama(inter=130)  # down_proj has in_features 130, not divisible by 4
    quantize(m, LattqConfig(**{**FAST, "finetune": False}), calib())
    rep = m.lattq_report
    names = [n for n, _ in rep.skipped]
    assert names == ["model.layers.0.mlp.down_proj", "model.layers.1.mlp.down_proj"]
    assert "not divisible by dim=4" in rep.skipped[0][1]
    assert isinstance(m.model.layers[0].mlp.down_proj, torch.nn.Linear)
    assert isinstance(m.model.layers[0].mlp.up_proj, LatticeLinear)


def test_nonfinite_weight_is_an_error_naming_the_layer():
    m = tiny_llama()
    with torch.no_grad():
        m.model.layers[1].self_attn.v_proj.weight[0, 0] = float("inf")
    with pytest.raises(NonFiniteError, match=r"model\.layers\.1\.self_attn\.v_proj"):
        quantize(m, LattqConfig(**FAST), calib())


def test_nonfinite_calibration_activation_is_an_error():
    m = tiny_llama()
    with torch.no_grad():
        m.model.embed_tokens.weight[5, 3] = float("nan")
    toks = calib()
    toks[0, 0] = 5
    with pytest.raises(NonFiniteError, match="NaN or Inf"):
        quantize(m, LattqConfig(**FAST), toks)


def test_unsupported_architecture_names_what_is_supported():
    from transformers import GPT2Config, GPT2LMHeadModel

    m = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64))
    with pytest.raises(UnsupportedModelError, match="LLaMA-family"):
        quantize(m, LattqConfig(**FAST), calib(vocab=64))


def test_bad_calibration_inputs():
    m = tiny_llama()
    with pytest.raises(ValueError, match="LongTensor"):
        quantize(m, LattqConfig(**FAST), torch.zeros(4, 8))
    with pytest.raises(ValueError, match="tokenizer"):
        quantize(m, LattqConfig(**FAST), "some/file.txt")
    with pytest.raises(TypeError, match="LattqConfig"):
        quantize(m, {"bits": 2}, calib())


@pytest.mark.parametrize("method", ["rtn_g64", "gptq_g64", "hqq_g64"])
def test_peer_methods_run_in_the_same_harness(method):
    if method.startswith("hqq"):
        pytest.importorskip("hqq", reason="optional peer package hqq is not installed")
    m = tiny_llama()
    quantize(m, LattqConfig(**{**FAST, "method": method}), calib())
    rep = m.lattq_report
    # stored per group of 64: fp16 scale + 2-bit zero (RTN/GPTQ), fp16 scale + fp16 zero (HQQ)
    assert math.isclose(rep.total_bpw, 2 + (32 if method.startswith("hqq") else 18) / 64)
    assert isinstance(m.model.layers[0].mlp.up_proj, torch.nn.Linear)


def test_gptq_beats_rtn_on_layer_objective():
    from lattq.ptq.peers import gptq_groupwise, rtn_groupwise

    g = torch.Generator().manual_seed(7)
    X = torch.randn(1024, 128, generator=g, dtype=torch.float64) @ (torch.eye(128, dtype=torch.float64) + 0.3 * torch.randn(128, 128, generator=g, dtype=torch.float64) / 11)
    H = X.T @ X / 1024
    W = torch.randn(32, 128, generator=g, dtype=torch.float64)
    obj = lambda Q: float((((W - Q) @ H) * (W - Q)).sum())  # noqa: E731
    assert obj(gptq_groupwise(W, H, 2, 64)) < obj(rtn_groupwise(W, 2, 64))


def test_peer_partial_last_group():
    # SmolLM2's in_features 576 with group 128: four full groups and a partial group of 64
    from lattq.ptq.peers import gptq_groupwise, quantize_peer_weight, rtn_groupwise

    g = torch.Generator().manual_seed(3)
    W = torch.randn(8, 576, generator=g, dtype=torch.float64)
    X = torch.randn(2048, 576, generator=g, dtype=torch.float64)
    H = X.T @ X / 2048
    for Q in (rtn_groupwise(W, 2, 128), gptq_groupwise(W, H, 2, 128)):
        for c0 in range(0, 576, 128):
            grp = Q[:, c0 : c0 + 128]
            for row in grp:
                assert torch.unique(row).numel() <= 4  # at most 2**bits levels per group and row
        # the partial group is quantized on its own grid, not with the previous group's parameters
        assert not torch.equal(Q[:, 512:], W[:, 512:])
        assert float((Q - W).norm() / W.norm()) < 0.8
    _, stored = quantize_peer_weight(W, H, "rtn_g128")
    assert stored == 8 * 576 * 2 + 8 * 5 * 18  # five groups per row, each with fp16 scale + 2-bit zero


def test_default_config_bpw_on_smollm2_shapes_is_at_most_2_02():
    # SmolLM2-135M: hidden 576, intermediate 1536, 3 kv heads of 64 (k/v out 192); 30 identical blocks
    c = LattqConfig()
    shapes = [(576, 576), (192, 576), (192, 576), (576, 576), (1536, 576), (1536, 576), (576, 1536)]
    bits = weights = 0
    for name, (n, k) in zip(["q", "k", "v", "o", "gate", "up", "down"], shapes):
        d = LayerDesc(c.bits, c.dim, n, k, default_hadamard_block(k, c.had_block), default_hadamard_block(n, c.had_block))
        su = c.su_format_unnormed if (name in ("o", "down") and c.su_format_unnormed) else c.su_format
        bits += layer_bits(d, su, c.sv_format, False)
        weights += n * k
    assert bits / weights <= 2.02
