"""MinHash-LSH: the permutation arithmetic is exact (Python's big integers are the oracle), estimates have the error
sqrt(J (1 - J) / k) that theory predicts, banding catches pairs at the rate of the S-curve, and clustering is
transitive and independent of batching and input order. datasketch is a second oracle for the estimates."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scratchllm.book.experiments.minhash_scurve import edited_pairs, expected_jaccard
from scratchllm.data.minhash import (
    EMPTY,
    MinHasher,
    P,
    UnionFind,
    affine_mod_p,
    clusters,
    connected_components,
    estimated_jaccard,
    jaccard,
    lsh_candidates,
    permutation_params,
    s_curve,
    share_a_band,
    shingle_hashes,
    shingles,
    words,
)

K = 112


@pytest.fixture(scope="module")
def hasher():
    return MinHasher(num_perm=K, seed=1, ngram=5)


def test_affine_mod_p_is_exact():
    rng = np.random.default_rng(0)
    x = rng.integers(0, P, 300, dtype=np.uint64)
    x[:4] = [0, 1, P - 1, (1 << 31) - 1]  # the extremes, and the largest low half
    a, b = permutation_params(40, seed=3)
    a[:2], b[:2] = [1, P - 1], [0, P - 1]
    out = affine_mod_p(x, a, b)
    assert out.shape == (300, 40) and out.dtype == np.uint64
    expected = [[(int(ai) * int(xi) + int(bi)) % P for ai, bi in zip(a, b)] for xi in x]
    assert out.tolist() == expected


def test_permutation_params_are_deterministic_and_in_range():
    a, b = permutation_params(K, seed=1)
    a2, b2 = permutation_params(K, seed=1)
    assert np.array_equal(a, a2) and np.array_equal(b, b2)
    assert a.min() >= 1 and a.max() < P and b.max() < P and len(set(a.tolist())) == K
    assert not np.array_equal(permutation_params(K, seed=2)[0], a)


def test_words_fold_case_punctuation_and_width():
    assert words("Hello, World!  It's\tＦＵＬＬ-width…") == ["hello", "world", "it", "s", "full", "width"]
    assert shingles("a b c d e f", 5) == {"a b c d e", "b c d e f"}
    assert shingles("too short", 5) == {"too short"}  # fewer than n words: one shingle of all of them
    assert shingles("... !!!", 5) == set() and len(shingle_hashes("... !!!")) == 0


def test_signature_is_the_minimum_of_each_permutation(hasher):
    texts = ["The quick brown fox jumps over the lazy dog, and the dog sleeps on.", "one two", "x " * 40]
    sigs = hasher.signatures(texts)
    assert sigs.shape == (3, K) and sigs.dtype == np.uint64
    a, b = hasher.a.tolist(), hasher.b.tolist()
    for text, sig in zip(texts, sigs):
        h = shingle_hashes(text).tolist()
        assert len(h) == len(shingles(text)) and max(h) < P  # one distinct hash per distinct shingle
        assert sig.tolist() == [min((ai * x + bi) % P for x in h) for ai, bi in zip(a, b)]


def test_signatures_do_not_depend_on_batching(hasher):
    texts = [" ".join(f"w{i * 7 + j}" for j in range(n)) for i, n in enumerate([3, 900, 40, 0, 1200, 5, 77])]
    reference = hasher.signatures(texts)
    assert (reference[3] == EMPTY).all()  # no words
    for batch_size in (1, 2, 5, 1000):
        assert np.array_equal(hasher.signatures(texts, batch_size=batch_size), reference)
    small_blocks = MinHasher(num_perm=K, seed=1, ngram=5, block=7)  # documents straddle blocks
    assert np.array_equal(small_blocks.signatures(iter(texts)), reference)


def _random_set_pairs(rng, n_pairs, union_size):
    """Pairs of random 61-bit sets with Jaccard drawn uniformly in [0, 1]; returns the sets and their exact J."""
    set_a, set_b, exact = [], [], []
    for _ in range(n_pairs):
        values = rng.choice(P, union_size, replace=False).astype(np.uint64)  # (U,) distinct
        common = int(rng.integers(0, union_size + 1))
        only_a = (union_size - common) // 2
        set_a.append(values[: common + only_a])
        set_b.append(np.concatenate([values[:common], values[common + only_a :]]))
        exact.append(common / union_size)
    return set_a, set_b, np.array(exact)


def test_estimate_error_matches_theory(hasher):
    rng = np.random.default_rng(1)
    set_a, set_b, exact = _random_set_pairs(rng, n_pairs=400, union_size=150)
    est = estimated_jaccard(hasher.signatures_of_hashes(set_a), hasher.signatures_of_hashes(set_b))  # (400,)
    var = exact * (1 - exact) / K  # Var of a mean of K Bernoulli(J)
    assert np.all(np.abs(est - exact) <= 5 * np.sqrt(var) + 1 / K)  # every pair within 5 sigma
    assert abs(np.mean(est - exact)) <= 4 * math.sqrt(var.sum()) / len(exact)  # unbiased
    # the mean squared error is the theoretical variance: permutations act independently
    assert 0.7 < np.mean((est - exact) ** 2) / np.mean(var) < 1.4


def test_estimates_comparable_to_datasketch(hasher):
    from datasketch import MinHash

    rng = np.random.default_rng(2)
    pairs, exact = [], []
    for edits in range(0, 40, 2):
        for pair in edited_pairs(10, 200, edits, rng=rng):
            pairs.append(pair)
            exact.append(expected_jaccard(200, edits))
    exact = np.array(exact)  # (200,)
    ours = estimated_jaccard(*(hasher.signatures([p[i] for p in pairs]) for i in (0, 1)))
    theirs = []
    for a, b in pairs:
        m = [MinHash(num_perm=K, seed=1) for _ in range(2)]
        for mh, text in zip(m, (a, b)):
            mh.update_batch([s.encode() for s in shingles(text)])
        theirs.append(m[0].jaccard(m[1]))
    err_ours, err_theirs = np.abs(ours - exact), np.abs(np.array(theirs) - exact)
    expected = np.sqrt(exact * (1 - exact) / K).mean() * math.sqrt(2 / math.pi)  # E|N(0, sd)| = sd sqrt(2/pi)
    assert 0.7 * expected < err_ours.mean() < 1.35 * expected
    assert 0.7 * expected < err_theirs.mean() < 1.35 * expected
    assert abs(np.mean(ours - exact)) < 0.01 and abs(np.mean(np.array(theirs) - exact)) < 0.01


def test_edited_pairs_have_the_designed_jaccard():
    rng = np.random.default_rng(3)
    for edits in (0, 1, 7, 19):
        for a, b in edited_pairs(3, 100, edits, rng=rng):
            assert jaccard(shingles(a), shingles(b)) == pytest.approx(expected_jaccard(100, edits))


def test_s_curve():
    assert s_curve(0.0, 14, 8) == 0.0 and s_curve(1.0, 14, 8) == 1.0
    # FineWeb's numbers for 14 x 8: 75% similar documents caught 77% of the time, 80% similar 92%
    assert s_curve(0.75, 14, 8) == pytest.approx(0.77, abs=0.005)
    assert s_curve(0.8, 14, 8) == pytest.approx(0.92, abs=0.005)
    assert np.all(np.diff(s_curve(np.linspace(0, 1, 50), 14, 8)) >= 0)


def test_detection_rate_follows_the_s_curve(hasher):
    """200 pairs at each of six known similarities; the caught fraction is binomial around 1 - (1 - J^8)^14."""
    rng = np.random.default_rng(4)
    n, levels = 200, range(1, 7)  # length 100: J = 0.90, 0.81, 0.73, 0.66, 0.59, 0.52
    texts = [t for edits in levels for pair in edited_pairs(n, 100, edits, rng=rng) for t in pair]
    sigs = hasher.signatures(texts)  # (2 n L, K): text, copy, text, copy, ...
    labels = clusters(sigs, bands=14, rows=8)
    caught = (labels[0::2] == labels[1::2]).reshape(len(levels), n)  # (L, n)
    assert np.array_equal(caught, share_a_band(sigs[0::2], sigs[1::2], 14, 8).reshape(len(levels), n))
    for i, edits in enumerate(levels):
        p = s_curve(expected_jaccard(100, edits), 14, 8)
        assert abs(caught[i].sum() - n * p) <= 4 * math.sqrt(n * p * (1 - p)) + 2, (edits, caught[i].sum(), n * p)
    # unrelated texts never meet: every cluster is one original and at most its copy
    assert np.bincount(labels).max() <= 2


def test_lsh_candidates_pairs_identical_bands_and_skips_empty():
    sigs = np.arange(6 * 8, dtype=np.uint64).reshape(6, 8)  # (6, 8): 4 bands of 2 rows, all different
    sigs[1, 2:4] = sigs[0, 2:4]  # 0 and 1 share band 1
    sigs[3] = sigs[2]  # 2 and 3 identical
    sigs[4] = sigs[5] = EMPTY  # no shingles: identical but not candidates
    assert lsh_candidates(sigs, bands=4, rows=2).tolist() == [[0, 1], [2, 3]]
    assert lsh_candidates(sigs, bands=1, rows=2).tolist() == [[2, 3]]  # only band 0
    with pytest.raises(ValueError, match="need 10 permutations"):
        lsh_candidates(sigs, bands=5, rows=2)


def test_clusters_are_transitive():
    # A shares band 0 with B, B shares band 1 with C, A and C share nothing: one cluster all the same
    sigs = np.arange(4 * 4, dtype=np.uint64).reshape(4, 4)  # (4 docs, 2 bands x 2 rows)
    sigs[1, 0:2] = sigs[0, 0:2]
    sigs[2, 2:4] = sigs[1, 2:4]
    assert lsh_candidates(sigs, bands=2, rows=2).tolist() == [[0, 1], [1, 2]]
    assert clusters(sigs, bands=2, rows=2).tolist() == [0, 0, 0, 3]


def test_chain_of_small_edits_is_one_cluster(hasher):
    """Each text is two edits from the last (J 0.95: caught), the chain's ends are 40 edits apart (J 0.33)."""
    rng = np.random.default_rng(5)
    chain = [edited_pairs(1, 400, 0, rng=rng)[0][0].split()]
    for step in range(20):
        w = list(chain[-1])
        for pos in (10 + 19 * step, 15 + 19 * step):  # fresh positions, > 5 apart
            w[pos] = f"edit{step}_{pos}"
        chain.append(w)
    texts = [" ".join(w) for w in chain]
    sigs = hasher.signatures(texts)
    assert jaccard(shingles(texts[0]), shingles(texts[-1])) < 0.35
    assert not share_a_band(sigs[:1], sigs[-1:], 14, 8)[0]  # the ends are not candidates themselves
    assert clusters(sigs).tolist() == [0] * 21


