"""`scratchllm tokenize`: documents to token shards (thin call into scratchllm.data.tokenize)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..config import save_config
from ..data import CorpusConfig
from ..data.shards import ShardError
from ..data.tokenize import tokenize_corpus
from ..tokenizer import Tokenizer
from .common import add_config_args, load_job, progress


@dataclass
class TokenizeJob:
    """`scratchllm tokenize`: which corpus, which tokenizer, where the shards go."""

    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    # Directory with the tokenizer.json to encode with (its hash is stamped into every shard).
    tokenizer: str = "runs/tokenizer"
    # Output directory for train_NNNNN.bin, val_NNNNN.bin, tokenize.json and config.toml.
    out: str = "runs/tokens"
    # Tokens per shard (a document is never split across shards). 2^24 tokens = 32 MiB of uint16.
    shard_tokens: int = 1 << 24
    # Worker processes for our own encoder when tiktoken is not installed; 0 = one per CPU.
    workers: int = 0


def cmd_tokenize(args) -> int:
    job = load_job(TokenizeJob, args, {"tokenizer": "tokenizer", "out": "out", "source": "corpus.source",
                                       "path": "corpus.path"})  # fmt: skip
    if job.shard_tokens < 1:
        raise ShardError(f"shard_tokens must be positive; got {job.shard_tokens}")
    tok = Tokenizer.load(job.tokenizer)
    reports = tokenize_corpus(tok, job.corpus, job.out, job.shard_tokens, workers=job.workers or None,
                              progress=progress())  # fmt: skip
    save_config(job, Path(job.out) / "config.toml")
    for split, r in reports.items():
        rate = r.bytes / max(r.tokens, 1)
        print(
            f"{split:5s} {r.documents:,} documents, {r.tokens:,} tokens, {rate:.2f} bytes/token, {len(r.shards)} shards"
        )
    print(f"shards and tokenize.json in {job.out}")
    return 0


def add_parsers(stages) -> None:
    p = stages.add_parser("tokenize", help="encode a corpus into token shards for training (train and val splits)")
    add_config_args(p)
    p.add_argument("--tokenizer", metavar="DIR", help="tokenizer directory (default runs/tokenizer)")
    p.add_argument("--source", help="corpus reader: stdlib (default) or jsonl")
    p.add_argument("--path", help="input path for the reader")
    p.add_argument("--out", metavar="DIR", help="output directory (default runs/tokens)")
    p.set_defaults(func=cmd_tokenize)
