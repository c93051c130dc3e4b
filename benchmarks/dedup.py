"""Dedup benchmark: our MinHash against datasketch's, for speed on the default corpus and for near-duplicate
detection quality on a labelled synthetic set.

Same machine, same process, same input; the ratios are what to quote, since absolute times drift on shared machines.
Run with `make bench` or `python benchmarks/dedup.py [--quick] [--json PATH]`.

1. Signatures per second on the default corpus (the Python standard library, all documents; `--quick`: 200): word
   5-grams, 112 permutations, from raw text to signature on both sides. Ours is `MinHasher.signatures` (each
   document's shingles through NumPy at once); datasketch's `MinHash` is fed the same distinct shingles (our
   `shingles()`) one `update` per shingle, its usual use (target: ours >= 5x), and also through its vectorized
   `update_batch`, for reference. The three take turns on chunks of 256 documents and their times are summed, so
   that a slow phase of a shared machine hits every side alike. In the same turns, the permutations' modular product
   alone (`affine_mod_p` over each chunk's distinct shingle hashes) is timed: its share of our time.
2. Detection quality against `datasketch.MinHashLSH` at threshold 0.75 (FineWeb's target similarity): pairs of
   200-word texts with 0 to 20 words replaced (`edited_pairs`; Jaccard 1.0 down to 0.32, spread evenly over edit
   counts), label = exact Jaccard >= 0.75. A pair is flagged by ours when it lands in one cluster, by datasketch
   when `query` returns it. Precision and recall over all flagged pairs, for datasketch's own banding at 0.75 and
   FineWeb's 14 x 8, with the same banding on our side, and ours with candidates verified by estimated Jaccard.

`--quick` runs the same comparisons on 200 corpus documents and 300 labelled pairs (seconds). `--json PATH` also
writes every number printed, with the settings and the command line, to PATH, and the detection table as Markdown
beside it (PATH with suffix `.md`).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from scratchllm.book.experiments.minhash_scurve import edited_pairs
from scratchllm.data import CorpusConfig, open_corpus
from scratchllm.data.minhash import MinHasher, affine_mod_p, clusters, jaccard, shingle_hashes, shingles
from scratchllm.fileio import atomic_write_text

NUM_PERM = 112
THRESHOLD = 0.75
CHUNK = 256  # documents per turn in the speed comparison (our default batch size)
WORDS, MAX_EDITS = 200, 20  # the labelled pairs: texts of 200 distinct words, 0 to 20 of them replaced in the copy


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


def product_seconds(hasher: MinHasher, texts: list[str]) -> float:
    """Seconds of the permutations' modular product alone over the texts' distinct shingle hashes, as ours runs it."""
    x = np.concatenate([shingle_hashes(t) for t in texts])  # (T,) not timed: only the product is

    def product() -> None:
        for lo in range(0, len(x), hasher.block):  # each (block, k) result is dropped at once, as ours drops it
            affine_mod_p(x[lo : lo + hasher.block], hasher.a, hasher.b)

    return seconds(product)


def speed(quick: bool) -> dict:
    texts = [d.text for d in open_corpus(CorpusConfig(split="all", max_documents=200 if quick else 0))]
    size_mb = sum(len(t.encode("utf-8", "surrogatepass")) for t in texts) / 1e6
    n_shingles = sum(len(shingles(t)) for t in texts)
    print(f"1. signatures, {NUM_PERM} permutations, word 5-grams: default corpus (stdlib, all), {len(texts):,} "
          f"documents, {size_mb:.1f} MB, {n_shingles:,} distinct shingles")  # fmt: skip
    hasher = MinHasher(num_perm=NUM_PERM)
    timers = {
        "scratchllm": lambda chunk: seconds(hasher.signatures, chunk),
        "datasketch update": lambda chunk: seconds(datasketch_signatures, chunk, False),
        "datasketch update_batch": lambda chunk: seconds(datasketch_signatures, chunk, True),
        "product": lambda chunk: product_seconds(hasher, chunk),
    }
    times = dict.fromkeys(timers, 0.0)
    for lo in range(0, len(texts), CHUNK):
        for name, timer in timers.items():
            times[name] += timer(texts[lo : lo + CHUNK])
    product = times.pop("product")
    rows = [{"name": name.replace(" ", "_"), "label": name, "seconds": t, "docs_per_s": len(texts) / t,
             "kshingles_per_s": n_shingles / t / 1e3} for name, t in times.items()]  # fmt: skip
    ours, per_update, batched = times.values()
    return {
        "documents": len(texts), "mb": size_mb, "distinct_shingles": n_shingles, "num_perm": NUM_PERM, "chunk": CHUNK,
        "rows": rows, "ratio_update": per_update / ours, "ratio_update_batch": batched / ours, "target_ratio": 5.0,
        "product_s": product, "product_share": 100 * product / ours,
    }  # fmt: skip


def print_speed(r: dict) -> None:
    for row in r["rows"]:
        print(f"   {row['label']:24s} {row['seconds']:7.2f} s  {row['docs_per_s']:8.1f} docs/s  "
              f"{row['kshingles_per_s']:7.1f} k shingles/s")  # fmt: skip
    print(f"   of ours, the modular product alone: {r['product_s']:.2f} s ({r['product_share']:.0f}%)")
    print(f"   ratio ours/datasketch update: {r['ratio_update']:.1f}x (target >= 5x); "
          f"vs update_batch: {r['ratio_update_batch']:.1f}x\n")  # fmt: skip


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


def quality(quick: bool) -> dict:
    n_pairs = 300 if quick else 2000
    rng = np.random.default_rng(0)
    edits = rng.integers(0, MAX_EDITS + 1, n_pairs)  # (n_pairs,) replaced words per pair
    texts = [t for e in edits.tolist() for t in edited_pairs(1, WORDS, e, rng=rng)[0]]  # text, copy, text, copy...
    sets = [shingles(t) for t in texts]
    truth = {(2 * i, 2 * i + 1) for i in range(n_pairs) if jaccard(sets[2 * i], sets[2 * i + 1]) >= THRESHOLD}
    print(f"2. detection at Jaccard >= {THRESHOLD}: {n_pairs:,} labelled pairs ({len(texts):,} texts of {WORDS} "
          f"words), {len(truth):,} positive")  # fmt: skip

    def score(name: str, label: str, flagged: set[tuple[int, int]]) -> dict:
        # a flagged pair outside the labelled pairs counts as true only if it really is that similar
        hits = sum(1 for i, j in flagged if (i, j) in truth or jaccard(sets[i], sets[j]) >= THRESHOLD)
        precision = hits / len(flagged) if flagged else 1.0
        recall = len(flagged & truth) / len(truth)
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        row = {"name": name, "label": label, "flagged": len(flagged), "precision": precision, "recall": recall,
               "f1": f1, "recall_sd": (recall * (1 - recall) / len(truth)) ** 0.5}  # fmt: skip
        print(f"   {label:44s} flagged {len(flagged):5,}  precision {precision:.3f}  recall {recall:.3f}  F1 {f1:.3f}")
        return row

    sigs = MinHasher(num_perm=NUM_PERM).signatures(texts)  # (2 n_pairs, 112)
    ds_flagged, (b, r) = datasketch_flagged(texts, None)
    rows = [
        score("datasketch_threshold", f"datasketch MinHashLSH(threshold={THRESHOLD}) = {b}x{r}", ds_flagged),
        score("scratchllm_same_banding", f"scratchllm clusters, {b}x{r}", pairs_of_clusters(clusters(sigs, b, r))),
        score("datasketch_14x8", "datasketch MinHashLSH params=(14, 8)", datasketch_flagged(texts, (14, 8))[0]),
        score("scratchllm_14x8", "scratchllm clusters, 14x8 (FineWeb)", pairs_of_clusters(clusters(sigs, 14, 8))),
        score("scratchllm_14x8_verified", f"scratchllm clusters, 14x8, verified >= {THRESHOLD}",
              pairs_of_clusters(clusters(sigs, 14, 8, THRESHOLD))),
    ]  # fmt: skip
    jaccard_min = (WORDS - 4 - 5 * MAX_EDITS) / (WORDS - 4 + 5 * MAX_EDITS)  # edited_pairs: J = (196 - 5e) / (196 + 5e)
    return {"pairs": n_pairs, "texts": len(texts), "words": WORDS, "max_edits": MAX_EDITS, "jaccard_min": jaccard_min,
            "positive": len(truth), "threshold": THRESHOLD, "bands": b, "rows_per_band": r, "rows": rows}  # fmt: skip


def markdown(q: dict) -> str:
    lines = ["| detector | flagged | precision | recall | F1 |", "|---|---:|---:|---:|---:|"]
    for row in q["rows"]:
        lines.append(f"| {row['label']} | {row['flagged']:,} | {row['precision']:.3f} | {row['recall']:.3f} "
                     f"| {row['f1']:.3f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def write_json(path: str, result: dict) -> None:
    atomic_write_text(path, json.dumps(result, indent=2) + "\n")
    atomic_write_text(Path(path).with_suffix(".md"), markdown(result["quality"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="200 corpus documents and 300 labelled pairs")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON here, and a Markdown table beside")
    args = parser.parse_args()
    load = list(os.getloadavg())
    speed_result = speed(args.quick)
    print_speed(speed_result)
    quality_result = quality(args.quick)
    if args.json:
        write_json(args.json, {
            "command": shlex.join(["python", "benchmarks/dedup.py", *sys.argv[1:]]),
            "settings": {"quick": args.quick, "num_perm": NUM_PERM, "threshold": THRESHOLD, "chunk": CHUNK,
                         "cpus": os.cpu_count()},
            "load_average": load, "speed": speed_result, "quality": quality_result,
        })  # fmt: skip


if __name__ == "__main__":
    main()
