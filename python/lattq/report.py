"""Report helpers shared by the CLI: JSON (atomic, strict), Markdown tables, the per-layer error plot,
and the environment summary."""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path


def _sanitize(obj):
    """JSON-safe copy: non-finite floats -> None, tuples -> lists, paths -> str, tensors -> lists."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _sanitize(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_sanitize(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist") and callable(obj.tolist):
        return _sanitize(obj.tolist())
    if hasattr(obj, "item") and callable(obj.item):
        return _sanitize(obj.item())
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    return str(obj)


def atomic_write(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same directory + rename."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent)
    try:
        with os.fdopen(fd, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        cur = os.umask(0o022)
        os.umask(cur)
        os.chmod(tmp, 0o666 & ~cur)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def to_json(obj) -> str:
    return json.dumps(_sanitize(obj), indent=2, allow_nan=False) + "\n"


def write_json(path, obj) -> Path:
    return atomic_write(path, to_json(obj))


def write_markdown(path, text: str) -> Path:
    return atomic_write(path, text if text.endswith("\n") else text + "\n")


def md_table(headers: list[str], rows: list[list]) -> str:
    def cell(v):
        if isinstance(v, float):
            if not math.isfinite(v):
                return "-"
            return f"{v:.4g}" if abs(v) < 1e5 else f"{v:,.0f}"
        return str(v).replace("|", "\\|").replace("\n", " ")

    out = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    out += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(out)


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def timestamp() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")


def git_revision() -> str | None:
    """Short git revision of the source checkout lattq runs from, else of the current directory
    (tools/main.sh runs the installed package from the repository root); None outside git."""
    for root in (Path(__file__).resolve().parents[2], Path.cwd()):
        try:
            r = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.SubprocessError):
            return None
        if r.returncode == 0 and r.stdout.strip():
            return r.stdout.strip()
    return None


def _version(mod: str) -> str | None:
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version(mod)
    except PackageNotFoundError:
        return None
    except Exception:  # noqa: BLE001
        return None


def env_info(probe_cuda: bool = True) -> dict:
    """Versions, native kernel availability, threads, devices."""
    import torch

    import lattq

    info = {
        "lattq": getattr(lattq, "__version__", None),
        "lattq_path": str(Path(lattq.__file__).parent),
        "git_revision": git_revision(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_cuda_build": torch.version.cuda,
        "native_available": lattq.native_available(),
        "cuda_kernels_compiled": lattq.cuda_kernels_available(),
        "native_status": lattq.native_status(),
        "packages": {p: _version(p) for p in ("transformers", "safetensors", "numpy", "tqdm", "gguf", "accelerate", "matplotlib", "tokenizers")},
    }
    try:
        from .io import register_hf

        info["transformers_quantizer_registered"] = bool(register_hf())
    except Exception as e:  # noqa: BLE001
        info["transformers_quantizer_registered"] = False
        info["transformers_quantizer_error"] = str(e)
    if probe_cuda:
        cuda = torch.cuda.is_available()
        info["cuda_available"] = cuda
        if cuda:
            info["cuda_devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


LAYER_KINDS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def plot_layer_errors(rows: list[dict], path, title: str = "per-layer relative error") -> Path | None:
    """PNG of ``rel_err`` per quantized layer in model order, one marker series per layer kind.

    Returns the path, or None when matplotlib is not installed (the caller reports that)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    pts = [(i, r["name"], r.get("rel_err")) for i, r in enumerate(rows)]
    pts = [(i, n, e) for i, n, e in pts if isinstance(e, (int, float)) and math.isfinite(e) and e > 0]
    fig, ax = plt.subplots(figsize=(11, 4.5), dpi=110)
    kinds = {}
    for i, name, e in pts:
        kind = next((k for k in LAYER_KINDS if name.endswith(k)), "other")
        kinds.setdefault(kind, []).append((i, e))
    for kind in list(LAYER_KINDS) + ["other"]:
        if kind in kinds:
            xs, ys = zip(*kinds[kind])
            ax.plot(xs, ys, "o", ms=3.5, label=kind)
    if pts:
        ax.set_yscale("log")
    ax.set_xlabel("quantized layer (model order)")
    ax.set_ylabel("relative error  tr(E H Eᵀ) / tr(W H Wᵀ)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    if kinds:
        ax.legend(ncol=4, fontsize=8)
    fig.tight_layout()
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, p)
    return p
