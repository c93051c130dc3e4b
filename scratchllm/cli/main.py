"""The ``scratchllm`` command: one subcommand per stage of the pipeline, each a thin call into its package.

Every subcommand that has a config takes ``--config FILE.toml`` and ``key=value`` overrides (dotted for nested
tables: ``tokenizer.vocab_size=4096 corpus.max_documents=100``); convenience flags such as ``--vocab-size`` are
shorthands for those overrides. The resolved config is written next to the output.

Errors a user can cause (bad config, bad corpus, bad tokenizer or checkpoint) print one line on stderr and exit with
status 2, never a traceback. Stages that later work will build say so and exit 2 too, rather than pretend.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from ..config import load_config
from ..data import CorpusConfig
from . import data as data_commands
from . import model as model_commands
from . import tokenizer as tokenizer_commands
from . import train as train_commands
from .common import USER_ERRORS, add_config_args, texts
from .tokenizer import TokenizerTrainJob, train_tokenizer

# Stages on the roadmap, with the issue that builds each: listed in --help, refused with a clear line until then.
PLANNED = {
    "data": ("clean, filter, deduplicate and decontaminate a corpus", 5),
    "eval": ("perplexity, MMLU and HumanEval", 6),
    "sft": ("instruction finetuning, LoRA", 8),
    "chat": ("chat with a model in the terminal", 8),
    "serve": ("local chat server with an OpenAI-style API", 8),
    "plan": ("plan a 3D-parallel layout for a cluster", 7),
    "book": ("build the manual into HTML and PDF", 9),
}


def cmd_demo(args) -> int:
    from ..tokenizer.stats import measure, show_pieces

    print("scratchllm demo: today the pipeline runs up to the tokenizer (model and training stages come next).")
    print("step 1/2: train a byte-level BPE tokenizer on the embedded default corpus (the Python standard library)")
    job = load_config(TokenizerTrainJob, args.config, [f"out={args.out}/tokenizer", *args.overrides])
    start = time.perf_counter()
    tok = train_tokenizer(job)
    val = CorpusConfig(**{**vars(job.corpus), "split": "val", "max_documents": 0})
    print("\nstep 2/2: measure it on the held-out split")
    print(measure(tok, texts(val, "the validation split")).format(tok))
    sample = "def greet(name):\n    return f'Hello, {name}!'  # 3 spaces, 1 emoji: 🐍"
    print(f"\nhow it cuts a line of code:\n  {show_pieces(tok, tok.encode(sample))}")
    print(f"\ndone in {time.perf_counter() - start:.0f} s; the tokenizer is in {args.out}/tokenizer")
    return 0


def _not_built(name: str, issue: int) -> Callable:
    def refuse(args) -> int:
        print(f"scratchllm {name}: not built yet (planned in issue {issue}); see README.md", file=sys.stderr)
        return 2

    return refuse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scratchllm",
        description="A large language model built from scratch: data, tokenizer, model, training, evaluation, chat.",
        epilog="Run `scratchllm STAGE --help` for each stage. Bad input exits with status 2 and one line on stderr.",
    )
    stages = parser.add_subparsers(dest="stage", metavar="STAGE", required=True)
    tokenizer_commands.add_parser(stages)
    data_commands.add_parsers(stages)
    model_commands.add_parsers(stages)
    train_commands.add_parsers(stages)

    p = stages.add_parser("demo", help="run the whole pipeline that exists today on the embedded corpus")
    add_config_args(p)
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
