"""The `lattq` command line, run as a subprocess (`python -m lattq`) on a tiny model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")

import lattq  # noqa: E402

PKG_PARENT = str(Path(lattq.__file__).resolve().parents[1])  # the lattq under test


def run_cli(*args, cwd=None, timeout=600):
    env = dict(os.environ)
    env["PYTHONPATH"] = PKG_PARENT + os.pathsep + env.get("PYTHONPATH", "")
    env["TQDM_DISABLE"] = "1"
    return subprocess.run([sys.executable, "-m", "lattq", *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)


def assert_user_error(r, match):
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [l for l in r.stderr.strip().splitlines() if l.startswith("lattq: error:")]
    assert len(lines) == 1, r.stderr
    assert match in lines[0], lines[0]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    from test_io_tiny import quantize_rtn, save_tiny_hf, tiny_llama, tiny_text, tiny_tokenizer

    from lattq.io import save_quantized

    d = tmp_path_factory.mktemp("cli")
    save_tiny_hf(d / "hf")
    (d / "calib.txt").write_text(tiny_text(12000, seed=5))
    (d / "eval.txt").write_text(tiny_text(4000, seed=7).replace("\n", "\r\n"))
    tok = tiny_tokenizer()
    save_quantized(quantize_rtn(tiny_llama(vocab_size=len(tok))), d / "ck", tokenizer=tok)
    return d


@pytest.fixture(scope="module")
def quantized(work):
    """One full `lattq quantize --eval --generate` run on the tiny model."""
    r = run_cli(
        "quantize", "--model", work / "hf", "--out", work / "q", "--calib", work / "calib.txt", "--n-calib", 8, "--seq-len", 64,
        "--finetune-epochs", 1, "--eval", "--text", work / "eval.txt", "--ctx", 64, "--eval-windows", 3, "--generate",
        "--max-new-tokens", 4, "--prompt", "the river", "--prompt", "a city", "--device", "cpu",
    )
    return r, work / "q"


def test_help():
    r = run_cli("--help")
    assert r.returncode == 0 and "quantize" in r.stdout and "inspect" in r.stdout
    for cmd in (["quantize"], ["eval", "ppl"], ["generate"], ["inspect"], ["env"]):
        assert run_cli(*cmd, "--help").returncode == 0, cmd


def test_env(tmp_path):
    r = run_cli("env", "--report-dir", tmp_path)
    assert r.returncode == 0, r.stderr
    assert "torch" in r.stdout and "native_status" in r.stdout
    js = list(tmp_path.glob("env-*.json"))
    mds = list(tmp_path.glob("env-*.md"))
    assert len(js) == 1 and len(mds) == 1
    info = json.loads(js[0].read_text())
    for key in ("lattq", "python", "torch", "torch_threads", "native_available", "cuda_kernels_compiled", "cuda_available", "packages"):
        assert key in info, key
    assert info["native_available"] == lattq.native_available()
    assert info["transformers_quantizer_registered"] is True


def test_inspect(work, tmp_path):
    from lattq.io import checkpoint_summary

    r = run_cli("inspect", work / "ck", "--report-dir", tmp_path)
    assert r.returncode == 0, r.stderr
    s = checkpoint_summary(work / "ck")
    assert f"{s['bpw']:.4f}" in r.stdout and "format version 1" in r.stdout
    assert "model.layers.1.mlp.down_proj" in r.stdout
    data = json.loads(next(tmp_path.glob("inspect-*.json")).read_text())
    assert data["bpw"] == pytest.approx(s["bpw"]) and len(data["layers"]) == 14
    assert next(tmp_path.glob("inspect-*.md")).read_text().count("| model.layers.") == 14


def test_inspect_rejects_forged_checkpoint(work, tmp_path):
    import shutil

    ck = Path(shutil.copytree(work / "ck", tmp_path / "ck"))
    f = ck / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-100])
    assert_user_error(run_cli("inspect", ck, "--report-dir", tmp_path), "truncated")
    assert_user_error(run_cli("inspect", tmp_path / "nope"), "does not exist")


def test_eval_ppl(work, tmp_path):
    r = run_cli("eval", "ppl", "--model", work / "ck", "--text", work / "eval.txt", "--ctx", 64, "--max-windows", 4, "--report-dir", tmp_path, "--device", "cpu")
    assert r.returncode == 0, r.stderr
    data = json.loads(next(tmp_path.glob("eval-ppl-*.json")).read_text())
    res = data["result"]
    assert res["windows"] == 4 and res["tokens"] == 4 * 63 and res["subset"] is True
    # same number in-process
    from lattq.eval import perplexity
    from lattq.io import load_quantized
    from transformers import AutoTokenizer

    ref = perplexity(load_quantized(work / "ck"), AutoTokenizer.from_pretrained(str(work / "ck")), work / "eval.txt", ctx=64, max_windows=4, progress=False)
    assert res["ppl"] == pytest.approx(ref.ppl, rel=1e-6)
    assert f"{ref.ppl:.3f}" in r.stdout
    assert (tmp_path / next(tmp_path.glob("eval-ppl-*.md")).name).read_text().startswith("# lattq eval ppl")


def test_eval_ppl_errors(work, tmp_path):
    assert_user_error(run_cli("eval", "ppl", "--model", work / "ck", "--text", tmp_path / "missing.txt", "--report-dir", tmp_path), "does not exist")
    assert_user_error(run_cli("eval", "ppl", "--model", "no-such-model", "--text", work / "eval.txt", "--report-dir", tmp_path), "unknown model")
    r = run_cli("eval", "ppl", "--model", work / "ck", "--max-windows", 0)
    assert r.returncode == 2 and "positive integer" in r.stderr  # argparse


def test_generate(work, tmp_path):
    r = run_cli("generate", "--model", work / "ck", "--prompt", "the river", "--max-new-tokens", 3, "--report-dir", tmp_path, "--device", "cpu")
    assert r.returncode == 0, r.stderr
    data = json.loads(next(tmp_path.glob("generate-*.json")).read_text())
    g = data["generations"]
    assert len(g) == 1 and g[0]["prompt"] == "the river" and 1 <= g[0]["new_tokens"] <= 3


def test_quantize_end_to_end(quantized, work):
    r, out = quantized
    assert r.returncode == 0, r.stdout + r.stderr
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "report.json", "report.md", "layer_errors.png"} <= names
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".q.")]  # no temp dirs left
    rep = json.loads((out / "report.json").read_text())
    assert set(rep["eval"]) == {"full precision", "lattq 2-bit"}
    for v in rep["eval"].values():
        assert v["windows"] == 3 and v["tokens"] == 3 * 63 and v["subset"] is True
    assert len(rep["generations"]["full precision"]) == 2 and len(rep["generations"]["lattq 2-bit"]) == 2
    assert len(rep["quantization"]["layers"]) == 14
    assert rep["checkpoint"]["bpw"] == pytest.approx(rep["quantization"]["total_bpw"], rel=1e-9)
    assert "first 3 of" in r.stdout and "--full-eval" in r.stdout
    assert (out / "layer_errors.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "report.md").read_text()
    assert "## Perplexity" in md and "## Greedy generations" in md
    # the checkpoint loads and reproduces the reported 2-bit perplexity
    from lattq.eval import perplexity
    from lattq.io import load_quantized
    from transformers import AutoTokenizer

    m = load_quantized(out)
    ppl = perplexity(m, AutoTokenizer.from_pretrained(str(out)), work / "eval.txt", ctx=64, max_windows=3, progress=False).ppl
    assert ppl == pytest.approx(rep["eval"]["lattq 2-bit"]["ppl"], rel=1e-5)


def test_quantize_user_errors(quantized, work, tmp_path):
    _, out = quantized
    assert_user_error(run_cli("quantize", "--model", work / "hf", "--out", out, "--calib", work / "calib.txt"), "already exists")
    assert_user_error(run_cli("quantize", "--model", work / "hf", "--out", tmp_path / "x", "--set", "colour=3", "--calib", work / "calib.txt"), "unknown quantization setting")
    assert_user_error(run_cli("quantize", "--model", work / "hf", "--out", tmp_path / "x", "--set", "bits=9", "--calib", work / "calib.txt"), "bits")
    assert_user_error(run_cli("quantize", "--model", work / "ck", "--out", tmp_path / "x", "--calib", work / "calib.txt"), "already quantized")
    if not __import__("torch").cuda.is_available():
        assert_user_error(run_cli("quantize", "--model", work / "hf", "--out", tmp_path / "x", "--device", "cuda"), "CUDA is not available")
    assert_user_error(run_cli("quantize", "--model", work / "hf", "--out", tmp_path / "x", "--calib", tmp_path / "none.txt", "--n-calib", 2, "--seq-len", 16), "none.txt")
    assert not (tmp_path / "x").exists()
