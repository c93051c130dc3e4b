"""The report of a pipeline run: every shard's stats merged into one account of what each step removed and why.

Each shard task leaves the ``StepStats`` of its steps (seen, kept, dropped per reason, counters, a few dropped
examples) and its seconds per step; each global stage leaves its counters. Merged over shards (``StepStats.merge``),
they make ``report.json`` (the numbers) and ``report.md`` (a table per step, examples of removed documents per
reason, the near-duplicate cluster sizes as a table and a plot, the decontamination overlap per benchmark).

The counts add up, and the tests hold them to it: at every step ``seen = kept + dropped``, each step sees what the
one before it kept, the first step sees every document read, and the last step keeps exactly the documents written.
"""

from __future__ import annotations

import io
import json
import re
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from scratchllm.fileio import atomic_write_bytes

from .decontam import Decontaminate
from .readers import ReadProblems
from .step import StepStats

if TYPE_CHECKING:
    from .pipeline import PipelineConfig, Stage
    from .run_files import Layout

HISTOGRAM = "near_dup_clusters.png"


def collect(config: PipelineConfig, stages: list[Stage], layout: Layout) -> dict:
    """The report as a dict (what ``report.json`` holds), from the stats files of a complete run."""
    steps: dict[str, StepStats] = {}
    seconds: Counter = Counter()
    serial: Counter = Counter()  # the global stages' part, which runs in one process
    read: Counter = Counter()
    problems = ReadProblems()
    written = 0
    for stage in stages:
        for shard in range(config.num_shards):
            stats = json.loads(layout.shard_file(stage.index, shard, ".stats.json").read_text(encoding="utf-8"))
            for step in stats["steps"]:
                merged = steps.setdefault(step["name"], StepStats(step["name"]))
                merged.merge(StepStats.from_dict(step))
            # A global step's time is its features (in the stage before) plus its decision (in the global stage).
            seconds.update({key.removesuffix(" features"): value for key, value in stats["seconds"].items()})
            if stage.index == 0:
                read.update(documents=stats["documents"], decoded=stats["read"]["decoded_with_replacement"])
                problems.merge(ReadProblems(Counter(stats["read"]["problems"]["counts"]),
                                            stats["read"]["problems"]["examples"]))  # fmt: skip
            if stage.last:
                written += stats["written"]
        if not stage.last:
            stats = json.loads((layout.global_dir(stage.index) / "stats.json").read_text(encoding="utf-8"))
            for name, counters in stats["counters"].items():
                steps.setdefault(name, StepStats(name)).counters.update(counters)
            seconds.update(stats["seconds"])
            serial.update(stats["seconds"])
    report = {
        "corpus": {"source": config.corpus.source, "path": config.corpus.path, "split": config.corpus.split},
        "num_shards": config.num_shards,
        "read": {"documents": read["documents"], "decoded_with_replacement": read["decoded"],
                 "problems": problems.to_dict()},
        "written": written,
        "steps": [{**steps[name].to_dict(), "seconds": round(seconds[name], 3)} for name in config.steps],
        "seconds": {key: round(value, 3) for key, value in seconds.items()},
        "serial_seconds": {key: round(value, 3) for key, value in serial.items()},
    }  # fmt: skip
    if "decontam" in config.steps:
        report["decontamination"] = Decontaminate(config.step.decontam).report(steps["decontam"])
    if "near_dedup" in config.steps:
        sizes = {int(key.removeprefix("cluster_size_")): n for key, n in steps["near_dedup"].counters.items()}
        report["near_dup_cluster_sizes"] = {str(size): sizes[size] for size in sorted(sizes)}
    return report


def write_report(config: PipelineConfig, stages: list[Stage], layout: Layout) -> dict:
    """Write report.json, report.md and (with near dedup) the cluster-size plot into the run's directory."""
    report = collect(config, stages, layout)
    # backslashreplace: an example may hold a lone surrogate (undecodable bytes carried in a str), which UTF-8
    # cannot encode; in JSON its escape reads back as the same character.
    _write_text(layout.out / "report.json", json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    if "near_dup_cluster_sizes" in report:
        plot_cluster_sizes(report["near_dup_cluster_sizes"], layout.out / HISTOGRAM)
    _write_text(layout.out / "report.md", markdown(report))
    return report


def _write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8", "backslashreplace"))


def plot_cluster_sizes(sizes: dict[str, int], path: Path) -> None:
    """A bar chart of how many near-duplicate clusters have each size (size 1: documents without a near-duplicate)."""
    from matplotlib.figure import Figure  # no pyplot: no global figure state, no display backend needed
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(6, 3.5))
    ax = fig.add_subplot()
    ax.bar([int(size) for size in sizes], list(sizes.values()), color="tab:blue")
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("documents in the cluster")
    ax.set_ylabel("clusters (log scale)")
    ax.set_title("Near-duplicate clusters (MinHash-LSH)")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    atomic_write_bytes(path, buffer.getvalue())


