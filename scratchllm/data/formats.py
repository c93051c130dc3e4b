"""Readers for the formats real corpora come in: directories of files, parquet, Common Crawl's WARC and WET files,
and Hugging Face datasets streamed from the Hub. Each registers itself; ``CorpusConfig.source`` picks one.

- ``files``: a directory of text, markdown, HTML and source code, one document a file (a documentation tree, a
  repository, a scraped site on disk).
- ``parquet``: the columnar format of the Hub (FineWeb, The Stack and most large datasets ship as parquet shards),
  read a batch of rows at a time so that a file larger than memory streams.
- ``warc``: the Web ARChive format (ISO 28500) in which Common Crawl publishes each crawl. A WARC file holds the HTTP
  responses themselves (raw HTML); Common Crawl also derives WAT files (metadata as JSON) and WET files (text it
  extracted, in ``conversion`` records). FineWeb (Penedo et al. 2024, arXiv:2406.17557) found that extracting the
  text from WARC HTML with trafilatura trains better models than the WET text, whose extraction keeps menus and
  boilerplate; so WARC pages are kept here as HTML, flagged ``meta["format"] == "html"`` for ``ExtractHTML``.
- ``hf``: a dataset from the Hugging Face Hub through ``datasets.load_dataset(..., streaming=True)``: nothing is
  downloaded ahead and the dataset need not fit on disk. ``datasets`` is an optional extra (``scratchllm[hf]``).

Bad input is reported through ``report`` and never stops the other documents (see ``readers``). The heavier
libraries (pyarrow, warcio, datasets) are imported when their reader first runs, so ``import scratchllm.data``
stays fast.
"""

from __future__ import annotations

import gzip
import io
import itertools
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from scratchllm.config import ConfigError
from scratchllm.data.config import CorpusConfig
from scratchllm.data.decode import DAMAGE_ERRORS, decode_text, html_charset, record_to_document
from scratchllm.data.document import Document
from scratchllm.data.readers import BAD_FILE, BAD_RECORD, CorpusError, Report, find_files, register_reader

# --------------------------------------------------------------------------------------------------------------------
# files: one document a file

# What the "files" reader reads by default, and the format each suffix is flagged with in meta["format"]: "html" is
# extracted by ExtractHTML, "code" tells quality filters written for prose to leave a document alone.
FILE_FORMATS = {
    "html": (".html", ".htm", ".xhtml"),
    "markdown": (".md", ".markdown"),
    "text": (".txt", ".rst"),
    "code": (".py", ".c", ".h", ".cc", ".cpp", ".hpp", ".java", ".js", ".ts", ".go", ".rs", ".rb", ".sh", ".sql"),
}
_FORMAT_OF = {suffix: fmt for fmt, suffixes in FILE_FORMATS.items() for suffix in suffixes}
FILE_PATTERNS = tuple(f"*{suffix}" for suffix in _FORMAT_OF)


@register_reader("files")
def read_files(cfg: CorpusConfig, report: Report) -> Iterator[Document]:
    """One document a file, in sorted order: id the path relative to ``cfg.path``, meta ``path`` and ``format`` (by
    suffix, see FILE_FORMATS; "text" for a suffix that only a custom glob lets in).

    Bytes are decoded by ``decode_text`` (an HTML page's own charset declaration is tried first), so a file that is
    not valid UTF-8 is read with replacement characters and counted in meta, never dropped. HTML stays HTML here.
    """
    if not cfg.path:
        raise ConfigError("the files reader needs a path: set path=DIRECTORY (or a single file)")
    for file, rel in find_files(cfg.path, cfg.glob or FILE_PATTERNS, "files"):
        try:
            data = file.read_bytes()
        except OSError as e:
            report(BAD_FILE, repr(str(file)), f"cannot read it ({e.strerror or e})")
            continue
        fmt = _FORMAT_OF.get(file.suffix.lower(), "text")
        text, decoding = decode_text(data, html_charset(data) if fmt == "html" else None)
        yield Document(id=rel, text=text, source="files", meta={"path": rel, "format": fmt, **decoding})


# --------------------------------------------------------------------------------------------------------------------
# parquet: the Hub's columnar shards

PARQUET_ROWS_PER_BATCH = 1024  # rows decoded to Python at a time: bounds memory whatever a row group's size


@register_reader("parquet")
def read_parquet(cfg: CorpusConfig, report: Report) -> Iterator[Document]:
    """One document a row: text from column ``cfg.text_field``, id from ``cfg.id_field`` (default
    ``<relative path>:<row>``, rows counted from 0), other columns into meta (see ``record_to_document``)."""
    if not cfg.path:
        raise ConfigError("the parquet reader needs a path: set path=FILE.parquet or path=DIRECTORY")
    for file, rel in find_files(cfg.path, cfg.glob or ("*.parquet",), "parquet"):
        yield from _parquet_documents(file, rel, cfg, report)


