"""The public tokenizer: regex-split byte-level BPE plus special tokens, with training and every file format.

Special tokens (``<|endoftext|>``, chat markers, ...) are strings that map to one reserved id each and are never
produced by BPE. Following tiktoken, text that *contains* a special token's string raises
:class:`DisallowedSpecialError` unless the caller allows it: a document scraped from the web that happens to contain
``<|endoftext|>`` must not silently end a training sequence. Allowed special tokens are cut out first and the text
between them is encoded ordinarily.

This module wires the layers together; the algorithms live in ``train.py`` (learning merges), ``bpe.py`` (applying
them) and ``formats.py`` (files of our own, GPT-2, tiktoken and Hugging Face).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import regex

from . import formats
from .errors import DisallowedSpecialError, EmptyCorpusError, SpecialTokenError, VocabSizeError
from .parallel import batch_texts_by_count, default_workers, ordered_map
from .patterns import pattern_name, resolve_pattern
from .regex_bpe import RegexBPE
from .train import count_chunks, learn_merges

SpecialSet = Collection[str] | Literal["all"]


@dataclass
class TrainingReport:
    """What training saw and how long it took (printed by the CLI, used by the scaling experiment)."""

    documents: int
    characters: int
    unique_chunks: int
    merges: int
    requested_merges: int
    seconds_counting: float
    seconds_merging: float


class Tokenizer(RegexBPE):
    """Byte-level BPE tokenizer: ``Tokenizer.train``, ``encode``, ``decode``, ``save`` / ``load`` and converters."""

    def __init__(
        self,
        merges: Sequence[tuple[int, int]],
        pattern: str = "gpt4",
        special_tokens: Mapping[str, int] | None = None,
        byte_ids: Sequence[int] | None = None,
    ):
        super().__init__(merges, pattern, byte_ids)
        self.special_tokens: dict[str, int] = dict(special_tokens or {})
        self._check_special_tokens()
        for text, token_id in self.special_tokens.items():
            self._decoder[token_id] = text.encode("utf-8")
        self._special_patterns: dict[frozenset[str], regex.Pattern] = {}
        self._tiktoken = None  # the exported tiktoken.Encoding, built on first bulk use
        self.training: TrainingReport | None = None

    def _check_special_tokens(self) -> None:
        seen: dict[int, str] = {}
        for text, token_id in self.special_tokens.items():
            if not isinstance(text, str) or not text:
                raise SpecialTokenError(f"special token {text!r} must be a non-empty string")
            if not isinstance(token_id, int) or token_id < self.n_ordinary:
                raise SpecialTokenError(
                    f"special token {text!r} has id {token_id!r}, which collides with the {self.n_ordinary} ordinary"
                    " tokens; special ids must come after them"
                )
            if token_id in seen:
                raise SpecialTokenError(f"special tokens {seen[token_id]!r} and {text!r} share the id {token_id}")
            seen[token_id] = text

    # ---------------------------------------------------------------- training

    @classmethod
    def train(
        cls,
        texts: Iterable[str] | Iterable[Any],
        vocab_size: int,
        pattern: str = "gpt4",
        special_tokens: Sequence[str] = (),
        workers: int | None = 1,
        progress: bool = False,
        on_merge: Callable[[int], None] | None = None,
    ) -> Tokenizer:
        """Learn a vocabulary of ``vocab_size`` ids (256 bytes + merges + special tokens) from a stream of texts
        (strings, or documents with a ``.text``), read once and never held in memory all at once.

        ``workers`` processes count chunks (None: all CPUs); the result does not depend on it. If the corpus runs
        out of pairs first, the vocabulary is smaller and ``tokenizer.training.merges`` says so.
        """
        special_tokens = list(special_tokens)
        if len(set(special_tokens)) != len(special_tokens):
            raise SpecialTokenError(f"special tokens repeat: {special_tokens}")
        if not isinstance(vocab_size, int) or vocab_size < 256 + len(special_tokens):
            raise VocabSizeError(
                f"vocab_size {vocab_size} is too small: it must hold the 256 byte tokens and the "
                f"{len(special_tokens)} special tokens, so at least {256 + len(special_tokens)}"
            )
        pattern = resolve_pattern(pattern)
        texts = (t if isinstance(t, str) else t.text for t in texts)
        chunks = count_chunks(texts, pattern, workers or default_workers(), progress=progress)
        if chunks.characters == 0:
            raise EmptyCorpusError(
                f"the corpus is empty ({chunks.documents} documents, 0 characters); point training at some text"
            )
        requested = vocab_size - 256 - len(special_tokens)
        start = time.perf_counter()
        merges = learn_merges(chunks.counts, requested, progress=progress, on_merge=on_merge)
        merging = time.perf_counter() - start
        first_special = 256 + len(merges)
        tok = cls(merges, pattern, {s: first_special + i for i, s in enumerate(special_tokens)})
        tok.training = TrainingReport(
            chunks.documents, chunks.characters, len(chunks.counts), len(merges), requested, chunks.seconds, merging
        )
        return tok

    # ---------------------------------------------------------------- encoding

    def encode(
        self, text: str, allowed_special: SpecialSet = frozenset(), disallowed_special: SpecialSet = "all"
    ) -> list[int]:
        """Encode text. Special-token strings become their ids only if in ``allowed_special`` ("all" for all);
        a special-token string that is neither allowed nor explicitly excluded from ``disallowed_special`` raises
        :class:`DisallowedSpecialError`; strings excluded from both are encoded as ordinary text (as tiktoken)."""
        allowed, disallowed = self._resolve_specials(allowed_special, disallowed_special)
        self._refuse_disallowed(text, disallowed)
        if not allowed:
            return self.encode_ordinary(text)
        ids: list[int] = []
        start = 0
        for match in self._special_pattern(allowed).finditer(text):
            ids.extend(self.encode_ordinary(text[start : match.start()]))
            ids.append(self.special_tokens[match.group()])
            start = match.end()
        ids.extend(self.encode_ordinary(text[start:]))
        return ids

    def _resolve_specials(
        self, allowed_special: SpecialSet, disallowed_special: SpecialSet
    ) -> tuple[frozenset[str], frozenset[str]]:
        """tiktoken's rules: "all" means every special token; disallowed defaults to every one not allowed."""
        specials = self.special_tokens
        allowed = frozenset(specials).intersection(specials if allowed_special == "all" else allowed_special)
        disallowed = frozenset(specials.keys() - allowed if disallowed_special == "all" else disallowed_special)
        return allowed, disallowed

    def _refuse_disallowed(self, text: str, disallowed: frozenset[str]) -> None:
        if disallowed and (match := self._special_pattern(disallowed).search(text)):
            raise DisallowedSpecialError(
                f"the text contains the special token {match.group()!r} at character {match.start()}; pass "
                f"allowed_special={{{match.group()!r}}} to encode it as a special token, or "
                "disallowed_special=() to encode it as ordinary text"
            )

    def _special_pattern(self, tokens: frozenset[str]) -> regex.Pattern:
        """A regex matching any of ``tokens``, longest first so a token never loses to its own prefix."""
        pattern = self._special_patterns.get(tokens)
        if pattern is None:
            ordered = sorted(tokens, key=lambda s: (-len(s), s))
            pattern = self._special_patterns[tokens] = regex.compile("|".join(regex.escape(s) for s in ordered))
        return pattern

    def encode_batch(
        self,
        texts: Iterable[str],
        workers: int | None = None,
        allowed_special: SpecialSet = frozenset(),
        disallowed_special: SpecialSet = "all",
        backend: Literal["auto", "python", "tiktoken"] = "auto",
    ) -> list[list[int]]:
        """Encode many texts with the same ids as ``encode`` one by one, in bulk (see ``encode_iter``)."""
        texts = list(texts)
        batch = max(1, len(texts) // (4 * (workers or default_workers())))
        return list(self.encode_iter(texts, workers, allowed_special, disallowed_special, backend, batch))

    def encode_iter(
        self,
        texts: Iterable[str],
        workers: int | None = None,
        allowed_special: SpecialSet = frozenset(),
        disallowed_special: SpecialSet = "all",
        backend: Literal["auto", "python", "tiktoken"] = "auto",
        batch: int = 64,
    ) -> Iterator[list[int]]:
        """Encode a stream of texts (of any length: a whole corpus) in order, ``batch`` texts per unit of work.

        ``backend="python"`` spreads our own encoder over ``workers`` processes (None: all CPUs), started once for
        the whole stream. ``backend="tiktoken"`` hands the work to the exported tiktoken encoding (Rust, ``workers``
        threads): the ids are identical (tested), only faster. ``"auto"`` takes tiktoken when it is installed.
        """
        workers = workers or default_workers()
        if backend == "auto":
            backend = "tiktoken" if importlib.util.find_spec("tiktoken") else "python"
        batches = batch_texts_by_count(texts, batch)
        if backend == "tiktoken":
            for texts_ in batches:
                yield from self._encode_batch_tiktoken(texts_, workers, allowed_special, disallowed_special)
            return
        jobs = ((texts_, allowed_special, disallowed_special) for texts_ in batches)
        for encoded in ordered_map(_encode_batch, jobs, workers, _init_encoder, (self,)):
            yield from encoded

    def _encode_batch_tiktoken(
        self, texts: list[str], threads: int, allowed_special: SpecialSet, disallowed_special: SpecialSet
    ) -> list[list[int]]:
        allowed, disallowed = self._resolve_specials(allowed_special, disallowed_special)
        for text in texts:
            self._refuse_disallowed(text, disallowed)  # our exception type and message, before any work
        if self._tiktoken is None:
            self._tiktoken = self.to_tiktoken()
        out = self._tiktoken.encode_batch(texts, num_threads=threads, allowed_special=allowed, disallowed_special=())
        for i, text in enumerate(texts):
            # tiktoken turns lone surrogates into U+FFFD; ours keeps surrogate-escaped bytes. Such texts (rare) take
            # our path so that the ids stay identical.
            if not text.isascii() and _has_surrogate(text):
                out[i] = self.encode(text, allowed_special=allowed, disallowed_special=())
        return out

    # ---------------------------------------------------------------- identity

    def to_dict(self) -> dict:
        """Everything that defines the tokenizer, JSON-ready (our ``tokenizer.json``)."""
        return {
            "format": formats.FORMAT_NAME,
            "version": formats.FORMAT_VERSION,
            "pattern_name": pattern_name(self.pattern),
            "pattern": self.pattern,
            "byte_ids": self.byte_ids,
            "merges": [list(pair) for pair in self.merges],
            "special_tokens": self.special_tokens,
        }

    @property
    def hash(self) -> str:
        """SHA-256 of the definition: token shards record it so data made by another tokenizer is refused."""
        definition = {k: v for k, v in self.to_dict().items() if k not in ("format", "version", "pattern_name")}
        return hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tokenizer) and self.hash == other.hash

    __hash__ = None  # mutable-looking object with value equality: not hashable

    def __repr__(self) -> str:
        name = pattern_name(self.pattern) or "custom"
        return f"Tokenizer(vocab_size={self.vocab_size}, pattern={name}, special_tokens={len(self.special_tokens)})"

    def __reduce__(self):  # pickle by definition (for worker processes), not by caches and compiled regexes
        return (Tokenizer, (self.merges, self.pattern, self.special_tokens, self.byte_ids))

    # ---------------------------------------------------------------- files

    def save(self, directory: str | Path) -> Path:
        """Write ``directory/tokenizer.json`` (atomically); returns its path."""
        return formats.save_json(self.to_dict(), directory)

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        """Load our ``tokenizer.json`` (the file or the directory holding it)."""
        return cls.load_dict(formats.load_json(path))

    @classmethod
    def load_dict(cls, d: dict) -> Tokenizer:
        """The inverse of ``to_dict`` (for a definition already in memory)."""
        return cls(d["merges"], d["pattern"], d["special_tokens"], d["byte_ids"])

    @classmethod
    def from_gpt2(cls, encoder_json: str | Path, vocab_bpe: str | Path) -> Tokenizer:
        """GPT-2's released ``encoder.json`` + ``vocab.bpe`` (also GPT-2's pattern and ``<|endoftext|>``)."""
        merges, byte_ids, special = formats.read_gpt2(encoder_json, vocab_bpe)
        return cls(merges, "gpt2", special, byte_ids)

    @classmethod
    def from_tiktoken(
        cls, path: str | Path, pattern: str, special_tokens: Mapping[str, int] | None = None
    ) -> Tokenizer:
        """A tiktoken rank file (``cl100k_base.tiktoken``, ``o200k_base.tiktoken``, Llama 3's ``tokenizer.model``)."""
        merges, byte_ids = formats.read_tiktoken(path)
        return cls(merges, resolve_pattern(pattern), special_tokens, byte_ids)

    def save_tiktoken(self, path: str | Path) -> Path:
        """Write the ordinary tokens as a tiktoken rank file (base64 token, space, rank; one a line)."""
        return formats.write_tiktoken(self.mergeable_ranks, path)

    def to_tiktoken(self, name: str = "scratchllm"):
        """A ``tiktoken.Encoding`` with the same ids (needs tiktoken installed): the fast bulk path."""
        return formats.to_tiktoken(self, name)

    def save_hf(self, path: str | Path) -> Path:
        """Write a Hugging Face ``tokenizer.json`` that ``tokenizers`` loads and that encodes identically."""
        return formats.save_hf(self, path)


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


_worker_tokenizer: Tokenizer | None = None


def _init_encoder(tokenizer: Tokenizer) -> None:
    global _worker_tokenizer
    _worker_tokenizer = tokenizer


def _encode_batch(job: tuple[list[str], SpecialSet, SpecialSet]) -> list[list[int]]:
    texts, allowed, disallowed = job
    return [_worker_tokenizer.encode(t, allowed_special=allowed, disallowed_special=disallowed) for t in texts]
