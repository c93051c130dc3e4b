"""Tests for the readers of real corpora's formats: a directory of files, parquet, WARC and WET, Hugging Face
datasets streamed. Each input is written by the test with the format's own library (pyarrow, warcio, datasets' json
builder), then cut, corrupted or mislabelled to check that bad input is reported and good documents all arrive."""

from __future__ import annotations

import datetime
import io
import json
import sys
from pathlib import Path

import pyarrow
import pyarrow.parquet
import pytest
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from scratchllm.config import ConfigError
from scratchllm.data import CorpusConfig, CorpusError, Document, ReadProblems, open_corpus
from scratchllm.data.extract import ExtractHTML


def read(problems: ReadProblems | None = None, **kwargs) -> list[Document]:
    return list(open_corpus(CorpusConfig(split="all", **kwargs), problems))


# ---------------------------------------------------------------------------------------------------------------------
# files


def test_files_reader_reads_a_tree_in_sorted_order_and_flags_html(tmp_path):
    (tmp_path / "docs" / "api").mkdir(parents=True)
    (tmp_path / ".git").mkdir()
    (tmp_path / "README.md").write_text("# Title\n\nSome prose.\n")
    (tmp_path / "docs" / "intro.txt").write_text("plain text\n")
    (tmp_path / "docs" / "api" / "page.html").write_bytes(
        b'<html><head><meta charset="iso-8859-1"></head><body><p>caf\xe9</p></body></html>'
    )
    (tmp_path / "main.py").write_text("print('hi')\n")
    (tmp_path / "broken.txt").write_bytes(b"ok \xff\xfe then \xef\xbf\xbd a real U+FFFD\n")  # invalid UTF-8
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n")  # not text: not matched
    (tmp_path / ".git" / "notes.txt").write_text("hidden")

    docs = read(source="files", path=str(tmp_path))
    assert [d.id for d in docs] == ["README.md", "broken.txt", "docs/api/page.html", "docs/intro.txt", "main.py"]
    by_id = {d.id: d for d in docs}
    assert by_id["README.md"] == Document(
        "README.md", "# Title\n\nSome prose.\n", "files", {"path": "README.md", "format": "markdown"}
    )
    assert by_id["main.py"].meta["format"] == "code" and by_id["docs/intro.txt"].meta["format"] == "text"
    page = by_id["docs/api/page.html"]
    assert page.meta == {"path": "docs/api/page.html", "format": "html", "encoding": "iso8859-1"}
    assert "<p>café</p>" in page.text  # decoded by the charset the page declares, and still HTML
    # Undecodable bytes are replaced and counted, never fatal; the U+FFFD the file really held is not counted.
    broken = by_id["broken.txt"]
    assert broken.text == "ok \ufffd\ufffd then \ufffd a real U+FFFD\n"
    assert broken.meta == {"path": "broken.txt", "format": "text", "encoding": "utf-8+replace", "replaced": 2}

    assert [d.id for d in read(source="files", path=str(tmp_path), glob=["docs/*"])] == [
        "docs/api/page.html",
        "docs/intro.txt",
    ]
    single = read(source="files", path=str(tmp_path / "main.py"))
    assert [(d.id, d.text) for d in single] == [("main.py", "print('hi')\n")]


def test_files_reader_refuses_an_empty_or_missing_source(tmp_path):
    (tmp_path / "data.bin").write_bytes(b"\x00")
    with pytest.raises(CorpusError, match=r"holds no files matching \*.html, .*; point path= at the data or set glob="):
        read(source="files", path=str(tmp_path))
    with pytest.raises(CorpusError, match="the files corpus path .* does not exist"):
        read(source="files", path=str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="the files reader needs a path"):
        read(source="files")


# ---------------------------------------------------------------------------------------------------------------------
# parquet


def write_parquet(path: Path, rows: list[dict], row_group_size: int = 2) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pyarrow.parquet.write_table(pyarrow.Table.from_pylist(rows), path, row_group_size=row_group_size)
    return path