def _parquet_documents(file: Path, rel: str, cfg: CorpusConfig, report: Report) -> Iterator[Document]:
    import pyarrow
    import pyarrow.parquet

    row = -1
    try:
        parquet = pyarrow.parquet.ParquetFile(file)
        columns = parquet.schema_arrow.names
        if cfg.text_field not in columns:
            report(BAD_FILE, repr(str(file)), f"has no column {cfg.text_field!r} (it has {', '.join(columns)}); "
                   "set text_field=COLUMN")  # fmt: skip
            return
        # iter_batches reads one row group after another, as the batches are asked for.
        batches = parquet.iter_batches(batch_size=PARQUET_ROWS_PER_BATCH)
        for row, record in enumerate(itertools.chain.from_iterable(b.to_pylist() for b in batches)):
            try:
                doc = record_to_document(record, cfg, f"{rel}:{row}", "parquet")
            except ValueError as e:
                report(BAD_RECORD, f"{str(file)!r} row {row}", str(e))
                continue
            yield doc
    except (pyarrow.ArrowException, *DAMAGE_ERRORS) as e:
        if row >= 0:
            report(BAD_FILE, f"{str(file)!r} after row {row}", f"cannot read on ({e}); the rows before were kept")
        else:
            report(BAD_FILE, repr(str(file)), f"cannot read it as parquet ({e})")


# --------------------------------------------------------------------------------------------------------------------
# warc: Common Crawl's WARC (HTML responses) and WET (extracted text) files

WARC_PATTERNS = ("*.warc", "*.warc.gz", "*.wet", "*.wet.gz")
HTML_TYPES = ("text/html", "application/xhtml+xml")


@register_reader("warc")
def read_warc(cfg: CorpusConfig, report: Report) -> Iterator[Document]:
    """Web pages from WARC and WET files, plain or gzipped (Common Crawl's ``.warc.gz``, ``.warc.wet.gz``).

    A WARC ``response`` record with a 2xx status and an HTML content type gives its page as HTML (format "html",
    decoded by the charset the server or the page declares); a WET ``conversion`` record gives its plain text
    (format "text"). Everything else (requests, metadata, redirects, images, PDFs, WAT's JSON) is not text to train
    on and is passed over. The id is the page's URL, so every capture of a page falls on the same side of the
    train/val split; meta holds url, date, content_type, record_id, the file's path and, in WET, the language Common
    Crawl identified.
    """
    if not cfg.path:
        raise ConfigError("the warc reader needs a path: set path=FILE.warc.gz or path=DIRECTORY")
    for file, rel in find_files(cfg.path, cfg.glob or WARC_PATTERNS, "warc"):
        yield from _warc_documents(file, rel, report)


class _BadWarc(Exception):
    """A WARC file that cannot be read on: cut short, or not WARC. A gzipped file's truncation is raised as this
    rather than as gzip's EOFError, because warcio takes any EOFError for the end of the archive and would end the
    file quietly, losing its tail without a trace."""


class _TruncationAsBadWarc(io.RawIOBase):
    """A decompressed stream whose EOFError (truncation) reaches the reader as _BadWarc; counts bytes for tell()."""

    def __init__(self, file: BinaryIO) -> None:
        super().__init__()
        self._file = file
        self._position = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        try:
            n = self._file.readinto(buffer)
        except EOFError as e:
            raise _BadWarc(str(e)) from None
        self._position += n
        return n

    def tell(self) -> int:  # warcio asks for offsets after every record
        return self._position

    def close(self) -> None:
        self._file.close()
        super().close()


def _open_warc(path: Path) -> BinaryIO:
    # Python's gzip, not warcio's own decompression: warcio stops quietly where a .gz is cut short (a failed download).
    if path.suffix == ".gz":
        return _TruncationAsBadWarc(gzip.open(path, "rb"))
    return path.open("rb")


def _warc_documents(file: Path, rel: str, report: Report) -> Iterator[Document]:
    from warcio.archiveiterator import ArchiveIterator

    count = 0
    try:
        with _open_warc(file) as stream:
            records = ArchiveIterator(stream)
            for record in _parsed(records):
                if record.format != "warc":  # warcio also reads the older ARC format, and takes some text files for it
                    raise _BadWarc(f"the records are {record.format.upper()}, not WARC")
                doc = _warc_document(record, rel)
                records.read_to_end()
                # WARC requires a Content-Length; without a valid one, the header was cut short. With one, warcio
                # reads the block through a LimitReader whose limit counts the bytes promised that the file lacked.
                if not (record.rec_headers.get_header("Content-Length") or "").strip().isdigit():
                    raise _BadWarc("a record has no valid Content-Length")
                if getattr(record.raw_stream, "limit", 0):
                    raise _BadWarc("the file ends inside a record")
                count += 1
                if doc is not None:
                    yield doc
            # warcio takes an end of input inside a record's header for the end of the archive. Its offset, the
            # end of the last whole record, then stops short of the bytes read.
            if records.offset < stream.tell():
                raise _BadWarc("the file ends inside a record's header")
            if records.err_count:
                report(BAD_FILE, repr(str(file)), f"{records.err_count} records are not followed by the blank line "
                       "WARC requires: a Content-Length is wrong or the file is not WARC")  # fmt: skip
    except (_BadWarc, *DAMAGE_ERRORS) as e:
        if count:
            where = f"{str(file)!r} after record {count}"
            report(BAD_FILE, where, f"cannot read on ({e}); the records before were kept")
        else:
            report(BAD_FILE, repr(str(file)), f"cannot read it as WARC ({e})")


