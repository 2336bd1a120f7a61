"""Strict, independent validation of a safetensors file's header before any tensor is read.

A safetensors file is ``u64 little-endian header length N`` + ``N bytes of JSON`` + a data section.
The JSON maps tensor names to ``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets relative
to the start of the data section) plus an optional ``"__metadata__"`` map of strings.

``read_header`` checks everything a forged or truncated file could get wrong -- header length beyond
the file, non-JSON, unknown dtype, negative or non-integer shapes, byte ranges that do not match
``numel * itemsize``, ranges past the end of the file (truncation), overlapping or gapped ranges --
and raises ``CheckpointError`` naming the file and the tensor.  It never unpickles and never executes
anything from the file.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import torch


class CheckpointError(ValueError):
    """A lattq checkpoint (or one of its files) is invalid; the message names the file / tensor."""


# safetensors dtype string -> (torch dtype, bytes per element)
ST_DTYPES: dict[str, tuple[torch.dtype, int]] = {
    "BOOL": (torch.bool, 1),
    "U8": (torch.uint8, 1),
    "I8": (torch.int8, 1),
    "I16": (torch.int16, 2),
    "U16": (torch.uint16, 2),
    "F16": (torch.float16, 2),
    "BF16": (torch.bfloat16, 2),
    "I32": (torch.int32, 4),
    "U32": (torch.uint32, 4),
    "F32": (torch.float32, 4),
    "F64": (torch.float64, 8),
    "I64": (torch.int64, 8),
    "U64": (torch.uint64, 8),
    "F8_E5M2": (torch.float8_e5m2, 1),
    "F8_E4M3": (torch.float8_e4m3fn, 1),
}
TORCH_TO_ST = {v[0]: k for k, v in ST_DTYPES.items()}

MAX_HEADER_BYTES = 100 * 1024 * 1024  # same bound as the reference implementation


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str  # safetensors dtype string
    shape: tuple[int, ...]
    begin: int
    end: int
    file: str

    @property
    def torch_dtype(self) -> torch.dtype:
        return ST_DTYPES[self.dtype][0]


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def read_header(path: str | os.PathLike) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """Parse and validate the header of the safetensors file ``path``.

    Returns ``(tensors, metadata)``.  Raises ``CheckpointError`` on any inconsistency.
    """
    p = Path(path)
    fname = p.name
    try:
        size = p.stat().st_size
        with open(p, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise CheckpointError(f"{fname}: file is {size} bytes, too short for a safetensors header (truncated?)")
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER_BYTES:
                raise CheckpointError(f"{fname}: header length {n} exceeds the {MAX_HEADER_BYTES}-byte limit (forged or corrupt)")
            if 8 + n > size:
                raise CheckpointError(f"{fname}: header length {n} runs past the end of the {size}-byte file (truncated?)")
            raw = f.read(n)
    except OSError as e:
        raise CheckpointError(f"{fname}: cannot read: {e}") from None
    if len(raw) != n:
        raise CheckpointError(f"{fname}: could only read {len(raw)} of {n} header bytes (truncated?)")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f"{fname}: header is not valid UTF-8 JSON: {e}") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{fname}: header must be a JSON object, got {type(header).__name__}")

    data_size = size - 8 - n
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise CheckpointError(f"{fname}: __metadata__ must be a map of strings to strings")

    tensors: dict[str, TensorInfo] = {}
    for name, ent in header.items():
        where = f"{fname}: tensor {name!r}"
        if not isinstance(ent, dict) or set(ent) != {"dtype", "shape", "data_offsets"}:
            raise CheckpointError(f"{where}: entry must have exactly dtype, shape, data_offsets")
        dt, shape, offs = ent["dtype"], ent["shape"], ent["data_offsets"]
        if dt not in ST_DTYPES:
            raise CheckpointError(f"{where}: unknown dtype {dt!r}")
        if not isinstance(shape, list) or not all(_is_int(s) and s >= 0 for s in shape):
            raise CheckpointError(f"{where}: shape must be a list of non-negative integers, got {shape!r}")
        if not (isinstance(offs, list) and len(offs) == 2 and all(_is_int(o) for o in offs)):
            raise CheckpointError(f"{where}: data_offsets must be two integers, got {offs!r}")
        begin, end = offs
        if begin < 0 or end < begin:
            raise CheckpointError(f"{where}: invalid data_offsets [{begin}, {end}]")
        nbytes = math.prod(shape) * ST_DTYPES[dt][1]
        if end - begin != nbytes:
            raise CheckpointError(
                f"{where}: data_offsets span {end - begin} bytes but dtype {dt} shape {shape} needs {nbytes}"
            )
        if end > data_size:
            raise CheckpointError(
                f"{where}: data ends at byte {end} of a {data_size}-byte data section (file truncated or offsets forged)"
            )
        tensors[name] = TensorInfo(name, dt, tuple(shape), begin, end, str(p))

    # ranges must tile the data section exactly: no overlap, no gap, no trailing bytes
    pos = 0
    for t in sorted(tensors.values(), key=lambda t: (t.begin, t.end)):
        if t.begin != pos:
            what = "overlaps the previous tensor" if t.begin < pos else f"leaves a gap of {t.begin - pos} bytes"
            raise CheckpointError(f"{fname}: tensor {t.name!r} at byte {t.begin} {what} (forged or corrupt)")
        pos = t.end
    if pos != data_size:
        raise CheckpointError(f"{fname}: data section has {data_size - pos} trailing bytes not covered by any tensor")
    return tensors, metadata
