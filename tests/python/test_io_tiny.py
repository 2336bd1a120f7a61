"""Tiny real Hugging Face models for the checkpoint / transformers / CLI / eval tests (helpers, no tests).

``tiny_tokenizer()`` trains a small byte-level BPE tokenizer on a fixed text (fast, offline);
``tiny_llama()`` is a 2-block LlamaForCausalLM with random weights; ``quantize_rtn(model)`` replaces
every decoder linear by ``LatticeLinear.from_float`` (round to nearest, no calibration), with the
scale formats cycling through all four storage formats so that every format is exercised.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch

WORDS = (
    "the of and to in is was for on as with by at from his her that it an are were which this be or has had "
    "river city music game film season team album song war church school year first new two later time"
).split()


def tiny_text(n_words: int = 6000, seed: int = 0) -> str:
    rng = random.Random(seed)
    lines = []
    for i in range(n_words // 12):
        lines.append(" ".join(rng.choice(WORDS) for _ in range(12)) + " .")
        if i % 7 == 6:
            lines.append("")
            lines.append(f" = Heading {i} = ")
            lines.append("")
    return "\n".join(lines) + "\n"


def tiny_tokenizer():
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    tk = ByteLevelBPETokenizer()
    tk.train_from_iterator([tiny_text(3000, seed=1)], vocab_size=300, min_frequency=1, special_tokens=["<s>", "</s>", "<pad>"], show_progress=False)
    tok = PreTrainedTokenizerFast(tokenizer_object=tk._tokenizer, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    return tok


def tiny_llama(vocab_size: int = 300, seed: int = 0, hidden: int = 64, inter: int = 128, layers: int = 2, tie: bool = True, bias: bool = False):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=tie,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=2,
        attention_bias=bias,
        mlp_bias=bias,
    )
    return LlamaForCausalLM(cfg).eval()


FORMATS = ("f32", "f16", "q8", "sign")


def quantize_rtn(model, seed: int = 0):
    """Replace every decoder linear by LatticeLinear.from_float (formats cycle over all four)."""
    from lattq.nn import LatticeLinear

    i = 0
    for li, layer in enumerate(model.model.layers):
        for parent in (layer.self_attn, layer.mlp):
            for name, child in list(parent.named_children()):
                if isinstance(child, torch.nn.Linear):
                    q = LatticeLinear.from_float(
                        child, seed=seed + i, su_format=FORMATS[i % 4], sv_format=FORMATS[(i + 1) % 4],
                        a_init="orthogonal" if i % 2 else "identity",
                    )
                    setattr(parent, name, q)
                    i += 1
    return model


def save_tiny_hf(dirpath: Path, seed: int = 0):
    """A tiny full-precision HF model directory (model + tokenizer)."""
    tok = tiny_tokenizer()
    model = tiny_llama(vocab_size=len(tok), seed=seed)
    model.save_pretrained(str(dirpath))
    tok.save_pretrained(str(dirpath))
    return dirpath
