"""The building blocks that vary between GPT-2 and Llama: norms, MLPs and position encodings.

Each variant is a small module, and ``make_norm`` / ``make_mlp`` / ``make_positions`` pick one from the config when
the model is built, so ``forward`` never asks which kind it is.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import GPTConfig

# ---------------------------------------------------------------------------------------------------------- norms


class RMSNorm(nn.Module):
    """Root-mean-square norm (Zhang & Sennrich 2019): scale by 1/rms(x), no centering, no shift (Llama)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.empty(dim))

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalize in fp32 even under autocast, then cast back (as Llama does): the mean of squares loses
        # precision in bf16.
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * normed.to(x.dtype)


def make_norm(cfg: GPTConfig) -> nn.Module:
    if cfg.norm == "rmsnorm":
        return RMSNorm(cfg.d_model, cfg.norm_eps)
    return nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps, bias=cfg.bias)


# ---------------------------------------------------------------------------------------------------------- MLPs


class GeluMLP(nn.Module):
    """GPT-2's MLP: up-project 4x, GELU (tanh approximation, as GPT-2 was trained), down-project."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.up = nn.Linear(cfg.d_model, cfg.ff_dim, bias=cfg.bias)
        self.down = nn.Linear(cfg.ff_dim, cfg.d_model, bias=cfg.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, d) -> (B, T, d)
        return self.down(F.gelu(self.up(x), approximate="tanh"))


class SwiGLU(nn.Module):
    """Llama's MLP (Shazeer 2020, "GLU Variants Improve Transformer"): down(silu(gate(x)) * up(x))."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.gate = nn.Linear(cfg.d_model, cfg.ff_dim, bias=cfg.bias)
        self.up = nn.Linear(cfg.d_model, cfg.ff_dim, bias=cfg.bias)
        self.down = nn.Linear(cfg.ff_dim, cfg.d_model, bias=cfg.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, d) -> (B, T, d)
        return self.down(F.silu(self.gate(x)) * self.up(x))


def make_mlp(cfg: GPTConfig) -> nn.Module:
    return SwiGLU(cfg) if cfg.mlp == "swiglu" else GeluMLP(cfg)


# ---------------------------------------------------------------------------------------------------------- positions
#
# Additive encodings (learned, sinusoidal) are added to the token embeddings once, at the bottom of the stack.
# Rotary encodings rotate queries and keys inside every attention layer; the model computes the rotation (cos, sin)
# once per forward pass and hands it to each layer. Every variant implements both hooks; the one it does not use is
# the identity.


class NoPositions(nn.Module):
    """No position information at all (the causal mask alone leaks some; Haviv et al. 2022)."""

    def add(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return x

    def rotation(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        return None

    def reset_parameters(self) -> None:
        pass


class LearnedPositions(NoPositions):
    """GPT-2: one learned vector per position, added to the token embedding."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(cfg.block_size, cfg.d_model))
        self.std = cfg.init_std

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight, std=self.std)

    def add(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return x + F.embedding(positions, self.weight)  # (B, T, d) + (B or 1, T, d)


class SinusoidalPositions(NoPositions):
    """Vaswani et al. 2017: PE(t, 2i) = sin(t / 10000^(2i/d)), PE(t, 2i+1) = cos(...), added; no parameters.

    As in the paper (section 3.4) the token embeddings are multiplied by sqrt(d_model) first: a row of the table has
    norm sqrt(d/2), while an embedding row initialized at N(0, 0.02) has norm 0.02 sqrt(d), and without the scaling
    the position would drown the token about 35 to 1."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.block_size, self.d_model = cfg.block_size, cfg.d_model
        self.register_buffer("table", torch.empty(cfg.block_size, cfg.d_model), persistent=False)

    def reset_parameters(self) -> None:
        t = torch.arange(self.block_size, dtype=torch.float32)[:, None]  # (T, 1)
        freq = torch.exp(torch.arange(0, self.d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / self.d_model))
        table = torch.zeros(self.block_size, self.d_model)
        table[:, 0::2] = torch.sin(t * freq)
        table[:, 1::2] = torch.cos(t * freq[: self.d_model // 2])
        self.table = table.to(self.table.device)

    def add(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return x * math.sqrt(self.d_model) + self.table[positions].to(x.dtype)


class RotaryPositions(NoPositions):
    """RoPE (Su et al. 2021): rotate each (i, i + head_dim/2) pair of q and k by angle position * base^(-2i/hd).

    The pairing of dimension i with i + head_dim/2 (rather than 2i with 2i+1) is Hugging Face's and Meta's Llama
    layout, so Llama weights load unpermuted. The score q_m . k_n then depends on n - m only.
    """

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("inv_freq", torch.empty(cfg.head_dim // 2), persistent=False)

    def reset_parameters(self) -> None:
        exponent = torch.arange(0, self.cfg.head_dim, 2, dtype=torch.float32) / self.cfg.head_dim
        inv_freq = 1.0 / self.cfg.rope_base**exponent  # (hd/2,) angular speed of each pair, fastest first
        scale = llama3_rope_scaling if self.cfg.rope_scaling_type == "llama3" else linear_rope_scaling
        self.inv_freq = scale(inv_freq, self.cfg).to(self.inv_freq.device)

    def rotation(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        angles = positions.float()[..., None] * self.inv_freq  # (B or 1, T, hd/2)
        angles = torch.cat([angles, angles], dim=-1)[:, None]  # (B or 1, 1, T, hd): broadcast over heads
        return angles.cos(), angles.sin()


def linear_rope_scaling(inv_freq: torch.Tensor, cfg: GPTConfig) -> torch.Tensor:
    """Position interpolation (Chen et al. 2023): slow every frequency by the factor, as if positions were divided."""
    return inv_freq / cfg.rope_scaling


def llama3_rope_scaling(inv_freq: torch.Tensor, cfg: GPTConfig) -> torch.Tensor:
    """Llama 3.1's frequency-dependent scaling: pairs whose wavelength is long compared with the original context
    (they never completed a turn in training) are slowed by the factor; short wavelengths (local order) are kept;
    in between, the factor is blended in linearly in 1/wavelength."""
    wavelength = 2 * math.pi / inv_freq  # (hd/2,) tokens per full turn
    ratio = cfg.rope_original_context / wavelength  # turns completed within the original context
    low, high = cfg.rope_low_freq_factor, cfg.rope_high_freq_factor
    keep = ((ratio - low) / (high - low)).clamp(0.0, 1.0)  # 0: fully scaled (ratio <= low) ... 1: kept (>= high)
    return inv_freq * (keep + (1.0 - keep) / cfg.rope_scaling)


def apply_rotary(x: torch.Tensor, rotation: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Rotate (B, H, T, hd) queries or keys: x * cos + rotate_half(x) * sin, computed in fp32."""
    cos, sin = rotation
    x1, x2 = x.float().chunk(2, dim=-1)  # (B, H, T, hd/2) each
    rotated = torch.cat([-x2, x1], dim=-1)
    return (x.float() * cos + rotated * sin).to(x.dtype)


def no_rotation(x: torch.Tensor, rotation: None) -> torch.Tensor:
    return x


def make_positions(cfg: GPTConfig) -> NoPositions:
    kinds = {"learned": LearnedPositions, "sinusoidal": SinusoidalPositions, "rope": RotaryPositions}
    return kinds[cfg.pos_encoding](cfg) if cfg.pos_encoding in kinds else NoPositions()
