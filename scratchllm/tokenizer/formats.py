"""Tokenizer files: our own ``tokenizer.json``, GPT-2's release, tiktoken rank files, and Hugging Face's format.

* **Ours**: ``{"format", "version", "pattern", "byte_ids", "merges", "special_tokens"}``. Merges are pairs of ids in
  the order learned; merge ``i`` creates id ``256 + i``. Everything else (vocabulary, ranks) is derived on load.
* **GPT-2** (``encoder.json`` + ``vocab.bpe``): tokens spelled with GPT-2's printable byte aliases, merges as
  "left right" lines. ``encoder.json`` must agree with the merges (id ``256 + i`` is merge ``i``), as tiktoken checks.
* **tiktoken** (``*.tiktoken``): "base64(token bytes) rank" per line, no merges; we recover each merge from the
  ranks (``bpe.recover_merge``), so cl100k_base, o200k_base and Llama 3's file load as ordinary merge lists.
* **Hugging Face** ``tokenizer.json``: a ``BPE`` model with ``ignore_merges`` (a chunk that is a whole token is that
  token, as tiktoken does), a ``Split`` pre-tokenizer with our regex then a ``ByteLevel`` one without its own regex.

Every reader validates and raises :class:`TokenizerFormatError` with the file name and what is wrong.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

from ..fileio import atomic_write_text
from .bpe import recover_merge
from .bytelevel import bytes_to_str, char_to_byte, gpt2_byte_order
from .errors import TokenizerError, TokenizerFormatError

if TYPE_CHECKING:
    from .tokenizer import Tokenizer

FORMAT_NAME = "scratchllm.tokenizer"
FORMAT_VERSION = 1
FILE_NAME = "tokenizer.json"


def _read_text(path: str | Path, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TokenizerFormatError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise TokenizerFormatError(f"{what} {path} is a directory; give the file") from None
    except UnicodeDecodeError as exc:
        raise TokenizerFormatError(f"{what} {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _parse_json(text: str, path: str | Path, what: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise TokenizerFormatError(
            f"{what} {path} is not valid JSON (line {exc.lineno}: {exc.msg}); is it truncated?"
        ) from None


# ------------------------------------------------------------------------------------------------- our own format


def save_json(definition: dict, directory: str | Path) -> Path:
    """Write our ``tokenizer.json`` into ``directory`` atomically."""
    return atomic_write_text(Path(directory) / FILE_NAME, json.dumps(definition, ensure_ascii=False) + "\n")


def load_json(path: str | Path) -> dict:
    """Read and validate our ``tokenizer.json`` (the file, or a directory that holds it)."""
    path = Path(path)
    if path.is_dir():
        path = path / FILE_NAME
    d = _parse_json(_read_text(path, "tokenizer file"), path, "tokenizer file")
    if not isinstance(d, dict) or d.get("format") != FORMAT_NAME:
        hint = " (it looks like a Hugging Face tokenizer.json)" if isinstance(d, dict) and "model" in d else ""
        raise TokenizerFormatError(f"{path} is not a scratchllm tokenizer file{hint}")
    if d.get("version") != FORMAT_VERSION:
        raise TokenizerFormatError(f"{path} has format version {d.get('version')!r}; this code reads {FORMAT_VERSION}")
    checks = {
        "pattern": lambda v: isinstance(v, str),
        "byte_ids": lambda v: isinstance(v, list) and len(v) == 256 and all(isinstance(i, int) for i in v),
        "merges": lambda v: (
            isinstance(v, list)
            and all(isinstance(m, list) and len(m) == 2 and all(isinstance(i, int) for i in m) for m in v)
        ),
        "special_tokens": lambda v: isinstance(v, dict) and all(isinstance(i, int) for i in v.values()),
    }
    for key, ok in checks.items():
        if key not in d or not ok(d[key]):
            raise TokenizerFormatError(f"{path}: field {key!r} is missing or malformed; the file is damaged")
    try:
        from .tokenizer import Tokenizer

        Tokenizer(d["merges"], d["pattern"], d["special_tokens"], d["byte_ids"])  # full consistency check
    except TokenizerFormatError as exc:
        raise TokenizerFormatError(f"{path}: {exc}") from None
    except TokenizerError as exc:
        raise TokenizerFormatError(f"{path}: {exc}") from None
    return d


# ------------------------------------------------------------------------------------------------- GPT-2


def read_gpt2(encoder_json: str | Path, vocab_bpe: str | Path) -> tuple[list[tuple[int, int]], list[int], dict]:
    """GPT-2's two files -> (merges, byte_ids, special_tokens), checking that they agree with each other."""
    encoder = _parse_json(_read_text(encoder_json, "encoder.json"), encoder_json, "encoder.json")
    if not isinstance(encoder, dict) or not all(isinstance(v, int) for v in encoder.values()):
        raise TokenizerFormatError(f"{encoder_json} is not a GPT-2 encoder.json (a JSON object of token -> id)")
    lines = _read_text(vocab_bpe, "vocab.bpe").split("\n")
    if not lines or not lines[0].startswith("#version"):
        raise TokenizerFormatError(f"{vocab_bpe} is not a GPT-2 vocab.bpe (it must start with a '#version' line)")
    aliases = char_to_byte()
    order = gpt2_byte_order()
    byte_ids = [0] * 256
    for token_id, byte in enumerate(order):
        byte_ids[byte] = token_id
        char = bytes_to_str(bytes([byte]))
        if encoder.get(char) != token_id:
            raise TokenizerFormatError(
                f"{encoder_json} does not match {vocab_bpe}: byte token {char!r} should have id {token_id}, "
                f"has {encoder.get(char)!r}"
            )
    merges = []
    for number, line in enumerate(lines[1:], start=2):
        if not line:
            continue
        parts = line.split(" ")
        if len(parts) != 2 or not all(parts) or any(c not in aliases for c in "".join(parts)):
            raise TokenizerFormatError(f"{vocab_bpe} line {number}: expected two byte-level tokens, got {line!r}")
        left, right = parts
        new_id = 256 + len(merges)
        if left not in encoder or right not in encoder or encoder.get(left + right) != new_id:
            raise TokenizerFormatError(
                f"{encoder_json} does not match {vocab_bpe}: merge {line!r} (line {number}) should create id "
                f"{new_id}, but encoder.json has {encoder.get(left + right)!r}"
            )
        merges.append((encoder[left], encoder[right]))
    ordinary = 256 + len(merges)
    special = {token: token_id for token, token_id in encoder.items() if token_id >= ordinary}
    if len(encoder) != ordinary + len(special):
        raise TokenizerFormatError(
            f"{encoder_json} has {len(encoder)} entries but {vocab_bpe} explains {ordinary}; the files do not match"
        )
    return merges, byte_ids, special