def test_parquet_reader_streams_rows_with_configurable_columns(tmp_path):
    when = datetime.datetime(2024, 3, 1, 12, 30)
    write_parquet(
        tmp_path / "data" / "train-00000.parquet",
        [
            {"text": f"row {i}", "id": f"fw-{i}", "url": f"https://e/{i}", "score": i / 4, "date": when}
            for i in range(5)
        ],
    )
    write_parquet(tmp_path / "data" / "train-00001.parquet", [{"text": "no id column"}])
    docs = read(source="parquet", path=str(tmp_path / "data"))
    assert [d.id for d in docs] == ["fw-0", "fw-1", "fw-2", "fw-3", "fw-4", "train-00001.parquet:0"]
    assert docs[3] == Document(
        "fw-3", "row 3", "parquet", {"url": "https://e/3", "score": 0.75, "date": "2024-03-01T12:30:00"}
    )
    assert json.loads(docs[3].to_json())["meta"]["date"] == "2024-03-01T12:30:00"  # meta stays JSON

    write_parquet(tmp_path / "stack.parquet", [{"content": "def f(): pass", "hexsha": "abc", "lang": "Python"}])
    stack = read(source="parquet", path=str(tmp_path / "stack.parquet"), text_field="content", id_field="hexsha")
    assert stack == [Document("abc", "def f(): pass", "parquet", {"lang": "Python"})]