def markdown(report: dict) -> str:
    """``report.md``: the summary table, then a section per step that removed or counted something."""
    read, written, corpus = report["read"]["documents"], report["written"], report["corpus"]
    source = f"`{corpus['source']}`" + (f" at `{corpus['path']}`" if corpus["path"] else "")
    lines = [
        "# Data pipeline report", "",
        f"{read:,} documents read from {source} (split {corpus['split']}), {written:,} written to `documents/` in "
        f"{report['num_shards']} shards: {_percent(written, read)} kept. The settings are in `config.toml`.", "",
        "| step | seen | kept | dropped | dropped % of seen | seconds |", "|---|---:|---:|---:|---:|---:|",
    ]  # fmt: skip
    for step in report["steps"]:
        dropped = sum(step["dropped"].values())
        lines.append(f"| {step['name']} | {step['seen']:,} | {step['kept']:,} | {dropped:,} | "
                     f"{_percent(dropped, step['seen'])} | {step['seconds']:.1f} |")  # fmt: skip
    seconds = report["seconds"]
    lines += ["", f"Seconds are summed over shards, which processes run side by side; reading took "
              f"{seconds.get('read', 0):.1f} s, writing {seconds.get('write', 0):.1f} s, and the global stages (one "
              f"process) {sum(report['serial_seconds'].values()):.1f} s of the dedup steps' time.", ""]  # fmt: skip
    lines += _bad_input(report["read"])
    for step in report["steps"]:
        lines += _step_section(step)
    if "near_dup_cluster_sizes" in report:
        lines += ["## Near-duplicate clusters", "", f"![near-duplicate cluster sizes]({HISTOGRAM})", "",
                  "| documents in the cluster | clusters |", "|---:|---:|"]  # fmt: skip
        lines += [f"| {size} | {n:,} |" for size, n in report["near_dup_cluster_sizes"].items()]
        lines.append("")
    if "decontamination" in report:
        lines += _decontamination(report["decontamination"])
    return "\n".join(lines)


def _bad_input(read: dict) -> list[str]:
    counts = read["problems"]["counts"]
    lines = ["## Bad input", ""]
    if not counts:
        lines.append("The reader skipped nothing.")
    for kind, n in sorted(counts.items()):
        lines.append(f"- {kind}: {n:,}, first at: " + "; ".join(read["problems"]["examples"].get(kind, [])))
    if read["decoded_with_replacement"]:
        lines.append(f"- documents with bytes that are not UTF-8, replaced by U+FFFD and kept (`meta.replaced` "
                     f"counts them): {read['decoded_with_replacement']:,}")  # fmt: skip
    return [*lines, ""]


def _step_section(step: dict) -> list[str]:
    # Decontamination's per-item counters have a section of their own.
    counters = {k: n for k, n in step["counters"].items() if not k.startswith(("item:", "cluster_size_"))}
    if not step["dropped"] and not counters:
        return []
    lines = [f"## {step['name']}", ""]
    if step["dropped"]:
        lines += ["| reason | documents | % of seen |", "|---|---:|---:|"]
        for reason, n in sorted(step["dropped"].items(), key=lambda item: (-item[1], item[0])):
            lines.append(f"| {reason} | {n:,} | {_percent(n, step['seen'])} |")
        lines.append("")
    if counters:
        lines += ["Counted: " + ", ".join(f"{key} {n:,}" for key, n in sorted(counters.items())), ""]
    for reason, examples in sorted(step["examples"].items()):
        lines.append(f"Removed as **{reason}**, for example:")
        lines.append("")
        for example in examples:
            lines += [f"- `{example['id']}`", "", *_fenced(example["text"]), ""]
    return lines


def _decontamination(report: dict) -> list[str]:
    lines = ["## Decontamination", "",
             "| benchmark | items tested | too short to test | documents overlapping | items found |",
             "|---|---:|---:|---:|---:|"]  # fmt: skip
    for name, r in report.items():
        lines.append(f"| {name} | {r['items']:,} | {r['too_short']:,} | {r['docs']:,} | {len(r['found']):,} |")
    for name, r in report.items():
        if r["found"]:
            found = ", ".join(f"{item} ({n})" for item, n in list(r["found"].items())[:20])
            lines += ["", f"{name} items found in the corpus (documents containing each): {found}"]
    return [*lines, ""]


def _fenced(text: str) -> list[str]:
    """``text`` in a code fence longer than any run of backticks inside it, indented under its list item."""
    fence = "`" * max(3, 1 + max(map(len, re.findall("`+", text)), default=0))
    return ["  " + line if line else "" for line in [fence + "text", *text.split("\n"), fence]]


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"
