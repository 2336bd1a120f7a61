"""End-to-end fine-tuning stage (lattq.ptq.e2e) on tiny random LLaMA models."""

from __future__ import annotations

import copy

import pytest
import torch

pytest.importorskip("transformers")

from test_quantize_pipeline import FAST, calib, tiny_llama  # noqa: E402

from lattq import scales  # noqa: E402
from lattq.nn import LatticeLinear  # noqa: E402
from lattq.ptq import LattqConfig, quantize  # noqa: E402
from lattq.ptq.e2e import finetune_e2e  # noqa: E402


def _kl(student, teacher, toks) -> float:
    with torch.no_grad():
        s = torch.log_softmax(student(toks).logits.double(), -1)
        t = torch.log_softmax(teacher(toks).logits.double(), -1)
    return float((t.exp() * (t - s)).sum(-1).mean())


def _lattice_state(m):
    return {n: {k: getattr(mod, k).clone() for k in ("codes", "A", "b", "su", "sv")}
            for n, mod in m.named_modules() if isinstance(mod, LatticeLinear)}


def _quantized_pair(seed=11, n=48):
    teacher = tiny_llama(seed=seed)
    student = copy.deepcopy(teacher)
    toks = calib(n=n, seed=seed + 1)
    quantize(student, LattqConfig(**{**FAST, "n_calib": n, "finetune_epochs": 1}), toks)
    return teacher, student, toks


def test_e2e_lowers_kl_keeps_codes_and_stores_representable_scales():
    teacher, student, toks = _quantized_pair()
    fresh = calib(n=16, seed=99)  # not seen by training
    before_state = _lattice_state(student)
    flags = {n: p.requires_grad for n, p in student.named_parameters()}
    kl0, kl0_fresh = _kl(student, teacher, toks), _kl(student, teacher, fresh)
    info = finetune_e2e(student, teacher, toks, epochs=3, lr=3e-3, batch=8, heldout=0.25, progress=False,
                        generator=torch.Generator().manual_seed(0))
    assert info["best_heldout_kl"] <= info["start_heldout_kl"]
    assert info["epochs_run"] >= 1 and info["best_epoch"] >= 1, info
    kl1, kl1_fresh = _kl(student, teacher, toks), _kl(student, teacher, fresh)
    assert kl1 < 0.9 * kl0, (kl0, kl1)
    assert kl1_fresh < kl0_fresh, (kl0_fresh, kl1_fresh)
    after_state = _lattice_state(student)
    changed = 0
    for name, mod in student.named_modules():
        if not isinstance(mod, LatticeLinear):
            continue
        assert torch.equal(after_state[name]["codes"], before_state[name]["codes"]), name  # codes frozen
        for key, fmt in (("su", mod.su_format), ("sv", mod.sv_format)):  # stored exactly as trained
            v = after_state[name][key]
            assert torch.equal(scales.project(v, fmt), v), (name, key)
        changed += int(not torch.equal(after_state[name]["A"], before_state[name]["A"]))
    assert changed > 0
    # requires_grad flags as they were, and no stand-in module left behind
    assert {n: p.requires_grad for n, p in student.named_parameters()} == flags
    assert all(type(mod).__name__ != "_E2ELinear" for mod in student.modules())


def test_e2e_never_ends_worse_than_it_started_on_heldout():
    teacher, student, toks = _quantized_pair(seed=21, n=24)
    # a learning rate far too large: the stage must fall back to the starting state
    before = _lattice_state(student)
    info = finetune_e2e(student, teacher, toks, epochs=2, lr=10.0, batch=4, heldout=0.25, progress=False)
    assert info["best_epoch"] == 0 and info["best_heldout_kl"] == info["start_heldout_kl"], info
    after = _lattice_state(student)
    for name in before:  # the starting state is what is kept
        for k in before[name]:
            assert torch.equal(before[name][k], after[name][k]), (name, k)


