"""transformers integration: AutoModelForCausalLM.from_pretrained / save_pretrained on lattq checkpoints.

Tolerance: bit-exact (the same LatticeLinear parameters must give identical logits).
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

from test_io_tiny import quantize_rtn, tiny_llama  # noqa: E402

import lattq  # noqa: E402
import lattq.io  # noqa: E402
from lattq.io import CheckpointError, save_quantized, validate_checkpoint  # noqa: E402
from lattq.nn import LatticeLinear  # noqa: E402



@pytest.fixture(scope="module")
def _base(tmp_path_factory):
    from conftest import SEED

    lattq.io.register_hf()
    m = quantize_rtn(tiny_llama(seed=SEED % 991), seed=SEED % 991)
    path = save_quantized(m, tmp_path_factory.mktemp("hf") / "ck")
    return m, path


@pytest.fixture
def qmodel(_base):
    return copy.deepcopy(_base[0])


@pytest.fixture
def ckpt(tmp_path, _base):
    return Path(shutil.copytree(_base[1], tmp_path / "ck"))


def _x(seed):
    return torch.randint(3, 300, (2, 20), generator=torch.Generator().manual_seed(seed))


def _same_lattice_params(a, b):
    qa = {n: m for n, m in a.named_modules() if isinstance(m, LatticeLinear)}
    qb = {n: m for n, m in b.named_modules() if isinstance(m, LatticeLinear)}
    assert list(qa) == list(qb) and qa
    for n in qa:
        for t in ("codes", "A", "b", "su", "sv"):
            assert torch.equal(getattr(qa[n], t), getattr(qb[n], t)), f"{n}.{t}"
        assert (qa[n].su_format, qa[n].sv_format, qa[n].desc) == (qb[n].su_format, qb[n].sv_format, qb[n].desc)


def test_registered_with_transformers():
    from transformers.quantizers.auto import AUTO_QUANTIZATION_CONFIG_MAPPING, AUTO_QUANTIZER_MAPPING

    lattq.io.register_hf()
    lattq.io.register_hf()  # idempotent
    assert AUTO_QUANTIZER_MAPPING["lattq"].__name__ == "LattqHfQuantizer"
    assert AUTO_QUANTIZATION_CONFIG_MAPPING["lattq"].__name__ == "LattqHfConfig"


def _fresh(code: str, *args) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(Path(lattq.__file__).resolve().parents[1]), "PATH": "/usr/bin:/bin"}  # the lattq under test
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=env, timeout=300)


LOAD_AFTER_IMPORT = (
    "import sys\n"
    "{setup}\n"
    "print('transformers imported by lattq:', 'transformers' in sys.modules)\n"
    "from transformers import AutoModelForCausalLM\n"
    "m = AutoModelForCausalLM.from_pretrained(sys.argv[1])\n"
    "print(type(m.model.layers[0].self_attn.q_proj).__name__)\n"
)


def test_lazy_registration_hook(ckpt):
    """install_hf_registration() does not import transformers, yet from_pretrained then builds LatticeLinear."""
    r = _fresh(LOAD_AFTER_IMPORT.format(setup="import lattq.io; lattq.io.install_hf_registration()"), ckpt)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-2:] == ["transformers imported by lattq: False", "LatticeLinear"]
    # transformers' registry already imported: registration happens at once
    r = _fresh("import transformers.modeling_utils\n" + LOAD_AFTER_IMPORT.format(setup="import lattq.io; lattq.io.install_hf_registration()"), ckpt)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "LatticeLinear"


def test_import_lattq_registers_quantizer(ckpt):
    """`import lattq` alone (fresh interpreter) makes from_pretrained understand quant_method "lattq"."""
    r = _fresh(LOAD_AFTER_IMPORT.format(setup="import lattq"), ckpt)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "LatticeLinear", "import lattq does not register the transformers quantizer"


def test_importing_lattq_io_hf_first_still_registers(ckpt):
    """`import lattq, lattq.io.hf` before transformers: the module import itself loads transformers'
    registry (the lazy hook must not try to register from the half-imported module)."""
    r = _fresh(LOAD_AFTER_IMPORT.format(setup="import warnings; warnings.simplefilter('error', RuntimeWarning)\nimport lattq, lattq.io.hf"), ckpt)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "LatticeLinear"


def test_from_pretrained_builds_lattice_linear(ckpt, qmodel, seed):
    from transformers import AutoModelForCausalLM

    x = _x(seed)
    with torch.no_grad():
        ref = qmodel(x).logits
    m = AutoModelForCausalLM.from_pretrained(str(ckpt))
    assert isinstance(m.model.layers[1].mlp.down_proj, LatticeLinear)
    assert not any(isinstance(mod, torch.nn.Linear) and n != "lm_head" for n, mod in m.named_modules() if n.startswith("model.layers"))
    _same_lattice_params(qmodel, m)
    # loading groups q/k/v and gate/up (lattq.group_projections): the same logits (on the CPU the group runs the same
    # kernels one by one), and the same after ungrouping
    grouped = [n for n, mod in m.named_modules() if isinstance(mod, LatticeLinear) and "_lattq_shared" in mod.__dict__]
    assert len(grouped) == 10 and all(n.rsplit(".", 1)[1] in ("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj") for n in grouped)
    with torch.no_grad():
        assert torch.equal(m(x).logits, ref)
        assert lattq.ungroup_projections(m) == 10
        assert torch.equal(m(x).logits, ref)
    qc = m.config.quantization_config
    assert qc.quant_method == "lattq" and qc.format_version == 1 and len(qc.layers) == 14


def test_from_pretrained_bfloat16_keeps_lattice_params_float32(ckpt):
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(str(ckpt), dtype=torch.bfloat16)
    assert m.model.embed_tokens.weight.dtype == torch.bfloat16
    q = m.model.layers[0].self_attn.q_proj
    assert q.A.dtype == torch.float32 and q.su.dtype == torch.float32 and q.codes.dtype == torch.uint8
    with torch.no_grad():
        out = m(_x(1)).logits
    assert torch.isfinite(out.float()).all()


def test_save_pretrained_roundtrip(ckpt, tmp_path, qmodel, seed):
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(str(ckpt))
    out = tmp_path / "resaved"
    m.save_pretrained(str(out))
    cfg, tensors = validate_checkpoint(out)  # a valid lattq checkpoint by our own validator
    assert cfg["quantization_config"]["layers"] == json.loads((ckpt / "config.json").read_text())["quantization_config"]["layers"]
    m2 = lattq.io.load_quantized(out)
    _same_lattice_params(qmodel, m2)
    x = _x(seed)
    with torch.no_grad():
        assert torch.equal(m2(x).logits, qmodel(x).logits)


def test_attach_then_save_pretrained(qmodel, tmp_path, seed):
    """A model quantized in this process: attach_hf_quantizer makes save_pretrained write a lattq checkpoint."""
    from transformers import AutoModelForCausalLM

    lattq.io.attach_hf_quantizer(qmodel, config={"method": "test"})
    out = tmp_path / "sp"
    qmodel.save_pretrained(str(out))
    cfg, _ = validate_checkpoint(out)
    assert cfg["quantization_config"]["config"] == {"method": "test"}
    m = AutoModelForCausalLM.from_pretrained(str(out))
    x = _x(seed)
    with torch.no_grad():
        assert torch.equal(m(x).logits, qmodel(x).logits)


def test_from_pretrained_rejects_forged_layer_tensor(ckpt):
    """A header whose dtype for codes is wrong is refused by the quantizer before any weight is read."""
    import struct

    from transformers import AutoModelForCausalLM

    f = ckpt / "model.safetensors"
    b = f.read_bytes()
    (n,) = struct.unpack("<Q", b[:8])
    header = json.loads(b[8 : 8 + n])
    key = next(k for k in header if k.endswith(".codes"))
    header[key]["dtype"] = "I8"
    h = json.dumps(header).encode()
    h += b" " * ((-len(h)) % 8)
    f.write_bytes(struct.pack("<Q", len(h)) + h + b[8 + n :])
    with pytest.raises(CheckpointError, match="dtype I8, expected U8"):
        AutoModelForCausalLM.from_pretrained(str(ckpt))


def test_from_pretrained_rejects_unknown_format_version(ckpt):
    from transformers import AutoModelForCausalLM

    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["quantization_config"]["format_version"] = 99
    (ckpt / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="format_version=99"):
        AutoModelForCausalLM.from_pretrained(str(ckpt))


def test_from_pretrained_rejects_bias_mismatch(ckpt):
    from transformers import AutoModelForCausalLM

    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["attention_bias"] = True  # the architecture now has biased q/k/v/o, the checkpoint does not
    (ckpt / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="bias"):
        AutoModelForCausalLM.from_pretrained(str(ckpt))


def test_quantizer_refuses_on_the_fly_quantization():
    """from_pretrained(quantization_config=LattqHfConfig(...)) on a float model: lattq needs calibration data."""
    from lattq.io.hf import LattqHfConfig, LattqHfQuantizer

    ent = {"bits": 2, "dim": 4, "n": 128, "k": 64, "had_in": 64, "had_out": 128, "su_format": "f32", "sv_format": "f32", "bias": False}
    cfg = LattqHfConfig(layers={"model.layers.0.mlp.up_proj": ent})
    with pytest.raises(ValueError, match="pre-quantized"):
        LattqHfQuantizer(cfg, pre_quantized=False)


def test_hf_config_roundtrip_and_validation():
    from lattq.io.hf import LattqHfConfig

    ent = {"bits": 2, "dim": 4, "n": 8, "k": 16, "had_in": 16, "had_out": 8, "su_format": "sign", "sv_format": "q8", "bias": False}
    c = LattqHfConfig(layers={"a.b": ent}, config={"seed": 1})
    d = c.to_dict()
    assert d == {"quant_method": "lattq", "format_version": 1, "layers": {"a.b": ent}, "config": {"seed": 1}}
    c2 = LattqHfConfig.from_dict(d)
    assert c2.to_dict() == d
    with pytest.raises(CheckpointError, match="format_version=7"):
        LattqHfConfig(format_version=7, layers={"a.b": ent})
    with pytest.raises(CheckpointError, match="k=15"):
        LattqHfConfig(layers={"a.b": {**ent, "k": 15}})
