"""Perplexity and bits per byte: equal to exp of a mean cross-entropy computed independently (a plain loop of
F.cross_entropy, one target at a time, with the context the sliding window defines), every token scored once, and
bits per byte on hand-worked numbers."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F

from scratchllm.eval.perplexity import (
    PerplexityResult,
    bits_per_byte,
    evaluate_texts,
    perplexity,
    sliding_windows,
)
from scratchllm.model import GPT, GPTConfig
from scratchllm.model.loss import IGNORE_INDEX
from scratchllm.tokenizer import Tokenizer

WINDOW = 8
BYTES = Tokenizer([], special_tokens={"<|endoftext|>": 256})  # bytes are tokens: 257 ids, BOS = 256
CONFIG = GPTConfig(vocab_size=257, block_size=WINDOW, n_layer=1, n_head=2, d_model=32)
TEXTS = ["short", "a text longer than the window, by a few windows and then some", "", "naïve café ☕ über"]


def tiny_model(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT.build(CONFIG).eval()


def window_start(j: int, window: int, stride: int) -> int:
    """Where the window that scores target j (1-based, after BOS) begins: the first window, starting at a
    multiple of the stride, whose inputs reach position j - 1."""
    return stride * max(0, math.ceil((j - window) / stride))


@torch.no_grad()
def plain_nats(model: GPT, texts: list[str], window: int, stride: int) -> tuple[float, int]:
    total, count = 0.0, 0
    for text in texts:
        ids = [256, *text.encode("utf-8")]
        for j in range(1, len(ids)):
            start = window_start(j, window, stride)
            logits = model(torch.tensor([ids[start:j]]))[0, -1]  # (V,): the prediction for position j
            total += F.cross_entropy(logits[None], torch.tensor([ids[j]])).item()
            count += 1
    return total, count


@pytest.mark.parametrize("stride", [1, 3, WINDOW])
def test_perplexity_is_exp_of_an_independent_mean_cross_entropy(stride):
    model = tiny_model()
    got = evaluate_texts(model, BYTES, TEXTS, stride=stride, batch_size=3)
    total, count = plain_nats(model, TEXTS, WINDOW, stride)
    n_bytes = sum(len(t.encode("utf-8")) for t in TEXTS)
    assert got.tokens == count == n_bytes  # BOS is context only: one scored token per byte here
    assert got.bytes == n_bytes and got.documents == len(TEXTS)
    assert got.loss == pytest.approx(total / count, rel=1e-5)
    assert got.ppl == pytest.approx(math.exp(total / count), rel=1e-5)
    assert got.bpb == pytest.approx(total / math.log(2) / n_bytes, rel=1e-5)


def test_stride_equal_to_window_is_non_overlapping_chunks():
    ids = list(range(30))
    inputs, targets = ids[:-1], ids[1:]
    chunks = [(inputs[s : s + WINDOW], targets[s : s + WINDOW]) for s in range(0, len(inputs), WINDOW)]
    assert sliding_windows(ids, WINDOW, WINDOW) == chunks  # what the trainer's sequential windows cut


@pytest.mark.parametrize("stride", [1, 2, 5, WINDOW - 1, WINDOW])
@pytest.mark.parametrize("length", [1, 2, WINDOW, WINDOW + 1, 3 * WINDOW + 2])
def test_every_target_is_scored_exactly_once(stride, length):
    ids = list(range(100, 100 + length))
    scored = []
    for k, (inputs, targets) in enumerate(sliding_windows(ids, WINDOW, stride)):
        assert inputs == ids[k * stride : k * stride + len(inputs)] and len(inputs) <= WINDOW
        scored += [t for t in targets if t != IGNORE_INDEX]
        assert targets[-1] != IGNORE_INDEX  # every window scores something new
    assert scored == ids[1:]


def train_on_pattern(model: GPT, text: str, steps: int = 100) -> GPT:
    """A few steps on a pattern where two tokens of context are needed: in "aab" repeated, what follows an "a"
    depends on the token before it."""
    ids = torch.tensor(list(text.encode()))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        starts = torch.randint(0, len(ids) - WINDOW - 1, (16,), generator=gen)
        batch = torch.stack([ids[s : s + WINDOW + 1] for s in starts.tolist()])  # (16, WINDOW + 1)
        loss = model(batch[:, :-1], batch[:, 1:])
        loss.backward()
        opt.step()
        opt.zero_grad()
    return model.eval()


def test_a_small_stride_gives_more_context_and_a_lower_loss():
    text = "aab" * 40
    model = train_on_pattern(tiny_model(), text)
    chunks = evaluate_texts(model, BYTES, [text], stride=WINDOW)
    sliding = evaluate_texts(model, BYTES, [text], stride=1)
    assert sliding.tokens == chunks.tokens == len(text)
    assert sliding.loss < chunks.loss - 0.05  # each chunk's first targets see one or two tokens of context


def test_a_model_that_ignores_context_scores_the_same_with_any_stride():
    model = tiny_model()
    with torch.no_grad():
        model.blocks[0].attn.o_proj.weight.zero_()  # attention adds nothing: each position sees only its own token
    chunks = evaluate_texts(model, BYTES, TEXTS, stride=WINDOW)
    sliding = evaluate_texts(model, BYTES, TEXTS, stride=1)
    assert sliding.loss == pytest.approx(chunks.loss, rel=1e-6)


def test_a_uniform_model_has_the_vocabulary_as_perplexity():
    model = tiny_model()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()  # logits all zero: every one of the 257 ids gets probability 1/257
    got = evaluate_texts(model, BYTES, ["plain ascii", "more"])
    assert got.ppl == pytest.approx(257, rel=1e-5)
    assert got.bpb == pytest.approx(math.log2(257), rel=1e-5)  # one token per byte: log2(257) bits each


def test_bits_per_byte_on_hand_numbers():
    assert bits_per_byte(100 * math.log(2), 50) == pytest.approx(2.0)  # 100 bits over 50 bytes
    # 30 tokens at ln 4 nats each (perplexity 4, 2 bits a token) over 60 bytes: 60 bits / 60 bytes.
    result = PerplexityResult(nats=30 * math.log(4), tokens=30, bytes=60, documents=1, window=8, stride=8)
    assert result.loss == pytest.approx(math.log(4))
    assert result.ppl == pytest.approx(4.0)
    assert result.bpb == pytest.approx(1.0)
    assert bits_per_byte(result.loss, 60 / 30) == pytest.approx(result.bpb)  # per token: mean loss, bytes/token
    assert perplexity(1e6) == math.exp(700)  # reported, not an OverflowError


def test_padding_in_a_batch_changes_nothing():
    model = tiny_model()
    one = evaluate_texts(model, BYTES, TEXTS, stride=3, batch_size=1)
    many = evaluate_texts(model, BYTES, TEXTS, stride=3, batch_size=16)
    assert many.nats == pytest.approx(one.nats, rel=1e-5) and many.tokens == one.tokens


def test_bad_arguments_are_refused():
    model = tiny_model()
    with pytest.raises(ValueError, match="longer than the model's context"):
        evaluate_texts(model, BYTES, TEXTS, window=WINDOW + 1)
    with pytest.raises(ValueError, match="stride <= window"):
        evaluate_texts(model, BYTES, TEXTS, stride=WINDOW + 1)
    with pytest.raises(ValueError, match=re.escape("no <|endoftext|>")):
        evaluate_texts(model, Tokenizer([]), TEXTS)
    with pytest.raises(ValueError, match="nothing to score"):
        evaluate_texts(model, BYTES, ["", ""])
