"""Make room in a pretrained model for tokens its tokenizer gained (the chat template's special tokens).

The embedding and the output head have one row per id. A model's vocabulary is often padded past its tokenizer's
(to a multiple of 64, for faster matrix multiplications): those spare rows were never the embedding of any input, so
new tokens take them first. Only when the tokenizer outgrows the model are both matrices rebuilt larger, the old rows
copied in.

A new token's row starts at the mean of the pretrained tokens' rows, not at random: a random row can have a larger
dot product with the final hidden state than any real token, so the untrained model would put much of its probability
on the new tokens, and the first finetuning steps would spend themselves undoing that. The mean row keeps the new
token's logit at the average of the others (Hewitt 2021, "Initializing new word embeddings for pretrained language
models").
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from ..model import GPT


@torch.no_grad()
def grow_vocab(model: GPT, n_old: int, n_new: int, multiple_of: int = 1) -> GPT:
    """Give ids ``n_old .. n_new-1`` rows initialized to the mean of rows ``0 .. n_old-1``, in place.

    ``n_old`` is how many ids the pretrained tokenizer had (its rows are the trained ones). If ``n_new`` exceeds the
    model's ``vocab_size``, the embedding (and an untied head) grow to ``n_new`` rounded up to ``multiple_of`` and
    ``model.config.vocab_size`` follows. Returns the model."""
    if not 0 < n_old <= n_new:
        raise ValueError(f"grow_vocab needs 0 < n_old <= n_new; got {n_old}, {n_new}")
    if n_new > model.config.vocab_size:
        _enlarge(model, -(-n_new // multiple_of) * multiple_of)
    emb = model.tok_emb.weight  # (V, d)
    emb[n_old:n_new] = emb[:n_old].mean(dim=0)
    if not model.config.tie_embeddings:
        head = model.lm_head.weight  # (V, d)
        head[n_old:n_new] = head[:n_old].mean(dim=0)
    return model


def _enlarge(model: GPT, vocab_size: int) -> None:
    old_emb, old_head = model.tok_emb.weight, model.lm_head.weight
    n, d = old_emb.shape
    kw = dict(device=old_emb.device, dtype=old_emb.dtype)
    model.tok_emb = nn.Embedding(vocab_size, d, **kw)
    model.tok_emb.weight[:n] = old_emb
    model.lm_head = nn.Linear(d, vocab_size, bias=False, **kw)
    model.config = replace(model.config, vocab_size=vocab_size)
    if model.config.tie_embeddings:
        model.tie_weights()
    else:
        model.lm_head.weight[:n] = old_head
