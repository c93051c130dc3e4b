"""Chapter 5's measurements: perplexity at two strides and MMLU with two scorings, for a trained checkpoint and for
an untrained model of the same shape.

The untrained model (the checkpoint's config, randomly initialized with a fixed seed) is the floor: it spreads its
probability evenly, so its perplexity is about the vocabulary size and its MMLU accuracy is chance. Against it the
trained checkpoint shows what training bought on held-out text, in loss and bits per byte, and whether it bought
anything on MMLU. Each model is scored

- on held-out text: the default corpus's validation split (documents that `scratchllm demo` and `scratchllm tokenize`
  keep out of training), each document on its own, with the window at the model's context and the stride at the
  context (non-overlapping chunks) and at half of it (every scored token sees at least half a context);
- on MMLU: 5-shot from the CSV release (by default the subjects kept in the team's shared data, ``../shared/data/
  mmlu``), scored by the letters " A".." D" and by the answer's text per byte (``text_norm``); with the predicted
  letters counted, because a small model's "accuracy" can be the frequency of its favourite letter in the key.

When the checkpoint sits in a training run (``RUN/checkpoints/NAME``), the run's ``metrics.jsonl`` gives the figure:
the training loss per step in nats per token and, on a second axis, in bits per byte (the same curve, divided by
ln 2 and by the held-out bytes per token), with the run's own validation points.

Run it with ``python -m scratchllm.book.experiments.eval_tiny --checkpoint runs/demo/train/checkpoints/best --mmlu
../shared/data/mmlu --out docs/figures``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from collections import Counter
from pathlib import Path

import torch

from ...data import CorpusConfig, open_corpus, require_nonempty
from ...eval.config import MMLUConfig
from ...eval.mmlu import LETTERS, evaluate_mmlu
from ...eval.perplexity import evaluate_texts
from ...eval.report import load_mmlu, run_dir_of
from ...model import GPT
from ...train.checkpoint import load_checkpoint
from ...train.metrics import METRICS_FILE, read_metrics
from .output import save_figure, write_outputs

DEFAULT_MMLU = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "mmlu"
MODES = ("letter", "text_norm")
CURVE_POINTS = 400  # training-loss points kept for the figure (every k-th step)


def run(
    checkpoint: str | Path,
    mmlu: str | Path | None = None,
    shots: int = 5,
    modes: tuple[str, ...] = MODES,
    seed: int = 0,
    max_documents: int = 0,
    subjects: tuple[str, ...] = (),
    limit: int = 0,
    batch_size: int = 16,
) -> dict:
    """Score the checkpoint and an untrained twin on the held-out split (``max_documents`` of it, 0 = all) and, when
    ``mmlu`` names a CSV release, on its test questions (``subjects`` and the first ``limit`` of each, if given)."""
    trained, tokenizer = load_checkpoint(checkpoint)
    if tokenizer is None:
        raise ValueError(f"{checkpoint} has no tokenizer/; the experiment needs the one the model trained with")
    torch.manual_seed(seed)
    untrained = GPT.build(trained.config)  # the same shape, random initialization
    held_out = CorpusConfig(split="val", max_documents=max_documents)
    texts = [d.text for d in require_nonempty(open_corpus(held_out), "the held-out split")]
    context = trained.config.block_size
    strides = (context, context // 2)
    questions = None
    if mmlu is not None:
        test, dev, described = load_mmlu(MMLUConfig(str(mmlu), shots, subjects=list(subjects), limit=limit))
        answers = Counter(LETTERS[q.answer] for qs in test.values() for q in qs)
        questions = {"data": described, "subjects": list(test), "questions": sum(answers.values()), "shots": shots,
                     "answer_letters": {letter: answers[letter] for letter in LETTERS}}  # fmt: skip
    results = []
    for name, model in (("untrained", untrained), ("trained", trained)):
        entry = {"model": name, "perplexity": [], "mmlu": []}
        for stride in strides:
            start = time.perf_counter()
            r = evaluate_texts(model, tokenizer, texts, context, stride, batch_size)
            entry["perplexity"].append(r.to_dict() | {"seconds": time.perf_counter() - start})
        for mode in modes if questions else ():
            start = time.perf_counter()
            result = evaluate_mmlu(model, tokenizer, test, dev, shots, mode, batch_size)
            summary = result.summary()
            predicted = Counter(LETTERS[p] for ps in result.predictions.values() for p in ps)
            entry["mmlu"].append({
                "mode": mode, "micro": summary["micro"], "macro": summary["macro"],
                "categories": summary["categories"], "subjects": summary["subjects"],
                "shots_kept_mean": summary["shots_kept_mean"], "truncated": summary["truncated"],
                "predicted_letters": {letter: predicted[letter] for letter in LETTERS},
                "seconds": time.perf_counter() - start,
            })  # fmt: skip
        results.append(entry)
    return {
        "checkpoint": str(checkpoint),
        "config": dataclasses.asdict(trained.config),
        "parameters": sum(p.numel() for p in trained.parameters()),
        "seed": seed,
        "held_out": {
            "corpus": "default corpus (Python standard library + pydoc topics), val split",
            "documents": len(texts),
            "max_documents": max_documents,
        },
        "mmlu": questions,
        "torch_threads": torch.get_num_threads(),
        "results": results,
        "training": training_curve(run_dir_of(checkpoint) / METRICS_FILE),
    }


def training_curve(metrics: Path) -> dict | None:
    """Training loss per step (thinned to ``CURVE_POINTS``) and the validation records of a run, if it has them."""
    if not metrics.is_file():
        return None
    records = read_metrics(metrics)
    steps = [r for r in records if "loss" in r]
    every = max(1, math.ceil(len(steps) / CURVE_POINTS))
    return {
        "metrics": str(metrics),
        "step": [r["step"] for r in steps[::every]],
        "loss": [r["loss"] for r in steps[::every]],
        "val": [{k: r.get(k) for k in ("step", "val_loss", "val_ppl", "val_bpb")} for r in records if "val_loss" in r],
    }


def table(result: dict) -> str:
    """Two Markdown tables: perplexity per stride, and MMLU per scoring."""
    docs = result["held_out"]["documents"]
    first = result["results"][0]["perplexity"][0]
    lines = [
        f"Held-out text: {docs} documents of the default corpus's val split ({first['bytes']:,} bytes, "
        f"{first['tokens']:,} tokens), window {first['window']}.",
        "",
        "| model | stride | loss (nats/token) | perplexity | bits per byte | time |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for entry in result["results"]:
        for p in entry["perplexity"]:
            lines.append(f"| {entry['model']} | {p['stride']} | {p['loss']:.3f} | {p['ppl']:,.1f} | {p['bpb']:.3f} | "
                         f"{p['seconds']:.0f} s |")  # fmt: skip
    if result["mmlu"]:
        m = result["mmlu"]
        key = ", ".join(f"{letter} {n}" for letter, n in m["answer_letters"].items())
        lines += [
            "",
            f"MMLU: {m['questions']:,} test questions in {len(m['subjects'])} subject"
            f"{'s' if len(m['subjects']) != 1 else ''} ({', '.join(m['subjects'])}), "
            f"{m['shots']}-shot; the key's answers: {key}.",
            "",
            "| model | scoring | micro accuracy (95% CI) | macro (95% CI) | shots kept | predicted letters | time |",
            "|---|---|---|---|---:|---|---:|",
        ]
        for entry in result["results"]:
            for s in entry["mmlu"]:
                micro, macro = s["micro"], s["macro"]
                letters = ", ".join(f"{letter} {n}" for letter, n in s["predicted_letters"].items())
                lines.append(
                    f"| {entry['model']} | {s['mode']} | {100 * micro['acc']:.1f}% [{100 * micro['ci95'][0]:.1f}, "
                    f"{100 * micro['ci95'][1]:.1f}] | {100 * macro['acc']:.1f}% [{100 * macro['ci95'][0]:.1f}, "
                    f"{100 * macro['ci95'][1]:.1f}] | {s['shots_kept_mean']:.2f} | {letters} | {s['seconds']:.0f} s |"
                )
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    """The training curve in nats per token and in bits per byte, with the held-out evaluations; nothing without it."""
    curve = result["training"]
    if not curve:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trained = next(e for e in result["results"] if e["model"] == "trained")["perplexity"][0]
    to_bpb = 1 / math.log(2) / (trained["bytes"] / trained["tokens"])  # nats/token -> bits/byte on this text
    fig, ax = plt.subplots(figsize=(7, 3.8))
    ax.plot(curve["step"], curve["loss"], lw=1, label="training loss (batch)")
    vals = [v for v in curve["val"] if v["val_loss"] is not None]
    if vals:
        ax.plot([v["step"] for v in vals], [v["val_loss"] for v in vals], "o", label="validation (trainer)")
    ax.axhline(trained["loss"], ls="--", color="gray", label=f"held-out documents, stride {trained['stride']}")
    ax.set(xlabel="optimizer step", ylabel="nats per token", title="One curve, two units")
    right = ax.secondary_yaxis("right", functions=(lambda x: x * to_bpb, lambda y: y / to_bpb))
    right.set_ylabel("bits per byte")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def write(result: dict, out_dir: str | Path) -> list[Path]:
    """Save ``eval_tiny.json`` and ``.md``, and ``.png`` when the checkpoint's run had a training curve."""
    paths = write_outputs("eval_tiny", result, table(result), plot, out_dir)
    return paths if result["training"] else paths[:2]


def main() -> None:
    """Run, print the tables, and write the results when ``--out`` is given."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="a trained checkpoint (e.g. the demo's)")
    parser.add_argument(
        "--mmlu", type=Path, default=DEFAULT_MMLU if DEFAULT_MMLU.is_dir() else None,
        help=f"the MMLU CSV release (default {DEFAULT_MMLU} when it exists; without it, only perplexity)",
    )  # fmt: skip
    parser.add_argument("--shots", type=int, default=5, help="MMLU shots (default 5)")
    parser.add_argument("--max-documents", type=int, default=0, help="held-out documents, 0 = all (default)")
    parser.add_argument("--out", help="directory for eval_tiny.json and .md")
    args = parser.parse_args()
    result = run(args.checkpoint, args.mmlu, args.shots, max_documents=args.max_documents)
    print(table(result))
    if args.out:
        for path in write(result, args.out):
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
