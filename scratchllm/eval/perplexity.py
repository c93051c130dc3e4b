"""Cross-entropy, perplexity and bits per byte of a language model on text (docs/05-evaluation.md).

A model that gives the true next token probability p pays -ln p nats for it. Averaged over N scored tokens, that is
the cross-entropy L (what training minimizes); perplexity is e^L, the size of a uniform choice that would be as
uncertain; bits per byte is the same total cost in bits spread over the UTF-8 bytes of the text:

    bpb = (sum of -ln p over the tokens) / ln 2 / (bytes of the text)

Tokens are the tokenizer's unit, so per-token loss and perplexity compare only models that share a tokenizer;
bytes do not depend on the tokenizer, so bits per byte compares any two models on the same text.

Documents longer than the context are scored with a sliding window (Hugging Face's "Perplexity of fixed-length
models"): windows of ``window`` input tokens start every ``stride`` tokens, and each window scores only the targets
the previous one did not, with the tokens before them as context (the others are set to -100, ignored). Every
target is scored exactly once; ``stride == window`` is plain non-overlapping chunks, and a smaller stride gives each
scored token more context (a lower, truer loss) for window / stride times the compute.

BOS: each document is encoded as ``[BOS] + encode(text)``, as the training shards store it (data/tokenize.py).
BOS is context only, never a target: the first token after it is scored, so every token of the text is predicted
and nothing else is. (In the shards the next document's BOS also follows each document, and the trainer's running
evaluation scores it as an end-of-document prediction; here a text is scored on its own.)

``score_windows`` is the shared core: the trainer's evaluation every N steps (train/trainer.py) sums its
validation windows through it, and ``evaluate_texts`` here does the same over windows cut from raw text.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch

from ..model.loss import IGNORE_INDEX

# The special token that begins every document in the training shards (the same string as data/tokenize.py's BOS).
BOS = "<|endoftext|>"
# exp overflows a float beyond ~709 nats; a model that bad is reported at e^700 rather than crashing the report.
MAX_LOG_PERPLEXITY = 700.0


@torch.no_grad()
def score_windows(model, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> tuple[float, int]:
    """(sum of cross-entropy in nats, number of scored targets) over (inputs, targets) batches, each (B, T) int64
    with -100 marking targets not to score. The model runs in eval mode (no dropout) and is put back as it was."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    try:
        for inputs, targets in batches:
            inputs, targets = inputs.to(device), targets.to(device)  # (B, T), (B, T)
            total += float(model(inputs, targets, reduction="sum"))
            count += int((targets != IGNORE_INDEX).sum())
    finally:
        model.train(was_training)
    return total, count


def perplexity(mean_nats: float) -> float:
    """e to the mean cross-entropy (nats per token)."""
    return math.exp(min(mean_nats, MAX_LOG_PERPLEXITY))


def bits_per_byte(nats: float, n_bytes: float) -> float:
    """Nats over some tokens -> bits per byte of the text they encode: ``nats / ln 2 / n_bytes``. Also per token:
    ``bits_per_byte(mean loss, bytes per token)``."""
    return nats / math.log(2) / n_bytes


def sliding_windows(ids: Sequence[int], window: int, stride: int) -> list[tuple[list[int], list[int]]]:
    """(inputs, targets) for one tokenized document ``ids``: inputs are ``ids[start : start + window]``, targets the
    next tokens, with those already scored by an earlier window set to -100. ``ids[0]`` is context only."""
    if window < 1 or not 1 <= stride <= window:
        raise ValueError(f"need 1 <= stride <= window, got window={window}, stride={stride}")
    out = []
    last = len(ids) - 1  # index of the last target; targets are ids[1..last]
    scored = 0  # every target up to this index has been scored
    start = 0
    while scored < last:
        end = min(start + window, last)  # inputs ids[start:end] predict targets ids[start+1 : end+1]
        targets = list(ids[start + 1 : end + 1])
        seen = scored - start  # targets scored by earlier windows; stride <= window keeps this >= 0
        targets[:seen] = [IGNORE_INDEX] * seen
        out.append((list(ids[start:end]), targets))
        scored, start = end, start + stride
    return out


