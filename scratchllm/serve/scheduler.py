"""The scheduler: one model in memory, one thread that runs it, a bounded queue in front.

HTTP handlers never touch the model. They ``submit`` a request (prompt ids, max_tokens, sampling, stop tokens) and
read its tokens from a callback; a single worker thread owns the model and loops:

    sample each row's next token -> hand tokens to their requests -> retire finished rows
    -> feed the live rows their tokens (one forward pass) -> admit waiting requests (prefill, merge)

so requests join and leave the batch between steps (continuous batching, see ``batch.py``). ``max_batch`` bounds
the rows decoded together (memory: one KV cache row each); ``max_batch=1`` is one-request-at-a-time serving, the
baseline the benchmark compares against. The waiting queue is bounded (``max_queue``): when it is full, ``submit``
raises ``QueueFull`` at once (the server answers 503), rather than letting latency grow without limit.

A request can be cancelled (the client went away); its row is dropped at the next step. If the model raises, every
request in the batch gets the error and the worker carries on with the next ones.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .batch import DecodeBatch, Row, Sampling


class QueueFull(RuntimeError):
    """More requests are waiting than the server accepts; the client should retry later."""


@dataclass(eq=False)
class Request:
    """A generation request; ``on_token(id)`` gets each new token, ``on_done(reason, error)`` is called once."""

    prompt: list[int]
    max_tokens: int
    sampling: Sampling = field(default_factory=Sampling)
    stop_tokens: frozenset[int] = frozenset()
    on_token: Callable[[int], None] = lambda token: None
    on_done: Callable[[str, Exception | None], None] = lambda reason, error: None
    cancelled: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        self.cancelled.set()


class Scheduler:
    """Runs ``model`` on a worker thread over a bounded queue of requests, up to ``max_batch`` decoded together."""

    def __init__(self, model, max_batch: int = 16, max_queue: int = 64):
        if max_batch < 1 or max_queue < 1:
            raise ValueError(f"max_batch and max_queue must be at least 1; got {max_batch}, {max_queue}")
        self.model = model.eval()
        self.max_batch = max_batch
        self.waiting: queue.Queue[Request | None] = queue.Queue(maxsize=max_queue)
        self.batch = DecodeBatch(model, max_batch)
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.peak_batch = 0  # the most rows ever decoded together

    # ------------------------------------------------------------------------------------------ outside

    def start(self) -> Scheduler:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="scratchllm-scheduler", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        try:
            self.waiting.put_nowait(None)  # wakes the worker if it waits for work
        except queue.Full:
            pass
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def submit(self, request: Request) -> None:
        """Queue ``request``; raises ``ValueError`` for a request the model cannot take (checked here, in the
        caller's thread, so the client hears of it at once) and ``QueueFull`` when the queue is full."""
        self.batch.new_row(request.prompt, request.max_tokens, request.sampling, request.stop_tokens)
        try:
            self.waiting.put_nowait(request)
        except queue.Full:
            raise QueueFull(f"the server is busy ({self.waiting.maxsize} requests waiting); retry later") from None

    @property
    def load(self) -> dict[str, int]:
        return {"active": len(self.batch), "waiting": self.waiting.qsize(), "max_batch": self.max_batch,
                "peak_batch": self.peak_batch}  # fmt: skip

    # ------------------------------------------------------------------------------------------ the worker

    def _run(self) -> None:
        torch.set_grad_enabled(False)
        while not self._stopping.is_set():
            try:
                if len(self.batch):
                    self._decode_step()
                self._admit(block=not len(self.batch))
            except Exception as exc:  # a failing batch must not take the server down: fail its requests, go on
                for row in self.batch.rows:
                    row.owner.on_done("error", exc)
                self.batch = DecodeBatch(self.model, self.max_batch)
        for row in self.batch.rows:
            row.owner.on_done("cancelled", None)

    def _admit(self, block: bool) -> None:
        """Move waiting requests into the batch (prefill), up to ``max_batch`` rows; wait for one if idle."""
        new: list[Row] = []
        while len(self.batch) + len(new) < self.max_batch:
            try:
                request = self.waiting.get(block=block and not new)
            except queue.Empty:
                break
            if request is None:  # stop() woke us
                break
            if request.cancelled.is_set():
                request.on_done("cancelled", None)
                continue
            row = self.batch.new_row(request.prompt, request.max_tokens, request.sampling, request.stop_tokens,
                                     owner=request)  # fmt: skip
            if row.limit <= 0:  # max_tokens = 0: nothing to generate
                request.on_done("length", None)
                continue
            new.append(row)
        if new:
            try:
                self.batch.add(new)
                self.peak_batch = max(self.peak_batch, len(self.batch))
            except Exception as exc:
                for row in new:
                    row.owner.on_done("error", exc)

    def _decode_step(self) -> None:
        for row, token in self.batch.sample():
            if token is not None:
                row.owner.on_token(token)
            if row.finished is None and row.owner.cancelled.is_set():
                row.finished = "cancelled"
        for row in self.batch.retire():
            row.owner.on_done(row.finished, None)
        if len(self.batch):
            self.batch.step()