# ------------------------------------------------------------------------------------------------- tiktoken


def read_tiktoken(path: str | Path) -> tuple[list[tuple[int, int]], list[int]]:
    """A tiktoken rank file -> (merges, byte_ids). Ranks must be 0..n-1 with all 256 bytes among them."""
    ranks: dict[bytes, int] = {}
    text = _read_text(path, "tiktoken file")
    for number, line in enumerate(text.splitlines(), start=1):
        if not line:
            continue
        try:
            token_b64, rank = line.split()
            ranks[base64.b64decode(token_b64, validate=True)] = int(rank)
        except (ValueError, binascii.Error):
            raise TokenizerFormatError(
                f"{path} line {number}: expected 'base64-token rank', got {line[:60]!r}"
            ) from None
    if sorted(ranks.values()) != list(range(len(ranks))):
        raise TokenizerFormatError(f"{path}: ranks must be exactly 0..{len(ranks) - 1} with no gaps or repeats")
    missing = [b for b in range(256) if bytes([b]) not in ranks]
    if missing:
        raise TokenizerFormatError(f"{path}: {len(missing)} single bytes have no token (e.g. {missing[0]})")
    if any(ranks[bytes([b])] >= 256 for b in range(256)):
        raise TokenizerFormatError(f"{path}: the 256 single-byte tokens must have the ranks 0..255")
    byte_ids = [ranks[bytes([b])] for b in range(256)]
    by_rank = sorted(ranks, key=ranks.__getitem__)
    merges = []
    for token in by_rank[256:]:
        try:
            left, right = recover_merge(token, ranks)
        except ValueError as exc:
            raise TokenizerFormatError(f"{path}: {exc}") from None
        merges.append((ranks[left], ranks[right]))
    return merges, byte_ids


def write_tiktoken(ranks: dict[bytes, int], path: str | Path) -> Path:
    """Write a tiktoken rank file atomically."""
    lines = [f"{base64.b64encode(token).decode()} {rank}" for token, rank in sorted(ranks.items(), key=lambda x: x[1])]
    return atomic_write_text(path, "\n".join(lines) + "\n")


def to_tiktoken(tok: Tokenizer, name: str):
    """Build a ``tiktoken.Encoding`` with identical ids (the fast Rust encoder, for bulk work)."""
    try:
        import tiktoken
    except ImportError:
        raise TokenizerError("tiktoken is not installed; pip install tiktoken (or scratchllm[test])") from None
    return tiktoken.Encoding(
        name=name, pat_str=tok.pattern, mergeable_ranks=dict(tok.mergeable_ranks), special_tokens=tok.special_tokens
    )


# ------------------------------------------------------------------------------------------------- Hugging Face


def onig_pattern(pattern: str) -> str:
    r"""Our split regex rewritten for Oniguruma, the regex engine of Hugging Face ``tokenizers``.

    In Python's ``regex`` (and Rust's, which tiktoken uses) ``\p{N}{1,3}+`` is a possessive "one to three digits";
    Oniguruma reads the trailing ``+`` as "repeat the interval", i.e. any number of digits. Dropping the ``+`` after
    an interval gives the same matches whenever nothing follows the interval inside its alternative (true of every
    preset: there is nothing to backtrack into), and the export tests check it.
    """
    return re.sub(r"(\{\d+(?:,\d*)?\})\+", r"\1", pattern)


def save_hf(tok: Tokenizer, path: str | Path) -> Path:
    """Write a Hugging Face ``tokenizer.json`` (a directory gets ``tokenizer.json`` inside it)."""
    path = Path(path)
    if path.is_dir() or not path.suffix:
        path = path / FILE_NAME
    vocab = {bytes_to_str(tok.token_bytes(i)): i for i in range(tok.n_ordinary)}
    merges = [f"{bytes_to_str(tok.token_bytes(a))} {bytes_to_str(tok.token_bytes(b))}" for a, b in tok.merges]
    added = [
        {"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
         "special": True}
        for s, i in sorted(tok.special_tokens.items(), key=lambda x: x[1])
    ]  # fmt: skip
    document = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {
                    "type": "Split",
                    "pattern": {"Regex": onig_pattern(tok.pattern)},
                    "behavior": "Isolated",
                    "invert": False,
                },
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
            ],
        },
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": True,
            "vocab": vocab,
            "merges": merges,
        },
    }
    return atomic_write_text(path, json.dumps(document, ensure_ascii=False) + "\n")
