"""`scratchllm tokenizer ...`: train, inspect, import and export tokenizers (thin calls into scratchllm.tokenizer)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..config import ConfigError, save_config
from ..data import CorpusConfig, CorpusError
from ..tokenizer import Tokenizer
from ..tokenizer.config import TokenizerConfig
from .common import PATH_HELP, SOURCE_HELP, add_config_args, load_job, progress, texts


@dataclass
class TokenizerTrainJob:
    """`scratchllm tokenizer train`: which corpus, which tokenizer settings, where to write it."""

    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    # Output directory: receives tokenizer.json and the resolved config.toml.
    out: str = "runs/tokenizer"


@dataclass
class TokenizerStatsJob:
    """`scratchllm tokenizer stats`: measure a tokenizer on a corpus (by default the held-out split)."""

    corpus: CorpusConfig = field(default_factory=lambda: CorpusConfig(split="val"))


def cmd_tokenizer_train(args) -> int:
    job = load_job(
        TokenizerTrainJob,
        args,
        {"vocab_size": "tokenizer.vocab_size", "pattern": "tokenizer.pattern", "workers": "tokenizer.workers",
         "source": "corpus.source", "path": "corpus.path", "max_documents": "corpus.max_documents", "out": "out"},
    )  # fmt: skip
    train_tokenizer(job)
    return 0


def train_tokenizer(job: TokenizerTrainJob) -> Tokenizer:
    """Train, save and summarise (shared by `tokenizer train` and `demo`)."""
    cfg = job.tokenizer
    tok = Tokenizer.train(
        texts(job.corpus, "the training corpus"),
        cfg.vocab_size,
        cfg.pattern,
        cfg.special_tokens,
        workers=cfg.workers or None,
        progress=progress(),
    )
    out = Path(job.out)
    tok.save(out)
    save_config(job, out / "config.toml")
    r = tok.training
    seconds = r.seconds_counting + r.seconds_merging
    print(f"trained {tok!r} in {seconds:.1f} s -> {out / 'tokenizer.json'}")
    print(f"  corpus     {r.documents:,} documents, {r.characters / 1e6:.1f} M characters")
    print(f"  chunks     {r.unique_chunks:,} distinct, counted in {r.seconds_counting:.1f} s")
    rate = r.merges / max(r.seconds_merging, 1e-9)
    print(f"  merges     {r.merges:,} in {r.seconds_merging:.1f} s ({rate:,.0f}/s)")
    if r.merges < r.requested_merges:
        print(f"  note: the corpus ran out of pairs after {r.merges:,} of {r.requested_merges:,} merges")
    return tok


def cmd_tokenizer_stats(args) -> int:
    from ..tokenizer.stats import measure

    job = load_job(TokenizerStatsJob, args, {"split": "corpus.split", "source": "corpus.source", "path": "corpus.path"})
    tok = Tokenizer.load(args.tokenizer)
    print(f"{tok!r} on {job.corpus.source} ({job.corpus.split} split)")
    print(measure(tok, texts(job.corpus, f"the {job.corpus.split} split")).format(tok))
    return 0


def cmd_tokenizer_encode(args) -> int:
    from ..tokenizer.stats import show_pieces

    tok = Tokenizer.load(args.tokenizer)
    if args.file:
        try:
            text = Path(args.file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CorpusError(f"cannot read {args.file}: {exc}") from None
    elif args.text is not None:
        text = args.text
    else:
        text = sys.stdin.read()
    ids = tok.encode(text, allowed_special="all" if args.allow_special else ())
    print(" ".join(map(str, ids)) if args.ids else show_pieces(tok, ids))
    print(f"{len(ids)} tokens, {len(text.encode('utf-8', 'surrogateescape'))} bytes", file=sys.stderr)
    return 0


def cmd_tokenizer_import(args) -> int:
    if args.gpt2:
        tok = Tokenizer.from_gpt2(*args.gpt2)
    else:
        specials = {}
        for item in args.special:
            name, sep, value = item.rpartition("=")
            if not sep or not value.isdigit():
                raise ConfigError(f"--special takes NAME=ID, e.g. '<|endoftext|>=100257'; got {item!r}")
            specials[name] = int(value)
        tok = Tokenizer.from_tiktoken(args.tiktoken, args.pattern, specials)
    print(f"imported {tok!r} -> {tok.save(args.out)}")
    return 0


def cmd_tokenizer_export(args) -> int:
    tok = Tokenizer.load(args.tokenizer)
    path = tok.save_hf(args.out) if args.format == "hf" else tok.save_tiktoken(args.out)
    print(f"wrote {args.format} file {path}")
    return 0


def cmd_tokenizer_scaling(args) -> int:
    from ..book.experiments import vocab_scaling

    sizes = [s for s in vocab_scaling.SIZES if s <= args.max_vocab]
    result = vocab_scaling.run(sizes, args.pattern, args.max_documents, progress=progress())
    for path in vocab_scaling.write(result, args.out):
        print(f"wrote {path}")
    print(vocab_scaling.table(result))
    return 0


def add_parser(stages) -> None:
    tok = stages.add_parser("tokenizer", help="train, inspect, import and export byte-level BPE tokenizers")
    actions = tok.add_subparsers(dest="action", metavar="ACTION", required=True)

    p = actions.add_parser("train", help="train a tokenizer on a corpus (default: the embedded stdlib corpus)")
    add_config_args(p)
    p.add_argument("--vocab-size", type=int, help="total ids: 256 bytes + merges + special tokens (default 8192)")
    p.add_argument("--pattern", help="split pattern: gpt2, gpt4, o200k, llama3 or a regex (default gpt4)")
    p.add_argument("--source", help=SOURCE_HELP)
    p.add_argument("--path", help=PATH_HELP)
    p.add_argument("--max-documents", type=int, help="use at most this many documents (0: all)")
    p.add_argument("--workers", type=int, help="processes for counting chunks (0: one per CPU)")
    p.add_argument("--out", help="output directory (default runs/tokenizer)")
    p.set_defaults(func=cmd_tokenizer_train)

    p = actions.add_parser("stats", help="bytes per token, vocabulary use and longest tokens on a corpus")
    p.add_argument("--tokenizer", required=True, metavar="DIR", help="directory with tokenizer.json")
    add_config_args(p)
    p.add_argument("--split", help="train, val (default) or all")
    p.add_argument("--source", help=SOURCE_HELP)
    p.add_argument("--path", help=PATH_HELP)
    p.set_defaults(func=cmd_tokenizer_stats)

    p = actions.add_parser("encode", help="show how text is cut into tokens")
    p.add_argument("--tokenizer", required=True, metavar="DIR", help="directory with tokenizer.json")
    p.add_argument("text", nargs="?", help="text to encode (default: read stdin)")
    p.add_argument("--file", help="encode this UTF-8 file instead")
    p.add_argument("--ids", action="store_true", help="print only the ids")
    p.add_argument("--allow-special", action="store_true", help="turn special-token strings into their ids")
    p.set_defaults(func=cmd_tokenizer_encode)

    p = actions.add_parser("import", help="convert GPT-2 or tiktoken files into a scratchllm tokenizer directory")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--gpt2", nargs=2, metavar=("ENCODER_JSON", "VOCAB_BPE"), help="GPT-2's two files")
    src.add_argument("--tiktoken", metavar="FILE", help="a tiktoken rank file (e.g. cl100k_base.tiktoken)")
    p.add_argument("--pattern", default="gpt4", help="split pattern for --tiktoken (default gpt4)")
    p.add_argument("--special", action="append", default=[], metavar="NAME=ID", help="special token for --tiktoken")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.set_defaults(func=cmd_tokenizer_import)

    p = actions.add_parser("export", help="write a tokenizer as a Hugging Face tokenizer.json or a tiktoken file")
    p.add_argument("--tokenizer", required=True, metavar="DIR", help="directory with tokenizer.json")
    p.add_argument("--format", required=True, choices=["hf", "tiktoken"])
    p.add_argument("--out", required=True, metavar="PATH", help="output file (hf: a directory is fine)")
    p.set_defaults(func=cmd_tokenizer_export)

    p = actions.add_parser("scaling", help="the vocabulary scaling experiment (512 ... 32,768) with a plot")
    p.add_argument("--out", default="runs/vocab_scaling", help="output directory (default runs/vocab_scaling)")
    p.add_argument("--max-vocab", type=int, default=32768, help="largest vocabulary size to train (default 32768)")
    p.add_argument("--pattern", default="gpt4", help="split pattern (default gpt4)")
    p.add_argument("--max-documents", type=int, default=0, help="train on at most this many documents (0: all)")
    p.set_defaults(func=cmd_tokenizer_scaling)
