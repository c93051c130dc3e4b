"""The bottom layer of the tokenizer: a byte-level BPE vocabulary, and encoding and decoding of raw bytes.

A vocabulary is 256 single-byte tokens plus an ordered list of merges. Merge ``i`` joins two existing tokens into a
new one with id ``256 + i``, so the id of a merged token is also its rank: lower ids were learned earlier and merge
first. The ids of the 256 byte tokens are a permutation of 0..255: the identity for tokenizers trained here, and
GPT-2's own order (printable bytes first) for GPT-2's vocabulary, which lets one class hold both.

Because every byte is a token, any input at all, in any language or none, encodes: nothing is ever unknown.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .bpe import merge_piece
from .errors import DecodeError, TokenizerFormatError


class ByteBPE:
    """Byte tokens plus ordered merges; encodes a byte string as one piece and decodes ids back to bytes."""

    def __init__(self, merges: Sequence[tuple[int, int]], byte_ids: Sequence[int] | None = None):
        byte_ids = list(range(256)) if byte_ids is None else [int(i) for i in byte_ids]
        if sorted(byte_ids) != list(range(256)):
            raise TokenizerFormatError("byte_ids must be a permutation of 0..255 (one id for each byte value)")
        vocab: list[bytes] = [b""] * (256 + len(merges))  # id -> token bytes
        for byte, token_id in enumerate(byte_ids):
            vocab[token_id] = bytes([byte])
        for i, (left, right) in enumerate(merges):
            new_id = 256 + i
            if not (0 <= left < new_id and 0 <= right < new_id):
                raise TokenizerFormatError(f"merge {i} joins ids ({left}, {right}); both must be below {new_id}")
            vocab[new_id] = vocab[left] + vocab[right]
        ranks = {token: token_id for token_id, token in enumerate(vocab)}
        if len(ranks) != len(vocab):
            raise TokenizerFormatError("two merges produce the same token bytes; the merge list is inconsistent")
        self.merges: list[tuple[int, int]] = [(int(a), int(b)) for a, b in merges]
        self.byte_ids: list[int] = byte_ids
        self._vocab = vocab
        self._ranks = ranks
        self._decoder: dict[int, bytes] = dict(enumerate(vocab))

    @property
    def n_ordinary(self) -> int:
        """Number of ordinary (non-special) tokens: 256 + merges."""
        return len(self._vocab)

    @property
    def vocab_size(self) -> int:
        """One more than the largest id (special tokens included, in subclasses)."""
        return max(self._decoder) + 1

    @property
    def mergeable_ranks(self) -> dict[bytes, int]:
        """token bytes -> id for ordinary tokens (tiktoken's name for it); do not mutate."""
        return self._ranks

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes one id stands for."""
        try:
            return self._decoder[token_id]
        except (KeyError, TypeError):
            raise DecodeError(f"token id {token_id!r} is not in the vocabulary (size {self.vocab_size})") from None

    def encode_piece(self, piece: bytes) -> list[int]:
        """BPE of one piece of bytes. A piece that is itself a token is that token (as tiktoken and HF's
        ``ignore_merges`` do); otherwise merges are replayed from the bytes up."""
        token_id = self._ranks.get(piece)
        if token_id is not None:
            return [token_id]
        ranks = self._ranks
        return [ranks[part] for part in merge_piece(piece, ranks)]

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """ids -> the exact bytes they encode (special tokens as their text in UTF-8)."""
        decoder = self._decoder
        ids = ids if isinstance(ids, (list, tuple)) else list(ids)
        try:
            return b"".join([decoder[i] for i in ids])
        except (KeyError, TypeError):
            bad = next(i for i in ids if i not in decoder)
            raise DecodeError(f"token id {bad!r} is not in the vocabulary (size {self.vocab_size})") from None

    def decode(self, ids: Iterable[int], errors: str = "replace") -> str:
        """ids -> text. A sequence cut inside a multi-byte character is not valid UTF-8: by default the broken bytes
        become U+FFFD; ``errors="surrogateescape"`` keeps them recoverable, ``"strict"`` raises."""
        return self.decode_bytes(ids).decode("utf-8", errors=errors)
