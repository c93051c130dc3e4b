"""From documents to token shards: encode every document, begin it with BOS, write shards per split.

Encoding is the slow part of data preparation, so it goes through ``Tokenizer.encode_batch``: the exported tiktoken
encoding when tiktoken is installed (identical ids, tested), else our encoder across worker processes. Text that
happens to contain a special token's string is encoded as plain text, never as the special token. The report
records, per split, documents, tokens and the UTF-8 bytes they came from: bits per byte needs the bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from tqdm.auto import tqdm

from ..fileio import atomic_write_text
from ..tokenizer import Tokenizer
from .config import CorpusConfig
from .readers import open_corpus
from .shards import ShardError, ShardWriter

BOS = "<|endoftext|>"
REPORT = "tokenize.json"


@dataclass
class SplitReport:
    documents: int
    tokens: int
    bytes: int
    shards: list[str]


def bos_id(tokenizer: Tokenizer) -> int:
    """The id that begins every document."""
    if BOS not in tokenizer.special_tokens:
        raise ShardError(f"the tokenizer has no {BOS} special token to begin documents with; train it with one")
    return tokenizer.special_tokens[BOS]


def tokenize_split(
    tokenizer: Tokenizer,
    corpus: CorpusConfig,
    out_dir: str | Path,
    shard_tokens: int = 1 << 24,
    workers: int | None = None,
    progress: bool = False,
) -> SplitReport:
    """Encode the ``corpus.split`` documents into ``out_dir/{split}_NNNNN.bin`` shards."""
    bos = bos_id(tokenizer)
    writer = ShardWriter(out_dir, corpus.split, tokenizer.hash, tokenizer.vocab_size, shard_tokens)
    documents = size = 0

    def texts() -> Iterable[str]:  # counts as the encoder reads, so the corpus is read once and never held whole
        nonlocal documents, size
        for doc in open_corpus(corpus):
            documents += 1
            size += len(doc.text.encode("utf-8", "surrogateescape"))
            yield doc.text

    bar = tqdm(desc=f"tokenizing {corpus.split}", unit="doc", disable=not progress)
    # One stream through one pool of workers for the whole split, rather than a pool per batch of documents.
    for ids in tokenizer.encode_iter(texts(), workers, disallowed_special=()):
        writer.add([bos, *ids])
        bar.update(1)
    writer.flush()
    bar.close()
    return SplitReport(documents, writer.total_tokens, size, [p.name for p in writer.paths])


def tokenize_corpus(
    tokenizer: Tokenizer, corpus: CorpusConfig, out_dir: str | Path, shard_tokens: int = 1 << 24, **kwargs
) -> dict[str, SplitReport]:
    """Tokenize the train and val splits of ``corpus`` and write ``tokenize.json`` beside the shards."""
    reports = {
        split: tokenize_split(tokenizer, replace(corpus, split=split), out_dir, shard_tokens, **kwargs)
        for split in ("train", "val")
    }
    if reports["train"].tokens == 0:
        raise ShardError("the corpus produced no training tokens; check its source, path and split settings")
    summary = {"tokenizer_hash": tokenizer.hash, "vocab_size": tokenizer.vocab_size}
    summary |= {split: vars(r) for split, r in reports.items()}
    atomic_write_text(Path(out_dir) / REPORT, json.dumps(summary, indent=2) + "\n")
    return reports


def shard_paths(data_dir: str | Path, split: str) -> list[Path]:
    """The shards of one split, in order."""
    paths = sorted(Path(data_dir).glob(f"{split}_*.bin"))
    if not paths:
        raise ShardError(f"no {split} shards in {data_dir}; run `scratchllm tokenize` first")
    return paths
