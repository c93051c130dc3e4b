"""The global steps of the data pipeline: deduplication, whose verdict on a document depends on the whole corpus.

``pipeline.plan`` cuts the step list at these steps into stages. Each global step is split in two so that it can be
sharded: ``features`` runs per shard, in parallel, and ``duplicates`` runs once over the features of every shard in
stream order (the pipeline module's docstring tells the whole story; ``executor`` runs the two halves).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from scratchllm.config import ConfigError

from .dedup import cluster_size_histogram, exact_key
from .minhash import MinHasher, clusters


@dataclass
class ExactDedupConfig:
    """Exact dedup has no settings: the key is a digest of the text after NFC and whitespace collapsing
    (``dedup.exact_key``), and the document kept is the first in stream order."""


@dataclass
class NearDedupConfig:
    """MinHash-LSH near-dedup (``minhash``), with FineWeb's defaults: word 5-grams, 112 permutations, 14 x 8 bands."""

    num_perm: int = 112
    bands: int = 14
    rows: int = 8
    # Words per shingle.
    ngram: int = 5
    # Seed of the permutations; signatures of different shards are comparable only with the same seed.
    seed: int = 1
    # If set, a candidate pair from the bands must also have an estimated Jaccard of at least this much.
    threshold: float | None = None
    # Documents hashed at once (a bound on memory, not on the result).
    batch_size: int = 256

    def __post_init__(self) -> None:
        if min(self.num_perm, self.bands, self.rows, self.ngram, self.batch_size) < 1:
            raise ConfigError("step.near_dedup: num_perm, bands, rows, ngram and batch_size must be positive")
        if self.bands * self.rows > self.num_perm:
            raise ConfigError(
                f"step.near_dedup: {self.bands} bands x {self.rows} rows need {self.bands * self.rows} permutations; "
                f"num_perm is {self.num_perm}"
            )
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"step.near_dedup.threshold must be in [0, 1]; got {self.threshold}")


class GlobalStep(ABC):
    """A step whose verdict on a document depends on the whole corpus, split in two so that it can be sharded.

    ``features(texts)`` runs per shard, in parallel: a row of a fixed-width array per document. ``duplicates(rows)``
    runs once, over the rows of every shard in stream order, and says which documents go. Only the arrays travel
    between the two, never the texts, which is what makes the global part cheap enough to run in one process.
    """

    name = "global"
    reason = "duplicate"  # the drop reason recorded for every document this step removes

    @abstractmethod
    def features(self, texts: Sequence[str]) -> np.ndarray:
        """(N,) texts of one shard -> (N, ...) fixed-width rows, one per document."""

    @abstractmethod
    def duplicates(self, rows: np.ndarray) -> tuple[np.ndarray, Counter]:
        """(N, ...) features in stream order -> (N,) bool, True for a document to drop; and counters for the report."""


class ExactDedupStage(GlobalStep):
    """Exact duplicates: the same ``exact_key`` (128-bit BLAKE2b of the normalized text) as an earlier document."""

    name = "exact_dedup"
    reason = "exact_duplicate"

    def __init__(self, config: ExactDedupConfig) -> None:
        self.config = config

    def features(self, texts: Sequence[str]) -> np.ndarray:
        return np.frombuffer(b"".join(map(exact_key, texts)), dtype=np.uint8).reshape(len(texts), 16)  # (N, 16)

    def duplicates(self, rows: np.ndarray) -> tuple[np.ndarray, Counter]:
        keys = np.ascontiguousarray(rows).view("V16").reshape(-1)  # (N,) one opaque 16-byte value per document
        _, first = np.unique(keys, return_index=True)  # the index of each key's first occurrence: stream order wins
        drop = np.ones(len(keys), dtype=bool)
        drop[first] = False
        return drop, Counter({"distinct_texts": len(first)})


class NearDedupStage(GlobalStep):
    """Near duplicates: MinHash signatures per shard, then LSH banding and union-find over all of them; every
    document but the first of each cluster goes. The cluster-size histogram is counted as ``cluster_size_<k>``."""

    name = "near_dedup"
    reason = "near_duplicate"

    def __init__(self, config: NearDedupConfig) -> None:
        self.config = config
        self.hasher = MinHasher(config.num_perm, config.seed, config.ngram)

    def features(self, texts: Sequence[str]) -> np.ndarray:
        return self.hasher.signatures(texts, self.config.batch_size)  # (N, num_perm) uint64

    def duplicates(self, rows: np.ndarray) -> tuple[np.ndarray, Counter]:
        labels = clusters(rows, self.config.bands, self.config.rows, self.config.threshold)  # (N,) first of cluster
        sizes = cluster_size_histogram(labels) if len(labels) else Counter()
        return labels != np.arange(len(labels)), Counter({f"cluster_size_{k}": n for k, n in sizes.items()})