def batch_windows(
    windows: Iterable[tuple[list[int], list[int]]], batch_size: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Stack windows into (B, T) batches, right-padded to the longest: padding comes after every real token, so a
    causal model's predictions for the real ones are unchanged, and its targets are -100 (not scored)."""
    chunk: list[tuple[list[int], list[int]]] = []
    for pair in windows:
        chunk.append(pair)
        if len(chunk) == batch_size:
            yield _stack(chunk)
            chunk = []
    if chunk:
        yield _stack(chunk)


def _stack(chunk: list[tuple[list[int], list[int]]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(inputs) for inputs, _ in chunk)
    inputs = torch.zeros(len(chunk), width, dtype=torch.long)  # (B, T); pad id 0 is never scored
    targets = torch.full((len(chunk), width), IGNORE_INDEX, dtype=torch.long)  # (B, T)
    for row, (x, y) in enumerate(chunk):
        inputs[row, : len(x)] = torch.tensor(x)
        targets[row, : len(y)] = torch.tensor(y)
    return inputs, targets


@dataclass
class PerplexityResult:
    """The totals of an evaluation and the metrics derived from them."""

    nats: float  # summed cross-entropy of every scored token
    tokens: int  # scored tokens (BOS excluded)
    bytes: int  # UTF-8 bytes of the texts
    documents: int
    window: int
    stride: int

    @property
    def loss(self) -> float:
        """Mean cross-entropy, nats per token."""
        return self.nats / self.tokens

    @property
    def ppl(self) -> float:
        return perplexity(self.loss)

    @property
    def bpb(self) -> float:
        return bits_per_byte(self.nats, self.bytes)

    def to_dict(self) -> dict:
        return {
            "loss": self.loss, "ppl": self.ppl, "bpb": self.bpb, "tokens": self.tokens, "bytes": self.bytes,
            "documents": self.documents, "window": self.window, "stride": self.stride,
        }  # fmt: skip


def encode_document(tokenizer, text: str) -> list[int]:
    """``[BOS] + ids`` as the shards store a document; special-token strings inside the text are plain text."""
    if BOS not in tokenizer.special_tokens:
        raise ValueError(f"the tokenizer has no {BOS} special token to begin documents with; use the model's own")
    return [tokenizer.special_tokens[BOS], *tokenizer.encode(text, disallowed_special=())]


def evaluate_texts(
    model,
    tokenizer,
    texts: Iterable[str],
    window: int | None = None,
    stride: int | None = None,
    batch_size: int = 8,
) -> PerplexityResult:
    """Cross-entropy, perplexity and bits per byte of ``model`` on ``texts``, each scored as its own document.

    ``window``: input tokens per forward pass (default and maximum: the model's context). ``stride``: how far the
    window moves (default ``window``: non-overlapping chunks, as the trainer's evaluation; smaller is more accurate
    and costs window / stride times more)."""
    context = model.config.block_size
    window = window or context
    stride = stride or window
    if window > context:
        raise ValueError(f"window={window} is longer than the model's context of {context} tokens")
    counts = {"bytes": 0, "documents": 0}

    def windows() -> Iterator[tuple[list[int], list[int]]]:  # counts bytes as the texts stream past
        for text in texts:
            counts["bytes"] += len(text.encode("utf-8", "surrogateescape"))
            counts["documents"] += 1
            yield from sliding_windows(encode_document(tokenizer, text), window, stride)

    nats, tokens = score_windows(model, batch_windows(windows(), batch_size))
    if tokens == 0:
        raise ValueError(f"nothing to score: the {counts['documents']} texts are empty")
    return PerplexityResult(nats, tokens, counts["bytes"], counts["documents"], window, stride)
