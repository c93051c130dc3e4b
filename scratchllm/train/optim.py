"""The optimizer: AdamW with weight decay on weight matrices only.

AdamW (Loshchilov & Hutter 2019) decouples weight decay from the gradient: each step shrinks a parameter by
``lr * weight_decay * p`` on top of the Adam update, pulling it toward zero. That is a useful prior for the large
matrices that mix features (attention projections, MLP, an untied output head), and a harmful one elsewhere:

- **norm gains** (LayerNorm / RMSNorm weights, initialized at 1) would be pulled toward 0, i.e. toward switching the
  layer's output off, although their job is only to rescale;
- **biases** are shifts; decaying them pulls every unit toward a zero offset for no regularizing benefit;
- **embeddings** (token rows and learned position rows) are lookups: a token's row receives gradient only in the
  batches where the token occurs, but decay shrinks it on every step, so rare tokens are eroded toward zero between
  their appearances. A tied output head *is* the token embedding and so is not decayed either.

So we decay exactly the ``weight`` of every ``nn.Linear`` that is not also an embedding table, and nothing else, as
many modern recipes do (OLMo 2, for instance, exempts embeddings). This differs on purpose from GPT-2 and nanoGPT,
which decay every tensor of two or more dimensions, embeddings included. An untied head is an ordinary matrix
multiply and is decayed.

Tied weights appear once: ``named_parameters`` yields each tensor a single time (by identity) under its first name,
``tok_emb.weight``, and is then recognized as an embedding whatever else also holds it. Frozen parameters
(``requires_grad=False``, e.g. a base model under LoRA) are left out of the optimizer altogether.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import TrainConfig


def split_decay(model: nn.Module) -> tuple[list[tuple[str, nn.Parameter]], list[tuple[str, nn.Parameter]]]:
    """The trainable parameters as (decayed, not decayed) lists of (name, parameter), each tensor exactly once."""
    # Identity sets, not names: a tied parameter has two names, and the rule must hold for the tensor itself.
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    matrices = {id(m.weight) for m in model.modules() if isinstance(m, nn.Linear)} - embeddings
    decay, no_decay = [], []
    for name, p in model.named_parameters():  # deduplicated by identity (remove_duplicate=True)
        if p.requires_grad:
            (decay if id(p) in matrices else no_decay).append((name, p))
    return decay, no_decay


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two optimizer parameter groups: Linear weight matrices with ``weight_decay``, everything else with none.

    An empty group is left out (torch accepts it, but it would only clutter the optimizer's state)."""
    decay, no_decay = split_decay(model)
    groups = [
        {"params": [p for _, p in decay], "weight_decay": weight_decay},
        {"params": [p for _, p in no_decay], "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW over ``param_groups(model, cfg.weight_decay)``, starting at the peak rate (the trainer sets each step's
    rate with ``schedule.set_lr``).

    The fused CUDA kernel (one launch for all parameters) is used when every parameter is on a GPU, as nanoGPT does;
    elsewhere PyTorch's default multi-tensor ("foreach") implementation runs.
    """
    groups = param_groups(model, cfg.weight_decay)
    on_cuda = all(p.device.type == "cuda" for g in groups for p in g["params"])
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, fused=on_cuda)
