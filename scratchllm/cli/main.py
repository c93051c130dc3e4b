"""The ``scratchllm`` command: one subcommand per stage of the pipeline, each a thin call into its package.

Every subcommand that has a config takes ``--config FILE.toml`` and ``key=value`` overrides (dotted for nested
tables: ``tokenizer.vocab_size=4096 corpus.max_documents=100``); convenience flags such as ``--vocab-size`` are
shorthands for those overrides. The resolved config is written next to the output.

Errors a user can cause (bad config, bad corpus, bad tokenizer or checkpoint) print one line on stderr and exit with
status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys

from . import book as book_commands
from . import data as data_commands
from . import demo as demo_commands
from . import eval as eval_commands
from . import model as model_commands
from . import plan as plan_commands
from . import serve as serve_commands
from . import sft as sft_commands
from . import tokenizer as tokenizer_commands
from . import train as train_commands
from .common import USER_ERRORS


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
    eval_commands.add_parsers(stages)
    plan_commands.add_parsers(stages)
    book_commands.add_parsers(stages)
    serve_commands.add_parsers(stages)
    sft_commands.add_parsers(stages)

    demo_commands.add_parsers(stages)

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
