"""Tests for the data stage's entry: Document, CorpusConfig, the reader registry, the split, the handling of bad input,
and the stdlib and jsonl readers (plain, .gz and .zst, whole and damaged)."""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import sys
from pathlib import Path

import pytest
import zstandard

from scratchllm.config import ConfigError, load_config
from scratchllm.data import (
    CorpusConfig,
    CorpusError,
    CorpusWarning,
    Document,
    ReadProblems,
    open_corpus,
    register_reader,
    require_nonempty,
    split_of,
)
from scratchllm.data.decode import open_binary
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


# ---------------------------------------------------------------------------------------------------------------------
# jsonl


def test_jsonl_reader_file_and_directory(tmp_path):
    d = tmp_path / "corpus"
    d.mkdir()
    (d / "b.jsonl").write_text(
        json.dumps({"text": "second file", "id": 7}) + "\n",
        encoding="utf-8",
    )
    (d / "a.jsonl").write_text(
        json.dumps({"id": "web/1", "text": "héllo", "source": "web", "meta": {"url": "u"}}, ensure_ascii=False)
        + "\n\n   \n"  # blank lines are skipped but still counted for line numbers
        + json.dumps({"text": "no id"})
        + "\n",
        encoding="utf-8",
    )
    (d / "ignored.txt").write_text("not a jsonl file")

    docs = list(open_corpus(CorpusConfig(source="jsonl", path=str(d), split="all")))
    assert docs == [
        Document(id="web/1", text="héllo", source="web", meta={"url": "u"}),
        Document(id="a.jsonl:4", text="no id", source="jsonl", meta={}),
        Document(id="7", text="second file", source="jsonl", meta={}),
    ]
    single = list(open_corpus(CorpusConfig(source="jsonl", path=str(d / "b.jsonl"), split="all")))
    assert [doc.id for doc in single] == ["7"]
    # Documents written by Document.to_json read back unchanged.
    (d / "c.jsonl").write_text("".join(doc.to_json() + "\n" for doc in docs), encoding="utf-8")
    again = list(open_corpus(CorpusConfig(source="jsonl", path=str(d / "c.jsonl"), split="all")))
    assert again == docs


@pytest.mark.parametrize(
    "line, message",
    [
        ("{oops", "line 2: not valid JSON"),
        ('{"title": "no text"}', "line 2: the 'text' field is missing or not a string"),
        ('{"text": ["a"]}', "line 2: the 'text' field is missing or not a string"),
        ('"just a string"', "line 2: expected a JSON object, got str"),
        ('{"text": "t", "meta": "m"}', "line 2: the 'meta' field must be a JSON object"),
        ('{"text": "t", "id": 1.5}', "line 2: the 'id' field is not a string or integer"),
        ('{"text": "t", "source": 3}', "line 2: the 'source' field must be a string"),
    ],
)
def test_jsonl_reader_bad_lines_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "fine"}\n' + line + "\n", encoding="utf-8")
    docs = open_corpus(CorpusConfig(source="jsonl", path=str(path), split="all"))
    assert next(docs).text == "fine"  # lazy: the good first line is delivered before the bad one is read
    with pytest.raises(CorpusError) as e:
        next(docs)
    assert str(path) in str(e.value) and message in str(e.value)


def test_jsonl_reader_path_errors(tmp_path):
    with pytest.raises(ConfigError, match="the jsonl reader needs a path"):
        list(open_corpus(CorpusConfig(source="jsonl")))
    with pytest.raises(CorpusError, match="does not exist"):
        list(open_corpus(CorpusConfig(source="jsonl", path=str(tmp_path / "nope.jsonl"))))
    with pytest.raises(CorpusError, match="holds no files matching \\*.jsonl, \\*.jsonl.gz, \\*.jsonl.zst"):
        list(open_corpus(CorpusConfig(source="jsonl", path=str(tmp_path))))
    (tmp_path / "latin.jsonl").write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(CorpusError, match="line 2: not UTF-8 text"):
        list(open_corpus(CorpusConfig(source="jsonl", path=str(tmp_path), split="all")))


# ---------------------------------------------------------------------------------------------------------------------
# jsonl: compressed files, directories of them, field names


