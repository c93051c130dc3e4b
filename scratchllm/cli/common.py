"""Helpers shared by the subcommands: config resolution, corpus texts, progress, the errors users can cause."""

from __future__ import annotations

import argparse
import sys

from ..book.source import BookError
from ..config import ConfigError, load_config
from ..data import CorpusConfig, CorpusError, open_corpus, require_nonempty
from ..data.shards import ShardError
from ..eval.humaneval import HumanEvalError
from ..eval.mmlu import MMLUError
from ..eval.report import EvalError
from ..eval.sandbox import SandboxError
from ..finetune.data import InstructionDataError
from ..finetune.lora import LoRAError
from ..tokenizer import TokenizerError
from ..train.checkpoint import CheckpointError
from ..train.trainer import TrainingError

# Every subcommand that reads a corpus takes the same two options (CorpusConfig.source and .path)
SOURCE_HELP = "corpus reader: stdlib (default), jsonl, files, parquet, warc or hf (section 2.9 of the manual)"
PATH_HELP = "input for the reader: a file or a directory of them; for hf the dataset name or a builder (json, parquet)"


class UsageError(ValueError):
    """A command-line argument is wrong in a way argparse cannot see (e.g. a prompt longer than the context)."""


# Exceptions that mean "the input was wrong": one line on stderr, exit status 2.
USER_ERRORS = (
    ConfigError, CorpusError, TokenizerError, CheckpointError, ShardError, UsageError, TrainingError,
    EvalError, MMLUError, HumanEvalError, SandboxError, InstructionDataError, LoRAError, BookError,
)  # fmt: skip


def progress() -> bool:
    """Progress bars only on a terminal (not in CI logs or pipes)."""
    return sys.stderr.isatty()


def load_job(cls, args, shorthands: dict[str, str]):
    """Resolve a job config: defaults < --config file < shorthand flags < key=value overrides."""
    overrides = [f"{key}={getattr(args, attr)}" for attr, key in shorthands.items() if getattr(args, attr) is not None]
    return load_config(cls, args.config, overrides + list(args.overrides))


def texts(corpus: CorpusConfig, what: str):
    """The texts of a corpus, refusing an empty one with a clear error."""
    return (doc.text for doc in require_nonempty(open_corpus(corpus), what))


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE.toml", help="TOML config file; its tables are the job's sections")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="overrides, e.g. tokenizer.vocab_size=4096")
