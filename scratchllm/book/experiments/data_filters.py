"""What each cleaning step of ``scratchllm.data`` does to real text: the default corpus and two small English ones.

A filter tuned on web pages carries assumptions about what good text looks like (sentences end in punctuation, words
are short, lines are not repeated), and the quickest way to see them is to run it over text that is good but not a
web page. Every corpus is first normalized (``Normalize``); then each step runs on its own over the normalized
documents, not chained, so each row says what that step alone would drop. A last row per corpus chains the steps
meant for it: ``CodeFilter`` and ``RedactPII`` for the standard library (the default corpus is code), and language
identification, Gopher (Rae et al. 2021), C4 (Raffel et al. 2020), FineWeb (Penedo et al. 2024) and ``RedactPII`` for
the English prose.

The corpora: the default corpus (``open_corpus(CorpusConfig(split="all"))``: the running Python's standard library and
its pydoc topics), and, from the team's small shared data directory, TinyStories (the stories of
``tinystories_sample.txt`` plus the head of the validation split) and Tiny Shakespeare, both cut at paragraph breaks
into documents of about 2,000 characters. Without the shared directory only the default corpus is measured.

Run it with ``python -m scratchllm.book.experiments.data_filters --out docs/figures``.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections import Counter
from pathlib import Path

from ...data import CorpusConfig, Document, open_corpus
from ...data.language import LanguageConfig, LanguageFilter
from ...data.normalize import Normalize
from ...data.pipeline import DOCUMENT_STEPS
from ...data.step import Step
from .output import write_outputs

# The repository's sibling `shared/data`: small corpora and benchmark files the team keeps outside the repository.
DEFAULT_SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data"
# The filters measured, by their names in the pipeline's registry (scratchllm/data/pipeline.py).
MEASURED = ("gopher", "gopher_repetition", "c4", "fineweb", "code", "language", "pii")
STEPS = {name: DOCUMENT_STEPS[name] for name in MEASURED}
CODE_CHAIN = ("code", "pii")
PROSE_CHAIN = ("language", "gopher_repetition", "gopher", "c4", "fineweb", "pii")
CHUNK_CHARS = 2000
# What Normalize's counters mean, in the order the table lists ties.
NORMALIZE_CHANGES = {
    "blank_lines": "runs of blank lines",
    "mojibake_fixed": "mojibake",
    "nfc": "NFC",
    "line_endings": "line endings",
    "control_chars": "control characters",
    "trailing_whitespace": "trailing whitespace",
}
# Names for the langid.py codes the standard library is mistaken for; any other code is printed as it is.
LANGUAGE_NAMES = {
    "en": "English", "mt": "Maltese", "nl": "Dutch", "de": "German", "fr": "French", "la": "Latin", "it": "Italian",
    "es": "Spanish", "pt": "Portuguese", "da": "Danish", "no": "Norwegian", "sv": "Swedish", "ro": "Romanian",
    "id": "Indonesian", "ms": "Malay", "eo": "Esperanto", "ca": "Catalan", "pl": "Polish", "cs": "Czech",
    "sk": "Slovak", "hu": "Hungarian", "fi": "Finnish", "et": "Estonian", "lt": "Lithuanian", "lv": "Latvian",
    "tl": "Tagalog", "sw": "Swahili", "zh": "Chinese", "ja": "Japanese", "ko": "Korean", "ru": "Russian",
}  # fmt: skip


def paragraph_chunks(text: str, source: str, size: int = CHUNK_CHARS) -> list[Document]:
    """Consecutive blank-line-separated paragraphs grouped into documents of at least ``size`` characters (the
    last one may be shorter), with ids ``source/0``, ``source/1``, ..."""
    docs: list[Document] = []
    current: list[str] = []
    for para in text.split("\n\n"):
        current.append(para)
        if sum(map(len, current)) >= size:
            docs.append(Document(f"{source}/{len(docs)}", "\n\n".join(current), source))
            current = []
    if current:
        docs.append(Document(f"{source}/{len(docs)}", "\n\n".join(current), source))
    return docs


def shared_corpora(shared: Path) -> dict[str, tuple[str, list[Document]]]:
    """TinyStories and Tiny Shakespeare from the shared data directory: name -> (description, documents)."""
    sample = (shared / "tinystories" / "tinystories_sample.txt").read_text(encoding="utf-8")
    stories = [s.strip() for s in sample.split("<|endoftext|>") if s.strip()]
    val = (shared / "tinystories" / "tinystories_val_head.txt").read_text(encoding="utf-8")
    plays = (shared / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
    val_kb = len(val.encode("utf-8")) / 1000
    return {
        "TinyStories": (
            f"the {len(stories)} stories of tinystories_sample.txt, then the {val_kb:.0f} kB of "
            f"tinystories_val_head.txt in chunks of about {CHUNK_CHARS:,} characters",
            [Document(f"tinystories/{i}", s, "tinystories") for i, s in enumerate(stories)]
            + paragraph_chunks(val, "tinystories_val"),
        ),
        "Tiny Shakespeare": (
            f"input.txt in chunks of about {CHUNK_CHARS:,} characters",
            paragraph_chunks(plays, "shakespeare"),
        ),
    }


def _stats(step: Step, seconds: float) -> dict:
    """A step's stats without the dropped texts: counts, and the ids of the first dropped documents per reason."""
    s = step.stats
    examples = {reason: [e["id"] for e in kept] for reason, kept in s.examples.items()}
    return {
        "seen": s.seen, "kept": s.kept, "dropped": dict(s.dropped.most_common()),
        "counters": dict(sorted(s.counters.items())), "example_ids": examples, "seconds": round(seconds, 2),
    }  # fmt: skip