def write_jsonl(path: Path, records: list[dict]) -> Path:
    """Records as JSON lines at ``path``, compressed by its suffix (.gz, .zst) with the standard tools' libraries."""
    data = "".join(json.dumps(r) + "\n" for r in records).encode()
    if path.suffix == ".gz":
        data = gzip.compress(data)
    elif path.suffix == ".zst":
        data = zstandard.ZstdCompressor().compress(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def records(prefix: str, n: int) -> list[dict]:
    # Texts that compress only about 2:1, so that 2,000 of them span several of zstd's 128 kB blocks and gzip's
    # windows: cutting such a file in half then loses real lines after delivering others.
    return [{"id": f"{prefix}-{i}", "text": f"{prefix} {i} " + random.Random(i).randbytes(80).hex()} for i in range(n)]


def test_jsonl_compressed_files_in_a_directory_tree(tmp_path):
    write_jsonl(tmp_path / "b.jsonl.zst", records("zst", 3))
    write_jsonl(tmp_path / "a" / "part.jsonl.gz", records("gz", 2))
    write_jsonl(tmp_path / "c.jsonl", [{"text": "plain, no id"}])
    write_jsonl(tmp_path / "a" / "part.json", records("ignored", 1))  # not a JSONL suffix
    write_jsonl(tmp_path / ".cache" / "x.jsonl", records("hidden", 1))  # hidden directories are skipped
    # zstd frames concatenated, as parallel compressors (pzstd, zstd -T) write them, read as one stream.
    frames = [zstandard.ZstdCompressor().compress((json.dumps(r) + "\n").encode()) for r in records("multi", 3)]
    (tmp_path / "d.jsonl.zst").write_bytes(b"".join(frames))

    docs = list(open_corpus(CorpusConfig(source="jsonl", path=str(tmp_path), split="all")))
    # Sorted by relative path: "a/part.jsonl.gz" < "b.jsonl.zst" < "c.jsonl" < "d.jsonl.zst".
    assert [d.id for d in docs] == [
        "gz-0",
        "gz-1",
        "zst-0",
        "zst-1",
        "zst-2",
        "c.jsonl:1",
        "multi-0",
        "multi-1",
        "multi-2",
    ]
    assert docs[0].text == records("gz", 1)[0]["text"] and docs[0].source == "jsonl"
    only_gz = open_corpus(CorpusConfig(source="jsonl", path=str(tmp_path), glob=["a/*.gz"], split="all"))
    assert [d.id for d in only_gz] == ["gz-0", "gz-1"]
    # The default id of a line in a nested file names its relative path, so two part.jsonl never share ids.
    write_jsonl(tmp_path / "e" / "part.jsonl", [{"text": "x"}])
    assert [d.id for d in open_corpus(CorpusConfig(source="jsonl", path=str(tmp_path / "e"), split="all"))] == [
        "part.jsonl:1"
    ]
    assert [d.id for d in open_corpus(CorpusConfig(source="jsonl", path=str(tmp_path), glob=["e/*"], split="all"))] == [
        "e/part.jsonl:1"
    ]


def test_jsonl_field_names_and_extra_fields(tmp_path):
    path = write_jsonl(
        tmp_path / "dump.jsonl",
        [
            {"content": "from a dump", "doc_id": 7, "url": "https://x", "score": 0.5, "lang": None, "meta": {"k": 1}},
            {"content": "no id here", "text": "a text field that is not the text"},
        ],
    )
    cfg = CorpusConfig(source="jsonl", path=str(path), split="all", text_field="content", id_field="doc_id")
    assert list(open_corpus(cfg)) == [
        # Other fields join meta (null ones are left out); the record's own meta wins on a clash.
        Document(id="7", text="from a dump", source="jsonl", meta={"url": "https://x", "score": 0.5, "k": 1}),
        Document(
            id="dump.jsonl:2", text="no id here", source="jsonl", meta={"text": "a text field that is not the text"}
        ),
    ]
    with pytest.raises(CorpusError, match="line 1: the 'text' field is missing or not a string"):
        list(open_corpus(CorpusConfig(source="jsonl", path=str(path), split="all")))


def test_corpus_config_reader_fields():
    cfg = load_config(CorpusConfig, overrides=['glob=["*.md", "docs/*.txt"]', "on_error=skip", "text_field=content"])
    assert cfg.glob == ["*.md", "docs/*.txt"] and cfg.on_error == "skip" and cfg.text_field == "content"
    with pytest.raises(ConfigError, match="on_error must be one of raise, skip; got 'ignore'"):
        CorpusConfig(on_error="ignore")
    with pytest.raises(ConfigError, match="text_field must name the field"):
        CorpusConfig(text_field="")


# ---------------------------------------------------------------------------------------------------------------------
# Bad input: counted and reported, never a crash, never a silent loss of good documents


def test_bad_lines_raise_or_are_skipped_and_counted(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(
        b'{"id": "a", "text": "good 1"}\n'
        b"{not json\n"
        b'{"id": "latin", "text": "caf\xe9"}\n'
        b'{"id": "c", "title": "no text"}\n'
        b'{"id": "d", "text": "good 2"}\n'
    )
    with pytest.raises(CorpusError, match=r"line 2: not valid JSON .*\(or set on_error=skip to skip bad input"):
        list(open_corpus(CorpusConfig(source="jsonl", path=str(path), split="all")))

    problems = ReadProblems()
    docs = list(open_corpus(CorpusConfig(source="jsonl", path=str(path), split="all", on_error="skip"), problems))
    assert [d.id for d in docs] == ["a", "d"]
    assert problems.counts == {"bad_record": 3} and problems.total == 3
    where = [e.split(": ")[0] for e in problems.examples["bad_record"]]
    assert where == [f"{str(path)!r} line {n}" for n in (2, 3, 4)]
    assert "not UTF-8 text" in problems.examples["bad_record"][1]
    assert problems.to_dict()["counts"] == {"bad_record": 3}


def test_skipped_input_without_a_collector_is_summed_up_in_a_warning(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"text": "ok"}\n[]\n')
    cfg = CorpusConfig(source="jsonl", path=str(path), split="all", on_error="skip")
    with pytest.warns(CorpusWarning, match=r"skipped bad input \(1 bad_record\); first: .*line 2: expected a JSON"):
        assert [d.text for d in open_corpus(cfg)] == ["ok"]


def test_read_problems_merge_keeps_counts_and_the_first_examples():
    a, b = ReadProblems(), ReadProblems()
    for i in range(4):
        a.add("bad_record", f"f line {i}", "bad")
        b.add("bad_record", f"g line {i}", "bad")
    b.add("bad_file", "h", "truncated")
    a.merge(b)
    assert a.counts == {"bad_record": 8, "bad_file": 1}
    assert a.examples["bad_record"] == [f"f line {i}: bad" for i in range(4)] + ["g line 0: bad"]
    assert a.summary() == "skipped bad input (1 bad_file, 8 bad_record); first: f line 0: bad"


@pytest.mark.parametrize("suffix", [".gz", ".zst"])
def test_truncated_compressed_jsonl_keeps_what_came_before_and_reports_the_rest(tmp_path, suffix):
    full = write_jsonl(tmp_path / f"full.jsonl{suffix}", records("doc", 2000))
    cut = tmp_path / "data" / f"a-cut.jsonl{suffix}"
    cut.parent.mkdir()
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    write_jsonl(tmp_path / "data" / "b-whole.jsonl", [{"id": "after", "text": "the next file"}])
    expected = [r["id"] for r in records("doc", 2000)]

    docs = open_corpus(CorpusConfig(source="jsonl", path=str(tmp_path / "data"), split="all"))
    delivered = []
    with pytest.raises(CorpusError, match=rf"a-cut.jsonl{suffix}' after line \d+: cannot read on \(.*\); the lines"):
        for doc in docs:
            delivered.append(doc.id)
    assert 0 < len(delivered) < 2000 and delivered == expected[: len(delivered)]

    problems = ReadProblems()
    cfg = CorpusConfig(source="jsonl", path=str(tmp_path / "data"), split="all", on_error="skip")
    ids = [d.id for d in open_corpus(cfg, problems)]
    # Every document before the damage, then the next file: the damage cost only what lay after it.
    assert ids == delivered + ["after"]
    assert problems.counts == {"bad_file": 1}
    assert f"after line {len(delivered)}" in problems.examples["bad_file"][0]


@pytest.mark.parametrize("suffix", [".gz", ".zst"])
def test_corrupt_or_mislabelled_compressed_jsonl_is_reported(tmp_path, suffix):
    path = tmp_path / f"x.jsonl{suffix}"
    data = "".join(json.dumps(r) + "\n" for r in records("doc", 2000)).encode()
    # gzip always carries a CRC; zstd a checksum when the writer asks for one, as the zstd tool does by default.
    data = gzip.compress(data) if suffix == ".gz" else zstandard.ZstdCompressor(write_checksum=True).compress(data)
    middle = len(data) // 2
    path.write_bytes(data[:middle] + bytes(16) + data[middle + 16 :])  # 16 zeroed bytes in the middle of the stream
    problems = ReadProblems()
    ids = [
        d.id for d in open_corpus(CorpusConfig(source="jsonl", path=str(path), split="all", on_error="skip"), problems)
    ]
    assert len(ids) < 2000 and problems.counts == {"bad_file": 1}
    if suffix == ".gz":  # deflate stops at the first bad code; a zstd checksum is checked at the end of its frame
        assert ids == [r["id"] for r in records("doc", len(ids))]

    (tmp_path / f"plain.jsonl{suffix}").write_text('{"text": "not compressed at all"}\n')
    with pytest.raises(CorpusError, match=rf"plain.jsonl{suffix}': cannot read it \("):
        list(open_corpus(CorpusConfig(source="jsonl", path=str(tmp_path / f"plain.jsonl{suffix}"), split="all")))


def test_zstd_truncation_is_noticed_only_inside_a_frame(tmp_path):
    # zstandard's own stream reader ends quietly at a truncated frame; ours must raise, but not at a frame boundary.
    frame = zstandard.ZstdCompressor().compress(b'{"text": "one frame"}\n')
    for data, whole in [(frame * 2, True), (frame + frame[:-3], False), (b"", True)]:
        (tmp_path / "f.zst").write_bytes(data)
        with open_binary(tmp_path / "f.zst") as f:
            if whole:
                assert f.read() == b'{"text": "one frame"}\n' * (len(data) // len(frame))
            else:
                with pytest.raises(EOFError, match="ends inside a zstd frame"):
                    f.read()
