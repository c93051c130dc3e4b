"""The shape of every data-pipeline step: a generator over documents that counts what it saw, kept and dropped.

A step is ``run(docs) -> Iterator[Document]`` (DESIGN house style 5, after datatrove's ``PipelineStep``), so steps
compose by plain function application and a corpus streams through them without ever being held in memory:

    docs = reader(cfg)
    for step in steps:
        docs = step.run(docs)

Two kinds cover almost everything:

- a :class:`Filter` answers, per document, ``None`` (keep) or a short reason (drop), e.g. ``"gopher:mean_word_length"``;
- a :class:`Mapper` returns a changed document (normalization, PII redaction, extraction) or a reason to drop it
  (extraction found no text).

Both record their decisions in a :class:`StepStats`: counts of documents seen, kept and dropped per reason, and a few
dropped examples per reason for the report. Stats of the same step on different shards merge (``merge``), which is how
a sharded run reports on the whole corpus. A step may be given a ``rejects`` callback that receives every dropped
document with its reason, so that the executor can write them aside for inspection.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from .document import Document

EXAMPLES_PER_REASON = 3  # dropped documents remembered per reason, for the report
EXAMPLE_CHARS = 300  # characters of each remembered example


@dataclass
class StepStats:
    """What one step did: documents seen and kept, dropped per reason, and a few dropped examples per reason."""

    name: str
    seen: int = 0
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    # Counters a step may keep beyond keep/drop, e.g. {"emails_redacted": 12} or {"changed": 40}.
    counters: Counter = field(default_factory=Counter)
    examples: dict[str, list[dict]] = field(default_factory=dict)

    def drop(self, doc: Document, reason: str) -> None:
        self.dropped[reason] += 1
        kept = self.examples.setdefault(reason, [])
        if len(kept) < EXAMPLES_PER_REASON:
            kept.append({"id": doc.id, "text": doc.text[:EXAMPLE_CHARS]})

    @property
    def total_dropped(self) -> int:
        return sum(self.dropped.values())

    def merge(self, other: StepStats) -> StepStats:
        """Add another shard's stats of the same step into these (examples keep the first few overall)."""
        self.seen += other.seen
        self.kept += other.kept
        self.dropped.update(other.dropped)
        self.counters.update(other.counters)
        for reason, examples in other.examples.items():
            mine = self.examples.setdefault(reason, [])
            mine.extend(examples[: EXAMPLES_PER_REASON - len(mine)])
        return self

    def to_dict(self) -> dict:
        return {
            "name": self.name, "seen": self.seen, "kept": self.kept, "dropped": dict(self.dropped),
            "counters": dict(self.counters), "examples": self.examples,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict) -> StepStats:
        return cls(d["name"], d["seen"], d["kept"], Counter(d["dropped"]), Counter(d["counters"]), d["examples"])


Rejects = Callable[[Document, str], None]


class Step(ABC):
    """Base of all steps: ``run`` streams documents through, ``stats`` records the decisions."""

    name = "step"

    def __init__(self) -> None:
        self.stats = StepStats(self.name)
        self.rejects: Rejects | None = None  # set by the executor to write dropped documents aside

    @abstractmethod
    def run(self, docs: Iterable[Document]) -> Iterator[Document]:
        """Stream ``docs`` through this step, recording every decision in ``self.stats``."""

    def _dropped(self, doc: Document, reason: str) -> None:
        self.stats.drop(doc, reason)
        if self.rejects is not None:
            self.rejects(doc, reason)


class Filter(Step):
    """Keeps a document when ``reason_to_drop`` returns None; otherwise drops it and records the reason."""

    @abstractmethod
    def reason_to_drop(self, doc: Document) -> str | None:
        """None to keep ``doc``; a short reason such as ``"gopher:word_count"`` to drop it."""

    def run(self, docs: Iterable[Document]) -> Iterator[Document]:
        for doc in docs:
            self.stats.seen += 1
            reason = self.reason_to_drop(doc)
            if reason is None:
                self.stats.kept += 1
                yield doc
            else:
                self._dropped(doc, reason)


class Mapper(Step):
    """Replaces each document by ``apply(doc)``: a Document to keep (changed or not), or a str reason to drop it."""

    @abstractmethod
    def apply(self, doc: Document) -> Document | str:
        """The document to keep (changed or not), or a short reason to drop it."""

    def run(self, docs: Iterable[Document]) -> Iterator[Document]:
        for doc in docs:
            self.stats.seen += 1
            result = self.apply(doc)
            if isinstance(result, str):
                self._dropped(doc, result)
                continue
            self.stats.kept += 1
            if result.text != doc.text:
                self.stats.counters["changed"] += 1
            yield result