def test_clusters_do_not_depend_on_input_order(hasher):
    rng = np.random.default_rng(6)
    texts = [t for edits in (0, 1, 3, 6, 12) for pair in edited_pairs(20, 100, edits, rng=rng) for t in pair]
    for original in texts[40:60:2]:  # a second copy of ten originals, one word changed elsewhere (J 0.9)
        w = original.split()
        w[90] = "another"
        texts.append(" ".join(w))

    def partition(order):
        labels = clusters(hasher.signatures([texts[i] for i in order]))
        groups: dict[int, set[int]] = {}
        for pos, label in enumerate(labels.tolist()):
            groups.setdefault(label, set()).add(order[pos])
        return {frozenset(g) for g in groups.values()}

    reference = partition(list(range(len(texts))))
    assert any(len(g) == 3 for g in reference)  # an original with two copies
    for seed in range(3):
        assert partition(np.random.default_rng(seed).permutation(len(texts)).tolist()) == reference


def test_union_find():
    uf = UnionFind(6)
    assert uf.union(0, 1) and uf.union(2, 3) and uf.union(1, 3)
    assert not uf.union(0, 2)  # already joined
    assert uf.find(0) == uf.find(3) != uf.find(4)
    assert uf.size[uf.find(0)] == 4
    labels = connected_components(6, np.array([[4, 5], [3, 2], [5, 1]]))
    assert labels.tolist() == [0, 1, 2, 2, 1, 1]  # {0}, {1, 4, 5}, {2, 3}: labelled by the smallest member
