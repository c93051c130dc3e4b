"""The decontamination experiment of chapter 2: on benchmark files and documents written by the test, it finds the
copy and not the rest, the counts add up, the hits come back as words, the table and files are well formed, and the
near miss the book describes stays a miss."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import pytest

from scratchllm.book.experiments.decontam_overlap import (
    function_source,
    item_pairs,
    longest_shared_run,
    measure,
    near_miss,
    run,
    table,
    write,
)
from scratchllm.data import Document
from scratchllm.data.decontam import DecontamConfig, build_index

SOLUTION = "\n".join(
    ["    total = 0", "    for value in numbers:", "        if value % 2 == 0:", "            total += value"]
)
SOLUTION += "\n    return total\n"
PROBLEMS = [
    {
        "task_id": "T/0",
        "prompt": 'def sum_even(numbers):\n    """Sum of the even numbers."""\n',
        "canonical_solution": SOLUTION,
    },
    # shares its whole solution, and so many 13-grams, with T/0
    {
        "task_id": "T/1",
        "prompt": 'def add_evens(numbers):\n    """Add up the even ones."""\n',
        "canonical_solution": SOLUTION,
    },
    {"task_id": "T/2", "prompt": "def f(x):\n", "canonical_solution": "    return x\n"},  # 5 words: too short
]
QUESTION = [
    "Which planet is known as the red planet in our solar system today",
    "Venus",
    "Mars",
    "Earth",
    "Jupiter",
    "B",
]


@pytest.fixture
def benchmarks(tmp_path):
    humaneval = tmp_path / "problems.jsonl"
    humaneval.write_text("".join(json.dumps(p) + "\n" for p in PROBLEMS))
    (tmp_path / "mmlu" / "test").mkdir(parents=True)
    with open(tmp_path / "mmlu" / "test" / "astronomy_test.csv", "w", newline="") as f:
        csv.writer(f).writerow(QUESTION)
    return str(humaneval), str(tmp_path / "mmlu")


def test_measure_finds_the_copy(benchmarks):
    humaneval, mmlu = benchmarks
    docs = [
        Document("copy.py", "import os\n\n" + PROBLEMS[0]["prompt"] + SOLUTION + "\nprint(sum_even([1, 2]))\n", "t"),
        Document("other.py", "def main():\n    print('hello world')\n", "t"),
        Document("quiz.txt", "Quiz: " + " ".join(QUESTION[:5]) + ". Answer below.", "t"),
    ]
    cfg = DecontamConfig(["humaneval", "mmlu"], humaneval, mmlu, ngram=13, mode="remove")  # measure always flags
    result = measure(docs, cfg)
    assert result["seen"] == result["kept"] == 3 and result["dropped"] == 0 and result["contaminated"] == 2
    report = result["report"]
    assert report["humaneval"]["docs"] == 1 and report["humaneval"]["found"] == {"T/0": 1, "T/1": 1}
    assert report["humaneval"]["items"] == 2 and report["humaneval"]["too_short"] == 1
    assert report["mmlu"] == {"items": 1, "too_short": 0, "docs": 1, "found": {"test/astronomy_test/0": 1}}
    assert set(result["documents"]) == {"copy.py", "quiz.txt"}
    assert result["documents"]["copy.py"]["humaneval"]["T/0"] >= 1
    words = [g["words"] for g in result["shared_ngrams"]["humaneval:T/0"]]
    assert all(len(w.split()) == 13 for w in words) and "for value in numbers if value 2 0 total value" in " ".join(
        words
    )
    assert all(g["documents"] == 1 for grams in result["shared_ngrams"].values() for g in grams)
    assert result["item_pairs"]["humaneval"]["pairs"] == 1 and result["item_pairs"]["humaneval"]["top"][0][:2] == [
        "T/0",
        "T/1",
    ]


def test_item_pairs_count_shared_ngrams(benchmarks):
    humaneval, _ = benchmarks
    index = build_index(DecontamConfig(["humaneval"], humaneval, ngram=8))
    (a, b, shared) = item_pairs(index)["humaneval"]["top"][0]
    solution_grams = len(longest_shared_run(SOLUTION, SOLUTION)) - 8 + 1
    assert (a, b) == ("T/0", "T/1") and shared == solution_grams


def test_longest_shared_run_and_function_source():
    assert longest_shared_run("a b c d e", "x b c d y") == ["b", "c", "d"]
    assert longest_shared_run("one two", "three") == []
    text = "import x\n\ndef f(a):\n    return a\n\n\ndef g():\n    pass\n"
    assert function_source(text, "f") == "\ndef f(a):\n    return a\n\n"


def test_statistics_median_is_a_near_miss():
    doc = Document("stdlib/statistics.py", Path(statistics.__file__).read_text(encoding="utf-8"), "stdlib")
    miss = near_miss([doc])
    assert miss["item"] == "HumanEval/47" and miss["longest_shared_words"] < 5
    assert near_miss([Document("stdlib/os.py", "import sys\n", "stdlib")]) is None


def test_run_table_and_files(tmp_path):
    result = run(shared=None, ngrams=(13, 8), max_documents=40)
    assert result["benchmarks"] == ["humaneval"] and "only HumanEval" in result["notes"][0]
    assert result["documents"] == 40 and result["benchmark_items"]["humaneval"] == {
        "HumanEval": {"items": 164, "sources": 1}
    }
    for r in result["results"]:
        assert r["seen"] == r["kept"] == 40 and r["dropped"] == 0
        assert r["contaminated"] == len(r["documents"]) == r["report"]["humaneval"]["docs"]
        assert r["report"]["humaneval"]["items"] + r["report"]["humaneval"]["too_short"] == 164
    lines = table(result).splitlines()
    assert lines[:2] == ["| n | HumanEval: documents hit | HumanEval: items found |", "|---:|---:|---:|"]
    assert lines[2].startswith("| **13** (default) | **") and lines[3].startswith("| 8 | ") and len(lines) == 4
    paths = write(result, tmp_path)
    assert sorted(p.name for p in paths) == ["decontam_overlap.json", "decontam_overlap.md"]
    assert json.loads(paths[0].read_text()) == json.loads(json.dumps(result))
    assert paths[1].read_text() == table(result) + "\n"


def test_run_with_mmlu(shared_data):
    result = run(shared=shared_data, ngrams=(13,), max_documents=10)
    assert result["benchmarks"] == ["humaneval", "mmlu"] and result["notes"] == []
    assert set(result["benchmark_items"]["mmlu"]) == {"dev", "test"}
    assert table(result).splitlines()[0].endswith("| MMLU: documents hit | MMLU: items found |")
