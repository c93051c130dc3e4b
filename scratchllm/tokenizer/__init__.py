"""Byte-level BPE tokenizer, written from scratch and exactly compatible with GPT-2, tiktoken and Hugging Face.

Layers, each a module (after minbpe): ``base`` (bytes and merges) -> ``regex_bpe`` (pre-tokenization and the chunk
cache) -> ``tokenizer`` (special tokens, training, files). ``train`` learns merges; ``formats`` reads and writes
every file format; ``stats`` measures a tokenizer on a corpus.
"""

from .errors import (
    DecodeError,
    DisallowedSpecialError,
    EmptyCorpusError,
    EncodeError,
    SpecialTokenError,
    TokenizerError,
    TokenizerFormatError,
    VocabSizeError,
)
from .patterns import PATTERNS
from .tokenizer import Tokenizer, TrainingReport

__all__ = [
    "PATTERNS",
    "DecodeError",
    "DisallowedSpecialError",
    "EmptyCorpusError",
    "EncodeError",
    "SpecialTokenError",
    "Tokenizer",
    "TokenizerError",
    "TokenizerFormatError",
    "TrainingReport",
    "VocabSizeError",
]
