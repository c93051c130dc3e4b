"""Exact and near-duplicate removal as pipeline steps: the first document in stream order survives, the counts in
the stats are right, and the three-phase (cluster) form drops exactly what the one-process step drops."""

from __future__ import annotations

import numpy as np
import pytest

from scratchllm.book.experiments.minhash_scurve import edited_pairs
from scratchllm.data.dedup import (
    DropIds,
    ExactDedup,
    NearDedup,
    cluster_size_histogram,
    duplicate_ids,
    exact_key,
    shard_signatures,
)
from scratchllm.data.document import Document
from scratchllm.data.minhash import MinHasher


def _docs(texts, prefix="d"):
    return [Document(f"{prefix}{i}", t, "test") for i, t in enumerate(texts)]


def test_exact_key_normalizes_unicode_and_whitespace():
    assert exact_key("caf\u00e9  au\n\tlait ") == exact_key("cafe\u0301 au lait")  # NFC, whitespace runs
    assert exact_key("Café au lait") != exact_key("café au lait")  # case is content
    assert len(exact_key("x")) == 16


def test_exact_dedup_keeps_the_first_and_counts():
    texts = ["alpha beta", "gamma", "alpha  beta\n", "delta", "gamma", "Alpha beta", " gamma "]
    step = ExactDedup()
    rejected = []
    step.rejects = lambda doc, reason: rejected.append((doc.id, reason))
    kept = [d.id for d in step.run(_docs(texts))]
    assert kept == ["d0", "d1", "d3", "d5"]
    assert rejected == [("d2", "exact_duplicate"), ("d4", "exact_duplicate"), ("d6", "exact_duplicate")]
    s = step.stats
    assert (s.seen, s.kept, dict(s.dropped)) == (7, 4, {"exact_duplicate": 3})
    assert [e["id"] for e in s.examples["exact_duplicate"]] == ["d2", "d4", "d6"]


def _near_corpus():
    """Ten originals, each followed later in the stream by a near copy (J 0.90), plus unrelated texts."""
    rng = np.random.default_rng(0)
    pairs = edited_pairs(10, 100, 1, rng=rng)  # J = 0.90: caught with probability 1 - 1e-7 per pair
    singles = [p[0] for p in edited_pairs(15, 100, 0, rng=rng)]
    texts = [p[0] for p in pairs] + singles + [p[1] for p in pairs]
    return _docs(texts)


def test_near_dedup_drops_copies_and_counts_clusters():
    docs = _near_corpus()
    step = NearDedup()
    kept = [d.id for d in step.run(docs)]
    assert kept == [f"d{i}" for i in range(25)]  # the originals come first in the stream, so they stay
    s = step.stats
    assert (s.seen, s.kept, dict(s.dropped)) == (35, 25, {"near_duplicate": 10})
    assert dict(s.counters) == {"cluster_size_1": 15, "cluster_size_2": 10}
    # stream order decides: reversed, the copies come first and survive instead
    reversed_kept = [d.id for d in NearDedup().run(reversed(docs))]
    assert sorted(reversed_kept) == sorted([f"d{i}" for i in range(10, 35)])


def test_near_dedup_is_deterministic_across_runs_and_batch_sizes():
    docs = _near_corpus()
    reference = [d.id for d in NearDedup().run(docs)]
    for batch_size in (1, 4, 1000):
        assert [d.id for d in NearDedup(batch_size=batch_size).run(iter(docs))] == reference


def test_near_dedup_keeps_texts_without_words_and_validates():
    docs = _docs(["", "!!!", "...", "one two three four five six"])
    assert [d.id for d in NearDedup().run(docs)] == ["d0", "d1", "d2", "d3"]
    with pytest.raises(ValueError, match="permutations"):
        NearDedup(num_perm=64, bands=14, rows=8)


def test_threshold_prunes_weak_candidates():
    rng = np.random.default_rng(1)
    pairs = edited_pairs(40, 100, 4, rng=rng)  # J = 0.66: some are candidates, estimated near 0.66
    docs = _docs([t for p in pairs for t in p])
    loose = NearDedup()
    list(loose.run(docs))
    strict = NearDedup(threshold=0.9)
    assert len(list(strict.run(docs))) == len(docs)
    assert loose.stats.dropped["near_duplicate"] > 0 and strict.stats.total_dropped == 0


def test_three_phases_equal_the_single_step():
    docs = _near_corpus()
    shards = [docs[0:12], docs[12:20], docs[20:]]
    hasher = MinHasher()
    phase1 = [shard_signatures(shard, hasher) for shard in shards]  # per shard: ids, (n, 112)
    ids = [i for shard_ids, _ in phase1 for i in shard_ids]
    signatures = np.concatenate([sig for _, sig in phase1])
    drop = duplicate_ids(ids, signatures)  # one global pass
    assert drop == {f"d{i}" for i in range(25, 35)}
    filters = [DropIds(drop) for _ in shards]
    kept = [d.id for f, shard in zip(filters, shards) for d in f.run(shard)]
    assert kept == [d.id for d in NearDedup().run(docs)]
    total = filters[0].stats.merge(filters[1].stats).merge(filters[2].stats)
    assert (total.seen, total.kept, dict(total.dropped)) == (35, 25, {"near_duplicate": 10})


def test_cluster_size_histogram():
    assert cluster_size_histogram(np.array([0, 0, 2, 3, 3, 3, 6])) == {2: 1, 1: 2, 3: 1}
