"""The key/value cache: at inference, keys and values of past tokens never change (causal attention), so compute
them once and keep them, and each new token costs one position's worth of work instead of the whole prefix.

Preallocated for the maximum length: one (B, n_kv_head, max_len, head_dim) tensor per layer for keys and one for
values, written in place as tokens arrive, so generation allocates nothing per step.
"""

from __future__ import annotations

import torch


class KVCache:
    """Keys and values of every layer for ``batch`` sequences of up to ``max_len`` tokens."""

    def __init__(self, n_layer: int, batch: int, n_kv_head: int, head_dim: int, max_len: int, device=None, dtype=None):
        shape = (batch, n_kv_head, max_len, head_dim)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layer)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layer)]
        self.max_len = max_len
        self.length = 0  # tokens stored so far (the same for every layer once a forward pass completes)
        self._pending = 0

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this step's (B, Hkv, T, hd) keys and values for ``layer``; return all of them so far."""
        start, end = self.length, self.length + k.size(2)
        if end > self.max_len:
            raise ValueError(f"the KV cache holds {self.max_len} tokens; this step would need {end}")
        self.keys[layer][:, :, start:end] = k
        self.values[layer][:, :, start:end] = v
        self._pending = end
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def advance(self) -> None:
        """Called by the model after all layers stored the step: the new tokens now count as the past."""
        self.length = self._pending
