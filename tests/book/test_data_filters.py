"""The cleaning-steps experiment of chapter 2: each step's counts add up, the table has one row per step and one
column per corpus, the files are written, and the shared corpora are measured when ../shared is there."""

from __future__ import annotations

import json

import pytest

from scratchllm.book.experiments.data_filters import (
    CODE_CHAIN,
    PROSE_CHAIN,
    STEPS,
    measure_corpus,
    paragraph_chunks,
    run,
    table,
    write,
)
from scratchllm.data import Document

pytest.importorskip("langid")

ENGLISH = (
    "The quick brown fox jumps over the lazy dog. It was a bright cold day in April, and the clocks were striking "
    "thirteen. Everyone who reads this sentence will understand that it is written in plain English prose. "
)
GERMAN = (
    "Der schnelle braune Fuchs springt über den faulen Hund. Es war ein heller, kalter Tag im April, und die Uhren "
    "schlugen dreizehn. Jeder, der diesen Satz liest, versteht, dass er auf Deutsch geschrieben ist. "
)


def add_up(stats: dict) -> bool:
    return stats["kept"] + sum(stats["dropped"].values()) == stats["seen"]


def check_corpus(corpus: dict) -> None:
    norm = corpus["normalize"]
    assert norm["seen"] == corpus["documents"] and add_up(norm)
    assert set(norm["dropped_names"]) == set(norm["dropped"])
    assert list(corpus["steps"]) == list(STEPS)
    for name, stats in corpus["steps"].items():
        assert stats["seen"] == norm["kept"] and add_up(stats), name
    chained = corpus["chained"]
    assert chained["seen"] == norm["kept"] and chained["kept"] + sum(chained["dropped"].values()) == chained["seen"]
    assert corpus["steps"]["pii"]["kept"] == norm["kept"]  # redaction never drops


def check_table(result: dict) -> list[str]:
    lines = table(result).splitlines()
    assert len(lines) == 2 + 1 + len(STEPS) + 1  # header, rule, normalize, one per step, chained
    columns = 1 + len(result["corpora"])
    assert lines[1] == "|" + "---|" * columns
    for line in lines[:1] + lines[2:]:
        assert line.startswith("| ") and line.endswith(" |") and line.count(" | ") == columns - 1, line
    return lines


def test_handmade_documents():
    docs = [
        Document("a/english.txt", ENGLISH * 3, "test"),
        Document("a/german.txt", GERMAN * 3, "test"),
        Document("b/__init__.py", " \r\n\n", "test"),
        Document("a/mail.txt", ENGLISH * 2 + "Write to jane.doe@university.edu or call 8.8.8.8 today.\r\n", "test"),
    ]
    result = measure_corpus(docs, PROSE_CHAIN)
    check_corpus(result)
    assert result["normalize"]["dropped"] == {"empty": 1}
    assert result["normalize"]["dropped_names"] == {"empty": {"__init__.py": 1}}
    assert result["normalize"]["counters"]["line_endings"] == 2
    language = result["steps"]["language"]
    assert language["dropped"] == {"language:not_allowed": 1} and language["example_ids"] == {
        "language:not_allowed": ["a/german.txt"]
    }
    assert language["counters"] == {"lang_de": 1, "lang_en": 2}
    assert result["steps"]["pii"]["counters"] == {"changed": 1, "emails": 1, "ips": 1}
    assert result["chained"]["steps"] == list(PROSE_CHAIN) and result["chained"]["dropped"]["language"] == 1


def test_paragraph_chunks_keep_every_paragraph():
    text = "\n\n".join(f"paragraph {i} " + "x" * (i * 97 % 700) for i in range(40))
    chunks = paragraph_chunks(text, "t", size=1000)
    assert "\n\n".join(d.text for d in chunks) == text
    assert [d.id for d in chunks] == [f"t/{i}" for i in range(len(chunks))]
    assert all(len(d.text) >= 1000 for d in chunks[:-1])


@pytest.fixture(scope="module")
def stdlib_only():
    return run(shared=None, max_documents=30)


def test_default_corpus_only(stdlib_only, tmp_path):
    result = stdlib_only
    assert [c["name"] for c in result["corpora"]] == ["stdlib"] and "skipped" in result["notes"][0]
    corpus = result["corpora"][0]
    assert corpus["documents"] == 30 and corpus["chained"]["steps"] == list(CODE_CHAIN)
    check_corpus(corpus)
    lines = check_table(result)
    assert lines[0] == f"| step | stdlib: kept of {corpus['normalize']['kept']} |"
    assert lines[-1].startswith("| chained | `code` > `pii`: ")
    paths = write(result, tmp_path)
    assert sorted(p.name for p in paths) == ["data_filters.json", "data_filters.md"]
    assert json.loads(paths[0].read_text()) == result
    assert paths[1].read_text() == table(result) + "\n"
    assert not (tmp_path / "data_filters.png").exists()


def test_shared_corpora(shared_data):
    result = run(shared=shared_data, max_documents=12)
    assert [c["name"] for c in result["corpora"]] == ["stdlib", "TinyStories", "Tiny Shakespeare"]
    assert result["notes"] == []
    for corpus in result["corpora"]:
        assert corpus["documents"] == 12
        check_corpus(corpus)
    assert result["corpora"][1]["chained"]["steps"] == list(PROSE_CHAIN)
    lines = check_table(result)
    assert lines[-1].endswith(" | same chain: " + str(result["corpora"][2]["chained"]["kept"]) + " |")
