"""`scratchllm data`: clean, filter, deduplicate and decontaminate a corpus (thin call into scratchllm.data.pipeline);
`scratchllm tokenize`: documents to token shards (thin call into scratchllm.data.tokenize)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..config import save_config
from ..data import CorpusConfig
from ..data.executor import WorkerDied
from ..data.pipeline import PipelineConfig, run_pipeline
from ..data.shards import ShardError
from ..data.tokenize import tokenize_corpus
from ..tokenizer import Tokenizer
from .common import PATH_HELP, SOURCE_HELP, add_config_args, load_job, progress


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


def cmd_data(args) -> int:
    job = load_job(PipelineConfig, args, {"out": "out", "workers": "workers", "source": "corpus.source",
                                          "path": "corpus.path"})  # fmt: skip
    try:
        run = run_pipeline(job, args.rank, args.world_size, progress=progress())
    except WorkerDied as e:
        print(f"scratchllm: error: {e}", file=sys.stderr)
        return 1
    if not run.complete:
        print(run.message)
        return 0
    report = run.report
    read, written = report["read"]["documents"], report["written"]
    print(f"read {read:,} documents, wrote {written:,} ({100 * written / max(read, 1):.1f}%) in {job.num_shards} "
          f"shards to {Path(job.out) / 'documents'}")  # fmt: skip
    problems = report["read"]["problems"]["counts"]
    if problems:
        print("  bad input skipped: " + ", ".join(f"{n:,} {kind}" for kind, n in sorted(problems.items())))
    for step in report["steps"]:
        reasons = sorted(step["dropped"].items(), key=lambda item: -item[1])
        why = ", ".join(f"{reason} {n:,}" for reason, n in reasons[:3]) + (", ..." if len(reasons) > 3 else "")
        print(f"  {step['name']:18s} {step['seen']:>9,} seen {step['kept']:>9,} kept  {why}")
    print(f"report: {Path(job.out) / 'report.md'}")
    print(f"next: scratchllm tokenize corpus.source=jsonl corpus.path={Path(job.out) / 'documents'}")
    return 0


def add_parsers(stages) -> None:
    p = stages.add_parser(
        "data",
        help="clean, filter, deduplicate and decontaminate a corpus",
        description="Run the data pipeline of a TOML config (steps in order, each with its [step.NAME] table) over a "
        "corpus, in shards, resumably: rerun the same command after an interruption and finished shards are kept. "
        "On a cluster, run it as an array job with --rank and --world-size (see scratchllm.data.pipeline).",
    )
    add_config_args(p)
    p.add_argument("--source", help=SOURCE_HELP)
    p.add_argument("--path", help=PATH_HELP)
    p.add_argument("--out", metavar="DIR", help="output directory (default runs/data)")
    p.add_argument("--workers", type=int, help="worker processes (default: one per CPU)")
    p.add_argument("--rank", type=int, default=0, help="which of --world-size tasks this is (default 0)")
    p.add_argument("--world-size", type=int, default=1, help="tasks sharing the run, e.g. a Slurm array (default 1)")
    p.set_defaults(func=cmd_data)

    p = stages.add_parser("tokenize", help="encode a corpus into token shards for training (train and val splits)")
    add_config_args(p)
    p.add_argument("--tokenizer", metavar="DIR", help="tokenizer directory (default runs/tokenizer)")
    p.add_argument("--source", help=SOURCE_HELP)
    p.add_argument("--path", help=PATH_HELP)
    p.add_argument("--out", metavar="DIR", help="output directory (default runs/tokens)")
    p.set_defaults(func=cmd_tokenize)
