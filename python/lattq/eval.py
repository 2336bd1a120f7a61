"""Evaluation: perplexity under lattq's fixed protocol, and greedy generation.

Perplexity protocol (DESIGN.md §6), implemented exactly:

1. read the text file (UTF-8), replace ``"\\r\\n"`` by ``"\\n"``;
2. keep the non-empty lines (a line is empty when it holds only whitespace) and join them with
   ``"\\n\\n"``;
3. tokenize the whole string without special tokens;
4. cut the token stream into non-overlapping windows of ``ctx`` tokens, keeping all full windows (the
   tail shorter than ``ctx`` is dropped);
5. each window is one forward pass; it scores its last ``ctx - 1`` tokens (token ``t`` predicted from
   tokens ``0..t-1`` of the same window);
6. perplexity = exp(mean negative log-likelihood over all scored tokens).

On WikiText-2 raw test with the SmolLM2 tokenizer this gives 147 windows and 300,909 scored tokens.
``max_windows=W`` evaluates the first ``W`` windows only (same protocol, a fixed subset); the result
says so (``windows`` < ``total_windows``).
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

try:
    from tqdm.auto import tqdm
except ImportError:  # pragma: no cover
    tqdm = None


def repo_root() -> Path:
    """The repository root (parent of python/) when lattq runs from a source checkout."""
    return Path(__file__).resolve().parents[2]


def data_candidates(rel: str) -> list[Path]:
    """Where a shared data file ``rel`` (e.g. "wikitext-2-raw/wiki.test.raw") is looked for, in order:
    ``$LATTQ_DATA_DIR/rel``; ``../shared/data/rel`` relative to the current directory (the repository
    root when run by tools/main.sh, also for an installed lattq); the same relative to the source checkout
    lattq is imported from."""
    out = []
    env = os.environ.get("LATTQ_DATA_DIR")
    if env:
        out.append(Path(env).expanduser() / rel)
    out.append(Path.cwd().resolve().parent / "shared" / "data" / rel)
    out.append(repo_root().parent / "shared" / "data" / rel)
    seen, uniq = set(), []
    for p in out:
        if p not in seen:
            seen.add(p)
            uniq.append(p)
    return uniq


def find_data(rel: str) -> Path:
    """The first existing candidate of ``data_candidates(rel)``, else the first candidate (callers
    report it missing, listing ``data_candidates``)."""
    cands = data_candidates(rel)
    for p in cands:
        if p.is_file():
            return p
    return cands[0]


def default_eval_text() -> Path:
    """WikiText-2 raw test split: ``../shared/data/wikitext-2-raw/wiki.test.raw`` (see ``data_candidates``)."""
    return find_data("wikitext-2-raw/wiki.test.raw")


def default_calib_text() -> Path:
    """WikiText-2 validation split (never the test split): ``../shared/data/wikitext-2/valid.txt``."""
    return find_data("wikitext-2/valid.txt")


def prepare_text(raw: str) -> str:
    """Steps 1-2 of the protocol: CRLF -> LF, join the non-empty lines with a blank line."""
    text = raw.replace("\r\n", "\n")
    return "\n\n".join(line for line in text.split("\n") if line.strip())


def tokenize_text(tokenizer, text: str) -> torch.Tensor:
    """Step 3: the whole string, no special tokens, as int64 [T]."""
    enc = tokenizer(text, add_special_tokens=False, return_attention_mask=False, verbose=False)
    ids = enc["input_ids"]
    if not isinstance(ids, list) or (ids and not isinstance(ids[0], int)):
        raise ValueError("tokenizer did not return a flat list of token ids for a single string")
    return torch.tensor(ids, dtype=torch.int64)


def make_windows(ids: torch.Tensor, ctx: int) -> torch.Tensor:
    """Step 4: all full non-overlapping windows of ``ctx`` tokens, int64 [W, ctx]."""
    if ctx < 2:
        raise ValueError(f"ctx must be at least 2 (a window scores its last ctx-1 tokens), got {ctx}")
    if ids.dim() != 1:
        raise ValueError(f"ids must be a 1-D token stream, got shape {tuple(ids.shape)}")
    w = ids.numel() // ctx
    return ids[: w * ctx].reshape(w, ctx)


@dataclass
class PerplexityResult:
    ppl: float
    nll_sum: float
    tokens: int  # scored tokens
    windows: int  # evaluated windows
    total_windows: int  # full windows in the text
    ctx: int
    seconds: float
    text: str = ""
    text_sha256: str = ""
    subset: bool = False
    per_window_nll: list = field(default_factory=list)

    @property
    def mean_nll(self) -> float:
        return self.nll_sum / self.tokens

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean_nll"] = self.mean_nll
        d["protocol"] = (
            "CRLF->LF; non-empty lines joined by blank line; no special tokens; non-overlapping "
            f"{self.ctx}-token windows; each scores its last {self.ctx - 1} tokens; ppl=exp(mean NLL)"
            + (f"; FIRST {self.windows} OF {self.total_windows} WINDOWS" if self.subset else "")
        )
        return d


def _model_device(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover
        return torch.device("cpu")


@torch.no_grad()
def window_nll(model, batch: torch.Tensor) -> torch.Tensor:
    """Summed NLL (float64) of tokens 1..ctx-1 of each window in ``batch`` [B, ctx] -> [B]."""
    out = model(input_ids=batch, use_cache=False)
    logits = out.logits if hasattr(out, "logits") else out[0]
    logits = logits[:, :-1, :].float()
    targets = batch[:, 1:]
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
    return nll.reshape(batch.shape[0], -1).double().sum(dim=1)


@torch.no_grad()
def perplexity(
    model,
    tokenizer,
    text_path: str | Path | None = None,
    ctx: int = 2048,
    max_windows: int | None = None,
    batch_size: int = 1,
    device: str | torch.device | None = None,
    progress: bool = True,
    desc: str = "perplexity",
) -> PerplexityResult:
    """Perplexity of ``model`` on ``text_path`` under the fixed protocol (module docstring)."""
    path = Path(text_path) if text_path is not None else default_eval_text()
    if not path.is_file():
        raise FileNotFoundError(f"evaluation text {str(path)!r} does not exist")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if max_windows is not None and max_windows < 1:
        raise ValueError(f"max_windows must be >= 1 or None, got {max_windows}")
    raw_bytes = path.read_bytes()
    sha = hashlib.sha256(raw_bytes).hexdigest()
    try:
        raw = raw_bytes.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"evaluation text {str(path)!r} is not valid UTF-8: {e}") from None
    ids = tokenize_text(tokenizer, prepare_text(raw))
    all_windows = make_windows(ids, ctx)
    total = all_windows.shape[0]
    if total == 0:
        raise ValueError(f"evaluation text {str(path)!r} has {ids.numel()} tokens, fewer than one window of ctx={ctx}")
    windows = all_windows if max_windows is None else all_windows[:max_windows]
    dev = torch.device(device) if device is not None else _model_device(model)
    was_training = model.training
    model.eval()
    per_window: list[float] = []
    t0 = time.perf_counter()
    bar = tqdm(total=windows.shape[0], desc=desc, unit="win", disable=not progress) if tqdm else None
    try:
        for i in range(0, windows.shape[0], batch_size):
            batch = windows[i : i + batch_size].to(dev)
            nll = window_nll(model, batch)
            if not bool(torch.isfinite(nll).all()):
                raise FloatingPointError(f"non-finite NLL in window(s) {i}..{i + batch.shape[0] - 1}")
            per_window.extend(nll.cpu().tolist())
            if bar is not None:
                bar.update(batch.shape[0])
                bar.set_postfix(ppl=f"{math.exp(sum(per_window) / (len(per_window) * (ctx - 1))):.3f}")
    finally:
        if bar is not None:
            bar.close()
        if was_training:
            model.train()
    seconds = time.perf_counter() - t0
    n_scored = len(per_window) * (ctx - 1)
    nll_sum = math.fsum(per_window)
    return PerplexityResult(
        ppl=math.exp(nll_sum / n_scored),
        nll_sum=nll_sum,
        tokens=n_scored,
        windows=len(per_window),
        total_windows=total,
        ctx=ctx,
        seconds=seconds,
        text=str(path),
        text_sha256=sha,
        subset=len(per_window) < total,
        per_window_nll=per_window,
    )


@torch.no_grad()
def generate(
    model,
    tokenizer,
    prompts: list[str] | str,
    max_new_tokens: int = 32,
    chat: bool = False,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> list[dict]:
    """Greedy generation, one prompt at a time (no padding).  ``chat=True`` applies the chat template.

    Returns a list of {prompt, completion, new_tokens, seconds}.
    """
    if isinstance(prompts, str):
        prompts = [prompts]
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    dev = torch.device(device) if device is not None else _model_device(model)
    model.eval()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out = []
    it = prompts
    if tqdm is not None and progress and len(prompts) > 1:
        it = tqdm(prompts, desc="generate", unit="prompt")
    for p in it:
        if chat and getattr(tokenizer, "chat_template", None):
            text = tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
            ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        else:
            ids = tokenizer(p, return_tensors="pt")["input_ids"]
        ids = ids.to(dev)
        t0 = time.perf_counter()
        gen = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            do_sample=False,
            max_new_tokens=max_new_tokens,
            pad_token_id=pad,
        )
        dt = time.perf_counter() - t0
        new = gen[0, ids.shape[1] :]
        out.append(
            {
                "prompt": p,
                "completion": tokenizer.decode(new, skip_special_tokens=True),
                "new_tokens": int(new.numel()),
                "seconds": dt,
            }
        )
    return out
