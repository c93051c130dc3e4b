"""Tests for the data stage's entry: Document, CorpusConfig, the reader registry, the split, and the stdlib reader
(the jsonl reader and bad input: test_readers_jsonl.py)."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

from scratchllm.config import ConfigError, load_config
from scratchllm.data import (
    CorpusConfig,
    CorpusError,
    Document,
    open_corpus,
    register_reader,
    require_nonempty,
    split_of,
)
from scratchllm.data.readers import READERS, decode_source, stdlib_files, stdlib_root


@pytest.fixture(scope="module")
def stdlib_docs() -> list[Document]:
    """The whole embedded corpus, read once for the module (about 1,900 documents, 32 MB; well under a second)."""
    return list(open_corpus(CorpusConfig(split="all")))


def jsonl_corpus(directory: Path, n: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "docs.jsonl"
    path.write_text("".join(json.dumps({"id": f"doc-{i}", "text": f"text {i}"}) + "\n" for i in range(n)))
    return path


# ---------------------------------------------------------------------------------------------------------------------
# Document and CorpusConfig


def test_document_json_round_trip():
    doc = Document(id="a/1", text='café "quoted"\nline\ttab 🙂', source="web", meta={"url": "http://x", "score": 0.5})
    line = doc.to_json()
    assert "\n" not in line and "café" in line  # one line, non-ASCII kept readable
    assert json.loads(line) == {"id": "a/1", "text": doc.text, "source": "web", "meta": doc.meta}
    assert Document.from_json(line) == doc


def test_document_defaults_and_hash():
    doc = Document(id="x", text="t", source="s")
    assert doc.meta == {}
    assert Document(id="y", text="t", source="s").meta is not doc.meta  # no shared mutable default
    assert hash(doc) == hash(Document(id="x", text="t", source="s", meta={"ignored": "by hash"}))
    with pytest.raises(AttributeError):
        doc.text = "changed"  # frozen


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"text": "no id"}', "'id' field is missing"),
        ('{"id": "x", "text": 3}', "'text' field is missing or not a string"),
        ('{"id": "x", "text": "t", "meta": []}', "'meta' field must be a JSON object"),
    ],
)
def test_document_from_json_rejects_bad_lines(line, message):
    with pytest.raises(ValueError, match=message):
        Document.from_json(line)


def test_corpus_config_validation():
    assert CorpusConfig() == CorpusConfig(source="stdlib", path="", split="train", val_fraction=0.01)
    with pytest.raises(ConfigError, match="split must be one of train, val, all; got 'test'"):
        CorpusConfig(split="test")
    for bad in (-0.1, 1.0):
        with pytest.raises(ConfigError, match="val_fraction must be at least 0 and below 1"):
            CorpusConfig(val_fraction=bad)
    with pytest.raises(ConfigError, match="max_documents must be 0"):
        CorpusConfig(max_documents=-1)
    # The same checks apply to values loaded from the command line.
    assert load_config(CorpusConfig, overrides=["split=val", "max_documents=5"]).split == "val"
    with pytest.raises(ConfigError, match="split must be one of"):
        load_config(CorpusConfig, overrides=["split=validation"])


# ---------------------------------------------------------------------------------------------------------------------
# The split


def test_split_of_is_a_fixed_function_of_sha256():
    # Golden values: if these change, every previously held-out document may have moved into training.
    def expected(key: str, fraction: float) -> str:
        h = int(hashlib.sha256(key.encode()).hexdigest()[:16], 16)
        return "val" if h < fraction * 2**64 else "train"

    keys = [f"stdlib/module_{i}.py" for i in range(200)]
    assert [split_of(k, 0.3) for k in keys] == [expected(k, 0.3) for k in keys]
    assert split_of("stdlib/os.py", 0.01) == "train"
    assert [k for k in keys[:40] if split_of(k, 0.1) == "val"] == [
        "stdlib/module_6.py",
        "stdlib/module_9.py",
        "stdlib/module_22.py",
        "stdlib/module_38.py",
        "stdlib/module_39.py",
    ]
    assert [split_of(k, 0.5) for k in "abcdefgh"] == ["train", "val", "val", "val", "val", "val", "train", "train"]


def test_split_of_edges_and_monotonicity():
    keys = [str(i) for i in range(2000)]
    assert all(split_of(k, 0.0) == "train" for k in keys)
    small = {k for k in keys if split_of(k, 0.05) == "val"}
    large = {k for k in keys if split_of(k, 0.20) == "val"}
    assert small < large  # raising the fraction only moves documents from train to val
    assert 0.03 < len(small) / len(keys) < 0.07
    assert 0.16 < len(large) / len(keys) < 0.24


def test_open_corpus_splits_are_disjoint_and_cover_everything(tmp_path):
    path = jsonl_corpus(tmp_path, 1000)
    ids = {}
    for split in ("train", "val", "all"):
        ids[split] = [
            d.id for d in open_corpus(CorpusConfig(source="jsonl", path=str(path), split=split, val_fraction=0.1))
        ]
    assert set(ids["train"]).isdisjoint(ids["val"])
    assert sorted(ids["train"] + ids["val"]) == sorted(ids["all"])
    assert len(ids["all"]) == 1000
    assert 60 <= len(ids["val"]) <= 140
    # Each split keeps the reader's order.
    assert ids["val"] == [i for i in ids["all"] if i in set(ids["val"])]


def test_max_documents_counts_after_the_split(tmp_path):
    path = jsonl_corpus(tmp_path, 500)
    all_val = [d.id for d in open_corpus(CorpusConfig(source="jsonl", path=str(path), split="val", val_fraction=0.2))]
    first = [
        d.id
        for d in open_corpus(
            CorpusConfig(source="jsonl", path=str(path), split="val", val_fraction=0.2, max_documents=7)
        )
    ]
    assert first == all_val[:7]
    assert len(list(open_corpus(CorpusConfig(source="jsonl", path=str(path), split="all", max_documents=1)))) == 1


def test_max_documents_stops_reading(tmp_path):
    consumed = []

    @register_reader("_counting_test_reader")
    def counting(cfg, report):
        for i in range(100):
            consumed.append(i)
            yield Document(id=str(i), text="x", source="test")

    try:
        docs = list(open_corpus(CorpusConfig(source="_counting_test_reader", split="all", max_documents=3)))
        assert [d.id for d in docs] == ["0", "1", "2"]
        assert consumed == [0, 1, 2]  # the reader was not asked for a fourth document
        with pytest.raises(ValueError, match="already registered"):
            register_reader("_counting_test_reader")(counting)
    finally:
        del READERS["_counting_test_reader"]


def test_unknown_reader_lists_the_known_ones():
    with pytest.raises(ConfigError) as e:
        open_corpus(CorpusConfig(source="csv"))  # raised at once, before any iteration
    assert "unknown corpus source 'csv'; known readers: files, hf, jsonl, parquet, stdlib, warc" in str(e.value)


def test_require_nonempty(tmp_path):
    assert [d.id for d in require_nonempty([Document("a", "t", "s")])] == ["a"]
    with pytest.raises(CorpusError, match="the corpus produced no documents; check source, path, split"):
        list(require_nonempty(iter([])))
    # A 3-document corpus may hold nothing out at 1%: the error suggests what to do.
    path = jsonl_corpus(tmp_path, 3)
    val = open_corpus(CorpusConfig(source="jsonl", path=str(path), split="val", val_fraction=0.001))
    with pytest.raises(CorpusError, match="raise val_fraction or use split=all"):
        list(require_nonempty(val, what="the validation split"))


# ---------------------------------------------------------------------------------------------------------------------
# stdlib: the embedded default corpus


def test_stdlib_corpus_contents(stdlib_docs):
    files = stdlib_files(stdlib_root())
    source_docs = [d for d in stdlib_docs if d.source == "stdlib"]
    pydoc_docs = [d for d in stdlib_docs if d.source == "pydoc"]
    # Files first, then pydoc topics; each group in sorted order, so the order never depends on the file system.
    assert stdlib_docs == source_docs + pydoc_docs
    assert [d.id for d in source_docs] == [f"stdlib/{f}" for f in files]
    assert files == sorted(files)
    assert len(files) > 1000 and "os.py" in files and "json/decoder.py" in files
    assert any(f.startswith("test/") for f in files)  # the test suite is part of the corpus
    assert not any("site-packages" in f or "dist-packages" in f for f in files)

    from pydoc_data.topics import topics

    assert [d.id for d in pydoc_docs] == [f"pydoc/{name}" for name in sorted(topics)]
    assert pydoc_docs[0].text == topics[sorted(topics)[0]]
    assert len({d.id for d in stdlib_docs}) == len(stdlib_docs)  # ids are unique

    os_doc = next(d for d in source_docs if d.id == "stdlib/os.py")
    assert os_doc.text == (stdlib_root() / "os.py").read_text(encoding="utf-8")
    version = ".".join(map(str, sys.version_info[:3]))
    assert os_doc.meta == {"path": "os.py", "python": version}
    assert sum(len(d.text) for d in stdlib_docs) > 10_000_000


def test_stdlib_non_utf8_files_are_decoded_not_fatal(stdlib_docs):
    # CPython's own tests ship files in latin-1 and koi8-r (with coding cookies), and one invalid file on purpose.
    encodings = {d.meta["path"]: d.meta["encoding"] for d in stdlib_docs if "encoding" in d.meta}
    assert encodings, "expected a few non-UTF-8 files in the standard library's tests"
    assert set(encodings.values()) <= {"iso-8859-1", "koi8-r", "utf-8+replace", "latin-1", "cp1252"}


def test_stdlib_validation_fraction(stdlib_docs):
    val = [d for d in stdlib_docs if split_of(d.id, 0.01) == "val"]
    assert 0.003 < len(val) / len(stdlib_docs) < 0.03


def test_stdlib_reader_on_a_custom_root_is_deterministic(tmp_path):
    root = tmp_path / "lib"
    (root / "pkg" / "sub").mkdir(parents=True)
    (root / "site-packages" / "third").mkdir(parents=True)
    (root / "b.py").write_text("B = 2\n")
    (root / "a.py").write_text("A = 1\n")
    (root / "pkg" / "sub" / "z.py").write_text("# é\n", encoding="utf-8")
    (root / "pkg" / "notes.txt").write_text("not python")
    (root / "site-packages" / "third" / "x.py").write_text("x = 1\n")
    (root / "latin.py").write_bytes(b"# -*- coding: latin-1 -*-\nname = 'caf\xe9'\n")
    (root / "bad.py").write_bytes(b"x = '\xff\xfe'\n")  # neither UTF-8 nor declared

    cfg = CorpusConfig(path=str(root), split="all", include_pydoc=False)
    first = list(open_corpus(cfg))
    assert first == list(open_corpus(cfg))  # two passes, same documents in the same order
    assert [d.id for d in first] == [
        "stdlib/a.py",
        "stdlib/b.py",
        "stdlib/bad.py",
        "stdlib/latin.py",
        "stdlib/pkg/sub/z.py",
    ]
    by_id = {d.id: d for d in first}
    assert by_id["stdlib/latin.py"].text == "# -*- coding: latin-1 -*-\nname = 'café'\n"
    assert by_id["stdlib/latin.py"].meta["encoding"] == "iso-8859-1"
    assert by_id["stdlib/bad.py"].text == "x = '\ufffd\ufffd'\n"
    assert by_id["stdlib/bad.py"].meta["encoding"] == "utf-8+replace"
    assert "encoding" not in by_id["stdlib/pkg/sub/z.py"].meta
    assert by_id["stdlib/pkg/sub/z.py"].meta["path"] == "pkg/sub/z.py"

    with_pydoc = list(open_corpus(CorpusConfig(path=str(root), split="all")))
    assert with_pydoc[: len(first)] == first and all(d.source == "pydoc" for d in with_pydoc[len(first) :])


def test_decode_source_with_bad_cookie():
    text, encoding = decode_source(b"# coding: no-such-codec\nx = '\xff'\n")
    assert encoding == "utf-8+replace" and text.endswith("x = '\ufffd'\n")
    assert decode_source("ok = 'é'\n".encode()) == ("ok = 'é'\n", None)


def test_stdlib_reader_with_a_missing_root(tmp_path):
    with pytest.raises(CorpusError, match="is not a directory"):
        list(open_corpus(CorpusConfig(path=str(tmp_path / "missing"))))
