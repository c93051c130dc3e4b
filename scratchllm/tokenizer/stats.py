"""How good is a tokenizer on a corpus: compression, vocabulary use, and what its longest tokens are.

Bytes per token is the number that matters: at a fixed context length and compute budget, a tokenizer that packs
more bytes into each token lets the model see more text. Vocabulary use shows how much of the embedding table the
corpus actually exercises; tokens that never occur are parameters that never learn.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from .tokenizer import Tokenizer


@dataclass
class TokenizerStats:
    documents: int
    bytes: int
    tokens: int
    vocab_size: int
    used_ids: int
    longest: list[tuple[int, bytes]]  # (id, token bytes), longest first
    most_common: list[tuple[int, int]]  # (id, count)

    @property
    def bytes_per_token(self) -> float:
        return self.bytes / max(1, self.tokens)

    @property
    def vocab_use(self) -> float:
        return self.used_ids / max(1, self.vocab_size)

    def format(self, tok: Tokenizer) -> str:
        """A short human-readable report."""
        lines = [
            f"documents        {self.documents:,}",
            f"bytes            {self.bytes:,}",
            f"tokens           {self.tokens:,}",
            f"bytes per token  {self.bytes_per_token:.3f}",
            f"vocabulary used  {self.used_ids:,} of {self.vocab_size:,} ids ({100 * self.vocab_use:.1f}%)",
            "longest tokens   " + ", ".join(repr(t.decode("utf-8", "replace")) for _, t in self.longest[:5]),
            "most common      "
            + ", ".join(f"{tok.token_bytes(i).decode('utf-8', 'replace')!r} ({n:,})" for i, n in self.most_common[:8]),
        ]
        return "\n".join(lines)


def measure(tok: Tokenizer, texts: Iterable[str], top: int = 10) -> TokenizerStats:
    """Encode ``texts`` (special-token strings as plain text) and summarise."""
    counts: Counter = Counter()
    documents = size = tokens = 0
    for text in texts:
        ids = tok.encode(text, disallowed_special=())
        counts.update(ids)
        documents += 1
        size += len(text.encode("utf-8", "surrogateescape"))
        tokens += len(ids)
    longest = sorted(range(tok.n_ordinary), key=lambda i: (-len(tok.token_bytes(i)), i))[:top]
    return TokenizerStats(
        documents=documents,
        bytes=size,
        tokens=tokens,
        vocab_size=tok.vocab_size,
        used_ids=len(counts),
        longest=[(i, tok.token_bytes(i)) for i in longest],
        most_common=counts.most_common(top),
    )


def show_pieces(tok: Tokenizer, ids: list[int]) -> str:
    """Each token as ``id:'text'``, so a user sees where the boundaries fall."""
    return " ".join(f"{i}:{tok.token_bytes(i).decode('utf-8', 'backslashreplace')!r}" for i in ids)
