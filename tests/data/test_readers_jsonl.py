"""Tests for the jsonl reader (plain, .gz and .zst, directories of them, field names) and for bad input: counted and
reported, never a crash, never a silent loss of good documents (whole and damaged compressed files)."""

from __future__ import annotations

import gzip
import json
import random
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
)
from scratchllm.data.decode import open_binary

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