def measure_corpus(docs: list[Document], chain: tuple[str, ...], language: LanguageConfig | None = None) -> dict:
    """Normalize ``docs``, run every step of ``STEPS`` alone over the normalized documents, then ``chain`` in order.

    Returns the stats of each (``normalize``, ``steps``, ``chained``); for normalization also the most common file
    names among the dropped documents (``dropped_names``), since a reason like "empty" is clearer with an example.
    """
    rejected: dict[str, Counter] = {}
    start = time.perf_counter()
    norm = Normalize()
    norm.rejects = lambda doc, reason: rejected.setdefault(reason, Counter()).update([doc.id.rpartition("/")[2]])
    normalized = list(norm.run(docs))
    result = {"documents": len(docs), "normalize": _stats(norm, time.perf_counter() - start)}
    result["normalize"]["dropped_names"] = {reason: dict(c.most_common(3)) for reason, c in rejected.items()}

    def make(name: str) -> Step:
        return LanguageFilter(language) if name == "language" else STEPS[name]()

    result["steps"] = {}
    for name in STEPS:
        start = time.perf_counter()
        step = make(name)
        for _ in step.run(normalized):
            pass
        result["steps"][name] = _stats(step, time.perf_counter() - start)

    start = time.perf_counter()
    steps = [make(name) for name in chain]
    stream = iter(normalized)
    for step in steps:
        stream = step.run(stream)
    kept = sum(1 for _ in stream)
    result["chained"] = {
        "steps": list(chain), "seen": len(normalized), "kept": kept,
        "dropped": {s.name: s.stats.total_dropped for s in steps}, "seconds": round(time.perf_counter() - start, 2),
    }  # fmt: skip
    return result


def run(shared: Path | None = DEFAULT_SHARED, max_documents: int = 0) -> dict:
    """Measure every step on the default corpus and, when ``shared`` is a directory, on TinyStories and Tiny
    Shakespeare. ``max_documents`` > 0 keeps only that many documents of each corpus (for quick checks)."""
    start = time.perf_counter()
    language = LanguageConfig()
    stdlib = list(open_corpus(CorpusConfig(split="all", max_documents=max_documents)))
    corpora = {
        "stdlib": (
            f"the default corpus, open_corpus(CorpusConfig(split='all')): the standard library and pydoc topics "
            f"of Python {platform.python_version()}",
            stdlib,
        )
    }
    notes = []
    if shared is not None and Path(shared).is_dir():
        corpora.update(shared_corpora(Path(shared)))
    else:
        where = "no shared data directory given" if shared is None else f"{str(shared)!r} is not a directory"
        notes.append(f"{where}: TinyStories and Tiny Shakespeare skipped")
    results = []
    for name, (description, docs) in corpora.items():
        docs = docs[:max_documents] if max_documents else docs
        chain = CODE_CHAIN if name == "stdlib" else PROSE_CHAIN
        measured = measure_corpus(docs, chain, language)
        text = [d.text for d in docs]
        results.append(
            {
                "name": name,
                "description": description,
                "characters": sum(map(len, text)),
                "utf8_bytes": sum(len(t.encode("utf-8", "surrogatepass")) for t in text),
                **measured,
            }
        )
    return {
        "python": platform.python_version(),
        "max_documents": max_documents,
        "language": {"languages": list(language.languages), "min_score": language.min_score},
        "notes": notes,
        "corpora": results,
        "seconds": round(time.perf_counter() - start, 1),
    }


