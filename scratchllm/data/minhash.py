"""MinHash signatures and locality-sensitive hashing: finding near-duplicate documents without comparing every pair.

A document becomes the **set of its word n-grams** ("shingles"; Broder 1997, "On the resemblance and containment of
documents"), and two documents are near-duplicates when the Jaccard similarity of their sets, J = |A & B| / |A | B|,
is high. Comparing all pairs is quadratic, so each set is summarized by a **signature**: for k random permutations
h_1..h_k of the shingle space, the smallest permuted value of the set. For one random permutation the two minima are
equal exactly when the smallest element of A | B lies in A & B, which happens with probability J; so the fraction of
equal positions in two signatures is an unbiased estimate of J with standard deviation sqrt(J (1 - J) / k).

Signatures are then compared by **banding** (Leskovec, Rajaraman and Ullman, "Mining of Massive Datasets", ch. 3):
cut each signature into b bands of r values; two documents become candidates when some band is identical. A pair of
similarity s is a candidate with probability 1 - (1 - s^r)^b, an S-curve with its steep part near (1/b)^(1/r).
Candidates are joined into clusters with a union-find, so near-duplication is transitive: A~B and B~C put A, B, C in
one cluster even when A and C are not alike. The defaults are FineWeb's (Penedo et al. 2024, "The FineWeb Datasets"):
5-grams of words, 112 permutations cut into 14 bands of 8 rows (a pair at 75% similarity is caught 77% of the time).

What "word" means here (``words``): the text is NFKC-normalized (full-width and compatibility forms fold to plain
ones) and lowercased, and a word is a maximal run of characters that are neither whitespace, punctuation (Unicode
category P) nor symbols (category S). So ``Hello, World!`` and ``hello world`` give the same words. A text with
fewer than n words is one shingle of all its words; a text with no words has no shingles and an EMPTY signature,
which LSH leaves out (such texts are for exact dedup and quality filters).

Hashing is deterministic across processes, machines and NumPy versions (signatures of different shards must be
comparable): each distinct word is hashed once with BLAKE2b (never Python's salted ``hash``), the n word hashes of a
shingle are combined in NumPy, and the permutation parameters are derived from BLAKE2b of the seed.

The permutations are universal hashes h(x) = (a x + b) mod p with the Mersenne prime p = 2^61 - 1, computed exactly
in uint64 (see ``affine_mod_p``). datasketch's legacy scheme (its only one before 2.0) multiplied a (61 bits) by x in
uint64 and let the product wrap around modulo 2^64, which is no longer (a x + b) mod p; we split the product instead.
"""

from __future__ import annotations

import functools
import hashlib
import sys
import unicodedata
from collections.abc import Iterable, Sequence

import numpy as np

P = (1 << 61) - 1  # the Mersenne prime of the universal hashes
EMPTY = np.iinfo(np.uint64).max  # signature value of a text without shingles: above every (a x + b) mod p

_P = np.uint64(P)
_LOW31 = np.uint64((1 << 31) - 1)
_LOW30 = np.uint64((1 << 30) - 1)
# Multipliers that weigh the word hashes of a shingle by position, so "a b" and "b a" differ: hex digits of pi,
# made odd so that each word's term is a bijection modulo 2^64.
_POSITION_WEIGHTS = np.array(
    [0x243F6A8885A308D3, 0x13198A2E03707345, 0xA4093822299F31D1, 0x082EFA98EC4E6C89, 0x452821E638D01377,
     0xBE5466CF34E90C6D, 0xC0AC29B7C97C50DD, 0x3F84D5B5B5470917, 0x9216D5D98979FB1B, 0xD1310BA698DFB5AD],
    dtype=np.uint64,
)  # fmt: skip


@functools.cache
def _separators() -> dict[int, str]:
    """``str.translate`` table sending every punctuation (P*) and symbol (S*) code point to a space (8,560 of them).

    Translating and splitting runs about twice as fast as a regular expression over ``\\p{P}`` and ``\\p{S}``. The
    categories come from the running Python's Unicode database, which only ever adds newly assigned characters.
    """
    return {c: " " for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c))[0] in "PS"}


