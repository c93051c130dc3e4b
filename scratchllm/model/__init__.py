"""The GPT family in plain PyTorch: config and presets, layers, attention, the model, the loss, the KV cache."""

from .config import PRESETS, GPTConfig, flops_per_token, num_params
from .generate import generate, stream_generate
from .gpt import GPT, Block
from .kv_cache import KVCache

__all__ = [
    "GPT",
    "PRESETS",
    "Block",
    "GPTConfig",
    "KVCache",
    "flops_per_token",
    "generate",
    "num_params",
    "stream_generate",
]
