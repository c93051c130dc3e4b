"""Running a pipeline's stages: each shard of a stage is a task, files are the only state, markers make it resumable.

``pipeline.plan`` cuts a pipeline into stages; this module runs them. A task reads files and writes files, nothing
else, so the same code runs as a function call, in a local process pool (``run_shards``), or as a task of a cluster
job. The files and their places are ``run_files``'s.

**Resuming.** Every file is written under a temporary name and renamed into place (``os.replace``, atomic), and a
task writes its marker last. A task is therefore either complete or counts for nothing; a rerun skips the marked
tasks and redoes the others from the start. A task's output depends only on its inputs (documents, settings, the
drop list), never on timing or on which process ran it, so an interrupted and resumed run ends with the same bytes
as an uninterrupted one.
"""

from __future__ import annotations

import io
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

from scratchllm.fileio import atomic_write_bytes, atomic_write_text
from scratchllm.tokenizer.parallel import default_workers

from .decode import open_binary
from .document import Document
from .readers import ReadProblems, open_corpus
from .run_files import Layout, ShardWriter, remove_temporaries
from .step import Filter

if TYPE_CHECKING:  # the pipeline imports this module; its stages build their own steps, so types are all it needs here
    from .pipeline import PipelineConfig, Stage

FEATURE_BATCH = 256  # documents whose global-step features are computed at once


class WorkerDied(RuntimeError):
    """A worker process ended abruptly (killed, out of memory); finished shards are kept and a rerun resumes."""


class _Rejects:
    """Dropped documents written aside, one file per step, opened at the step's first drop."""

    def __init__(self, layout: Layout, shard: int, level: int) -> None:
        self.layout, self.shard, self.level = layout, shard, level
        self.writers: dict[str, ShardWriter] = {}

    def callback(self, step: str) -> Callable[[Document, str], None]:
        remove_temporaries(self.layout.rejects(step, self.shard))

        def write(doc: Document, reason: str) -> None:
            if step not in self.writers:
                self.writers[step] = ShardWriter(self.layout.rejects(step, self.shard), self.level)
            record = {"id": doc.id, "text": doc.text, "source": doc.source, "meta": doc.meta, "reason": reason}
            self.writers[step].write(json.dumps(record, ensure_ascii=False))

        return write


# --------------------------------------------------------------------------------------------------------------------
# Shard tasks


class _Place:
    """The stream position of the document being processed. Per-document steps are Filters and Mappers, which take
    one document and yield it (or drop it) before taking the next, so whatever comes out of the chain, and whatever
    a step drops, is always the document the input handed over last."""

    current = -1


class _ShardProblems(ReadProblems):
    """Every task of stage 0 reads the whole stream, so each meets every bad record in it; a problem is counted by
    the shard that owns the next document, so that over all shards it is counted exactly once."""

    def __init__(self, num_shards: int, shard: int) -> None:
        super().__init__()
        self.num_shards, self.shard = num_shards, shard
        self.next_position = 0

    def add(self, kind: str, where: str, message: str) -> None:
        if self.next_position % self.num_shards == self.shard:
            super().add(kind, where, message)


class DropListed(Filter):
    """Drops the documents a global step put on its drop list, found by their place in the stream."""

    def __init__(self, name: str, reason: str, positions: frozenset[int], place: _Place) -> None:
        self.name = name  # before Step.__init__, which names the stats after it
        super().__init__()
        self.reason, self.positions, self.place = reason, positions, place

    def reason_to_drop(self, doc: Document) -> str | None:
        return self.reason if self.place.current in self.positions else None


def _corpus_shard(
    config: PipelineConfig, shard: int, place: _Place, read: Counter, problems: _ShardProblems
) -> Iterator[Document]:
    for position, doc in enumerate(open_corpus(config.corpus, problems)):
        problems.next_position = position + 1
        if position % config.num_shards == shard:
            place.current = position
            read["documents"] += 1
            read["decoded_with_replacement"] += doc.meta.get("encoding") == "utf-8+replace"
            yield doc


