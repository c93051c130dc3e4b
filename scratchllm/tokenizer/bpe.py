"""Byte-pair encoding of one pre-token chunk, given the ranks of the vocabulary.

A trained BPE vocabulary is an ordered list of merges; merge ``i`` created the token with id ``256 + i``. Encoding a
chunk replays them: start from the chunk's bytes and repeatedly merge the adjacent pair whose concatenation has the
lowest rank (the earliest-learned token), leftmost first on ties, until no adjacent pair forms a token. This is the
formulation of tiktoken (`rank` of the merged bytes) and, for a vocabulary learned by BPE, it equals replaying the
merge list pair by pair as GPT-2's ``encoder.py`` and Hugging Face do; the tests check both equalities.

Two implementations with identical output: a plain scan, quadratic in the chunk length and fastest for the short
chunks that make up almost all text, and a heap over a linked list, ``O(n log n)``, for long chunks (a 100 kB run of
spaces or of ``=`` is one chunk under every split pattern, and the quadratic scan would stall on it).
"""

from __future__ import annotations

import heapq
import sys

# Chunks longer than this many bytes use the heap; below it the scan wins (measured: the scan costs about as much as
# the heap's setup at ~30 bytes, and most chunks are under 10).
LONG_CHUNK = 64
_NONE = sys.maxsize  # rank of a pair that is not a token: larger than any real rank


def merge_scan(piece: bytes, ranks: dict[bytes, int]) -> list[bytes]:
    """Merge ``piece`` down to its tokens: after each merge only the two pairs next to it get a new rank, and the
    lowest rank is found by ``min`` over a list (a C loop), so Python does O(1) work per merge."""
    get = ranks.get
    bounds = list(range(len(piece) + 1))  # part i is piece[bounds[i]:bounds[i + 1]]
    pair_ranks = [get(piece[i : i + 2], _NONE) for i in range(len(piece) - 1)]  # rank of part i + part i+1
    while pair_ranks:
        best = min(pair_ranks)
        if best == _NONE:
            break
        i = pair_ranks.index(best)  # leftmost on ties
        del bounds[i + 1]
        del pair_ranks[i]
        if i > 0:
            pair_ranks[i - 1] = get(piece[bounds[i - 1] : bounds[i + 1]], _NONE)
        if i < len(pair_ranks):
            pair_ranks[i] = get(piece[bounds[i] : bounds[i + 2]], _NONE)
    return [piece[bounds[i] : bounds[i + 1]] for i in range(len(bounds) - 1)]


def merge_heap(piece: bytes, ranks: dict[bytes, int]) -> list[bytes]:
    """Same result as :func:`merge_scan`, in ``O(n log n)``: a heap of candidate merges over a linked list."""
    n = len(piece)
    parts: list[bytes | None] = [piece[i : i + 1] for i in range(n)]  # None marks a part absorbed by its left
    nxt = list(range(1, n + 1))  # nxt[i] == n: no right neighbour
    prv = list(range(-1, n - 1))
    get = ranks.get
    heap: list[tuple[int, int, bytes]] = []  # (rank, left position, merged bytes): the bytes detect stale entries

    def push(i: int) -> None:
        j = nxt[i]
        if j < n:
            merged = parts[i] + parts[j]
            rank = get(merged)
            if rank is not None:
                heapq.heappush(heap, (rank, i, merged))

    for i in range(n - 1):
        push(i)
    while heap:
        rank, i, merged = heapq.heappop(heap)
        j = nxt[i] if parts[i] is not None else n
        if j >= n or parts[i] + parts[j] != merged:
            continue  # stale: one side was merged away since this entry was pushed
        parts[i], parts[j] = merged, None
        nxt[i] = nxt[j]
        if nxt[j] < n:
            prv[nxt[j]] = i
        push(i)
        if prv[i] >= 0:
            push(prv[i])
    return [p for p in parts if p is not None]


def merge_piece(piece: bytes, ranks: dict[bytes, int]) -> list[bytes]:
    """The tokens (as bytes) of one chunk; picks the implementation by length."""
    if len(piece) > LONG_CHUNK:
        return merge_heap(piece, ranks)
    return merge_scan(piece, ranks)


def recover_merge(token: bytes, ranks: dict[bytes, int]) -> tuple[bytes, bytes]:
    """The pair of tokens whose merge created ``token``, from ranks alone (for tiktoken files, which store no merges).

    For a vocabulary learned by BPE, BPE on the token's own bytes, allowed only tokens older than it, stops exactly
    one merge short: the two remaining parts are the pair that was merged. Some published vocabularies (Llama 3's
    additions to cl100k) hold tokens that BPE cannot reach; for those any split into two older tokens defines the
    same token bytes, and we take the one whose larger rank is smallest. Encoding does not depend on the choice:
    it works on ranks.
    """
    limit = ranks[token]
    parts = merge_piece(token, _OlderThan(ranks, limit))
    if len(parts) == 2:
        return parts[0], parts[1]
    splits = [
        (max(ranks[token[:i]], ranks[token[i:]]), i)
        for i in range(1, len(token))
        if ranks.get(token[:i], limit) < limit and ranks.get(token[i:], limit) < limit
    ]
    if not splits:
        raise ValueError(f"token {token!r} (rank {limit}) is not the concatenation of two older tokens")
    _, i = min(splits)
    return token[:i], token[i:]


class _OlderThan:
    """A read-only view of ``ranks`` that hides every token of rank ``limit`` or later (avoids copying 100k ranks)."""

    def __init__(self, ranks: dict[bytes, int], limit: int):
        self._ranks, self._limit = ranks, limit

    def get(self, key, default=None):
        rank = self._ranks.get(key)
        return rank if rank is not None and rank < self._limit else default
