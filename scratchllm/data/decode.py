"""From bytes on disk to text and records: decompression that notices damage, decoding that never fails, and the
mapping of a dump's records onto ``Document``s. Shared by every reader of files (``readers``, ``formats``).

Real corpora arrive compressed (gzip for Common Crawl, C4 and Dolma; zstd for The Pile and SlimPajama), in
whatever encoding a web server or an editor chose, and with whatever fields their makers picked. Three rules hold:

- a damaged file announces itself: decompression raises at the damage (``DAMAGE_ERRORS``) instead of ending early
  as if the file were whole, so the reader can deliver what came before and report the rest as lost. A truncated
  file (the usual damage: a download cut short) loses exactly its tail. Corrupt bytes inside a stream are seen where
  the format can see them: deflate mostly at the first invalid code, zstd only through the frame's checksum (written
  by the zstd tool by default), checked at the end of the frame, so lines decoded before it may carry the damage;
- decoding never fails: undecodable bytes become U+FFFD and the count goes into ``meta`` (``decode_text``);
- a record's extra fields are kept in ``meta`` rather than dropped (``record_to_document``).
"""

from __future__ import annotations

import codecs
import datetime
import gzip
import io
import re
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import zstandard

from scratchllm.data.config import CorpusConfig
from scratchllm.data.document import Document

# What reading a damaged file raises: a truncated gzip (EOFError), a corrupt one (zlib.error, gzip.BadGzipFile is an
# OSError), a corrupt or truncated zstd frame (ZstdError, EOFError from _ZstdReader), or the disk (OSError).
DAMAGE_ERRORS = (OSError, EOFError, zlib.error, zstandard.ZstdError)
_CHUNK = 1 << 16  # compressed bytes read at a time

# An HTML page may declare its charset in the page itself: <meta charset="..."> or the http-equiv form. Browsers look
# in the first 1024 bytes (WHATWG HTML, "prescan a byte stream"); a little more costs nothing.
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([a-zA-Z0-9_.:-]+)""", re.IGNORECASE)


def decode_text(data: bytes, declared: str | None = None) -> tuple[str, dict[str, Any]]:
    """``(text, meta)`` from bytes, never failing; ``meta`` is empty for UTF-8 and otherwise says what was done.

    Tried in order: the encoding the source declared (an HTTP header, an HTML meta tag), then UTF-8 (a byte order
    mark is dropped), and at last UTF-8 with every undecodable sequence replaced by U+FFFD: then ``meta`` holds
    ``{"encoding": "utf-8+replace", "replaced": n}``, so a later filter can drop a document that is mostly damage.
    """
    if declared:
        try:
            text, name = data.decode(declared), codecs.lookup(declared).name
            return (text.removeprefix("\ufeff"), {}) if name == "utf-8" else (text, {"encoding": name})
        except (LookupError, UnicodeDecodeError):  # an unknown codec or a false declaration: fall back
            pass
    try:
        return data.decode("utf-8-sig"), {}
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="replace")
        replaced = text.count("\ufffd") - data.count("\ufffd".encode())  # not those the file itself held
        return text, {"encoding": "utf-8+replace", "replaced": replaced}


def html_charset(data: bytes) -> str | None:
    """The charset an HTML page declares in a ``<meta>`` tag near its top, or None."""
    match = _META_CHARSET.search(data[:4096])
    return match.group(1).decode("ascii") if match else None


def open_binary(path: Path) -> BinaryIO:
    """``path`` opened for reading bytes, decompressed by its suffix: ``.gz`` (gzip) or ``.zst`` (zstd).

    Both raise when reading reaches damage (one of DAMAGE_ERRORS) instead of ending early as if the file were whole.
    """
    if path.suffix == ".gz":
        return gzip.open(path, "rb")
    if path.suffix in (".zst", ".zstd"):
        return io.BufferedReader(_ZstdReader(path.open("rb")))
    return path.open("rb")


class _ZstdReader(io.RawIOBase):
    """A ``.zst`` file decompressed frame by frame, raising EOFError when the file ends inside a frame.

    zstandard's own ``stream_reader`` stops quietly at a truncated frame, so a download cut short would lose its tail
    without a trace; here a frame that was begun must end. Concatenated frames (what parallel compressors write) are
    read one after another.
    """

    def __init__(self, file: BinaryIO) -> None:
        super().__init__()
        self._file = file
        self._dctx = zstandard.ZstdDecompressor()
        self._frame = None  # the decompressor of a frame begun and not yet finished
        self._out = b""  # decompressed bytes not yet handed out, from self._pos on
        self._pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while self._pos == len(self._out):
            chunk = self._file.read(_CHUNK)
            if not chunk:
                if self._frame is not None:
                    raise EOFError("the file ends inside a zstd frame: it is truncated")
                return 0
            self._out, self._pos = self._decompress(chunk), 0
        n = min(len(buffer), len(self._out) - self._pos)
        buffer[:n] = self._out[self._pos : self._pos + n]
        self._pos += n
        return n

    def _decompress(self, chunk: bytes) -> bytes:
        parts = []
        while chunk:
            if self._frame is None:
                self._frame = self._dctx.decompressobj()
            parts.append(self._frame.decompress(chunk))
            if not self._frame.eof:
                break
            chunk = self._frame.unused_data  # the next frame may begin in the same chunk
            self._frame = None
        return b"".join(parts)

    def close(self) -> None:
        self._file.close()
        super().close()


def record_to_document(record: Mapping[str, Any], cfg: CorpusConfig, default_id: str, source: str) -> Document:
    """A Document from one record of a dump: a JSON object, a parquet row, a dataset example.

    ``record[cfg.text_field]`` must be a string. ``record[cfg.id_field]`` is the id (an integer becomes a string, as
    dumps often number their rows; absent or null, ``default_id``). ``source`` and ``meta`` are taken when present,
    and every other non-null field joins ``meta`` (url, date, language score, ...), so nothing a dump knows about a
    document is lost on the way. Raises ValueError saying what is wrong.
    """
    text = record.get(cfg.text_field)
    if not isinstance(text, str):
        raise ValueError(f"the {cfg.text_field!r} field is missing or not a string")
    doc_id = record.get(cfg.id_field)
    if doc_id is None:
        doc_id = default_id
    elif isinstance(doc_id, int) and not isinstance(doc_id, bool):
        doc_id = str(doc_id)
    if not isinstance(doc_id, str):
        raise ValueError(f"the {cfg.id_field!r} field is not a string or integer")
    own = {cfg.text_field, cfg.id_field, "source", "meta"}
    meta = {k: _jsonable(v) for k, v in record.items() if k not in own and v is not None}
    record_meta = record.get("meta")
    if record_meta is not None:
        if not isinstance(record_meta, Mapping):
            raise ValueError("the 'meta' field must be a JSON object")
        meta.update(_jsonable(record_meta))
    record_source = record.get("source")
    if record_source is not None:
        if not isinstance(record_source, str):
            raise ValueError("the 'source' field must be a string")
        source = record_source
    return Document(id=doc_id, text=text, source=source, meta=meta)


def _jsonable(value: Any) -> Any:
    """``value`` as JSON can hold it, so a document with meta from parquet or a dataset can be written as JSON lines:
    dates become ISO strings and anything unknown (decimals, bytes) its ``str``."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    return str(value)
