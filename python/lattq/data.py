"""Calibration text: plain text files, JSONL with a "text" field, or a Hugging Face dataset name.

``calibration_tokens(source, tokenizer, n, seq_len, seed)`` tokenises the whole text once (no special
tokens) and returns ``n`` distinct non-overlapping windows of ``seq_len`` tokens chosen at random
(seeded) from the token stream, as a LongTensor [n, seq_len].
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch


class CalibrationDataError(ValueError):
    pass


def load_text(source) -> str:
    """Text of a calibration source: a .txt file, a .jsonl/.json file of records with a "text" field,
    a list of strings, or ``"hf:NAME[:CONFIG[:SPLIT]]"`` / a dataset name (needs the `datasets` package)."""
    if isinstance(source, (list, tuple)):
        if not all(isinstance(s, str) for s in source):
            raise CalibrationDataError("a calibration list must contain strings")
        return "\n\n".join(source)
    if not isinstance(source, (str, os.PathLike)):
        raise CalibrationDataError(f"calibration source must be a path, a dataset name or a list of strings, got {type(source).__name__}")
    s = str(source)
    path = Path(s)
    if path.is_file():
        if path.suffix.lower() in (".jsonl", ".json"):
            texts = []
            with open(path, encoding="utf-8") as f:
                for ln, line in enumerate(f, 1):
                    line = line.strip()
                    if not line:
                        continue
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise CalibrationDataError(f"{path}:{ln}: not valid JSON ({exc.msg})") from None
                    if not isinstance(rec, dict) or not isinstance(rec.get("text"), str):
                        raise CalibrationDataError(f"{path}:{ln}: each JSONL record needs a string \"text\" field")
                    texts.append(rec["text"])
            return "\n\n".join(texts)
        return path.read_text(encoding="utf-8", errors="replace").replace("\r\n", "\n")
    if s.startswith("hf:") or (not path.exists() and path.suffix.lower() not in (".txt", ".jsonl", ".json", ".raw", ".text")):
        spec = s[3:] if s.startswith("hf:") else s
        parts = spec.split(":")
        name = parts[0]
        cfg = parts[1] if len(parts) > 1 and parts[1] else None
        split = parts[2] if len(parts) > 2 and parts[2] else "train"
        try:
            import datasets  # type: ignore
        except ImportError:
            raise CalibrationDataError(
                f"calibration source {s!r} is not a file; loading it as a Hugging Face dataset needs the `datasets` package (pip install datasets)"
            ) from None
        ds = datasets.load_dataset(name, cfg, split=split)
        if "text" not in ds.column_names:
            raise CalibrationDataError(f"dataset {name!r} has no 'text' column (columns: {ds.column_names})")
        return "\n\n".join(t for t in ds["text"] if t)
    raise CalibrationDataError(f"calibration file not found: {s}")


def tokenize_text(text: str, tokenizer) -> torch.Tensor:
    ids = tokenizer(text, add_special_tokens=False, return_attention_mask=False)["input_ids"]
    return torch.tensor(ids, dtype=torch.int64)


def calibration_tokens(source, tokenizer, n: int, seq_len: int, seed: int = 0) -> torch.Tensor:
    """LongTensor [n, seq_len] of non-overlapping token windows drawn (seeded) from ``source``."""
    if int(n) < 1 or int(seq_len) < 2:
        raise CalibrationDataError(f"n must be >= 1 and seq_len >= 2, got n={n}, seq_len={seq_len}")
    if isinstance(source, torch.Tensor):
        ids = source.reshape(-1).long()
    else:
        text = load_text(source)
        ids = tokenize_text(text, tokenizer)
    need = n * seq_len
    if ids.numel() < need:
        raise CalibrationDataError(
            f"calibration text is too short: {n} sequences of {seq_len} tokens need {need:,} tokens, "
            f"the text gives {ids.numel():,}; pass more text or lower n_calib/seq_len"
        )
    windows = ids.numel() // seq_len
    g = torch.Generator().manual_seed(int(seed))
    pick = torch.randperm(windows, generator=g)[:n]
    starts = pick * seq_len
    return torch.stack([ids[s : s + seq_len] for s in starts.tolist()])
