"""The GPT: token embedding, a stack of pre-norm transformer blocks, a final norm and the output head.

    x = embed(tokens) (+ positions)
    for each block:  x = x + attention(norm1(x));  x = x + mlp(norm2(x))
    logits = head(norm_f(x))

This file imports only torch and the model's own modules (nanoGPT's rule): no optimizer, no data, no distribution.
Parallelism, compilation and training wrap it from outside.

Models are built on the meta device and initialized explicitly: ``GPT.build(cfg, device)`` creates the module tree
without allocating, moves it to empty storage on the target device, then ``init_weights`` fills every tensor once.
A model too large for one device and a sharded one start the same way (torchtitan, nanochat).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .attention import CausalSelfAttention
from .config import GPTConfig
from .kv_cache import KVCache
from .layers import make_mlp, make_norm, make_positions
from .loss import chunked_cross_entropy, full_cross_entropy


class Block(nn.Module):
    """One pre-norm transformer block: attention then MLP, each added back to the residual stream."""

    def __init__(self, cfg: GPTConfig, layer: int):
        super().__init__()
        self.norm1 = make_norm(cfg)
        self.attn = CausalSelfAttention(cfg, layer)
        self.norm2 = make_norm(cfg)
        self.mlp = make_mlp(cfg)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, rotation, mask=None, cache: KVCache | None = None) -> torch.Tensor:
        x = x + self.dropout(self.attn(self.norm1(x), rotation, mask, cache))  # (B, T, d)
        x = x + self.dropout(self.mlp(self.norm2(x)))  # (B, T, d)
        return x


class GPT(nn.Module):
    """A decoder-only transformer language model."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.config = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos = make_positions(cfg)
        self.dropout = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layer))
        self.norm_f = make_norm(cfg)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.tie_weights()

    @classmethod
    def build(cls, cfg: GPTConfig, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> GPT:
        """Construct on the meta device (no memory), allocate once on ``device``, initialize explicitly."""
        with torch.device("meta"):
            model = cls(cfg)
        model.to_empty(device=device)
        if dtype is not None:
            model.to(dtype)
        model.tie_weights()  # to_empty gives every parameter fresh storage; share the head's again
        model.init_weights()
        return model

    def tie_weights(self) -> None:
        if self.config.tie_embeddings:
            self.lm_head.weight = self.tok_emb.weight

    @torch.no_grad()
    def init_weights(self, seed: int | None = None) -> None:
        """GPT-2's initialization: N(0, 0.02) for every matrix and embedding, zero biases, unit norms, and the
        projections that write into the residual stream (attention output, MLP down) scaled by 1/sqrt(2 n_layer)
        so the stream's variance does not grow with depth (Radford et al. 2019)."""
        if seed is not None:
            torch.manual_seed(seed)
        std = self.config.init_std
        residual_std = std / math.sqrt(2 * self.config.n_layer)
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear):
                is_residual = name.endswith(("attn.o_proj", "mlp.down"))
                nn.init.normal_(module.weight, std=residual_std if is_residual else std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=std)
            elif hasattr(module, "reset_parameters") and not isinstance(module, GPT):
                module.reset_parameters()  # norms, position tables, RoPE frequencies

    # ------------------------------------------------------------------------------------------------- forward

    def hidden_states(
        self,
        idx: torch.Tensor,
        positions: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """(B, T) token ids -> (B, T, d) final hidden states (after the last norm).

        ``positions`` (B or 1, T) default to 0..T-1 after whatever the cache holds; ``mask`` (B, 1, T, T_total)
        bool overrides the causal mask (for left-padded batches); ``cache`` stores keys and values for generation.
        """
        B, T = idx.shape
        past = cache.length if cache is not None else 0
        if past + T > self.config.block_size:
            raise ValueError(
                f"sequence of {past + T} tokens is longer than the model's context of {self.config.block_size}; "
                "truncate the input or use a model with a larger block_size"
            )
        if positions is None:
            positions = torch.arange(past, past + T, device=idx.device)[None]  # (1, T)
        x = self.dropout(self.pos.add(self.tok_emb(idx), positions))  # (B, T, d)
        rotation = self.pos.rotation(positions)  # RoPE (cos, sin) shared by every layer, or None
        for block in self.blocks:
            if self.config.activation_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(block, x, rotation, mask, cache, use_reentrant=False)
            else:
                x = block(x, rotation, mask, cache)
        if cache is not None:
            cache.advance()
        return self.norm_f(x)

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        reduction: str = "mean",
    ) -> torch.Tensor:
        """Without ``targets``: the (B, T, vocab) logits. With ``targets`` (B, T) (-100 = ignore): the loss, the mean
        over counted targets, or with ``reduction="sum"`` the sum (a trainer divides by the token count of the whole
        accumulated batch). With ``loss_chunk_size`` the logits are never materialized (see ``loss.py``)."""
        h = self.hidden_states(idx, positions, mask, cache)  # (B, T, d)
        if targets is None:
            return self.lm_head(h)  # (B, T, vocab)
        if self.config.loss_chunk_size:
            total, count = chunked_cross_entropy(h, self.lm_head.weight, targets, self.config.loss_chunk_size)
        else:
            total, count = full_cross_entropy(self.lm_head(h), targets)
        return total if reduction == "sum" else total / count.clamp(min=1)

    def new_cache(self, batch: int, max_len: int | None = None) -> KVCache:
        """An empty KV cache for ``batch`` sequences of up to ``max_len`` (default: the context) tokens."""
        cfg = self.config
        param = self.lm_head.weight
        max_len = min(max_len or cfg.block_size, cfg.block_size)
        return KVCache(cfg.n_layer, batch, cfg.kv_heads, cfg.head_dim, max_len, param.device, param.dtype)

    def generate(self, *args, **kwargs) -> list[list[int]]:
        """Continue token-id prompts: ``model.generate(prompts, max_new_tokens, temperature=..., ...)``; every
        argument is documented in ``generate.generate``."""
        from .generate import generate  # on use: generation is a layer above the model, not part of it

        return generate(self, *args, **kwargs)

    # ------------------------------------------------------------------------------------------------- Hugging Face

    @classmethod
    def from_hf(cls, path_or_state_dict, config=None, *, device="cpu", dtype=torch.float32, **overrides) -> GPT:
        """Load Hugging Face GPT-2 (``GPT2LMHeadModel``) or Llama (``LlamaForCausalLM``) weights.

        ``path_or_state_dict``: a directory (config.json + model.safetensors, or a sharded
        model.safetensors.index.json), a .safetensors file (config= or a config.json beside it), or a state dict
        with HF's names (config= required). ``config``: an HF config dict or a GPTConfig; by default config.json.
        ``overrides`` change non-architectural fields, e.g. ``attention="explicit"``, ``dropout=0.1``.
        """
        from .hf import load_hf  # lazily: the model file itself imports only torch

        return load_hf(path_or_state_dict, config, device=device, dtype=dtype, **overrides)

    def save_hf(self, directory) -> None:
        """Write config.json + model.safetensors that ``transformers.AutoModelForCausalLM.from_pretrained`` loads.
        Only GPT-2-shaped and Llama-shaped configs have an HF class; others raise ConfigError. ``directory`` is
        replaced as a whole."""
        from .hf import save_hf

        save_hf(self, directory)
