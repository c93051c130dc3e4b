"""The experiments the book build runs: for each, the module whose code keys its cache, the arguments of its quick
and full modes, the files it writes into ``docs/figures``, and a runner that calls the module's ``run`` and ``write``.

Quick mode is sized so that every experiment together finishes in well under 20 minutes on a 2-core CPU; full mode
is what the modules' own ``__main__`` runs by default. A figure or number in the manual names an experiment by the
stem of its files (``figures/positions.png``, ``{{ positions.steps }}``), and ``by_output`` maps a file back to the
experiment that writes it.

``demo`` is ``scratchllm demo`` itself, run as a command and keyed by ``scratchllm/cli/demo.py``'s imports, with fewer
steps in quick mode;
``eval_tiny`` scores the checkpoint it leaves behind and
``demo_recipe`` retrains on its tokens.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ...fileio import atomic_write_text

ROOT = Path(__file__).resolve().parents[3]
SHARED = "../shared/data"  # the team's data directory, when present, relative to the repository root


@dataclass(frozen=True)
class Experiment:
    name: str
    module: str  # the dotted module whose source, and the scratchllm modules it imports, key the cache
    outputs: tuple[str, ...]  # file names it writes into the figures directory
    runner: Callable[[dict, Path, Path], None]  # (arguments, figures directory, scratch directory)
    quick: dict = field(default_factory=dict)
    full: dict = field(default_factory=dict)
    needs: tuple[str, ...] = ()  # experiments whose scratch output this one reads

    def args(self, full: bool) -> dict:
        return self.full if full else self.quick


def _write_json(path: Path, result: dict) -> None:
    atomic_write_text(path, json.dumps(result, indent=2) + "\n")


def _module_runner(module_name: str, positional: tuple[str, ...] = ()) -> Callable[[dict, Path, Path], None]:
    """Runner for a module with ``run(**kwargs) -> dict`` and ``write(result, out_dir)``."""

    def runner(kwargs: dict, out: Path, work: Path) -> None:
        import importlib

        module = importlib.import_module(module_name)
        module.write(module.run(**kwargs), out)

    return runner


def _embedding_lookup(kwargs: dict, out: Path, work: Path) -> None:
    from . import embedding_lookup

    _write_json(out / "embedding_lookup.json", embedding_lookup.run(**kwargs))


def _model_sizes(kwargs: dict, out: Path, work: Path) -> None:
    from . import model_sizes

    atomic_write_text(out / "model_sizes.md", model_sizes.table() + "\n")


def _data_filters(kwargs: dict, out: Path, work: Path) -> None:
    from . import data_filters

    shared = ROOT / kwargs["shared"] if kwargs.get("shared") else None
    data_filters.write(data_filters.run(shared, kwargs.get("max_documents", 0)), out)


def _decontam(kwargs: dict, out: Path, work: Path) -> None:
    from . import decontam_overlap

    shared = ROOT / kwargs["shared"] if kwargs.get("shared") else None
    decontam_overlap.write(decontam_overlap.run(shared, max_documents=kwargs.get("max_documents", 0)), out)


def _demo(kwargs: dict, out: Path, work: Path) -> None:
    """``scratchllm demo`` into ``work/demo``; keeps its summary, its loss plot and its median training step time."""
    from statistics import median

    from ...cli.demo import SUMMARY_FILE
    from ...train.metrics import read_metrics

    run_dir = work / "demo"
    shutil.rmtree(run_dir, ignore_errors=True)
    cmd = [sys.executable, "-m", "scratchllm", "demo", "--out", str(run_dir), "--steps", str(kwargs["steps"])]
    if not kwargs.get("compile", True):
        cmd.append("--no-compile")
    if "sft_steps" in kwargs:
        cmd += ["--sft-steps", str(kwargs["sft_steps"])]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    summary = json.loads((run_dir / SUMMARY_FILE).read_text(encoding="utf-8"))
    steps = [r for r in read_metrics(run_dir / "train" / "metrics.jsonl") if "step_time" in r]
    result = {
        "command": " ".join(["scratchllm", *cmd[3:]]), **kwargs, **summary,
        "first_step_seconds": steps[0]["step_time"], "median_step_seconds": median(r["step_time"] for r in steps[1:]),
        "perplexity": math.exp(summary["val_loss"]),
    }  # fmt: skip
    _write_json(out / "demo.json", result)
    shutil.copyfile(run_dir / "train" / "loss.png", out / "demo_loss.png")


def _benchmark_runner(name: str) -> Callable[[dict, Path, Path], None]:
    """Runner for ``benchmarks/NAME.py``: run as a script with ``--json figures/bench_NAME.json`` (it also writes the
    ``.md`` table beside it), plus ``--quick`` in quick mode. The benchmark prints its side-by-side ratios as usual."""

    def runner(kwargs: dict, out: Path, work: Path) -> None:
        cmd = [sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), "--json", str(out / f"bench_{name}.json")]
        subprocess.run(cmd + (["--quick"] if kwargs.get("quick") else []), check=True, cwd=ROOT)

    return runner


def _eval_all(kwargs: dict, out: Path, work: Path) -> None:
    from . import eval_all

    mmlu = ROOT / SHARED / "mmlu"
    checkpoint = work / "demo" / "train" / "checkpoints" / "best"
    shared = {"mmlu": mmlu, "mmlu_label": f"{SHARED}/mmlu"} if mmlu.is_dir() else {}
    eval_all.write(eval_all.run(checkpoint, **shared, **kwargs), out)


def _demo_recipe(kwargs: dict, out: Path, work: Path) -> None:
    from . import demo_recipe

    demo_recipe.write(demo_recipe.run(work / "demo", **kwargs), out)


def _eval_tiny(kwargs: dict, out: Path, work: Path) -> None:
    from . import eval_tiny

    mmlu = ROOT / SHARED / "mmlu"
    checkpoint = work / "demo" / "train" / "checkpoints" / "best"
    result = eval_tiny.run(checkpoint, mmlu if mmlu.is_dir() else None, **kwargs)
    eval_tiny.write(result, out)


_PKG = "scratchllm.book.experiments"
# The side-by-side benchmarks of benchmarks/ whose numbers the manual quotes (each takes --json PATH and --quick)
BENCHMARKS = ("tokenizer", "dedup", "pipeline", "eval", "lora", "serve", "generate", "bubble", "parallel", "train")
EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in [
        Experiment("embedding_lookup", f"{_PKG}.embedding_lookup", ("embedding_lookup.json",), _embedding_lookup),
        Experiment("model_sizes", f"{_PKG}.model_sizes", ("model_sizes.md",), _model_sizes),
        Experiment(
            "grad_accum", f"{_PKG}.grad_accum", ("grad_accum.json", "grad_accum.md", "grad_accum.png"),
            _module_runner(f"{_PKG}.grad_accum"),
        ),
        Experiment(
            "memory_configs", f"{_PKG}.memory_configs", ("memory_configs.json", "memory_configs.md",
            "memory_configs.png"), _module_runner(f"{_PKG}.memory_configs"),
            quick={"preset": "tiny", "batch": 16, "seq": 256}, full={"preset": "gpt2", "batch": 8, "seq": 1024},
        ),
        Experiment(
            "comm_volume", f"{_PKG}.comm_volume", ("comm_volume.json", "comm_volume.md", "comm_volume.png"),
            _module_runner(f"{_PKG}.comm_volume"),
        ),
        Experiment(
            "positions", f"{_PKG}.positions", ("positions.json", "positions.md", "positions.png"),
            _module_runner(f"{_PKG}.positions"), quick={"quick": True}, full={"quick": False},
        ),
        Experiment(
            "vocab_scaling", f"{_PKG}.vocab_scaling", ("vocab_scaling.json", "vocab_scaling.md", "vocab_scaling.png"),
            _module_runner(f"{_PKG}.vocab_scaling"),
        ),
        Experiment(
            "minhash_scurve", f"{_PKG}.minhash_scurve", ("minhash_scurve.json", "minhash_scurve.md",
            "minhash_scurve.png"), _module_runner(f"{_PKG}.minhash_scurve"), quick={"pairs_per_level": 50},
            full={"pairs_per_level": 200},
        ),
        Experiment(
            "data_filters", f"{_PKG}.data_filters", ("data_filters.json", "data_filters.md"), _data_filters,
            quick={"shared": SHARED, "max_documents": 0}, full={"shared": SHARED, "max_documents": 0},  # 40 s: the text
            # quotes counts that only the whole corpus has (mojibake in a few test files)
        ),
        Experiment(
            "decontam_overlap", f"{_PKG}.decontam_overlap", ("decontam_overlap.json", "decontam_overlap.md"),
            _decontam, quick={"shared": SHARED}, full={"shared": SHARED},
        ),
        *(
            Experiment(
                f"bench_{name}", f"benchmarks.{name}", (f"bench_{name}.json", f"bench_{name}.md"),
                _benchmark_runner(name), quick={"quick": True}, full={"quick": False},
            )
            for name in BENCHMARKS
        ),
        Experiment(
            "demo", "scratchllm.cli.demo", ("demo.json", "demo_loss.png"), _demo,
            quick={"steps": 60, "compile": False, "sft_steps": 10}, full={"steps": 1000, "compile": True},
        ),
        Experiment(
            "eval_all", f"{_PKG}.eval_all", ("eval_all.json", "eval_all.md"), _eval_all,
            quick={"limit": 5, "max_documents": 5}, full={}, needs=("demo",),
        ),
        Experiment(
            "demo_recipe", f"{_PKG}.demo_recipe", ("demo_recipe.json", "demo_recipe.md", "demo_recipe.png"),
            _demo_recipe, quick={"steps": 100, "timing_steps": 4, "window": 20, "compile": False},
            full={}, needs=("demo",),
        ),
        Experiment(
            "eval_tiny", f"{_PKG}.eval_tiny", ("eval_tiny.json", "eval_tiny.md", "eval_tiny.png"), _eval_tiny,
            quick={"max_documents": 5, "limit": 10}, full={}, needs=("demo",),
        ),
    ]
}  # fmt: skip


def by_output(file_name: str) -> Experiment | None:
    """The experiment that writes ``file_name`` into the figures directory, if any."""
    for exp in EXPERIMENTS.values():
        if file_name in exp.outputs:
            return exp
    return None