def test_e2e_restores_modules_when_interrupted():
    teacher, student, toks = _quantized_pair(seed=31, n=16)
    before = _lattice_state(student)

    class Boom(RuntimeError):
        pass

    calls = {"n": 0}
    orig = teacher.forward

    def failing_forward(*a, **k):
        calls["n"] += 1
        if calls["n"] > 2:
            raise Boom("interrupted")
        return orig(*a, **k)

    teacher.forward = failing_forward
    with pytest.raises(Boom):
        finetune_e2e(student, teacher, toks, epochs=2, lr=1e-3, batch=4, heldout=0.25, progress=False)
    after = _lattice_state(student)
    for name in before:  # back to the starting state, LatticeLinear modules in place
        for k in before[name]:
            assert torch.equal(before[name][k], after[name][k]), (name, k)
    assert sum(isinstance(m, LatticeLinear) for m in student.modules()) == len(before)


def test_pipeline_runs_e2e_stage_and_reports_it():
    m = tiny_llama(seed=41)
    ref = copy.deepcopy(m)
    toks = calib(n=32, seed=42)
    quantize(m, LattqConfig(**{**FAST, "n_calib": 32, "e2e_epochs": 2, "e2e_lr": 3e-3, "e2e_batch": 8, "e2e_autocast": None}), toks)
    e = m.lattq_report.e2e
    assert e is not None and e["best_heldout_kl"] <= e["start_heldout_kl"]
    assert "End-to-end fine-tuning" in m.lattq_report.to_markdown()
    assert m.lattq_report.to_dict()["e2e"]["epochs_run"] == e["epochs_run"]
    assert next(m.parameters()).device.type == "cpu"
    assert _kl(m, ref, toks[:4]) >= 0.0


def test_e2e_config_validation():
    with pytest.raises(ValueError, match="e2e_epochs"):
        LattqConfig(e2e_epochs=-1)
    with pytest.raises(ValueError, match="e2e_autocast"):
        LattqConfig(e2e_autocast="int8")


def test_e2e_is_skipped_up_front_when_it_cannot_fit(monkeypatch):
    import lattq.ptq.pipeline as pipeline

    monkeypatch.setattr(pipeline, "available_memory_bytes", lambda device: 1024)  # 1 KiB free
    m = tiny_llama(seed=51)
    before = copy.deepcopy(m)
    quantize(m, LattqConfig(**{**FAST, "e2e_epochs": 2}), calib(seed=52))
    e = m.lattq_report.e2e
    assert e is not None and "GiB" in e["skipped"] and "e2e_epochs=0" in e["skipped"], e
    # the block stages still ran
    assert isinstance(m.model.layers[0].mlp.down_proj, LatticeLinear)
    assert not isinstance(before.model.layers[0].mlp.down_proj, LatticeLinear)


def test_e2e_n_calib_gives_the_end_to_end_stage_more_sequences():
    # the block stages take the first n_calib sequences, the end-to-end stage the first e2e_n_calib
    teacher = tiny_llama(seed=5)
    model = copy.deepcopy(teacher)
    toks = calib(n=20, seed=6)
    cfg = LattqConfig(**{**FAST, "n_calib": 8, "finetune_epochs": 1, "e2e_epochs": 1, "e2e_n_calib": 16, "e2e_batch": 4})
    seen = []
    quantize(model, cfg, toks, callback=lambda ev, i, m: seen.append(ev))
    e = model.lattq_report.e2e
    assert e["n_sequences"] == 16 and e["block_sequences"] == 8, e
    assert e["best_heldout_kl"] < e["start_heldout_kl"], e
    assert "e2e_start" in seen


def test_e2e_n_calib_larger_than_the_calibration_is_a_clear_error():
    from lattq.data import CalibrationDataError

    model = tiny_llama(seed=5)
    cfg = LattqConfig(**{**FAST, "n_calib": 8, "e2e_epochs": 1, "e2e_n_calib": 32})
    with pytest.raises(CalibrationDataError, match="e2e_n_calib=32 .* has 12"):
        quantize(model, cfg, calib(n=12, seed=6))
    with pytest.raises(ValueError, match="e2e_n_calib"):
        LattqConfig(e2e_n_calib=1).validate()


def test_e2e_cosine_schedule_and_bad_schedule():
    teacher, student, toks = _quantized_pair(n=16)
    info = finetune_e2e(student, teacher, toks, epochs=2, lr=3e-3, batch=4, heldout=0.25, progress=False, schedule="cosine")
    assert info["best_heldout_kl"] < info["start_heldout_kl"], info
    with pytest.raises(ValueError, match="schedule"):
        finetune_e2e(student, teacher, toks, epochs=1, lr=1e-3, batch=4, heldout=0.25, progress=False, schedule="linear")