def _percent(kept: int, seen: int) -> str:
    p = 100 * kept / seen
    return f"{p:.1f}%" if 99 < p < 100 else f"{p:.0f}%"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _normalize_cell(s: dict) -> str:
    """Kept of seen, what was dropped (with its most common file name) and how many documents each change touched."""
    cell = f"{s['kept']:,} of {s['seen']:,}"
    drops = []
    for reason, n in s["dropped"].items():
        name, count = next(iter(s["dropped_names"][reason].items()))
        drops.append(f"{n:,} dropped as `{reason}` ({count:,} of them `{name}`)")
    if drops:
        cell += ": " + ", ".join(drops)
    if s["counters"].get("changed"):
        counts = [(s["counters"].get(key, 0), words) for key, words in NORMALIZE_CHANGES.items()]
        counts.sort(key=lambda t: -t[0])  # stable: ties keep NORMALIZE_CHANGES's order
        cell += f"; {s['counters']['changed']:,} changed: " + ", ".join(f"{w} in {n:,}" for n, w in counts if n)
    return cell


def _step_cell(name: str, s: dict, allowed: list[str]) -> str:
    """Kept (and share kept) with the three most common reasons; for the language filter also the three languages
    most often found instead of an allowed one; for PII what was redacted."""
    if name == "pii":
        c = s["counters"]
        if not c.get("changed"):
            return "none found"
        return f"{c.get('emails', 0):,} e-mails and {c.get('ips', 0):,} IPs redacted in {c['changed']:,} documents"
    if not s["dropped"]:
        return f"{s['kept']:,}"
    reasons = []
    for reason, n in list(s["dropped"].items())[:3]:
        text = f"`{reason.partition(':')[2]}` {n:,}"
        if reason == "language:not_allowed":
            others = [(n, k.removeprefix("lang_")) for k, n in s["counters"].items()]
            others = sorted((t for t in others if t[1] not in allowed), key=lambda t: (-t[0], t[1]))
            named = [f"{n:,} {LANGUAGE_NAMES.get(code, code)}" for n, code in others[:3]]
            text += " (" + ", ".join(named + ["..."] * (len(others) > 3)) + ")"
        reasons.append(text)
    return f"{s['kept']:,} ({_percent(s['kept'], s['seen'])}): " + ", ".join(reasons)


def _chain_cell(chained: dict, previous: dict | None) -> str:
    if previous is not None and previous["steps"] == chained["steps"]:
        return f"same chain: {chained['kept']:,}"
    return " > ".join(f"`{name}`" for name in chained["steps"]) + f": {chained['kept']:,}"


def table(result: dict) -> str:
    """One row per step, one column per corpus: the documents each step alone keeps, and why it drops the rest."""
    corpora = result["corpora"]
    allowed = result["language"]["languages"]
    languages = ", ".join(LANGUAGE_NAMES.get(code, code) for code in allowed)
    head = ["step"] + [f"{c['name']}: kept of {c['normalize']['kept']:,}" for c in corpora]
    rows = [_row(head), "|" + "---|" * len(head)]
    rows.append(_row(["`normalize` (of the raw documents)"] + [_normalize_cell(c["normalize"]) for c in corpora]))
    for name in STEPS:
        label = f"`{name}`"
        if name == "language":
            label += f" ({languages}, p ≥ {result['language']['min_score']})"
        elif name == "pii":
            label += " (drops nothing)"
        rows.append(_row([label] + [_step_cell(name, c["steps"][name], allowed) for c in corpora]))
    previous = [None] + [c["chained"] for c in corpora[:-1]]
    rows.append(_row(["chained"] + [_chain_cell(c["chained"], p) for c, p in zip(corpora, previous)]))
    return "\n".join(rows)


def _no_figure(result: dict, path: Path) -> None:
    """This experiment is a table; there is nothing to draw."""


def write(result: dict, out_dir: str | Path) -> list[Path]:
    """Save ``data_filters.json`` and ``.md`` into ``out_dir``."""
    return write_outputs("data_filters", result, table(result), _no_figure, out_dir)[:2]


def main() -> None:
    """Run, print the table and the time each step took, and write the results when ``--out`` is given."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="directory for data_filters.json and .md")
    parser.add_argument(
        "--shared",
        type=Path,
        default=DEFAULT_SHARED,
        help=f"the shared data directory with tinystories/ and tinyshakespeare/ (default {DEFAULT_SHARED}); "
        "without it only the default corpus is measured",
    )
    parser.add_argument("--max-documents", type=int, default=0, help="documents per corpus, 0 = all (default)")
    args = parser.parse_args()
    result = run(args.shared, args.max_documents)
    for note in result["notes"]:
        print(f"note: {note}")
    print(table(result))
    for c in result["corpora"]:
        times = ", ".join(f"{k} {v['seconds']:.1f}" for k, v in c["steps"].items())
        print(
            f"{c['name']}: seconds: normalize {c['normalize']['seconds']:.1f}, {times}, chain {c['chained']['seconds']}"
        )
    print(f"total {result['seconds']:.0f} s")
    if args.out:
        for path in write(result, args.out):
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
