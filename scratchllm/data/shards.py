"""Token shards: the training data on disk, as flat arrays of token ids that ``numpy.memmap`` reads without copying.

A shard is a 64-byte header and then the tokens:

    offset  size  field
    0       8     magic b"SLLMTOK\\0"
    8       4     format version (1), little-endian uint32
    12      4     bytes per token: 2 (uint16, vocabularies up to 65,536) or 4 (uint32)
    16      8     number of tokens, uint64
    24      32    SHA-256 of the tokenizer that made the tokens (``Tokenizer.hash``)
    56      8     zero padding

Every document starts with the BOS token, so a model learns where documents begin and a sampled window that crosses
a boundary is marked. The tokenizer's hash travels with the data: a loader refuses shards made by another tokenizer,
which would otherwise train silently on garbage. Shards are written to a temporary file and renamed, and a reader
checks that the file holds exactly as many tokens as the header says (a truncated copy is refused).
"""

from __future__ import annotations

import os
import struct
import tempfile
from pathlib import Path

import numpy as np

MAGIC = b"SLLMTOK\0"
VERSION = 1
HEADER = struct.Struct("<8sIIQ32s8x")  # 64 bytes
assert HEADER.size == 64


class ShardError(ValueError):
    """A shard file is not a shard, is truncated, or was made by a different tokenizer."""


def dtype_for(vocab_size: int) -> np.dtype:
    """The smallest unsigned integer type that holds every id."""
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


def write_shard(path: str | Path, tokens: np.ndarray, tokenizer_hash: str) -> Path:
    """Write ``tokens`` (uint16 or uint32) with its header, atomically."""
    path = Path(path)
    tokens = np.ascontiguousarray(tokens)
    if tokens.dtype not in (np.uint16, np.uint32):
        raise ValueError(f"shard tokens must be uint16 or uint32, got {tokens.dtype}")
    header = HEADER.pack(MAGIC, VERSION, tokens.dtype.itemsize, tokens.size, bytes.fromhex(tokenizer_hash))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(header)
            f.write(tokens.tobytes())
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_header(path: str | Path) -> tuple[np.dtype, int, str]:
    """(dtype, token count, tokenizer hash) of a shard, after checking it is whole."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            raw = f.read(HEADER.size)
    except OSError as exc:
        raise ShardError(f"cannot read shard {path}: {exc.strerror}") from None
    if len(raw) < HEADER.size or raw[:8] != MAGIC:
        raise ShardError(f"{path} is not a token shard (bad header); make shards with `scratchllm tokenize`")
    _, version, itemsize, count, digest = HEADER.unpack(raw)
    if version != VERSION or itemsize not in (2, 4):
        raise ShardError(f"{path}: unsupported shard version {version} or token size {itemsize}")
    expected = HEADER.size + count * itemsize
    actual = path.stat().st_size
    if actual != expected:
        raise ShardError(
            f"{path} is truncated or damaged: the header promises {count:,} tokens ({expected:,} bytes) but the file "
            f"has {actual:,} bytes; tokenize again"
        )
    return np.dtype(np.uint16 if itemsize == 2 else np.uint32), count, digest.hex()


def open_shard(path: str | Path, tokenizer_hash: str | None = None) -> np.memmap:
    """Memory-map a shard's tokens (read-only), refusing one made by a tokenizer other than ``tokenizer_hash``."""
    dtype, count, digest = read_header(path)
    if tokenizer_hash is not None and digest != tokenizer_hash:
        raise ShardError(
            f"{path} was made by a different tokenizer (hash {digest[:12]}..., the model's is "
            f"{tokenizer_hash[:12]}...); tokenize the corpus again with the model's tokenizer"
        )
    if count == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=HEADER.size, shape=(count,))


class ShardWriter:
    """Collects documents' tokens and writes ``{prefix}_{index:05d}.bin`` shards of about ``shard_tokens`` each.

    A document never straddles two shards (it goes whole into the current one, which may run over), so every
    shard starts with a BOS token.
    """

    def __init__(self, directory: str | Path, prefix: str, tokenizer_hash: str, vocab_size: int, shard_tokens: int):
        self.directory, self.prefix, self.hash = Path(directory), prefix, tokenizer_hash
        self.dtype, self.shard_tokens = dtype_for(vocab_size), shard_tokens
        self.pending: list[np.ndarray] = []
        self.pending_tokens = 0
        self.paths: list[Path] = []
        self.total_tokens = 0

    def add(self, ids: list[int]) -> None:
        self.pending.append(np.asarray(ids, dtype=self.dtype))
        self.pending_tokens += len(ids)
        if self.pending_tokens >= self.shard_tokens:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        path = self.directory / f"{self.prefix}_{len(self.paths):05d}.bin"
        self.paths.append(write_shard(path, np.concatenate(self.pending), self.hash))
        self.total_tokens += self.pending_tokens
        self.pending, self.pending_tokens = [], 0
