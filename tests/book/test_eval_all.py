"""Chapter 5's `eval all` experiment: the command's own report on a tiny checkpoint, and HumanEval's failures sorted
by kind (checked on hand-made results whose kinds are known)."""

from __future__ import annotations

import json

from scratchllm.book.experiments.eval_all import SAMPLES_FILE, humaneval_failures, run, write
from scratchllm.eval.humaneval import read_problems

DOCTEST_LOOP = '    """\n    >>> f(1)\n    >>> f(2)\n    """\n'  # parses: doctest lines in a string, no body


def test_failures_are_counted_by_kind(tmp_path):
    problems = read_problems()
    ids = list(problems)[:4]
    p0 = problems[ids[0]]
    rows = [
        {"task_id": ids[0], "completion": p0["canonical_solution"], "result": "passed", "passed": True},
        {"task_id": ids[1], "completion": "    return (1,\n", "result": "failed: invalid syntax", "passed": False},
        {
            "task_id": ids[2],
            "completion": '    """\n    >>> f(1)\n    >>> f(2)\n    """\n',
            "result": "failed: ",
            "passed": False,
        },
        {"task_id": ids[3], "completion": "    while True:\n        pass\n", "result": "timed out", "passed": False},
    ]
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in rows))
    counts = humaneval_failures(results, problems)
    assert counts == {"samples": 4, "passed": 1, "does_not_parse": 1, "doctest_lines": 1, "timed_out": 1}


def test_report_on_a_tiny_checkpoint(checkpoint, mmlu_dir, tmp_path):
    report = run(checkpoint, mmlu_dir, limit=2, max_documents=2, mmlu_label="MMLU-DIR")
    tasks = report["by_task"]
    assert set(tasks) == {"perplexity", "mmlu", "humaneval"} and report["limit"] == 2
    assert tasks["perplexity"]["documents"] == 2 and tasks["mmlu"]["questions"] == 2
    assert "MMLU-DIR" in tasks["mmlu"]["data"] and str(mmlu_dir) not in tasks["mmlu"]["data"]
    failures = report["humaneval_failures"]
    assert failures["samples"] == 2 and failures["passed"] == 0  # a random 1-layer model passes nothing
    assert tasks["humaneval"]["results_file"] == f"{SAMPLES_FILE}_results.jsonl"
    json_path, md_path = write(report, tmp_path)
    assert json.loads(json_path.read_text())["humaneval_failures"] == failures
    assert md_path.read_text().count("| HumanEval |") == 1 and "| MMLU |" in md_path.read_text()
