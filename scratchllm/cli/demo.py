"""``scratchllm demo``: the whole pipeline on the embedded default corpus, tokenizer to finetuned model.

It lives in its own module so that what it imports is exactly what the demo runs: the manual's ``demo`` experiment
(``scratchllm/book/experiments/registry.py``) keys its cached result by this module's import closure, and a change to
the book's code or to the server does not make the demo's figures stale. Besides its report, the demo writes
``summary.json`` into its run directory: every number it printed, for scripts and the manual to read back.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..config import load_config
from ..data import CorpusConfig
from ..fileio import atomic_write_text
from .common import add_config_args, progress, texts
from .tokenizer import TokenizerTrainJob, train_tokenizer

SUMMARY_FILE = "summary.json"

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
    summary = {
        "vocab_size": tok.vocab_size, "bytes_per_token": stats.bytes_per_token,
        "train_tokens": reports["train"].tokens, "val_tokens": reports["val"].tokens, "parameters": n_params,
        "steps": cfg.max_steps, "tokens_per_step": cfg.tokens_per_step, "compile": cfg.compile,
        "val_loss": final["val_loss"], "val_bpb": final["val_bpb"],
        "sft": {k: sft[k] for k in ("steps", "val_loss_before", "val_loss", "question", "before", "after")},
        "seconds": round(elapsed, 1),
    }  # fmt: skip
    atomic_write_text(Path(args.out) / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
    print(f"\ndone in {elapsed:.0f} s; bits per byte on held-out files: {final['val_bpb']:.3f}")
    print(f"run directory {args.out}: tokenizer/, tokens/, train/ ({REPORT_FILE}, metrics.jsonl, loss.png, "
          "checkpoints/), sft/ (the finetuned model in sft/checkpoints/final)")  # fmt: skip
    print(f"report: {report}; every number above: {Path(args.out) / SUMMARY_FILE}")
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


def add_parsers(stages) -> None:
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
