"""The LSH S-curve, predicted and measured: how often MinHash banding catches a pair of known Jaccard similarity.

Cut 112 MinHash values into b bands of r rows; a pair of similarity s shares some band with probability
1 - (1 - s^r)^b (Leskovec, Rajaraman and Ullman, "Mining of Massive Datasets", ch. 3). This experiment draws that
curve for FineWeb's 14 x 8 and two other cuts of the same 112 values, 28 x 4 (catches more, also more false
positives) and 8 x 14 (stricter), and puts next to each the rate measured on synthetic pairs.

The pairs are built so that their word 5-gram Jaccard is known exactly (``edited_pairs``): a text of ``length``
distinct random words and a copy with ``e`` words replaced by new ones, the replaced positions at least n apart
and away from the ends. Each replacement then removes exactly n shingles and adds n new ones, so with
S = length - n + 1 shingles per text, J = (S - n e) / (S + n e). The rate is measured over ``pairs_per_level``
pairs per edit count, with the signatures of ``scratchllm.data.minhash``.

Run it with ``python -m scratchllm.book.experiments.minhash_scurve --out docs/figures``.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from ...data.minhash import MinHasher, jaccard, s_curve, s_curve_threshold, share_a_band, shingles
from .output import save_figure, write_outputs

SCHEMES = ((28, 4), (14, 8), (8, 14))  # (bands, rows); all use 112 permutations


def edited_pairs(
    count: int, length: int, edits: int, ngram: int = 5, rng: np.random.Generator | None = None
) -> list[tuple[str, str]]:
    """``count`` pairs (text, copy with ``edits`` words replaced) of ``length`` random words each.

    Every word is a fresh random token ("w" and up to 12 digits), so no two shingles are equal by chance, and the
    replaced positions lie in [n - 1, length - n], at least n apart: every shingle holds at most one of them.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    first, last = ngram - 1, length - ngram  # positions every one of whose n shingles exists
    if edits and first + (edits - 1) * ngram > last:
        raise ValueError(f"{edits} edits at least {ngram} words apart do not fit in {length} words")
    pairs = []
    for _ in range(count):
        words = [f"w{v}" for v in rng.integers(0, 10**12, length)]
        # e sorted distinct offsets in a range shrunk by (e - 1)(n - 1), then spread apart by i (n - 1): gaps >= n
        slots = last - first + 1 - (edits - 1) * (ngram - 1)
        offsets = np.sort(rng.choice(slots, edits, replace=False)) if edits else np.empty(0, dtype=np.int64)
        copy = list(words)
        for i, offset in enumerate(offsets.tolist()):
            copy[first + offset + i * (ngram - 1)] = f"x{rng.integers(0, 10**12)}"
        pairs.append((" ".join(words), " ".join(copy)))
    return pairs


def expected_jaccard(length: int, edits: int, ngram: int = 5) -> float:
    """The Jaccard similarity of an ``edited_pairs`` pair: (S - n e) / (S + n e), S = length - n + 1."""
    s = length - ngram + 1
    return (s - ngram * edits) / (s + ngram * edits)


def run(pairs_per_level: int = 200, length: int = 200, max_edits: int = 32, ngram: int = 5, seed: int = 0) -> dict:
    """Measure the fraction of pairs sharing a band, for each edit count 1..max_edits and each scheme."""
    rng = np.random.default_rng(seed)
    hasher = MinHasher(num_perm=112, seed=1, ngram=ngram)
    levels = []
    for edits in range(1, max_edits + 1):
        pairs = edited_pairs(pairs_per_level, length, edits, ngram, rng)
        sigs = hasher.signatures([t for pair in pairs for t in pair])  # (2 P, 112): text, copy, text, copy, ...
        a, b = sigs[0::2], sigs[1::2]  # (P, 112) each
        level = {"edits": edits, "jaccard": round(jaccard(*(shingles(t, ngram) for t in pairs[0])), 6)}
        for bands, rows in SCHEMES:
            key = f"{bands}x{rows}"
            level[f"measured_{key}"] = float(share_a_band(a, b, bands, rows).mean())
            level[f"predicted_{key}"] = round(float(s_curve(level["jaccard"], bands, rows)), 6)
        levels.append(level)
    return {
        "num_perm": 112,
        "ngram": ngram,
        "length": length,
        "pairs_per_level": pairs_per_level,
        "schemes": [f"{b}x{r}" for b, r in SCHEMES],
        "thresholds": {f"{b}x{r}": round(s_curve_threshold(b, r), 4) for b, r in SCHEMES},
        "levels": levels,
    }


def max_z(result: dict) -> float:
    """Largest |measured - predicted| in binomial standard deviations, over the levels and schemes where
    n p (1 - p) >= 5, i.e. where the binomial is close enough to normal for a z-score to mean something."""
    n, worst = result["pairs_per_level"], 0.0
    for level in result["levels"]:
        for key in result["schemes"]:
            p, m = level[f"predicted_{key}"], level[f"measured_{key}"]
            if n * p * (1 - p) >= 5:
                worst = max(worst, abs(m - p) / math.sqrt(p * (1 - p) / n))
    return worst


def table(result: dict) -> str:
    """Measured and predicted detection rates as a Markdown table."""
    keys = result["schemes"]
    head = ["edits", "Jaccard"] + [f"{k} measured / predicted" for k in keys]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for lv in result["levels"]:
        cells = [str(lv["edits"]), f"{lv['jaccard']:.3f}"]
        cells += [f"{lv[f'measured_{k}']:.3f} / {lv[f'predicted_{k}']:.3f}" for k in keys]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def plot(result: dict, path: Path) -> None:
    """Predicted S-curves as lines, measured rates as points with binomial 2-sigma bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    s = np.linspace(0, 1, 401)  # (401,)
    n = result["pairs_per_level"]
    j = np.array([lv["jaccard"] for lv in result["levels"]])
    for key, color in zip(result["schemes"], ("tab:green", "tab:blue", "tab:red")):
        bands, rows = map(int, key.split("x"))
        label = f"{bands} bands x {rows} rows (threshold {result['thresholds'][key]:.2f})"
        ax.plot(s, s_curve(s, bands, rows), color=color, label=label)
        m = np.array([lv[f"measured_{key}"] for lv in result["levels"]])
        p = np.array([lv[f"predicted_{key}"] for lv in result["levels"]])
        ax.errorbar(j, m, yerr=2 * np.sqrt(p * (1 - p) / n), fmt="o", ms=3, color=color, capsize=2)
    ax.set(
        xlabel="Jaccard similarity of the word 5-gram sets",
        ylabel="probability of becoming a candidate",
        title=f"MinHash LSH, {result['num_perm']} permutations: 1 - (1 - s^r)^b (lines), measured (points, {n} pairs)",
    )
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    save_figure(fig, path)


def write(result: dict, out_dir: str | Path) -> list[Path]:
    """Save ``minhash_scurve.json``, ``.md`` and ``.png`` into ``out_dir``."""
    return write_outputs("minhash_scurve", result, table(result), plot, out_dir)


def main() -> None:
    """Run, print the table and the largest deviation, and write the results when ``--out`` is given."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="directory for minhash_scurve.json, .md and .png")
    parser.add_argument("--pairs", type=int, default=200, help="pairs per edit count (default 200)")
    args = parser.parse_args()
    result = run(pairs_per_level=args.pairs)
    print(table(result))
    print(f"largest |measured - predicted| where n p (1 - p) >= 5: {max_z(result):.2f} standard deviations")
    if args.out:
        for path in write(result, args.out):
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
