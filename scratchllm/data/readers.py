"""Readers: where documents enter the pipeline, and the train/validation split.

A reader is any callable ``reader(cfg: CorpusConfig) -> Iterable[Document]`` registered under a name with
``@register_reader("name")``; ``CorpusConfig.source`` picks one. Readers are lazy (a corpus never has to fit in
memory) and deterministic (the same input gives the same documents in the same order), so a run is reproducible and
can resume from a document position.

The split is a pure function of the document id (``split_of``): a SHA-256 of the id compared with ``val_fraction``.
Python's ``hash()`` would not do, because it is salted per process; with SHA-256 a document is held out in every run,
on every machine, whatever the order or the rest of the corpus, so validation numbers stay comparable across runs.

Two readers ship here:

- ``stdlib``, the embedded default corpus: the Python standard library's own source (about 1,800 files, 31 MB of
  real, well-written code and docstrings) plus the ``pydoc`` documentation topics (the language reference in prose).
  It is on every machine that runs Python, which is what lets ``make demo`` train a model with no download.
- ``jsonl``, the document format of the pipeline: one ``{"text", "id", "source", "meta"}`` object a line.
"""

from __future__ import annotations

import hashlib
import io
import os
import platform
import sysconfig
import tokenize
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from scratchllm.config import ConfigError
from scratchllm.data.config import CorpusConfig
from scratchllm.data.document import Document

Reader = Callable[[CorpusConfig], Iterable[Document]]
READERS: dict[str, Reader] = {}


class CorpusError(ValueError):
    """The input data is unusable (malformed line, missing file, empty corpus); the message says where and why."""


def register_reader(name: str) -> Callable[[Reader], Reader]:
    """Decorator that makes a reader available as ``CorpusConfig(source=name)``."""

    def register(reader: Reader) -> Reader:
        if name in READERS:
            raise ValueError(f"a corpus reader named {name!r} is already registered ({READERS[name]!r})")
        READERS[name] = reader
        return reader

    return register


def split_of(key: str, val_fraction: float) -> str:
    """``"val"`` for about ``val_fraction`` of all keys, ``"train"`` for the rest; the same answer everywhere, forever.

    The first 8 bytes of SHA-256(key) read as an integer are uniform on [0, 2**64); the key is held out when that
    number, scaled to [0, 1), falls below ``val_fraction``. Raising the fraction only moves documents from train to val.
    """
    h = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big")
    return "val" if h / 2**64 < val_fraction else "train"


def open_corpus(cfg: CorpusConfig) -> Iterator[Document]:
    """The documents of ``cfg.split`` from the reader named ``cfg.source``, at most ``cfg.max_documents`` of them.

    The reader name is checked now, so a typo fails at once; the documents themselves are read lazily.
    """
    try:
        reader = READERS[cfg.source]
    except KeyError:
        raise ConfigError(
            f"unknown corpus source {cfg.source!r}; known readers: {', '.join(sorted(READERS))} "
            "(set it with source=NAME)"
        ) from None
    return _select(reader(cfg), cfg)


def _select(docs: Iterable[Document], cfg: CorpusConfig) -> Iterator[Document]:
    count = 0
    for doc in docs:
        if cfg.split != "all" and split_of(doc.id, cfg.val_fraction) != cfg.split:
            continue
        yield doc
        count += 1
        if count == cfg.max_documents:
            return  # stop at once rather than on the next document, so a limit also bounds the reading work


def require_nonempty(docs: Iterable[Document], what: str = "the corpus") -> Iterator[Document]:
    """Pass ``docs`` through unchanged, raising CorpusError at the end if there were none.

    Readers stay lazy and say nothing about emptiness; a caller that cannot work with zero documents (tokenizer
    training, a validation pass) wraps the stream in this to get a clear error instead of a silent no-op.
    """
    count = 0
    for doc in docs:
        count += 1
        yield doc
    if count == 0:
        raise CorpusError(
            f"{what} produced no documents; check source, path, split and max_documents "
            "(a tiny corpus with split=val may hold out nothing: raise val_fraction or use split=all)"
        )


# --------------------------------------------------------------------------------------------------------------------
# stdlib: the embedded default corpus

_SKIPPED_DIRS = frozenset({"site-packages", "dist-packages", "__pycache__"})