def _stage_input(layout: Layout, stage: int, shard: int, place: _Place, read: Counter) -> Iterator[Document]:
    positions = np.load(layout.shard_file(stage, shard, ".npz"))["positions"]
    with open_binary(layout.shard_file(stage, shard, ".jsonl.zst")) as f:
        for position, line in zip(positions.tolist(), f):
            place.current = position
            read["documents"] += 1
            yield Document.from_json(line.decode("utf-8"))


def _timed(items: Iterable, seconds: Counter, key: str) -> Iterator:
    """``items`` unchanged, adding the time spent producing them (and so in everything upstream) to seconds[key]."""
    iterator = iter(items)
    while True:
        start = time.perf_counter()
        try:
            item = next(iterator)
        except StopIteration:
            seconds[key] += time.perf_counter() - start
            return
        seconds[key] += time.perf_counter() - start
        yield item


class _ShardOutput:
    """What a shard task writes as documents come out of its steps: the documents, and for a stage that feeds a
    global stage, their places in the stream and their features (computed FEATURE_BATCH documents at a time)."""

    def __init__(self, layout: Layout, stage: Stage, shard: int, config: PipelineConfig) -> None:
        self.layout, self.stage, self.shard = layout, stage, shard
        path = layout.shard_output(stage, shard)
        remove_temporaries(path)
        self.writer = ShardWriter(path, config.compression_level)
        self.finders = stage.global_steps(config)
        self.features: dict[str, list[np.ndarray]] = {g.name: [] for g in self.finders}
        self.positions: list[int] = []
        self.batch: list[str] = []
        self.seconds: Counter = Counter()

    def add(self, doc: Document, position: int) -> None:
        self.writer.write(doc.to_json())
        if self.finders:
            self.positions.append(position)
            self.batch.append(doc.text)
            if len(self.batch) == FEATURE_BATCH:
                self._compute_features()

    def _compute_features(self) -> None:
        for finder in self.finders:
            start = time.perf_counter()
            self.features[finder.name].append(finder.features(self.batch))
            self.seconds[f"{finder.name} features"] += time.perf_counter() - start
        self.batch = []

    def commit(self) -> None:
        if self.batch:
            self._compute_features()
        self.writer.commit()
        if self.finders:
            arrays = {f.name: np.concatenate(self.features[f.name] or [f.features([])]) for f in self.finders}
            positions = np.array(self.positions, dtype=np.int64)
            _save_npz(self.layout.shard_file(self.stage.index, self.shard, ".npz"), positions=positions, **arrays)


def _drop_lists(config: PipelineConfig, stage: Stage, shard: int, place: _Place) -> list[Filter]:
    """A DropListed filter per global step of the global stage before ``stage``, holding this shard's share."""
    drops = np.load(Layout(config.out).global_dir(stage.index - 1) / "drops.npz")
    positions, by = drops["positions"], drops["step"]  # (M,) sorted, (M,) index into stage.drops
    mine = positions % config.num_shards == shard
    return [
        DropListed(step.name, step.reason, frozenset(positions[mine & (by == i)].tolist()), place)
        for i, step in enumerate(stage.dropping_steps(config))
    ]


def run_shard(config: PipelineConfig, stage: Stage, shard: int) -> dict:
    """One shard of one stage, from its input (the corpus, or the previous stage's files) to its output files and
    completion marker. Returns the stats it wrote: each step's StepStats and seconds, and for stage 0 the reading."""
    layout, place = Layout(config.out), _Place()
    read, problems = Counter(), _ShardProblems(config.num_shards, shard)
    if stage.index == 0:
        source, steps = _corpus_shard(config, shard, place, read, problems), []
    else:
        source = _stage_input(layout, stage.index - 1, shard, place, read)
        steps = _drop_lists(config, stage, shard, place)
    steps += stage.document_steps(config)
    rejects = _Rejects(layout, shard, config.compression_level) if config.write_rejects else None

    cumulative: Counter = Counter()  # seconds spent in each step's output iterator, which includes its upstream
    docs = _timed(source, cumulative, "read")
    for step in steps:
        step.rejects = rejects.callback(step.name) if rejects else None
        docs = _timed(step.run(docs), cumulative, step.name)
    output = _ShardOutput(layout, stage, shard, config)
    set_aside = rejects.writers if rejects else {}
    start = time.perf_counter()
    try:
        for doc in docs:
            output.add(doc, place.current)
    except BaseException:
        for writer in [output.writer, *set_aside.values()]:
            writer.abort()
        raise
    output.commit()
    for writer in set_aside.values():
        writer.commit()
    total = time.perf_counter() - start

    keys = ["read", *(step.name for step in steps)]
    seconds = {key: cumulative[key] - (cumulative[keys[i - 1]] if i else 0.0) for i, key in enumerate(keys)}
    seconds |= output.seconds
    seconds["write"] = total - cumulative[keys[-1]] - sum(output.seconds.values())
    stats = {
        "stage": stage.index, "shard": shard, "documents": read["documents"], "written": output.writer.lines,
        "steps": [step.stats.to_dict() for step in steps], "seconds": seconds,
    }  # fmt: skip
    if stage.index == 0:
        stats["read"] = {"decoded_with_replacement": read["decoded_with_replacement"], "problems": problems.to_dict()}
    atomic_write_text(layout.shard_file(stage.index, shard, ".stats.json"), json.dumps(stats) + "\n")
    atomic_write_text(layout.shard_file(stage.index, shard, ".done"), "")
    return stats


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


