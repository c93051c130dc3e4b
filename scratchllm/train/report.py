"""``report.md``: a run explained on one page, written from the run directory's own records.

Everything in the report is read back from files the run wrote (``metrics.jsonl``, ``config.toml``, ``loss.png``, and
``eval.md`` once ``scratchllm eval all`` has evaluated the run), so the report can be regenerated at any time
(``write_report(run_dir)``) and never states a number that the records do not hold. The demo adds the samples it
generated.
"""

from __future__ import annotations

import re
import statistics
from pathlib import Path

from ..fileio import atomic_write_text
from .metrics import METRICS_FILE, read_metrics

REPORT_FILE = "report.md"
EVAL_FILE = "eval.md"  # written by `scratchllm eval all` (eval/report.py)


def summarize(records: list[dict]) -> dict:
    """Totals and typical values of a run's metrics records (steps logged once each, in order)."""
    steps = [r for r in records if "loss" in r]
    evals = [r for r in records if r.get("val_loss") is not None]
    if not steps:
        return {}
    timed = steps[1:] or steps  # the first step pays warm-up (and compilation): not typical
    summary = {
        "steps": steps[-1]["step"] + 1,
        "train_loss": steps[-1]["loss"],
        "train_time_s": sum(r["step_time"] for r in steps),
        "tokens_per_s": statistics.median(r["tokens_per_s"] for r in timed),
        "skipped_steps": sum(1 for r in steps if r.get("skipped")),
    }
    if all("mfu" in r for r in timed):
        summary["mfu"] = statistics.median(r["mfu"] for r in timed)
    memory = [r["peak_memory"] for r in steps if r.get("peak_memory")]
    if memory:
        summary["peak_memory_gib"] = max(memory) / 2**30
    if evals:
        last, best = evals[-1], min(evals, key=lambda r: r["val_loss"])
        summary |= {"val_loss": last["val_loss"], "val_ppl": last["val_ppl"], "best_val_loss": best["val_loss"]}
        if last.get("val_bpb") is not None:
            summary["val_bpb"] = last["val_bpb"]
    return summary


def write_report(
    run_dir: str | Path, *, peak_flops: float | None = None, samples: list[tuple[str, str]] | None = None,
    title: str | None = None, notes: str = "",
) -> Path:  # fmt: skip
    """Write ``run_dir/report.md``: summary table, loss plot, the resolved config and, if given, samples
    (``(prompt, completion)`` pairs) and free-form ``notes`` (markdown) placed under the title."""
    run_dir = Path(run_dir)
    summary = summarize(read_metrics(run_dir / METRICS_FILE)) if (run_dir / METRICS_FILE).is_file() else {}
    lines = [f"# {title or f'Training run {run_dir.name}'}", ""]
    if notes:
        lines += [notes.strip(), ""]
    rows = [
        ("optimizer steps", summary.get("steps"), "{:,}"),
        ("final training loss (nats/token)", summary.get("train_loss"), "{:.4f}"),
        ("held-out loss (nats/token)", summary.get("val_loss"), "{:.4f}"),
        ("held-out perplexity", summary.get("val_ppl"), "{:.2f}"),
        ("held-out bits per byte", summary.get("val_bpb"), "{:.4f}"),
        ("best held-out loss", summary.get("best_val_loss"), "{:.4f}"),
        ("training time (s, sum of step times)", summary.get("train_time_s"), "{:.0f}"),
        ("throughput (tokens/s, median step)", summary.get("tokens_per_s"), "{:,.0f}"),
        ("MFU (median step)", summary.get("mfu"), "{:.1%}"),
        ("measured matmul peak (GFLOP/s)", peak_flops / 1e9 if peak_flops else None, "{:,.0f}"),
        ("peak memory (GiB)", summary.get("peak_memory_gib"), "{:.2f}"),
        ("skipped steps", summary.get("skipped_steps"), "{}"),
    ]
    lines += ["| metric | value |", "|---|---|"]
    lines += [f"| {name} | {fmt.format(value)} |" for name, value, fmt in rows if value is not None]
    lines += evaluation_section(run_dir)
    if (run_dir / "loss.png").is_file():
        lines += ["", "## Loss", "", "![training and validation loss](loss.png)"]
    if samples:
        lines += ["", "## Samples", ""]
        for prompt, completion in samples:
            lines += [f"Prompt `{prompt!r}`:", "", "```", f"{prompt}{completion}", "```", ""]
    config = run_dir / "config.toml"
    if config.is_file():
        lines += ["", "## Configuration", "", f"The resolved `{config.name}`:", "", "```toml"]
        lines += [config.read_text().rstrip(), "```"]
    lines += ["", f"Raw records: `{METRICS_FILE}` (one JSON line per step).", ""]
    return atomic_write_text(run_dir / REPORT_FILE, "\n".join(lines))


def evaluation_section(run_dir: Path) -> list[str]:
    """The "Evaluation" section: ``eval.md`` as `scratchllm eval all` wrote it, or nothing before it has run."""
    if not (run_dir / EVAL_FILE).is_file():
        return []
    return ["", "## Evaluation", "", (run_dir / EVAL_FILE).read_text(encoding="utf-8").strip()]


def add_evaluation(run_dir: str | Path) -> Path | None:
    """Put the current ``eval.md`` into an existing ``report.md`` in place, where ``write_report`` puts it (after the
    summary table), replacing an older one, and keeping everything else (a demo's notes and samples)."""
    report, section = Path(run_dir) / REPORT_FILE, evaluation_section(Path(run_dir))
    if not report.is_file() or not section:
        return None
    text = report.read_text(encoding="utf-8")
    text = re.sub(r"\n\n## Evaluation\n.*?(?=\n\n## |\n\nRaw records|\Z)", "", text, flags=re.S)
    end = re.search(r"\n\n## |\n\nRaw records|\Z", text).start()  # the end of the summary table
    return atomic_write_text(report, text[:end] + "\n" + "\n".join(section) + text[end:])