def stdlib_root() -> Path:
    """The directory of the running Python's standard library source."""
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files(root: str | os.PathLike) -> list[str]:
    """All ``*.py`` files under ``root`` as sorted relative POSIX paths, skipping installed third-party packages.

    ``os.walk`` does not follow symbolic links to directories, so a link cannot pull in files from elsewhere or loop.
    """
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(
            f"the stdlib corpus root {str(root)!r} is not a directory; set path= to a directory of .py files"
        )
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _SKIPPED_DIRS]
        rel = Path(dirpath).relative_to(root)
        found.extend((rel / name).as_posix() for name in filenames if name.endswith(".py"))
    return sorted(found)


def decode_source(data: bytes) -> tuple[str, str | None]:
    """Decode a Python source file: ``(text, encoding)``, where encoding is None for plain UTF-8.

    UTF-8 is the rule (PEP 3120). A file that is not UTF-8 declares its encoding in a PEP 263 coding cookie, which
    ``tokenize.detect_encoding`` reads exactly as the interpreter does. A file that lies (the standard library's
    tests include some on purpose) is decoded as UTF-8 with replacement characters rather than stopping the corpus.
    """
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        pass
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        return data.decode(encoding), encoding
    except (SyntaxError, LookupError, UnicodeDecodeError):  # bad cookie, unknown codec, or wrong declaration
        return data.decode("utf-8", errors="replace"), "utf-8+replace"


@register_reader("stdlib")
def read_stdlib(cfg: CorpusConfig) -> Iterator[Document]:
    """The standard library's ``*.py`` files (id ``stdlib/<relpath>``), then the pydoc topics (id ``pydoc/<topic>``).

    ``cfg.path``, when set, replaces the standard library directory (tests use this to read a small tree).
    """
    root = Path(cfg.path) if cfg.path else stdlib_root()
    version = platform.python_version()
    for rel in stdlib_files(root):
        try:
            data = (root / rel).read_bytes()
        except OSError as e:
            raise CorpusError(f"cannot read {str(root / rel)!r}: {e.strerror or e}") from None
        text, encoding = decode_source(data)
        meta = {"path": rel, "python": version}
        if encoding is not None:
            meta["encoding"] = encoding
        yield Document(id=f"stdlib/{rel}", text=text, source="stdlib", meta=meta)

    if cfg.include_pydoc:
        yield from _pydoc_topics(version)


def _pydoc_topics(version: str) -> Iterator[Document]:
    try:
        from pydoc_data.topics import topics
    except ImportError:
        raise CorpusError(
            "this Python installation lacks pydoc_data (some distributions package it separately); "
            "install it or set include_pydoc=false"
        ) from None
    for name in sorted(topics):
        yield Document(id=f"pydoc/{name}", text=topics[name], source="pydoc", meta={"topic": name, "python": version})


# --------------------------------------------------------------------------------------------------------------------
# jsonl: the pipeline's own document format


def jsonl_files(path: str | os.PathLike) -> list[Path]:
    """``path`` itself if it is a file, else the ``*.jsonl`` files directly inside it, sorted by name."""
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.glob("*.jsonl") if p.is_file())
        if not files:
            raise CorpusError(f"the directory {str(path)!r} holds no *.jsonl files")
        return files
    raise CorpusError(f"the jsonl corpus path {str(path)!r} does not exist; set path= to a .jsonl file or a directory")


@register_reader("jsonl")
def read_jsonl(cfg: CorpusConfig) -> Iterator[Document]:
    """Documents from JSON lines: ``text`` is required; ``id`` defaults to ``<file name>:<line number>``, ``source``
    to ``"jsonl"``, ``meta`` to ``{}``. Blank lines are skipped. A bad line raises CorpusError naming file and line."""
    if not cfg.path:
        raise ConfigError("the jsonl reader needs a path: set path=FILE.jsonl or path=DIRECTORY")
    for file in jsonl_files(cfg.path):
        # Bytes in, decoded line by line, so that an encoding error is reported at its exact line.
        with file.open("rb") as f:
            for lineno, raw in enumerate(f, start=1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise CorpusError(f"{str(file)!r} line {lineno}: not UTF-8 text") from None
                if line.strip():
                    yield _parse_line(line, f"{file.name}:{lineno}", str(file), lineno)


def _parse_line(line: str, default_id: str, file: str, lineno: int) -> Document:
    try:
        return Document.from_json(line, default_id=default_id, default_source="jsonl")
    except ValueError as e:
        raise CorpusError(
            f'{file!r} line {lineno}: {e}; each line must be a JSON object like {{"text": "..."}}'
        ) from None