def words(text: str) -> list[str]:
    """The words of ``text`` as hashing sees them: NFKC, lowercase, punctuation and symbols treated as spaces."""
    return unicodedata.normalize("NFKC", text).lower().translate(_separators()).split()


def shingles(text: str, n: int = 5) -> set[str]:
    """The set of word n-grams of ``text``, each joined by single spaces (the readable form of what is hashed)."""
    w = words(text)
    if len(w) < n:
        return {" ".join(w)} if w else set()
    return {" ".join(w[i : i + n]) for i in range(len(w) - n + 1)}


def jaccard(a: set, b: set) -> float:
    """Exact Jaccard similarity of two sets (0 for two empty sets)."""
    return len(a & b) / len(a | b) if a or b else 0.0


def _blake64(data: str) -> int:
    return int.from_bytes(hashlib.blake2b(data.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")


def _fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finalizer: a bijection that spreads every input bit over the output (wraps by design)."""
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


def shingle_hashes(text: str, n: int = 5, cache: dict[str, int] | None = None) -> np.ndarray:
    """The distinct 61-bit hashes of the n-grams of ``text``, sorted: (S,) uint64 with values in [0, p).

    Each distinct word is hashed once (``cache`` carries word hashes across the documents of a batch); a shingle's
    hash is fmix64(sum_j weight_j * word_hash_j) modulo 2^64, computed for all shingles at once with n shifted
    slices. Distinct shingles collide with probability about 2^-61, far below MinHash's own error.
    """
    if n > len(_POSITION_WEIGHTS):
        raise ValueError(f"n-grams of up to {len(_POSITION_WEIGHTS)} words are supported; got {n}")
    w = words(text)
    if not w:
        return np.empty(0, dtype=np.uint64)
    cache = {} if cache is None else cache
    for word in set(w).difference(cache):
        cache[word] = _blake64(word)
    wh = np.fromiter(map(cache.__getitem__, w), dtype=np.uint64, count=len(w))  # (W,)
    m = max(len(w) - n + 1, 1)  # a short text is one shingle of all its words
    h = np.zeros(m, dtype=np.uint64)  # (S,)
    for j in range(min(n, len(w))):
        h += wh[j : j + m] * _POSITION_WEIGHTS[j]  # (S,) uint64 arithmetic wraps modulo 2^64, as intended
    h = _fmix64(h)
    x = (h & _P) + (h >> np.uint64(61))  # fold 64 bits into [0, p]: 2^61 = 1 (mod p)
    x[x >= _P] -= _P
    return np.unique(x)


def permutation_params(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The (a, b) of each permutation: (k,) uint64 each, a in [1, p), b in [0, p), from BLAKE2b of seed and index."""
    a = [1 + _blake64(f"minhash:{seed}:a:{i}") % (P - 1) for i in range(num_perm)]
    b = [_blake64(f"minhash:{seed}:b:{i}") % P for i in range(num_perm)]
    return np.array(a, dtype=np.uint64), np.array(b, dtype=np.uint64)


def affine_mod_p(x: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(a_j x_i + b_j) mod p for every x_i in [0, p) and every permutation j, exactly: (S,) x (k,) -> (S, k) uint64.

    a x can have 122 bits, so it cannot be formed in uint64. Write a = a1 2^31 + a0 and x = x1 2^31 + x0 with
    a0, x0 < 2^31 and a1, x1 < 2^30; then a x = a1 x1 2^62 + (a1 x0 + a0 x1) 2^31 + a0 x0, every product below 2^62.
    Modulo p = 2^61 - 1, 2^61 = 1, so 2^62 = 2, and the middle term m 2^31 with m = m1 2^30 + m0 is m1 + m0 2^31.
    The sum of all parts stays below 6 * 2^61 < 2^64; one fold (low 61 bits + the rest) and one conditional
    subtraction bring it into [0, p).
    """
    x1, x0 = (x >> np.uint64(31))[:, None], (x & _LOW31)[:, None]  # (S, 1) each
    a1, a0 = a >> np.uint64(31), a & _LOW31  # (k,) each
    mid = a1 * x0  # (S, k), < 2^61
    mid += a0 * x1  # < 2^62
    s = (a1 << np.uint64(1)) * x1  # (S, k): 2 a1 x1 < 2^61 stands for a1 x1 2^62
    s += a0 * x0  # < 2^62
    s += mid >> np.uint64(30)  # m1
    mid &= _LOW30
    mid <<= np.uint64(31)
    s += mid  # m0 2^31 < 2^61
    s += b  # (S, k) + (k,)
    s = (s & _P) + (s >> np.uint64(61))  # < 2^61 + 6
    np.subtract(s, _P, out=s, where=s >= _P)
    return s


class MinHasher:
    """Signatures of texts: ``num_perm`` minima of universal hashes over their word ``ngram`` shingles."""

    def __init__(self, num_perm: int = 112, seed: int = 1, ngram: int = 5, block: int = 512) -> None:
        self.num_perm = num_perm
        self.seed = seed
        self.ngram = ngram
        # Shingles permuted at once: (block, num_perm) uint64 temporaries of ~0.5 MB each stay mostly in a core's cache.
        self.block = block
        self.a, self.b = permutation_params(num_perm, seed)

    def signatures(self, texts: Iterable[str], batch_size: int = 256) -> np.ndarray:
        """Signatures of ``texts``: (N, num_perm) uint64, EMPTY rows for texts without words.

        Texts are taken ``batch_size`` at a time; a signature depends only on its own text, never on the batching.
        """
        parts, batch = [], []
        for text in texts:
            batch.append(text)
            if len(batch) == batch_size:
                parts.append(self._batch(batch))
                batch = []
        if batch or not parts:
            parts.append(self._batch(batch))
        return np.concatenate(parts)

    def _batch(self, texts: Sequence[str]) -> np.ndarray:
        cache: dict[str, int] = {}  # word hashes, shared by the batch and dropped with it
        return self.signatures_of_hashes([shingle_hashes(t, self.ngram, cache) for t in texts])

    def signatures_of_hashes(self, hash_sets: Sequence[np.ndarray]) -> np.ndarray:
        """Signatures of sets given as arrays of distinct values in [0, p): (N, num_perm) uint64.

        The sets are concatenated and permuted ``block`` rows at a time; each block's rows are reduced to their
        documents' minima with ``np.minimum.reduceat`` over the runs of equal owners, and folded into the result
        (a document whose shingles straddle two blocks gets the smaller of both minima).
        """
        sigs = np.full((len(hash_sets), self.num_perm), EMPTY, dtype=np.uint64)  # (N, k)
        if not hash_sets:
            return sigs
        x = np.concatenate(hash_sets)  # (T,) all shingles of the batch, document after document
        owner = np.repeat(np.arange(len(hash_sets)), [len(h) for h in hash_sets])  # (T,) index of each one's text
        for lo in range(0, len(x), self.block):
            values = affine_mod_p(x[lo : lo + self.block], self.a, self.b)  # (R, k)
            own = owner[lo : lo + self.block]  # (R,) non-decreasing
            starts = np.flatnonzero(np.r_[True, own[1:] != own[:-1]])  # (G,) first row of each document's run
            docs = own[starts]  # (G,) distinct
            sigs[docs] = np.minimum(sigs[docs], np.minimum.reduceat(values, starts, axis=0))  # (G, k)
        return sigs


def estimated_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> np.ndarray | float:
    """Fraction of equal positions: the MinHash estimate of J, (..., k) x (..., k) -> (...)."""
    return np.mean(sig_a == sig_b, axis=-1)


def s_curve(s: np.ndarray | float, bands: int, rows: int) -> np.ndarray | float:
    """Probability that a pair of Jaccard similarity ``s`` shares at least one of ``bands`` bands of ``rows`` rows."""
    return 1.0 - (1.0 - np.power(s, rows)) ** bands


def s_curve_threshold(bands: int, rows: int) -> float:
    """Where the S-curve is steepest, approximately: (1/b)^(1/r) (0.719 for 14 x 8)."""
    return (1.0 / bands) ** (1.0 / rows)


def share_a_band(sig_a: np.ndarray, sig_b: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """Whether each pair of signatures is identical on some band: (N, k) x (N, k) -> (N,) bool."""
    n = sig_a.shape[0]
    same = sig_a[:, : bands * rows] == sig_b[:, : bands * rows]  # (N, b * r)
    return same.reshape(n, bands, rows).all(axis=2).any(axis=1)


def band_pairs(band: np.ndarray) -> np.ndarray:
    """Pairs of rows with identical values in one band: (N, r) -> (E, 2) int64, each row i paired with the first row
    of its bucket (i > first). A bucket of m rows gives m - 1 pairs, not m (m - 1) / 2: the same connected
    components, in linear size even when thousands of copies of one boilerplate page share a bucket."""
    n = band.shape[0]
    _, bucket = np.unique(band, axis=0, return_inverse=True)
    bucket = bucket.reshape(-1)  # (N,) bucket id of each row
    first = np.full(bucket.max() + 1 if n else 0, n, dtype=np.int64)  # (buckets,)
    np.minimum.at(first, bucket, np.arange(n))
    leader = first[bucket]  # (N,)
    rows = np.flatnonzero(leader != np.arange(n))  # (E,)
    return np.stack([leader[rows], rows], axis=1)


def lsh_candidates(signatures: np.ndarray, bands: int = 14, rows: int = 8) -> np.ndarray:
    """Candidate pairs (i, j), i < j, of documents identical on at least one band: (N, k) -> (E, 2) int64, sorted.

    Each band is bucketed independently (on a cluster, one band per worker). Documents with EMPTY signatures are
    left out.
    """
    if bands * rows > signatures.shape[1]:
        raise ValueError(f"{bands} bands x {rows} rows need {bands * rows} permutations; have {signatures.shape[1]}")
    keep = np.flatnonzero(signatures[:, 0] != EMPTY)  # (N',) documents with shingles
    sigs = signatures[keep]  # (N', k)
    pairs = np.concatenate([band_pairs(sigs[:, i * rows : (i + 1) * rows]) for i in range(bands)])  # (sum E_i, 2)
    return np.unique(keep[pairs], axis=0).reshape(-1, 2)  # (E, 2) indices into the original rows


class UnionFind:
    """Disjoint sets over 0..n-1 with path compression and union by size: near-constant time per operation
    (inverse Ackermann; Tarjan 1975)."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))
        self.size = [1] * n

    def find(self, x: int) -> int:
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:  # compress: point every node on the path straight at the root
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, x: int, y: int) -> bool:
        """Join the sets of x and y; False if they were already one."""
        rx, ry = self.find(x), self.find(y)
        if rx == ry:
            return False
        if self.size[rx] < self.size[ry]:  # hang the smaller tree under the larger: depth stays logarithmic
            rx, ry = ry, rx
        self.parent[ry] = rx
        self.size[rx] += self.size[ry]
        return True


def connected_components(n: int, pairs: np.ndarray) -> np.ndarray:
    """Label of each of n items: the smallest index in its connected component under ``pairs`` (E, 2) -> (N,).

    Labelling by the smallest member (not by the union-find root) makes the result independent of the order of
    the pairs, and makes "keep the first document of each cluster" read as ``labels[i] == i``.
    """
    uf = UnionFind(n)
    for i, j in pairs.tolist():
        uf.union(i, j)
    roots = np.array([uf.find(i) for i in range(n)], dtype=np.int64)  # (N,)
    _, first, inverse = np.unique(roots, return_index=True, return_inverse=True)  # first occurrence = smallest
    return first[inverse.reshape(-1)].astype(np.int64)


def clusters(signatures: np.ndarray, bands: int = 14, rows: int = 8, threshold: float | None = None) -> np.ndarray:
    """Near-duplicate clusters: (N, k) signatures -> (N,) label = index of the cluster's first document.

    With ``threshold``, a candidate pair is kept only if its estimated Jaccard reaches it: fewer false positives
    from the S-curve's tail, at the cost of pairs just above the threshold whose estimate falls below it.
    """
    pairs = lsh_candidates(signatures, bands, rows)  # (E, 2)
    if threshold is not None:
        pairs = pairs[estimated_jaccard(signatures[pairs[:, 0]], signatures[pairs[:, 1]]) >= threshold]
    return connected_components(signatures.shape[0], pairs)