def test_parquet_reader_reports_bad_rows_and_files(tmp_path):
    write_parquet(tmp_path / "a.parquet", [{"text": "first"}, {"text": None}, {"text": "third"}])
    write_parquet(tmp_path / "b.parquet", [{"body": "no text column"}])
    (tmp_path / "c.parquet").write_bytes(b"PAR1 this is not parquet")
    whole = write_parquet(tmp_path / "d-source.parquet", [{"text": f"r{i}"} for i in range(20)]).read_bytes()
    (tmp_path / "d-source.parquet").unlink()
    (tmp_path / "d.parquet").write_bytes(whole[: len(whole) // 2])  # a download cut short: no footer

    with pytest.raises(CorpusError, match=r"a.parquet' row 1: the 'text' field is missing or not a string"):
        read(source="parquet", path=str(tmp_path))
    problems = ReadProblems()
    docs = read(problems, source="parquet", path=str(tmp_path), on_error="skip")
    assert [d.text for d in docs] == ["first", "third"]
    assert problems.counts == {"bad_record": 1, "bad_file": 3}
    bad_files = problems.examples["bad_file"]
    assert "b.parquet': has no column 'text' (it has body); set text_field=COLUMN" in bad_files[0]
    assert "c.parquet': cannot read it as parquet" in bad_files[1] and "d.parquet': cannot read it" in bad_files[2]


# ---------------------------------------------------------------------------------------------------------------------
# warc


def page(title: str) -> str:
    body = " ".join(f"{title} sentence {i} tells a reader something new about the subject at hand." for i in range(12))
    return (
        "<html><head><title>" + title + "</title></head><body>"
        "<nav><a href='/'>Home</a> <a href='/about'>About</a> <a href='/contact'>Contact</a></nav>"
        f"<article><h1>{title}</h1><p>{body}</p></article>"
        "<footer>Copyright 2024 Example Inc. All rights reserved.</footer></body></html>"
    )


def response(writer: WARCWriter, url: str, body: bytes, content_type: str, status: str = "200 OK"):
    headers = StatusAndHeaders(status, [("Content-Type", content_type)], protocol="HTTP/1.1")
    return writer.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=headers)


def write_warc(path: Path, pages: int = 3, gzip: bool = True) -> Path:
    """A small crawl as Common Crawl writes it: warcinfo, then request/response pairs, some of them not text."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        w = WARCWriter(f, gzip=gzip)
        w.write_record(w.create_warcinfo_record(path.name, {"software": "scratchllm tests"}))
        for i in range(pages):
            url = f"https://example.com/{i}"
            w.write_record(w.create_warc_record(url, "request", payload=io.BytesIO(b"GET / HTTP/1.1\r\n\r\n")))
            w.write_record(response(w, url, page(f"Page {i}").encode(), "text/html; charset=utf-8"))
        latin = page("Caf\u00e9").encode("latin-1")
        w.write_record(response(w, "https://example.com/latin", latin, 'text/html; charset="ISO-8859-1"'))
        w.write_record(response(w, "https://example.com/missing", b"<html>gone</html>", "text/html", "404 Not Found"))
        w.write_record(response(w, "https://example.com/logo.png", b"\x89PNG", "image/png"))
    return path


def test_warc_reader_keeps_html_responses_with_their_metadata(tmp_path):
    docs = read(source="warc", path=str(write_warc(tmp_path / "crawl.warc.gz")))
    assert [d.id for d in docs] == [f"https://example.com/{i}" for i in range(3)] + ["https://example.com/latin"]
    first = docs[0]
    assert first.text == page("Page 0") and first.source == "warc"
    assert first.meta["format"] == "html" and first.meta["content_type"] == "text/html"
    assert first.meta["url"] == "https://example.com/0" and first.meta["path"] == "crawl.warc.gz"
    assert first.meta["record_id"].startswith("<urn:uuid:") and first.meta["date"].endswith("Z")
    assert "<h1>Café</h1>" in docs[3].text and docs[3].meta["encoding"] == "iso8859-1"
    # The same crawl uncompressed reads the same.
    plain = read(source="warc", path=str(write_warc(tmp_path / "plain" / "crawl.warc", gzip=False)))
    assert [(d.id, d.text) for d in plain] == [(d.id, d.text) for d in docs]


def test_warc_pages_go_through_extraction(tmp_path):
    step = ExtractHTML()
    docs = list(step.run(read(source="warc", path=str(write_warc(tmp_path / "crawl.warc.gz", pages=2)))))
    assert [d.id for d in docs] == ["https://example.com/0", "https://example.com/1", "https://example.com/latin"]
    assert "Page 1 sentence 11 tells a reader something new" in docs[1].text and "Home" not in docs[1].text
    assert "Café sentence 0" in docs[2].text and all(d.meta["format"] == "text" for d in docs)


def test_wet_conversion_records_give_plain_text(tmp_path):
    path = tmp_path / "crawl.warc.wet.gz"
    with path.open("wb") as f:
        w = WARCWriter(f, gzip=True)
        for i, language in enumerate(["eng", "fra,eng"]):
            record = w.create_warc_record(
                f"https://example.com/{i}",
                "conversion",
                payload=io.BytesIO(f"Text of page {i}.\nSecond line.".encode()),
                warc_content_type="text/plain",
                warc_headers_dict={"WARC-Identified-Content-Language": language},
            )
            w.write_record(record)
    docs = read(source="warc", path=str(tmp_path))
    assert [(d.id, d.text) for d in docs] == [
        ("https://example.com/0", "Text of page 0.\nSecond line."),
        ("https://example.com/1", "Text of page 1.\nSecond line."),
    ]
    assert docs[1].meta["format"] == "text" and docs[1].meta["language"] == "fra,eng"
    assert docs[1].meta["content_type"] == "text/plain"


@pytest.mark.parametrize("gzip, where", [(True, "member"), (False, "content"), (False, "header")])
def test_truncated_warc_keeps_the_pages_before_the_damage(tmp_path, gzip, where):
    whole = write_warc(tmp_path / "whole.warc", pages=40, gzip=gzip).read_bytes()
    expected = [d.id for d in read(source="warc", path=str(tmp_path / "whole.warc"))]
    cut = tmp_path / "data" / ("cut.warc.gz" if gzip else "cut.warc")
    cut.parent.mkdir()
    # Where a failed download ends: inside a gzip member (not on the start of one, which would leave a shorter but
    # whole file), inside a record's content, or inside a record's header, where warcio itself sees only an end.
    if where == "member":
        middle = len(whole) // 2 + (10 if whole[len(whole) // 2 :].startswith(b"\x1f\x8b") else 0)
    elif where == "content":
        middle = whole.index(b"Page 20 sentence 5") + 40
    else:
        middle = whole.index(b"WARC-Target-URI: https://example.com/20") + 20
    cut.write_bytes(whole[:middle])
    problems = ReadProblems()
    docs = read(problems, source="warc", path=str(cut.parent), on_error="skip")
    ids = [d.id for d in docs]
    assert 0 < len(ids) < len(expected) and ids == expected[: len(ids)]
    if where != "member":
        assert ids == expected[:20]
    assert problems.counts == {"bad_file": 1}
    assert "cannot read on" in problems.examples["bad_file"][0] and "the records before were kept" in str(
        problems.examples
    )
    with pytest.raises(CorpusError, match=r"cut.warc(.gz)?' after record \d+: cannot read on"):
        read(source="warc", path=str(cut))


def test_warc_reader_reports_a_file_that_is_not_warc(tmp_path):
    # warcio refuses the first; it reads the second, whose first line has five fields, as the older ARC format.
    (tmp_path / "a.warc").write_text("<html><body>hello</body></html>\n")
    (tmp_path / "b.warc").write_text("<html><body>saved with the wrong name</body></html>\n")
    problems = ReadProblems()
    assert read(problems, source="warc", path=str(tmp_path), on_error="skip") == []
    assert problems.examples["bad_file"] == [
        f"{str(tmp_path / 'a.warc')!r}: cannot read it as WARC (Unknown archive format, first line: "
        "['<html><body>hello</body></html>'])",
        f"{str(tmp_path / 'b.warc')!r}: cannot read it as WARC (the records are ARC, not WARC)",
    ]
    with pytest.raises(CorpusError, match="holds no files matching"):
        read(source="warc", path=str(tmp_path), glob=["*.warc.gz"])


# ---------------------------------------------------------------------------------------------------------------------
# hf: the same code path as streaming from the Hub, on a local file through datasets' json builder


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """Keep datasets' lock and cache files inside the test's directory."""
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    return datasets


def test_hf_reader_streams_a_dataset(tmp_path, hf_cache):
    path = tmp_path / "train.jsonl"
    rows = [{"text": "first", "id": 10, "url": "https://a"}, {"text": "second", "lang": "fr"}, {"text": 3}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = dict(source="hf", path="json", hf_data_files=[str(path)])
    problems = ReadProblems()
    docs = read(problems, on_error="skip", **cfg)
    # The json builder unifies the schema: absent fields arrive as null and are left out of meta.
    assert docs == [
        Document("10", "first", "json", {"url": "https://a"}),
        Document("json:train:1", "second", "json", {"lang": "fr"}),
    ]
    assert problems.counts == {"bad_record": 1}
    assert "the Hugging Face dataset 'json' example 2: the 'text' field" in problems.examples["bad_record"][0]
    assert [d.id for d in read(max_documents=1, **cfg)] == ["10"]


def test_hf_reader_errors_are_for_people(tmp_path, hf_cache, monkeypatch):
    with pytest.raises(ConfigError, match="the hf reader needs a dataset: set path=NAME"):
        read(source="hf")
    with pytest.raises(CorpusError, match="cannot open the Hugging Face dataset 'json': .*nope.jsonl"):
        read(source="hf", path="json", hf_data_files=[str(tmp_path / "nope.jsonl")])
    monkeypatch.setitem(sys.modules, "datasets", None)  # as if the optional extra were not installed
    with pytest.raises(ConfigError, match=r"pip install 'scratchllm\[hf\]'"):
        read(source="hf", path="json")
