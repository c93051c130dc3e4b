"""Configuration of the corpus a run reads: which reader, which input, which split, how much.

Kept apart from the readers so that a config file can be loaded and validated (``scratchllm.config.load_config``)
without touching any data.
"""

from __future__ import annotations

from dataclasses import dataclass

from scratchllm.config import ConfigError

SPLITS = ("train", "val", "all")


@dataclass
class CorpusConfig:
    """Where the documents come from and which of them to use."""

    # Name of a registered reader (scratchllm.data.readers.READERS): "stdlib" (the embedded default corpus: the
    # Python standard library's source and documentation topics) or "jsonl".
    source: str = "stdlib"
    # Input for readers that need one: a .jsonl file or a directory of them for "jsonl". For "stdlib", a non-empty
    # path replaces the standard library's directory as the root to scan.
    path: str = ""
    # "train", "val" (the held-out documents) or "all". Membership is a stable hash of the document id.
    split: str = "train"
    # Fraction of documents held out for validation, in [0, 1).
    val_fraction: float = 0.01
    # Stop after this many documents (counted after the split); 0 means no limit. Handy for quick runs and tests.
    max_documents: int = 0
    # For "stdlib": also include the pydoc documentation topics (the language reference text shipped with Python).
    include_pydoc: bool = True

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ConfigError(f"split must be one of {', '.join(SPLITS)}; got {self.split!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(
                f"val_fraction must be at least 0 and below 1 (0.01 holds out 1% of documents); got {self.val_fraction}"
            )
        if self.max_documents < 0:
            raise ConfigError(f"max_documents must be 0 (no limit) or positive; got {self.max_documents}")
