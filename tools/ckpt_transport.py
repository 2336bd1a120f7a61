#!/usr/bin/env python3
"""Ship a 2-bit SmolLM2 lattq checkpoint to the device machine under its 64 MiB transfer limit.

The checkpoint keeps the token embedding in float32 (113 MB for SmolLM2-135M), which alone exceeds
what one device call can carry.  That embedding is, bit for bit, the dequantized Q8_0 tensor of the
model's GGUF file (30 MB).  ``split`` writes the checkpoint file without the embedding's bytes plus
the raw Q8_0 blocks (after checking that dequantizing them gives the stored tensor exactly);
``join`` (on the device, numpy only) puts the file back together and checks its sha256 against the
original, so what is loaded there is the very checkpoint saved here.

  python tools/ckpt_transport.py split CKPT_DIR MODEL.gguf OUT_DIR
  python tools/ckpt_transport.py join OUT_DIR CKPT_DIR
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import sys
from pathlib import Path

import numpy as np

EMBED = "model.embed_tokens.weight"
WEIGHTS = "model.safetensors"
Q8_0_BLOCK = 32  # values per block: float16 scale + 32 int8


def dequant_q8_0(raw: bytes, shape: tuple[int, ...]) -> np.ndarray:
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 2 + Q8_0_BLOCK)
    d = blocks[:, :2].copy().view(np.float16).astype(np.float32)
    q = blocks[:, 2:].copy().view(np.int8).astype(np.float32)
    return (d * q).reshape(shape)


def _header(path: Path) -> tuple[int, dict]:
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return n, json.loads(f.read(n))


def split(ckpt: Path, gguf_path: Path, out: Path) -> None:
    import gguf  # only needed here, where the model was quantized

    src = ckpt / WEIGHTS
    n, hdr = _header(src)
    info = hdr[EMBED]
    if info["dtype"] != "F32":
        raise SystemExit(f"{EMBED} is {info['dtype']}, expected F32")
    start, end = (8 + n + o for o in info["data_offsets"])
    tensors = {t.name: t for t in gguf.GGUFReader(str(gguf_path)).tensors}
    t = tensors["token_embd.weight"]
    if t.tensor_type.name != "Q8_0":
        raise SystemExit(f"token_embd.weight is {t.tensor_type.name}, expected Q8_0")
    raw = bytes(np.asarray(t.data).tobytes())
    blob = src.read_bytes()
    ref = np.frombuffer(blob[start:end], dtype=np.float32).reshape(info["shape"])
    if not np.array_equal(dequant_q8_0(raw, tuple(info["shape"])).view(np.uint32), ref.view(np.uint32)):
        raise SystemExit("the checkpoint's embedding is not the dequantized GGUF Q8_0 tensor bit for bit")
    out.mkdir(parents=True, exist_ok=True)
    (out / "weights.noembed").write_bytes(blob[:start] + blob[end:])
    (out / "embed.q8_0").write_bytes(raw)
    manifest = {"offset": start, "length": end - start, "shape": info["shape"], "sha256": hashlib.sha256(blob).hexdigest(),
                "files": sorted(p.name for p in ckpt.iterdir() if p.is_file() and p.name != WEIGHTS)}
    for name in manifest["files"]:
        shutil.copy2(ckpt / name, out / name)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    print(f"split {src}: {len(blob)} bytes -> {len(blob) - (end - start)} + {len(raw)} (Q8_0 embedding)")


def join(src: Path, ckpt: Path) -> None:
    m = json.loads((src / "manifest.json").read_text())
    rest = (src / "weights.noembed").read_bytes()
    emb = dequant_q8_0((src / "embed.q8_0").read_bytes(), tuple(m["shape"])).tobytes()
    if len(emb) != m["length"]:
        raise SystemExit(f"embedding is {len(emb)} bytes, manifest says {m['length']}")
    blob = rest[: m["offset"]] + emb + rest[m["offset"]:]
    got = hashlib.sha256(blob).hexdigest()
    if got != m["sha256"]:
        raise SystemExit(f"reassembled checkpoint sha256 {got} != {m['sha256']}")
    ckpt.mkdir(parents=True, exist_ok=True)
    for name in m["files"]:
        shutil.copy2(src / name, ckpt / name)
    (ckpt / WEIGHTS).write_bytes(blob)
    print(f"joined {ckpt / WEIGHTS}: {len(blob)} bytes, sha256 {got} (matches the original)")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "split":
        split(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))
    elif len(sys.argv) == 4 and sys.argv[1] == "join":
        join(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        raise SystemExit(__doc__)
