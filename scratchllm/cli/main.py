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
from .common import USER_ERRORS, add_config_args, progress, texts
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
    from ..data.tokenize import tokenize_corpus
    from ..model import GPT, GPTConfig
    from ..model.generate import generate
    from ..tokenizer.stats import measure, show_pieces
    from ..train.config import TrainConfig
    from ..train.trainer import seed_everything, train

    print("scratchllm demo: tokenizer -> token shards -> a short pretraining run -> samples, on the default corpus.")
    print(f"(a {args.steps}-step run: the tuned ~8-minute recipe arrives with the rest of the training work)\n")
    print("step 1/4: train a byte-level BPE tokenizer on the embedded default corpus (the Python standard library)")
    job = load_config(TokenizerTrainJob, args.config, [f"out={args.out}/tokenizer", *args.overrides])
    start = time.perf_counter()
    tok = train_tokenizer(job)
    val = CorpusConfig(**{**vars(job.corpus), "split": "val", "max_documents": 0})
    print(measure(tok, texts(val, "the validation split")).format(tok))
    sample = "def greet(name):\n    return f'Hello, {name}!'  # 3 spaces, 1 emoji: 🐍"
    print(f"how it cuts a line of code:\n  {show_pieces(tok, tok.encode(sample))}")

    print("\nstep 2/4: encode the corpus into token shards")
    reports = tokenize_corpus(tok, job.corpus, f"{args.out}/tokens")
    print(f"  train {reports['train'].tokens:,} tokens, val {reports['val'].tokens:,} tokens")

    print(f"\nstep 3/4: pretrain the `tiny` model for {args.steps} steps")
    cfg = TrainConfig(max_steps=args.steps, warmup_steps=max(1, args.steps // 6), eval_every=args.steps,
                      eval_batches=8, checkpoint_every=0)  # fmt: skip
    seed_everything(cfg.seed)
    model = GPT.build(GPTConfig.preset("tiny", vocab_size=tok.vocab_size))
    final = train(model, tok, f"{args.out}/tokens", cfg, f"{args.out}/train", progress=progress())
    print(f"  held-out loss {final['val_loss']:.3f} nats/token, {final['val_bpb']:.3f} bits per byte")

    print("\nstep 4/4: samples (temperature 0.8, top-k 50)")
    bos = tok.special_tokens["<|endoftext|>"]
    prompts = ["def ", "import ", "class "]
    outs = generate(model, [[bos, *tok.encode(p)] for p in prompts], 40, temperature=0.8, top_k=50, seed=0,
                    stop_tokens=[bos])  # fmt: skip
    for prompt, new in zip(prompts, outs):
        print(f"--- {prompt!r}\n{prompt}{tok.decode(new)}")
    print(f"\ndone in {time.perf_counter() - start:.0f} s; bits per byte on held-out files: {final['val_bpb']:.3f}")
    print(f"run directory {args.out}: tokenizer/, tokens/, train/ (metrics.jsonl, loss.png, checkpoints/)")
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
    p.add_argument("--steps", type=int, default=60, help="pretraining steps (default 60, about 3 minutes on 2 cores)")
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
