"""Configuration of tokenizer training: the vocabulary's size, its split pattern, its special tokens.

Its own small dataclass (DESIGN house style 3), loaded from the ``[tokenizer]`` table of a TOML file or from
``tokenizer.key=value`` overrides, and written with the tokenizer so a run says how its vocabulary was made.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import ConfigError
from .patterns import PATTERNS


@dataclass
class TokenizerConfig:
    """How to train a byte-level BPE tokenizer."""

    # Total ids: 256 byte tokens + learned merges + special tokens. 8192 suits the tiny model (see the vocabulary
    # scaling experiment in docs/02-data-engineering.md); GPT-2 used 50257, GPT-4 about 100k.
    vocab_size: int = 8192
    # Split pattern: a preset (gpt2, gpt4, o200k, llama3) or a custom regex for the `regex` module.
    pattern: str = "gpt4"
    # Strings that get one reserved id each, after the merges. "<|endoftext|>" begins every document (BOS).
    special_tokens: list[str] = field(default_factory=lambda: ["<|endoftext|>"])
    # Processes that count chunks; 0 means one per CPU. The result does not depend on it.
    workers: int = 0

    def __post_init__(self) -> None:
        if self.vocab_size < 256 + len(self.special_tokens):
            raise ConfigError(
                f"vocab_size must be at least 256 + {len(self.special_tokens)} special tokens = "
                f"{256 + len(self.special_tokens)}; got {self.vocab_size}"
            )
        if self.workers < 0:
            raise ConfigError(f"workers must be 0 (one per CPU) or positive; got {self.workers}")
        if not self.pattern:
            raise ConfigError(f"pattern must be a preset ({', '.join(PATTERNS)}) or a regex; got an empty string")
