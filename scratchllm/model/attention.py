"""Causal self-attention with grouped-query heads, in two interchangeable implementations.

``explicit_attention`` is the textbook formula, softmax(Q K^T / sqrt(d) + mask) V, with the (T, T) score matrix in
plain sight: the version the book teaches. ``sdpa_attention`` calls ``F.scaled_dot_product_attention``, which picks a
fused kernel (FlashAttention or memory-efficient attention on GPUs, a fused C++ kernel on CPUs) that never stores the
full score matrix. The tests check the two agree.

Grouped-query attention (Ainslie et al. 2023) gives ``n_kv_head`` key/value heads to ``n_head`` query heads, each
kv head serving a group of n_head / n_kv_head query heads: multi-head when equal, multi-query (Shazeer 2019) when
there is one. It shrinks the KV cache by the group size at little cost in quality.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import GPTConfig
from .kv_cache import KVCache
from .layers import apply_rotary, no_rotation


def causal_mask(t_q: int, t_k: int, device: torch.device) -> torch.Tensor:
    """(t_q, t_k) bool, True where query i may see key j. Queries are the last t_q of the t_k positions, so with a
    KV cache a new token sees everything before it (bottom-right alignment)."""
    offset = t_k - t_q
    return torch.ones(t_q, t_k, dtype=torch.bool, device=device).tril(diagonal=offset)


def explicit_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, dropout: float
) -> torch.Tensor:
    """softmax(q k^T / sqrt(hd) masked) v. q: (B, H, Tq, hd); k, v: (B, Hkv, Tk, hd); mask: bool, True = may see."""
    groups = q.size(1) // k.size(1)
    k = k.repeat_interleave(groups, dim=1)  # (B, H, Tk, hd): each kv head serves `groups` query heads
    v = v.repeat_interleave(groups, dim=1)
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.size(-1))  # (B, H, Tq, Tk)
    if mask is None:
        mask = causal_mask(q.size(-2), k.size(-2), q.device)
    scores = scores.masked_fill(~mask, float("-inf"))
    weights = F.dropout(F.softmax(scores.float(), dim=-1).to(q.dtype), p=dropout)
    return weights @ v  # (B, H, Tq, hd)


def sdpa_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, dropout: float
) -> torch.Tensor:
    """The same through torch's fused kernel. Without an explicit mask the causal case uses ``is_causal``, which
    lets it pick FlashAttention; ``is_causal`` is top-left aligned, so a cache prefix needs the explicit mask."""
    t_q, t_k = q.size(-2), k.size(-2)
    # One new query after a cache prefix (a decoding step) may see every key: no mask to build, none to apply.
    if mask is None and t_q != t_k and t_q > 1:
        mask = causal_mask(t_q, t_k, q.device)
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=mask is None and t_q == t_k,
        enable_gqa=q.size(1) != k.size(1),
    )  # fmt: skip


class CausalSelfAttention(nn.Module):
    """Project to queries, keys and values, rotate (RoPE), attend causally, project back."""

    def __init__(self, cfg: GPTConfig, layer: int):
        super().__init__()
        self.layer = layer
        self.head_dim = cfg.head_dim
        self.q_proj = nn.Linear(cfg.d_model, cfg.n_head * cfg.head_dim, bias=cfg.bias)
        self.k_proj = nn.Linear(cfg.d_model, cfg.kv_heads * cfg.head_dim, bias=cfg.bias)
        self.v_proj = nn.Linear(cfg.d_model, cfg.kv_heads * cfg.head_dim, bias=cfg.bias)
        self.o_proj = nn.Linear(cfg.n_head * cfg.head_dim, cfg.d_model, bias=cfg.bias)
        self.dropout = cfg.dropout
        self.attend = sdpa_attention if cfg.attention == "sdpa" else explicit_attention
        self.rotate = apply_rotary if cfg.pos_encoding == "rope" else no_rotation

    def forward(
        self,
        x: torch.Tensor,
        rotation: tuple[torch.Tensor, torch.Tensor] | None,
        mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        B, T, _ = x.shape  # (B, T, d)
        # Head counts come from the projections' widths, not the config: under tensor parallelism each rank holds
        # only its n_head / tp query heads and n_kv_head / tp kv heads (scratchllm/parallel/tensor_parallel.py).
        q = self.q_proj(x).view(B, T, -1, self.head_dim).transpose(1, 2)  # (B, H, T, hd)
        k = self.k_proj(x).view(B, T, -1, self.head_dim).transpose(1, 2)  # (B, Hkv, T, hd)
        v = self.v_proj(x).view(B, T, -1, self.head_dim).transpose(1, 2)  # (B, Hkv, T, hd)
        q, k = self.rotate(q, rotation), self.rotate(k, rotation)
        if cache is not None:
            k, v = cache.update(self.layer, k, v)  # (B, Hkv, T_past + T, hd): everything seen so far
        y = self.attend(q, k, v, mask, self.dropout if self.training else 0.0)  # (B, H, T, hd)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, -1))  # (B, T, d)
