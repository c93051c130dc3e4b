"""Dedup benchmark: our MinHash against datasketch's, for speed on the default corpus and for near-duplicate
detection quality on a labelled synthetic set.

Same machine, same process, same input; the ratios are what to quote, since absolute times drift on shared machines.
Run with `make bench` or `python benchmarks/dedup.py [--quick]`.

1. Signatures per second on the default corpus (the Python standard library, all documents; `--quick`: 200): word
   5-grams, 112 permutations, from raw text to signature on both sides. Ours is `MinHasher.signatures` (each
   document's shingles through NumPy at once); datasketch's `MinHash` is fed the same distinct shingles (our
   `shingles()`) one `update` per shingle, its usual use (target: ours >= 5x), and also through its vectorized
   `update_batch`, for reference. The three take turns on chunks of 256 documents and their times are summed, so
   that a slow phase of a shared machine hits every side alike.
2. Detection quality against `datasketch.MinHashLSH` at threshold 0.75 (FineWeb's target similarity): pairs of
   200-word texts with 0 to 20 words replaced (`edited_pairs`; Jaccard 1.0 down to 0.32, spread evenly over edit
   counts), label = exact Jaccard >= 0.75. A pair is flagged by ours when it lands in one cluster, by datasketch
   when `query` returns it. Precision and recall over all flagged pairs, for datasketch's own banding at 0.75 and
   FineWeb's 14 x 8, with the same banding on our side, and ours with candidates verified by estimated Jaccard.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from scratchllm.book.experiments.minhash_scurve import edited_pairs
from scratchllm.data import CorpusConfig, open_corpus
from scratchllm.data.minhash import MinHasher, clusters, jaccard, shingles

NUM_PERM = 112
THRESHOLD = 0.75
CHUNK = 256  # documents per turn in the speed comparison (our default batch size)


def seconds(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def datasketch_signatures(texts: list[str], batch: bool) -> list:
    from datasketch import MinHash

    out = []
    for text in texts:
        m = MinHash(num_perm=NUM_PERM)
        encoded = [s.encode("utf-8", "surrogatepass") for s in shingles(text)]
        if batch:
            m.update_batch(encoded)
        else:
            for s in encoded:
                m.update(s)
        out.append(m)
    return out


def speed(quick: bool) -> None:
    texts = [d.text for d in open_corpus(CorpusConfig(split="all", max_documents=200 if quick else 0))]
    size_mb = sum(len(t.encode("utf-8", "surrogatepass")) for t in texts) / 1e6
    n_shingles = sum(len(shingles(t)) for t in texts)
    print(f"1. signatures, {NUM_PERM} permutations, word 5-grams: default corpus (stdlib, all), {len(texts):,} "
          f"documents, {size_mb:.1f} MB, {n_shingles:,} distinct shingles")  # fmt: skip
    hasher = MinHasher(num_perm=NUM_PERM)
    sides = {
        "scratchllm": hasher.signatures,
        "datasketch update": lambda chunk: datasketch_signatures(chunk, batch=False),
        "datasketch update_batch": lambda chunk: datasketch_signatures(chunk, batch=True),
    }
    rows = dict.fromkeys(sides, 0.0)
    for lo in range(0, len(texts), CHUNK):
        for name, fn in sides.items():
            rows[name] += seconds(fn, texts[lo : lo + CHUNK])
    ours, per_update, batched = rows.values()
    for name, t in rows.items():
        print(f"   {name:24s} {t:7.2f} s  {len(texts) / t:8.1f} docs/s  {n_shingles / t / 1e3:7.1f} "
              f"k shingles/s")  # fmt: skip
    print(f"   ratio ours/datasketch update: {per_update / ours:.1f}x (target >= 5x); "
          f"vs update_batch: {batched / ours:.1f}x\n")  # fmt: skip


def pairs_of_clusters(labels: np.ndarray) -> set[tuple[int, int]]:
    """Every pair (i, j), i < j, of documents with the same cluster label."""
    groups: dict[int, list[int]] = {}
    for i, label in enumerate(labels.tolist()):
        groups.setdefault(label, []).append(i)
    return {(a, b) for g in groups.values() for k, a in enumerate(g) for b in g[k + 1 :]}


def datasketch_flagged(texts: list[str], params: tuple[int, int] | None) -> tuple[set[tuple[int, int]], tuple]:
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM, params=params)
    sketches = datasketch_signatures(texts, batch=True)
    for i, m in enumerate(sketches):
        lsh.insert(i, m)
    flagged = {(min(i, j), max(i, j)) for i, m in enumerate(sketches) for j in lsh.query(m) if j != i}
    return flagged, (lsh.b, lsh.r)


def quality(quick: bool) -> None:
    n_pairs = 300 if quick else 2000
    rng = np.random.default_rng(0)
    edits = rng.integers(0, 21, n_pairs)  # (n_pairs,) replaced words per pair
    texts = [t for e in edits.tolist() for t in edited_pairs(1, 200, e, rng=rng)[0]]  # text, copy, text, copy...
    sets = [shingles(t) for t in texts]
    truth = {(2 * i, 2 * i + 1) for i in range(n_pairs) if jaccard(sets[2 * i], sets[2 * i + 1]) >= THRESHOLD}
    print(f"2. detection at Jaccard >= {THRESHOLD}: {n_pairs:,} labelled pairs ({len(texts):,} texts of 200 words), "
          f"{len(truth):,} positive")  # fmt: skip

    def report(name: str, flagged: set[tuple[int, int]]) -> None:
        # a flagged pair outside the labelled pairs counts as true only if it really is that similar
        hits = sum(1 for i, j in flagged if (i, j) in truth or jaccard(sets[i], sets[j]) >= THRESHOLD)
        precision = hits / len(flagged) if flagged else 1.0
        recall = len(flagged & truth) / len(truth)
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        print(f"   {name:44s} flagged {len(flagged):5,}  precision {precision:.3f}  recall {recall:.3f}  F1 {f1:.3f}")

    sigs = MinHasher(num_perm=NUM_PERM).signatures(texts)  # (2 n_pairs, 112)
    ds_flagged, (b, r) = datasketch_flagged(texts, None)
    report(f"datasketch MinHashLSH(threshold={THRESHOLD}) = {b}x{r}", ds_flagged)
    report(f"scratchllm clusters, {b}x{r}", pairs_of_clusters(clusters(sigs, b, r)))
    report("datasketch MinHashLSH params=(14, 8)", datasketch_flagged(texts, (14, 8))[0])
    report("scratchllm clusters, 14x8 (FineWeb)", pairs_of_clusters(clusters(sigs, 14, 8)))
    report(f"scratchllm clusters, 14x8, verified >= {THRESHOLD}", pairs_of_clusters(clusters(sigs, 14, 8, THRESHOLD)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="200 corpus documents and 300 labelled pairs")
    args = parser.parse_args()
    speed(args.quick)
    quality(args.quick)


if __name__ == "__main__":
    main()