def _parsed(records: Iterable[Any]) -> Iterator[Any]:
    """warcio's records, with every failure of its parser raised as _BadWarc: on a damaged header it raises
    ArchiveLoadFailed when it notices, and otherwise whatever the missing piece makes it trip on (AttributeError)."""
    iterator = iter(records)
    while True:
        try:
            record = next(iterator)
        except StopIteration:
            return
        except Exception as e:
            raise _BadWarc(str(e) or type(e).__name__) from None
        yield record


def _warc_document(record: Any, rel: str) -> Document | None:
    headers = record.rec_headers
    url = headers.get_header("WARC-Target-URI")
    if record.rec_type == "response" and record.http_headers is not None:
        mime, charset = _content_type(record.http_headers.get_header("Content-Type"))
        if not record.http_headers.get_statuscode().startswith("2") or mime not in HTML_TYPES:
            return None
        data = record.content_stream().read()
        text, decoding = decode_text(data, charset or html_charset(data))
        fmt = "html"
    elif record.rec_type == "conversion":
        mime, _ = _content_type(headers.get_header("Content-Type"))
        text, decoding = decode_text(record.content_stream().read())
        fmt = "text"
    else:
        return None
    record_id = headers.get_header("WARC-Record-ID")
    meta = {"url": url, "date": headers.get_header("WARC-Date"), "content_type": mime, "record_id": record_id}
    language = headers.get_header("WARC-Identified-Content-Language")
    if language:
        meta["language"] = language
    meta.update({"path": rel, "format": fmt, **decoding})
    return Document(id=url or record_id, text=text, source="warc", meta=meta)


def _content_type(value: str | None) -> tuple[str, str | None]:
    """``("text/html", "utf-8")`` from ``"text/html; charset=UTF-8"``; the charset is None when not given."""
    mime, *params = (value or "").split(";")
    charset = None
    for param in params:
        key, _, val = param.partition("=")
        if key.strip().lower() == "charset":
            charset = val.strip().strip("\"'") or None
    return mime.strip().lower(), charset


# --------------------------------------------------------------------------------------------------------------------
# hf: Hugging Face datasets, streamed


@register_reader("hf")
def read_hf(cfg: CorpusConfig, report: Report) -> Iterator[Document]:
    """One document an example of ``load_dataset(cfg.path, cfg.hf_config, split=cfg.hf_split, streaming=True)``:
    text from ``cfg.text_field``, id from ``cfg.id_field`` (default ``<path>:<split>:<index>``), other fields into
    meta. Files of your own go through the same code: ``path=json hf_data_files=[...]`` (or ``parquet``)."""
    if not cfg.path:
        raise ConfigError(
            "the hf reader needs a dataset: set path=NAME (e.g. path=HuggingFaceFW/fineweb-edu hf_config=sample-10BT), "
            "or path=json hf_data_files=[FILE, ...] for files of your own"
        )
    try:
        import datasets
    except ImportError:
        raise ConfigError("the hf reader needs the datasets library: pip install 'scratchllm[hf]'") from None
    name = f"Hugging Face dataset {cfg.path!r}"
    try:
        stream = datasets.load_dataset(
            cfg.path, cfg.hf_config or None, split=cfg.hf_split, streaming=True, data_files=cfg.hf_data_files or None
        )
    except Exception as e:  # not found, no network, a wrong split or config: datasets has many errors, all for people
        raise CorpusError(f"cannot open the {name}: {e}") from None
    examples = iter(stream)
    for index in itertools.count():
        # Only the stream's own failures are caught here (a lost connection, a file the builder cannot parse): the
        # stream cannot go on after one, so what was read is kept and the rest is reported lost.
        try:
            example = next(examples)
        except StopIteration:
            return
        except Exception as e:
            report(BAD_FILE, f"the {name} after example {index}", f"the stream failed ({type(e).__name__}: {e})")
            return
        try:
            doc = record_to_document(example, cfg, f"{cfg.path}:{cfg.hf_split}:{index}", cfg.path)
        except ValueError as e:
            report(BAD_RECORD, f"the {name} example {index}", str(e))
            continue
        yield doc
