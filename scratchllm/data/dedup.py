"""Duplicate removal: exact duplicates by a hash of the normalized text, near-duplicates by MinHash-LSH.

Web crawls repeat themselves: mirrored pages, boilerplate, templated listings, the same article syndicated with a
different header. Duplicates waste compute, make a model memorize (Lee et al. 2022, "Deduplicating Training Data
Makes Language Models Better") and leak evaluation text into training. Two steps remove them:

- :class:`ExactDedup` keeps the first document with a given normalized text (NFC, whitespace runs collapsed to one
  space, stripped) and drops the rest as ``"exact_duplicate"``. A 128-bit BLAKE2b digest stands for each text, so
  memory is 16 bytes a document plus the set's overhead, and an accidental collision is out of the question.
- :class:`NearDedup` groups documents whose word 5-gram sets are similar (``scratchllm.data.minhash``: 112
  permutations in 14 bands of 8 rows, FineWeb's setting), joins the groups transitively with a union-find and keeps
  the first document of each cluster, dropping the others as ``"near_duplicate"``.

"First" is always **stream order**: the document the reader produced earliest survives. The reader's order is
deterministic, so the same corpus always keeps the same documents; put the source you trust most first.

Near-dedup is global: whether a document survives depends on documents anywhere in the corpus. ``NearDedup.run``
therefore reads its whole input before yielding anything, keeping the documents in a list (fine at laptop scale:
the default corpus is 32 MB). On a cluster the same work runs as three phases, which is what the functions below
are for:

1. per shard, in parallel: ``shard_signatures(docs, hasher)`` -> ids and a (N, 112) uint64 array, written to disk
   (896 bytes a document; a billion documents fit on one machine's disk);
2. once, globally: ``duplicate_ids(ids, signatures)`` over all shards in stream order -> the drop-list (the banding
   can itself be split by band across workers, see ``minhash.band_pairs``; only the union-find is sequential);
3. per shard, in parallel: ``DropIds(drop_list)`` filters the shard, streaming.

This is the layout of datatrove's MinHash pipeline used for FineWeb (Penedo et al. 2024, "The FineWeb Datasets").
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from .document import Document
from .minhash import MinHasher, clusters
from .step import Filter, Step


def exact_key(text: str) -> bytes:
    """128-bit digest of the text after NFC, collapsing whitespace runs to one space and stripping the ends."""
    normalized = " ".join(unicodedata.normalize("NFC", text).split())
    return hashlib.blake2b(normalized.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class ExactDedup(Filter):
    """Drops every document whose normalized text was already seen earlier in the stream."""

    name = "exact_dedup"

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[bytes] = set()

    def reason_to_drop(self, doc: Document) -> str | None:
        key = exact_key(doc.text)
        if key in self._seen:
            return "exact_duplicate"
        self._seen.add(key)
        return None


def shard_signatures(
    docs: Iterable[Document], hasher: MinHasher, batch_size: int = 256
) -> tuple[list[str], np.ndarray]:
    """Phase 1: the ids and MinHash signatures (N, num_perm) uint64 of a shard's documents, in stream order."""
    ids: list[str] = []

    def texts() -> Iterator[str]:
        for doc in docs:
            ids.append(doc.id)
            yield doc.text

    signatures = hasher.signatures(texts(), batch_size)
    return ids, signatures


def duplicate_ids(
    ids: Sequence[str], signatures: np.ndarray, bands: int = 14, rows: int = 8, threshold: float | None = None
) -> set[str]:
    """Phase 2: the ids of every document but the first (in the given order) of each near-duplicate cluster.

    ``ids`` (N) and ``signatures`` (N, k) are all shards' outputs of phase 1, concatenated in stream order.
    """
    labels = clusters(signatures, bands, rows, threshold)  # (N,)
    return {ids[i] for i in np.flatnonzero(labels != np.arange(len(labels)))}


def cluster_size_histogram(labels: np.ndarray) -> Counter:
    """How many clusters have each size: {size: count}, from (N,) cluster labels."""
    _, sizes = np.unique(labels, return_counts=True)
    return Counter(sizes.tolist())


class DropIds(Filter):
    """Phase 3: drops the documents whose id is in a drop-list made elsewhere (by ``duplicate_ids``)."""

    name = "drop_ids"

    def __init__(self, ids: Iterable[str], reason: str = "near_duplicate") -> None:
        super().__init__()
        self.ids = frozenset(ids)
        self.reason = reason

    def reason_to_drop(self, doc: Document) -> str | None:
        return self.reason if doc.id in self.ids else None


class NearDedup(Step):
    """Keeps the first document of each MinHash-LSH cluster; reads the whole stream before yielding.

    ``stats.counters`` gets the cluster-size histogram as ``cluster_size_{k}`` = number of clusters of k documents
    (``cluster_size_1`` counts the documents with no near-duplicate). Documents without words are never clustered.
    ``threshold`` (optional) also requires a candidate pair's estimated Jaccard to reach it (``minhash.clusters``).
    """

    name = "near_dedup"

    def __init__(
        self,
        num_perm: int = 112,
        bands: int = 14,
        rows: int = 8,
        ngram: int = 5,
        seed: int = 1,
        threshold: float | None = None,
        batch_size: int = 256,
    ) -> None:
        super().__init__()
        if bands * rows > num_perm:
            raise ValueError(f"{bands} bands x {rows} rows need {bands * rows} permutations; num_perm is {num_perm}")
        self.hasher = MinHasher(num_perm, seed, ngram)
        self.bands, self.rows, self.threshold, self.batch_size = bands, rows, threshold, batch_size

    def run(self, docs: Iterable[Document]) -> Iterator[Document]:
        docs = list(docs)
        _, signatures = shard_signatures(docs, self.hasher, self.batch_size)  # (N, k)
        labels = clusters(signatures, self.bands, self.rows, self.threshold)  # (N,)
        for size, count in sorted(cluster_size_histogram(labels).items()):
            self.stats.counters[f"cluster_size_{size}"] += count
        for i, doc in enumerate(docs):
            self.stats.seen += 1
            if labels[i] == i:
                self.stats.kept += 1
                yield doc
            else:
                self._dropped(doc, "near_duplicate")
