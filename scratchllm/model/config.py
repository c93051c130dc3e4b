"""The model's configuration: every architectural choice of the GPT family as one documented dataclass, its presets,
and the arithmetic that follows from it (parameter count, training FLOPs per token).

One class covers GPT-2 and Llama-style models because they differ only in a handful of choices (position encoding,
norm, MLP, grouped-query attention, tied head, biases); each choice is a field here and a small class in
``layers.py``, picked once when the model is built.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..config import ConfigError

POS_ENCODINGS = ("learned", "sinusoidal", "rope", "none")
NORMS = ("layernorm", "rmsnorm")
MLPS = ("gelu", "swiglu")
ATTENTIONS = ("sdpa", "explicit")
ROPE_SCALINGS = ("linear", "llama3")


@dataclass
class GPTConfig:
    """A decoder-only transformer. Derived sizes (head_dim, kv heads, MLP width) are properties, not fields."""

    # Vocabulary size: rows of the embedding and of the output head (the tokenizer's vocab_size).
    vocab_size: int = 8192
    # Longest sequence the model accepts (its context window), in tokens.
    block_size: int = 256
    # Number of transformer blocks.
    n_layer: int = 4
    # Attention heads (query heads).
    n_head: int = 4
    # Key/value heads: n_head for multi-head, fewer for grouped-query (GQA), 1 for multi-query; 0 means n_head.
    n_kv_head: int = 0
    # Width of the residual stream (GPT-2's n_embd).
    d_model: int = 192
    # Hidden width of the MLP; 0 means the usual: 4*d_model for GELU, 8/3*d_model rounded up to 64 for SwiGLU.
    d_ff: int = 0
    # Position information: "learned" absolute (GPT-2), "sinusoidal" (Vaswani et al.), "rope" (rotary), "none".
    pos_encoding: str = "rope"
    # RoPE base (theta): 10,000 in the RoFormer paper and Llama 2, 500,000 in Llama 3.
    rope_base: float = 10000.0
    # RoPE frequency scaling for contexts longer than training saw; 1.0 = off. With rope_scaling_type "linear",
    # position interpolation (Chen et al. 2023): every frequency divided by this factor. With "llama3" (Llama 3.1+):
    # long wavelengths slowed by the factor, short ones kept, a smooth ramp between.
    rope_scaling: float = 1.0
    rope_scaling_type: str = "linear"
    # "llama3" scaling only: the context of the original training and the two wavelength thresholds, as
    # rope_original_context / rope_low_freq_factor and rope_original_context / rope_high_freq_factor.
    rope_original_context: int = 8192
    rope_low_freq_factor: float = 1.0
    rope_high_freq_factor: float = 4.0
    # "layernorm" (GPT-2) or "rmsnorm" (Llama).
    norm: str = "rmsnorm"
    # Epsilon of the norms (1e-5 in GPT-2 and Llama 3, 1e-6 in some Llama checkpoints).
    norm_eps: float = 1e-5
    # "gelu" (GPT-2: tanh-approximated GELU, two matrices) or "swiglu" (Llama: SiLU-gated, three matrices).
    mlp: str = "swiglu"
    # Share one matrix between the token embedding and the output head (Press & Wolf 2017).
    tie_embeddings: bool = True
    # Biases in linear layers and norms (GPT-2 has them, Llama does not).
    bias: bool = False
    # Dropout on attention weights and on each residual branch (0 for pretraining at this scale).
    dropout: float = 0.0
    # "sdpa" (torch's fused scaled_dot_product_attention) or "explicit" (the textbook softmax(QK^T)V, for teaching).
    attention: str = "sdpa"
    # Recompute each block's activations in the backward pass instead of storing them (less memory, ~1/3 more time).
    activation_checkpointing: bool = False
    # Cross-entropy over chunks of this many tokens, never materializing the (B, T, vocab) logits; 0 = off.
    loss_chunk_size: int = 0
    # Standard deviation of the normal initialization (GPT-2: 0.02).
    init_std: float = 0.02

    def __post_init__(self) -> None:
        for name, value, allowed in [
            ("pos_encoding", self.pos_encoding, POS_ENCODINGS),
            ("norm", self.norm, NORMS),
            ("mlp", self.mlp, MLPS),
            ("attention", self.attention, ATTENTIONS),
            ("rope_scaling_type", self.rope_scaling_type, ROPE_SCALINGS),
        ]:
            if value not in allowed:
                raise ConfigError(f"model {name} must be one of {', '.join(allowed)}; got {value!r}")
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "d_model"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model {name} must be positive; got {getattr(self, name)}")
        if self.d_model % self.n_head:
            raise ConfigError(f"d_model ({self.d_model}) must be divisible by n_head ({self.n_head})")
        if self.n_head % self.kv_heads:
            raise ConfigError(f"n_head ({self.n_head}) must be a multiple of n_kv_head ({self.kv_heads})")
        if self.pos_encoding == "rope" and self.head_dim % 2:
            raise ConfigError(f"rotary embeddings need an even head_dim; got {self.head_dim}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1); got {self.dropout}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    @property
    def kv_heads(self) -> int:
        return self.n_kv_head or self.n_head

    @property
    def ff_dim(self) -> int:
        if self.d_ff:
            return self.d_ff
        if self.mlp == "gelu":
            return 4 * self.d_model
        return 64 * -(-(8 * self.d_model // 3) // 64)  # 8/3 d rounded up to a multiple of 64 (Llama's rule)

    @classmethod
    def preset(cls, name: str, **overrides) -> GPTConfig:
        """A named architecture, optionally with fields changed (``GPTConfig.preset("gpt2", dropout=0.1)``)."""
        if name not in PRESETS:
            raise ConfigError(f"unknown model preset {name!r}; choose one of: {', '.join(PRESETS)}")
        return replace(PRESETS[name], **overrides)


_GPT2 = dict(
    vocab_size=50257, block_size=1024, pos_encoding="learned", norm="layernorm", mlp="gelu", bias=True,
    tie_embeddings=True,
)  # fmt: skip

PRESETS: dict[str, GPTConfig] = {
    # Trains on a laptop CPU in minutes: Llama-style choices, 4 layers of width 192 (3.3 M parameters). Tuned for the
    # lowest held-out bits per byte in the demo's 8-minute budget (appendix A.7): at this budget a wider model learns
    # no more per step, so the narrower one wins by taking more steps.
    "tiny": GPTConfig(),
    # Exactly GPT-2's four sizes (Radford et al. 2019).
    "gpt2": GPTConfig(**_GPT2, n_layer=12, n_head=12, d_model=768),
    "gpt2-medium": GPTConfig(**_GPT2, n_layer=24, n_head=16, d_model=1024),
    "gpt2-large": GPTConfig(**_GPT2, n_layer=36, n_head=20, d_model=1280),
    "gpt2-xl": GPTConfig(**_GPT2, n_layer=48, n_head=25, d_model=1600),
    # Llama-style at GPT-2-small scale: RoPE, RMSNorm, SwiGLU, grouped-query attention (4 kv heads), untied head.
    "llama-125m": GPTConfig(
        vocab_size=32768,
        block_size=2048,
        n_layer=12,
        n_head=12,
        n_kv_head=4,
        d_model=768,
        d_ff=2048,
        tie_embeddings=False,
    ),
    # Meta's Llama 3.2 1B, so its released weights load with GPT.from_hf (llama3 RoPE scaling included).
    "llama3.2-1b": GPTConfig(
        vocab_size=128256,
        block_size=131072,
        n_layer=16,
        n_head=32,
        n_kv_head=8,
        d_model=2048,
        d_ff=8192,
        rope_base=500000.0,
        rope_scaling=32.0,
        rope_scaling_type="llama3",
        tie_embeddings=True,
    ),
}


def num_params(cfg: GPTConfig, embedding: bool = True) -> int:
    """Exact parameter count, from the config alone (tested against the built model).

    ``embedding=False`` leaves out the token and position embeddings (the convention of Kaplan et al. 2020 for
    scaling laws: a lookup costs no FLOPs), but keeps an untied output head, which is a real matmul.
    """
    d, hd, L = cfg.d_model, cfg.head_dim, cfg.n_layer
    b = 1 if cfg.bias else 0
    norm = d * (2 if cfg.norm == "layernorm" and cfg.bias else 1)  # scale, and a shift for LayerNorm with biases
    q, kv = cfg.n_head * hd, cfg.kv_heads * hd
    attention = d * q + 2 * d * kv + q * d + b * (q + 2 * kv + d)
    matrices = 3 if cfg.mlp == "swiglu" else 2
    mlp = matrices * d * cfg.ff_dim + b * ((matrices - 1) * cfg.ff_dim + d)
    blocks = L * (attention + mlp + 2 * norm)
    head = 0 if cfg.tie_embeddings else cfg.vocab_size * d
    total = blocks + norm + head
    if embedding:
        total += cfg.vocab_size * d + (cfg.block_size * d if cfg.pos_encoding == "learned" else 0)
    return total


def flops_per_token(cfg: GPTConfig, seq_len: int | None = None) -> int:
    """Training FLOPs per token: 6N for the weights plus 12 * n_layer * d_attn * T for attention.

    A matmul with an (n x m) weight costs 2nm FLOPs per token forward and 4nm backward (gradients for the input and
    for the weight): 6 per parameter, the "6N" of Kaplan et al. (2020). N counts every matrix that is multiplied,
    the output head included, but not the embedding lookup. Attention adds the scores QK^T and the weighted sum AV,
    each 2 * T * d_attn per token per layer forward, times 3 for forward + backward (PaLM, Chowdhery et al. 2022,
    appendix B). ``seq_len`` defaults to the full context.
    """
    seq_len = seq_len or cfg.block_size
    n = num_params(cfg, embedding=False) + (cfg.vocab_size * cfg.d_model if cfg.tie_embeddings else 0)
    return 6 * n + 12 * cfg.n_layer * cfg.n_head * cfg.head_dim * seq_len
