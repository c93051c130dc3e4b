"""The ``scratchllm`` command: one subcommand per stage of the pipeline, each a thin call into its package.

Every subcommand that has a config takes ``--config FILE.toml`` and ``key=value`` overrides (dotted for nested
tables: ``tokenizer.vocab_size=4096 corpus.max_documents=100``); convenience flags such as ``--vocab-size`` are
shorthands for those overrides. The resolved config is written next to the output.

Errors a user can cause (bad config, bad corpus, bad tokenizer file) print one line on stderr and exit with status 2,
never a traceback. Stages that later work will build say so and exit 2 too, rather than pretend.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .config import ConfigError, load_config, save_config
from .data import CorpusConfig, CorpusError, open_corpus, require_nonempty
from .tokenizer import Tokenizer, TokenizerError
from .tokenizer.config import TokenizerConfig

# Stages on the roadmap, with the issue that builds each: listed in --help, refused with a clear line until then.
PLANNED = {
    "data": ("clean, filter, deduplicate and decontaminate a corpus", 5),
    "tokenize": ("turn documents into token shards for training", 4),
    "train": ("pretrain a GPT", 4),
    "eval": ("perplexity, MMLU and HumanEval", 6),
    "sft": ("instruction finetuning, LoRA", 8),
    "generate": ("sample text from a checkpoint", 3),
    "chat": ("chat with a model in the terminal", 8),
    "serve": ("local chat server with an OpenAI-style API", 8),
    "export": ("export a checkpoint to Hugging Face format", 3),
    "plan": ("plan a 3D-parallel layout for a cluster", 7),
    "book": ("build the manual into HTML and PDF", 9),
}
USER_ERRORS = (ConfigError, CorpusError, TokenizerError)


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


def _progress() -> bool:
    return sys.stderr.isatty()


def _load_job(cls, args, shorthands: dict[str, str]):
    """Resolve a job config: defaults < --config file < shorthand flags < key=value overrides."""
    overrides = [f"{key}={getattr(args, attr)}" for attr, key in shorthands.items() if getattr(args, attr) is not None]
    return load_config(cls, args.config, overrides + list(args.overrides))


def _texts(corpus: CorpusConfig, what: str):
    return (doc.text for doc in require_nonempty(open_corpus(corpus), what))


# ------------------------------------------------------------------------------------------------ tokenizer


def cmd_tokenizer_train(args) -> int:
    job = _load_job(
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
        _texts(job.corpus, "the training corpus"),
        cfg.vocab_size,
        cfg.pattern,
        cfg.special_tokens,
        workers=cfg.workers or None,
        progress=_progress(),
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
    from .tokenizer.stats import measure

    job = _load_job(
        TokenizerStatsJob, args, {"split": "corpus.split", "source": "corpus.source", "path": "corpus.path"}
    )
    tok = Tokenizer.load(args.tokenizer)
    print(f"{tok!r} on {job.corpus.source} ({job.corpus.split} split)")
    print(measure(tok, _texts(job.corpus, f"the {job.corpus.split} split")).format(tok))
    return 0


def cmd_tokenizer_encode(args) -> int:
    from .tokenizer.stats import show_pieces

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
    from .book.experiments import vocab_scaling

    sizes = [s for s in vocab_scaling.SIZES if s <= args.max_vocab]
    result = vocab_scaling.run(sizes, args.pattern, args.max_documents, progress=_progress())
    for path in vocab_scaling.write(result, args.out):
        print(f"wrote {path}")
    print(vocab_scaling.table(result))
    return 0


# ------------------------------------------------------------------------------------------------ demo


def cmd_demo(args) -> int:
    from .tokenizer.stats import measure, show_pieces

    print("scratchllm demo: today the pipeline runs up to the tokenizer (model and training stages come next).")
    print("step 1/2: train a byte-level BPE tokenizer on the embedded default corpus (the Python standard library)")
    job = load_config(TokenizerTrainJob, args.config, [f"out={args.out}/tokenizer", *args.overrides])
    start = time.perf_counter()
    tok = train_tokenizer(job)
    val = CorpusConfig(**{**vars(job.corpus), "split": "val", "max_documents": 0})
    print("\nstep 2/2: measure it on the held-out split")
    print(measure(tok, _texts(val, "the validation split")).format(tok))
    sample = "def greet(name):\n    return f'Hello, {name}!'  # 3 spaces, 1 emoji: 🐍"
    print(f"\nhow it cuts a line of code:\n  {show_pieces(tok, tok.encode(sample))}")
    print(f"\ndone in {time.perf_counter() - start:.0f} s; the tokenizer is in {args.out}/tokenizer")
    return 0


# ------------------------------------------------------------------------------------------------ parser


def _not_built(name: str, issue: int) -> Callable:
    def refuse(args) -> int:
        print(f"scratchllm {name}: not built yet (planned in issue {issue}); see README.md", file=sys.stderr)
        return 2

    return refuse


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE.toml", help="TOML config file; its tables are the job's sections")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="overrides, e.g. tokenizer.vocab_size=4096")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scratchllm",
        description="A large language model built from scratch: data, tokenizer, model, training, evaluation, chat.",
        epilog="Run `scratchllm STAGE --help` for each stage. Bad input exits with status 2 and one line on stderr.",
    )
    stages = parser.add_subparsers(dest="stage", metavar="STAGE", required=True)

    tok = stages.add_parser("tokenizer", help="train, inspect, import and export byte-level BPE tokenizers")
    actions = tok.add_subparsers(dest="action", metavar="ACTION", required=True)

    p = actions.add_parser("train", help="train a tokenizer on a corpus (default: the embedded stdlib corpus)")
    _add_config_args(p)
    p.add_argument("--vocab-size", type=int, help="total ids: 256 bytes + merges + special tokens (default 8192)")
    p.add_argument("--pattern", help="split pattern: gpt2, gpt4, o200k, llama3 or a regex (default gpt4)")
    p.add_argument("--source", help="corpus reader: stdlib (default) or jsonl")
    p.add_argument("--path", help="input path for the reader (a .jsonl file or directory)")
    p.add_argument("--max-documents", type=int, help="use at most this many documents (0: all)")
    p.add_argument("--workers", type=int, help="processes for counting chunks (0: one per CPU)")
    p.add_argument("--out", help="output directory (default runs/tokenizer)")
    p.set_defaults(func=cmd_tokenizer_train)

    p = actions.add_parser("stats", help="bytes per token, vocabulary use and longest tokens on a corpus")
    p.add_argument("--tokenizer", required=True, metavar="DIR", help="directory with tokenizer.json")
    _add_config_args(p)
    p.add_argument("--split", help="train, val (default) or all")
    p.add_argument("--source", help="corpus reader: stdlib (default) or jsonl")
    p.add_argument("--path", help="input path for the reader")
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

    p = stages.add_parser("demo", help="run the whole pipeline that exists today on the embedded corpus")
    _add_config_args(p)
    p.add_argument("--out", default="runs/demo", help="output directory (default runs/demo)")
    p.set_defaults(func=cmd_demo)

    for name, (summary, issue) in PLANNED.items():
        p = stages.add_parser(name, help=f"{summary} [not built yet]", description=f"{summary}: not built yet.")
        p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        p.set_defaults(func=_not_built(name, issue))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except USER_ERRORS as exc:
        print(f"scratchllm: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"scratchllm: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("scratchllm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
