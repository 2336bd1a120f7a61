"""Tests of lattq.data (calibration text loading and tokenisation into seeded windows)."""

from __future__ import annotations

import json

import pytest
import torch

from lattq.data import CalibrationDataError, calibration_tokens, load_text


class CharTokenizer:
    """Independent toy tokenizer: one id per character (ord), so windows can be checked against the text."""

    def __call__(self, text, add_special_tokens=False, return_attention_mask=False):
        assert add_special_tokens is False
        return {"input_ids": [ord(c) for c in text]}


def test_plain_text_windows_are_distinct_non_overlapping_slices(tmp_path):
    text = "".join(chr(65 + (i * 7) % 26) for i in range(1000))
    p = tmp_path / "calib.txt"
    p.write_text(text)
    t = calibration_tokens(p, CharTokenizer(), n=5, seq_len=100, seed=3)
    assert t.shape == (5, 100) and t.dtype == torch.int64
    ids = torch.tensor([ord(c) for c in text])
    starts = []
    for row in t:
        # each row is exactly one aligned window of the token stream
        hits = [s for s in range(0, 1000, 100) if torch.equal(ids[s : s + 100], row)]
        assert hits
        starts.append(hits[0])
    assert len(set(starts)) == 5
    assert torch.equal(t, calibration_tokens(p, CharTokenizer(), n=5, seq_len=100, seed=3))  # seeded
    assert not torch.equal(t, calibration_tokens(p, CharTokenizer(), n=5, seq_len=100, seed=4))


def test_jsonl_text_field(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text("\n".join(json.dumps({"text": s, "id": i}) for i, s in enumerate(["abc", "def"])) + "\n")
    assert load_text(p) == "abc\n\ndef"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"txt": "x"}\n')
    with pytest.raises(CalibrationDataError, match="bad.jsonl:1.*\"text\""):
        load_text(bad)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": \n')
    with pytest.raises(CalibrationDataError, match="not valid JSON"):
        load_text(broken)


def test_too_little_text_says_how_much_is_needed(tmp_path):
    p = tmp_path / "short.txt"
    p.write_text("x" * 999)
    with pytest.raises(CalibrationDataError, match=r"need 1,000 tokens, the text gives 999"):
        calibration_tokens(p, CharTokenizer(), n=10, seq_len=100)


def test_missing_file_and_bad_arguments(tmp_path):
    with pytest.raises(CalibrationDataError, match="not found"):
        load_text(tmp_path / "nope.txt")
    with pytest.raises(CalibrationDataError, match="seq_len"):
        calibration_tokens(["abc"], CharTokenizer(), n=1, seq_len=1)
    with pytest.raises(CalibrationDataError, match="path, a dataset name or a list"):
        load_text(42)


def test_crlf_normalised(tmp_path):
    p = tmp_path / "crlf.txt"
    p.write_bytes(b"a\r\nb\r\n")
    assert load_text(p) == "a\nb\n"
