"""Readers: where documents enter the pipeline, the train/validation split, and what happens to bad input.

A reader is a function ``reader(cfg: CorpusConfig, report: Report) -> Iterable[Document]`` registered under a name
with ``@register_reader("name")``; ``CorpusConfig.source`` picks one. Readers are lazy (a corpus never has to fit in
memory) and deterministic (the same input gives the same documents in the same order), so a run is reproducible and
can resume from a document position.

The split is a pure function of the document id (``split_of``): a SHA-256 of the id compared with ``val_fraction``.
Python's ``hash()`` would not do, because it is salted per process; with SHA-256 a document is held out in every run,
on every machine, whatever the order or the rest of the corpus, so validation numbers stay comparable across runs.

Bad input (a line that is not JSON, a .gz cut short by a failed download, a file that cannot be read) is never a
crash and never a silent loss. A reader hands each problem to ``report(kind, where, message)`` and goes on with the
next record; the policy lives in one place, ``open_corpus``, and is chosen by ``CorpusConfig.on_error``: ``"raise"``
turns the first problem into a one-line CorpusError naming the file and line (right for a corpus you made yourself),
``"skip"`` counts it in a ``ReadProblems`` (the caller's, for its report, or else one that is summed up in a warning
when the stream ends). Either way every good document before the problem has been delivered; with ``"skip"``
every one after it too, in order.

Two readers ship here, the rest (files, parquet, WARC, Hugging Face) in ``formats``:

- ``stdlib``, the embedded default corpus: the Python standard library's own source (about 1,800 files, 31 MB of
  real, well-written code and docstrings) plus the ``pydoc`` documentation topics (the language reference in prose).
  It is on every machine that runs Python, which is what lets ``make demo`` train a model with no download.
- ``jsonl``, the document format of the pipeline: one ``{"text", "id", "source", "meta"}`` object a line, plain or
  compressed with gzip or zstd (``.jsonl.gz``, ``.jsonl.zst``: how dumps such as The Pile ship; C4 and Dolma name
  theirs ``.json.gz``, which ``glob`` reaches).
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import json
import os
import platform
import sysconfig
import tokenize
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from scratchllm.config import ConfigError
from scratchllm.data.config import CorpusConfig
from scratchllm.data.decode import DAMAGE_ERRORS, open_binary, record_to_document
from scratchllm.data.document import Document

# report(kind, where, message): kind is BAD_RECORD or BAD_FILE, where names the file (and line), message says why.
Report = Callable[[str, str, str], None]
Reader = Callable[[CorpusConfig, Report], Iterable[Document]]
READERS: dict[str, Reader] = {}

BAD_RECORD = "bad_record"  # one record skipped: a line that is not JSON, a row without text, bytes that are not UTF-8
BAD_FILE = "bad_file"  # a whole file, or its rest after the damage, skipped: truncated, corrupt, unreadable
EXAMPLES_PER_KIND = 5  # places remembered per kind of problem, for the report


class CorpusError(ValueError):
    """The input data is unusable (malformed line, missing file, empty corpus); the message says where and why."""


class CorpusWarning(UserWarning):
    """Bad input was skipped (on_error=skip) and nobody asked for the list: the summary of what was lost."""


def register_reader(name: str) -> Callable[[Reader], Reader]:
    """Decorator that makes a reader available as ``CorpusConfig(source=name)``."""

    def register(reader: Reader) -> Reader:
        if name in READERS:
            raise ValueError(f"a corpus reader named {name!r} is already registered ({READERS[name]!r})")
        READERS[name] = reader
        return reader

    return register


@dataclass
class ReadProblems:
    """The bad input skipped under ``on_error="skip"``: a count per kind and the first few places of each.

    Problems found by different workers or shards merge (``merge``), like a step's ``StepStats``.
    """

    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, kind: str, where: str, message: str) -> None:
        self.counts[kind] += 1
        kept = self.examples.setdefault(kind, [])
        if len(kept) < EXAMPLES_PER_KIND:
            kept.append(f"{where}: {message}")

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def merge(self, other: ReadProblems) -> ReadProblems:
        self.counts.update(other.counts)
        for kind, examples in other.examples.items():
            mine = self.examples.setdefault(kind, [])
            mine.extend(examples[: EXAMPLES_PER_KIND - len(mine)])
        return self

    def to_dict(self) -> dict:
        return {"counts": dict(self.counts), "examples": self.examples}

    def summary(self) -> str:
        """One line: what was skipped, and the first place it happened."""
        counts = ", ".join(f"{n:,} {kind}" for kind, n in sorted(self.counts.items()))
        first = next(iter(self.examples.values()))[0]
        return f"skipped bad input ({counts}); first: {first}"


def split_of(key: str, val_fraction: float) -> str:
    """``"val"`` for about ``val_fraction`` of all keys, ``"train"`` for the rest; the same answer everywhere, forever.

    The first 8 bytes of SHA-256(key) read as an integer are uniform on [0, 2**64); the key is held out when that
    number, scaled to [0, 1), falls below ``val_fraction``. Raising the fraction only moves documents from train to val.
    """
    h = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big")
    return "val" if h / 2**64 < val_fraction else "train"


def open_corpus(cfg: CorpusConfig, problems: ReadProblems | None = None) -> Iterator[Document]:
    """The documents of ``cfg.split`` from the reader named ``cfg.source``, at most ``cfg.max_documents`` of them.

    The reader name is checked now, so a typo fails at once; the documents themselves are read lazily. Bad input
    raises CorpusError (``on_error="raise"``) or is skipped and counted (``"skip"``) in ``problems`` when given; with
    no ``problems`` to fill, a CorpusWarning sums up what was skipped once the stream ends.
    """
    try:
        reader = READERS[cfg.source]
    except KeyError:
        raise ConfigError(
            f"unknown corpus source {cfg.source!r}; known readers: {', '.join(sorted(READERS))} "
            "(set it with source=NAME)"
        ) from None
    collector = problems if problems is not None else ReadProblems()

    def report(kind: str, where: str, message: str) -> None:
        if cfg.on_error == "raise":
            raise CorpusError(f"{where}: {message} (or set on_error=skip to skip bad input and count it)")
        collector.add(kind, where, message)

    docs = _select(reader(cfg, report), cfg)
    return docs if problems is not None else _warn_if_skipped(docs, collector)


def _select(docs: Iterable[Document], cfg: CorpusConfig) -> Iterator[Document]:
    count = 0
    for doc in docs:
        if cfg.split != "all" and split_of(doc.id, cfg.val_fraction) != cfg.split:
            continue
        yield doc
        count += 1
        if count == cfg.max_documents:
            return  # stop at once rather than on the next document, so a limit also bounds the reading work


def _warn_if_skipped(docs: Iterator[Document], problems: ReadProblems) -> Iterator[Document]:
    yield from docs
    if problems.total:
        warnings.warn(problems.summary(), CorpusWarning, stacklevel=2)


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
# Shared by the readers of files and of records


def find_files(path: str, patterns: Sequence[str], reader: str) -> list[tuple[Path, str]]:
    """The files a reader reads, as ``(path, relative POSIX path)``: ``path`` itself if it is a file, else every file
    under it whose relative path matches one of ``patterns`` (shell-style; ``*`` also crosses ``/``).

    Sorted by relative path, so the order never depends on the file system. Hidden files and directories (``.git``)
    are skipped, and ``os.walk`` does not follow links to directories, so a link cannot loop or pull in the world.
    """
    root = Path(path)
    if root.is_file():
        return [(root, root.name)]
    if not root.is_dir():
        raise CorpusError(f"the {reader} corpus path {path!r} does not exist; set path= to a file or a directory")
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel_dir = Path(dirpath).relative_to(root)
        for name in filenames:
            rel = (rel_dir / name).as_posix()
            if not name.startswith(".") and any(fnmatch.fnmatchcase(rel, p) for p in patterns):
                found.append((Path(dirpath) / name, rel))
    if not found:
        raise CorpusError(
            f"the directory {path!r} holds no files matching {', '.join(patterns)}; "
            'point path= at the data or set glob=["*.EXT", ...]'
        )
    return sorted(found, key=lambda pair: pair[1])


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
def read_stdlib(cfg: CorpusConfig, report: Report) -> Iterator[Document]:
    """The standard library's ``*.py`` files (id ``stdlib/<relpath>``), then the pydoc topics (id ``pydoc/<topic>``).

    ``cfg.path``, when set, replaces the standard library directory (tests use this to read a small tree).
    """
    root = Path(cfg.path) if cfg.path else stdlib_root()
    version = platform.python_version()
    for rel in stdlib_files(root):
        try:
            data = (root / rel).read_bytes()
        except OSError as e:
            report(BAD_FILE, repr(str(root / rel)), f"cannot read it ({e.strerror or e})")
            continue
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
# jsonl: the pipeline's own document format, and the dumps of others

JSONL_PATTERNS = ("*.jsonl", "*.jsonl.gz", "*.jsonl.zst")


@register_reader("jsonl")
def read_jsonl(cfg: CorpusConfig, report: Report) -> Iterator[Document]:
    """Documents from JSON lines, plain or compressed (``.gz``, ``.zst``): ``cfg.text_field`` is required; the id
    defaults to ``<relative path>:<line number>``, ``source`` to ``"jsonl"``; other fields join ``meta`` (see
    ``record_to_document``). Blank lines are skipped. A bad line is reported with its file and line number, and
    a damaged compressed file after the last line that could be read."""
    if not cfg.path:
        raise ConfigError("the jsonl reader needs a path: set path=FILE.jsonl or path=DIRECTORY")
    for file, rel in find_files(cfg.path, cfg.glob or JSONL_PATTERNS, "jsonl"):
        yield from _jsonl_documents(file, rel, cfg, report)


def _jsonl_documents(file: Path, rel: str, cfg: CorpusConfig, report: Report) -> Iterator[Document]:
    lineno = 0
    try:
        with open_binary(file) as f:
            # Bytes in, decoded line by line, so that an encoding error is reported at its exact line.
            for lineno, raw in enumerate(f, start=1):
                where = f"{str(file)!r} line {lineno}"
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError:
                    report(BAD_RECORD, where, "not UTF-8 text")
                    continue
                if not line.strip():
                    continue
                try:
                    doc = _parse_line(line, cfg, f"{rel}:{lineno}")
                except ValueError as e:
                    report(BAD_RECORD, where, f'{e}; each line must be a JSON object like {{"text": "..."}}')
                    continue
                yield doc
    except DAMAGE_ERRORS as e:
        # The decompressors raise on the read that meets the damage, so every complete line before it was delivered;
        # a line cut in half by the damage is never seen, and the rest of the file cannot be found without its start.
        if lineno:
            report(BAD_FILE, f"{str(file)!r} after line {lineno}", f"cannot read on ({e}); the lines before were kept")
        else:
            report(BAD_FILE, repr(str(file)), f"cannot read it ({e})")


def _parse_line(line: str, cfg: CorpusConfig, default_id: str) -> Document:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"not valid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    return record_to_document(record, cfg, default_id, "jsonl")
