"""Learning a byte-level BPE vocabulary from a stream of documents, in pure Python, fast enough for real corpora.

BPE (Sennrich et al. 2016, "Neural Machine Translation of Rare Words with Subword Units"; byte-level as in GPT-2,
Radford et al. 2019) starts from the 256 byte values and repeatedly adds the most frequent adjacent pair of tokens as
a new token. Done naively (recount every pair in the corpus after each merge) that is O(corpus x merges): hours for
a 32k vocabulary. Three ideas make it fast:

1. **Count unique chunks once.** The split pattern cuts text into chunks that BPE never crosses, and a corpus has
   far fewer distinct chunks than chunk occurrences (31 MB of Python source: ~8M chunks, ~0.4M distinct). We count
   them once, in worker processes, and from then on work on (chunk, count) pairs.
2. **Incremental pair counts.** A merge of (a, b) only changes the pairs inside chunks that contain (a, b). An index
   from each pair to the chunks that contain it finds them directly; their old pairs are subtracted and new pairs
   added, weighted by the chunk's count. Nothing else is touched.
3. **A lazy max-heap** finds the most frequent pair in O(log n). Counts of existing pairs only ever decrease (a merge
   can only destroy old adjacencies; the pairs it creates all contain the new token), so a heap entry is an upper
   bound: pop it, and if its count is stale push it back with the current count; the first entry that is current is
   the true maximum.

Tie-breaking is deterministic and documented: among pairs with the same count, the pair with the smaller
(left id, right id) wins. Byte tokens have ids equal to their byte value and merged tokens ids in creation order, so
ties go to lower byte values and to older tokens. The result does not depend on the number of worker processes or on
dict iteration order.
"""

from __future__ import annotations

import heapq
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import regex
from tqdm.auto import tqdm

from .parallel import batch_texts, ordered_map

_worker_regex: regex.Pattern | None = None


def _init_counter(pattern: str) -> None:
    global _worker_regex
    _worker_regex = regex.compile(pattern)


def _count_batch(texts: list[str]) -> tuple[Counter, int]:
    """Worker: count the chunks of a batch of documents; also return the number of characters seen."""
    counts: Counter = Counter()
    findall = _worker_regex.findall
    for text in texts:
        counts.update(findall(text))
    return counts, sum(len(t) for t in texts)


@dataclass
class ChunkCounts:
    """The corpus reduced to what BPE training needs: each distinct chunk with its number of occurrences."""

    counts: dict[str, int]
    documents: int
    characters: int
    seconds: float


def count_chunks(
    texts: Iterable[str], pattern: str, workers: int = 1, batch_chars: int = 1 << 21, progress: bool = False
) -> ChunkCounts:
    """Split every text with ``pattern`` and count the distinct chunks, in ``workers`` processes, streaming."""
    start = time.perf_counter()
    documents = 0

    def counted(stream: Iterable[str]) -> Iterable[str]:
        nonlocal documents
        for text in stream:
            documents += 1
            yield text

    total: Counter = Counter()
    characters = 0
    bar = tqdm(desc="counting chunks", unit="char", unit_scale=True, disable=not progress)
    batches = batch_texts(counted(texts), batch_chars)
    for counts, chars in ordered_map(_count_batch, batches, workers, _init_counter, (pattern,)):
        if total:
            total.update(counts)
        else:
            total = counts
        characters += chars
        bar.update(chars)
    bar.close()
    return ChunkCounts(dict(total), documents, characters, time.perf_counter() - start)


def learn_merges(
    chunk_counts: dict[str, int],
    num_merges: int,
    progress: bool = False,
    on_merge: Callable[[int], None] | None = None,
) -> list[tuple[int, int]]:
    """Learn up to ``num_merges`` merges; merge ``i`` creates token id ``256 + i`` from the pair it returns.

    Fewer merges come back when the corpus runs out of pairs (every chunk is a single token). ``on_merge(n)`` is
    called after the n-th merge (the vocabulary-scaling experiment uses it to time each vocabulary size).
    """
    # words[w]: the current token ids of distinct chunk w; freqs[w]: how often the chunk occurs.
    words: list[list[int]] = []
    freqs: list[int] = []
    for chunk, freq in chunk_counts.items():
        data = chunk.encode("utf-8", "surrogateescape")
        if len(data) > 1:  # a one-byte chunk has no pair and never changes
            words.append(list(data))
            freqs.append(freq)

    pair_counts: dict[tuple[int, int], int] = defaultdict(int)
    where: dict[tuple[int, int], set[int]] = defaultdict(set)  # pair -> chunks that contain (or once contained) it
    for w, word in enumerate(words):
        freq = freqs[w]
        for pair in zip(word, word[1:]):
            pair_counts[pair] += freq
            where[pair].add(w)
    heap = [(-count, pair) for pair, count in pair_counts.items()]
    heapq.heapify(heap)

    merges: list[tuple[int, int]] = []
    bar = tqdm(total=num_merges, desc="merging", unit="merge", disable=not progress)
    for new_id in range(256, 256 + num_merges):
        while heap:  # lazy deletion: skip or refresh entries whose count went down since they were pushed
            neg_count, pair = heapq.heappop(heap)
            current = pair_counts.get(pair, 0)
            if current == -neg_count:
                break
            if current > 0:
                heapq.heappush(heap, (-current, pair))
        else:
            break  # no pair left anywhere: the corpus is fully merged
        merges.append(pair)
        _apply_merge(pair, new_id, words, freqs, pair_counts, where, heap)
        bar.update(1)
        if on_merge is not None:
            on_merge(len(merges))
    bar.close()
    return merges


def _apply_merge(pair, new_id, words, freqs, pair_counts, where, heap) -> None:
    """Replace ``pair`` by ``new_id`` in every chunk that holds it and update the pair counts incrementally."""
    a, b = pair
    delta: dict[tuple[int, int], int] = defaultdict(int)
    for w in where.pop(pair):
        word = words[w]
        merged: list[int] = []
        i, n = 0, len(word)
        while i < n:
            if word[i] == a and i + 1 < n and word[i + 1] == b:
                merged.append(new_id)
                i += 2
            else:
                merged.append(word[i])
                i += 1
        if len(merged) == n:
            continue  # stale index entry: an earlier merge already took this occurrence apart
        freq = freqs[w]
        for old in zip(word, word[1:]):
            delta[old] -= freq
        for new in zip(merged, merged[1:]):
            delta[new] += freq
            if new_id in new:
                where[new].add(w)
        words[w] = merged
    for p, d in delta.items():
        if d == 0:
            continue
        count = pair_counts[p] + d
        if count > 0:
            pair_counts[p] = count
            if d > 0:  # only pairs with the new token grow; the heap needs an entry for them
                heapq.heappush(heap, (-count, p))
        else:
            del pair_counts[p]
