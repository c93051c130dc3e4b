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
import time
from pathlib import Path

from ..config import load_config
from ..data import CorpusConfig
from . import book as book_commands
from . import data as data_commands
from . import eval as eval_commands
from . import model as model_commands
from . import plan as plan_commands
from . import serve as serve_commands
from . import sft as sft_commands
from . import tokenizer as tokenizer_commands
from . import train as train_commands
from .common import USER_ERRORS, add_config_args, progress, texts
from .tokenizer import TokenizerTrainJob, train_tokenizer

# The demo trains for a fixed number of steps, not a fixed time, so its result reproduces on any machine; the count is
# sized to about 8 minutes on a 2-core laptop CPU, and the whole demo (with set-up) to under 15.
DEMO_STEPS = 1000
DEMO_EVAL_BATCHES = 25  # 25 x 16 x 256 tokens: the whole validation split of the default corpus (~100k tokens)
DEMO_PROMPTS = ["def ", "import ", "class ", "    for "]
DEMO_SFT_STEPS = 60  # instruction finetuning after pretraining, sized to about 1.5 minutes on 2 CPU cores


def cmd_demo(args) -> int:
    from ..data.tokenize import tokenize_corpus
    from ..model import GPT, GPTConfig
    from ..model.generate import generate
    from ..tokenizer.stats import measure, show_pieces
    from ..train.config import TrainConfig
    from ..train.report import REPORT_FILE, write_report
    from ..train.trainer import seed_everything, train

    print("scratchllm demo: tokenizer -> token shards -> pretraining -> held-out bits per byte -> samples -> "
          "finetuning -> report,")  # fmt: skip
    print("on the embedded default corpus (the Python standard library). Each stage prints what it measured.\n")
    print("step 1/6: train a byte-level BPE tokenizer on the corpus")
    job = load_config(TokenizerTrainJob, args.config, [f"out={args.out}/tokenizer", *args.overrides])
    start = time.perf_counter()
    tok = train_tokenizer(job)
    val = CorpusConfig(**{**vars(job.corpus), "split": "val", "max_documents": 0})
    stats = measure(tok, texts(val, "the validation split"))
    print(stats.format(tok))
    sample = "def greet(name):\n    return f'Hello, {name}!'  # 3 spaces, 1 emoji: 🐍"
    print(f"how it cuts a line of code:\n  {show_pieces(tok, tok.encode(sample))}")

    print("\nstep 2/6: encode the corpus into token shards")
    reports = tokenize_corpus(tok, job.corpus, f"{args.out}/tokens")
    print(f"  train {reports['train'].tokens:,} tokens, val {reports['val'].tokens:,} tokens")

    # The tuned recipe is TrainConfig's defaults and the `tiny` preset (docs/04 shows how they were chosen); the
    # final evaluation reads the whole validation split, so its bits per byte is the number to compare.
    cfg = TrainConfig(
        max_steps=args.steps, warmup_steps=min(TrainConfig.warmup_steps, args.steps // 10), eval_every=0,
        eval_batches=DEMO_EVAL_BATCHES, checkpoint_every=0, compile=not args.no_compile,
    )  # fmt: skip
    seed_everything(cfg.seed)
    model = GPT.build(GPTConfig.preset("tiny", vocab_size=tok.vocab_size))
    n_params = sum(p.numel() for p in model.parameters())
    compiling = " (torch.compile: the first step compiles, about a minute)" if cfg.compile else ""
    print(f"\nstep 3/6: pretrain the `tiny` model ({n_params / 1e6:.1f}M parameters) for {cfg.max_steps} steps of "
          f"{cfg.tokens_per_step:,} tokens{compiling}")  # fmt: skip
    run_dir = Path(args.out) / "train"
    final = train(model, tok, f"{args.out}/tokens", cfg, run_dir, progress=progress())
    print(f"\nstep 4/6: held-out loss {final['val_loss']:.3f} nats/token = {final['val_bpb']:.3f} bits per byte")

    print("\nstep 5/6: samples (temperature 0.8, top-k 50)")
    bos = tok.special_tokens["<|endoftext|>"]
    outs = generate(model, [[bos, *tok.encode(p)] for p in DEMO_PROMPTS], 60, temperature=0.8, top_k=50, seed=0,
                    stop_tokens=[bos])  # fmt: skip
    samples = [(prompt, tok.decode(new)) for prompt, new in zip(DEMO_PROMPTS, outs)]
    for prompt, completion in samples:
        print(f"--- {prompt!r}\n{prompt}{completion}")

    sft = demo_sft_stage(model, tok, job.corpus, args)
    elapsed = time.perf_counter() - start
    notes = (
        f"`scratchllm demo` on the embedded default corpus: a {tok.vocab_size:,}-token BPE tokenizer "
        f"({stats.bytes_per_token:.2f} bytes per token on held-out files), {reports['train'].tokens:,} training "
        f"tokens, the `tiny` model ({n_params:,} parameters), {elapsed:.0f} s in all on this machine. "
        f"**Held-out bits per byte: {final['val_bpb']:.3f}.**"
        f" Instruction finetuning ({sft['steps']} steps, `{args.out}/sft/report.md`): held-out answer loss "
        f"{sft['val_loss_before']:.3f} -> {sft['val_loss']:.3f} nats/token."
    )
    report = write_report(run_dir, samples=samples, title="scratchllm demo", notes=notes)
    print(f"\ndone in {elapsed:.0f} s; bits per byte on held-out files: {final['val_bpb']:.3f}")
    print(f"run directory {args.out}: tokenizer/, tokens/, train/ ({REPORT_FILE}, metrics.jsonl, loss.png, "
          "checkpoints/), sft/ (the finetuned model in sft/checkpoints/final)")  # fmt: skip
    print(f"report: {report}")
    return 0


def demo_sft_stage(model, tok, corpus: CorpusConfig, args) -> dict:
    """Step 6: finetune the pretrained model on the default instruction set; a held-out answer before and after."""
    from ..finetune.config import FinetuneConfig
    from ..finetune.sft import demo_finetune
    from ..finetune.stdlib_tasks import stdlib_instructions

    cfg = FinetuneConfig(max_steps=args.sft_steps)  # the defaults are the demo's recipe (configs/sft/default.toml)
    print(f"\nstep 6/6: instruction finetuning, {cfg.max_steps} steps of {cfg.batch_size} 'write a function' tasks "
          "made from the standard library's documented functions (held out by module)")  # fmt: skip
    examples = stdlib_instructions(corpus)
    sft = demo_finetune(model, tok, examples, cfg, Path(args.out) / "sft", log=lambda line: print(f"  {line}"))
    print(f"  held-out answer loss {sft['val_loss_before']:.3f} -> {sft['val_loss']:.3f} nats/token")
    print(f"--- held-out instruction: {sft['question']}")
    print(f"--- before finetuning:\n{sft['before']}\n--- after finetuning:\n{sft['after']}")
    return sft


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

    p = stages.add_parser("demo", help="the whole pipeline on the embedded corpus, tokenizer to finetuned model")
    add_config_args(p)
    p.add_argument("--out", default="runs/demo", help="output directory (default runs/demo)")
    p.add_argument(
        "--steps",
        type=int,
        default=DEMO_STEPS,
        help=f"pretraining steps (default {DEMO_STEPS}: about 8 minutes on 2 CPU cores)",
    )
    p.add_argument("--no-compile", action="store_true", help="train without torch.compile (slower, no compiler needed)")
    p.add_argument(
        "--sft-steps", type=int, default=DEMO_SFT_STEPS,
        help=f"instruction finetuning steps (default {DEMO_SFT_STEPS}: about a minute and a half on 2 CPU cores)",
    )  # fmt: skip
    p.set_defaults(func=cmd_demo)

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
