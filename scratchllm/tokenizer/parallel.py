"""A bounded, order-preserving process map: the one parallel primitive the tokenizer needs.

Counting pre-token chunks for training and encoding documents in bulk are both "apply a function to batches of text
in worker processes". ``multiprocessing.Pool.imap`` would read the whole input ahead into its task queue (unbounded
memory on a large corpus); this keeps at most ``max_pending`` batches in flight, so memory stays flat however big the
corpus is, and yields results in input order so the output is deterministic.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """Worker processes to use when the caller does not say: the CPUs this process may run on."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def ordered_map(
    fn: Callable[[T], R],
    items: Iterable[T],
    workers: int,
    initializer: Callable[..., Any] | None = None,
    initargs: tuple = (),
    max_pending: int | None = None,
) -> Iterator[R]:
    """``map(fn, items)`` over ``workers`` processes, in order, with at most ``max_pending`` items in flight.

    With ``workers <= 1`` it runs in this process (after calling ``initializer``), which keeps tests and small jobs
    free of process start-up costs and makes the serial and parallel paths share one code path.
    """
    if workers <= 1:
        if initializer is not None:
            initializer(*initargs)
        yield from map(fn, items)
        return
    max_pending = max_pending or 2 * workers
    with ProcessPoolExecutor(workers, initializer=initializer, initargs=initargs) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= max_pending:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def batch_texts(texts: Iterable[str], batch_bytes: int) -> Iterator[list[str]]:
    """Group a stream of texts into lists of roughly ``batch_bytes`` characters (the unit of work of a worker)."""
    batch: list[str] = []
    size = 0
    for text in texts:
        batch.append(text)
        size += len(text)
        if size >= batch_bytes:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def batch_texts_by_count(texts: Iterable[str], size: int) -> Iterator[list[str]]:
    """Lists of ``size`` consecutive texts (the last may be shorter)."""
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