# --------------------------------------------------------------------------------------------------------------------
# Global tasks


def run_global(config: PipelineConfig, stage: Stage) -> dict:
    """The global stage after shard stage ``stage``: every shard's features in stream order, one decision per global
    step (each sees only what the ones before it kept), and the drop list for the next shard stage."""
    layout = Layout(config.out)
    parts = [np.load(layout.shard_file(stage.index, shard, ".npz")) for shard in range(config.num_shards)]
    positions = np.concatenate([part["positions"] for part in parts])  # (N,)
    order = np.argsort(positions, kind="stable")
    alive = np.ones(len(positions), dtype=bool)
    dropped_by = np.full(len(positions), -1, dtype=np.int8)  # index into stage.features of the step that drops it
    stats: dict[str, dict] = {"counters": {}, "seconds": {}}
    for i, finder in enumerate(stage.global_steps(config)):
        start = time.perf_counter()
        rows = np.flatnonzero(alive)  # in stream order
        features = np.concatenate([part[finder.name] for part in parts])[order][rows]
        drop, counters = finder.duplicates(features) if len(rows) else (np.zeros(0, dtype=bool), Counter())
        dropped_by[rows[drop]] = i
        alive[rows[drop]] = False
        stats["counters"][finder.name] = dict(counters)
        stats["seconds"][finder.name] = time.perf_counter() - start
    dropped = dropped_by >= 0
    folder = layout.global_dir(stage.index)
    _save_npz(folder / "drops.npz", positions=positions[order][dropped], step=dropped_by[dropped])
    atomic_write_text(folder / "stats.json", json.dumps(stats) + "\n")
    atomic_write_text(folder / "done", "")
    return stats


# --------------------------------------------------------------------------------------------------------------------
# Local execution


def run_shards(config: PipelineConfig, stage: Stage, shards: list[int], progress: bool, label: str) -> None:
    """Run ``shards`` of ``stage`` in this process (one worker) or in a pool of ``config.workers`` processes."""
    workers = min(config.workers or default_workers(), len(shards))
    bar = tqdm(total=len(shards), desc=label, unit="shard", disable=not progress)
    documents = Counter()

    def done(stats: dict) -> None:
        documents.update(read=stats["documents"], written=stats["written"])
        bar.set_postfix_str(f"{documents['read']:,} documents in, {documents['written']:,} out", refresh=False)
        bar.update(1)

    try:
        if workers <= 1:
            for shard in shards:
                done(run_shard(config, stage, shard))
            return
        with ProcessPoolExecutor(workers) as pool:
            futures = [pool.submit(run_shard, config, stage, shard) for shard in shards]
            try:
                for future in as_completed(futures):
                    done(future.result())
            except BaseException:
                pool.shutdown(cancel_futures=True)  # the rest would fail alike, or the user asked to stop
                raise
    except BrokenProcessPool:
        raise WorkerDied(
            "a worker process died (killed, or out of memory); finished shards are kept: run the same command again "
            "to resume (fewer workers= use less memory)"
        ) from None
    finally:
        bar.close()
